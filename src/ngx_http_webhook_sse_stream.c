
/*
 * nginx-webhook-sse: the stream request.
 *
 * GET on a webhook_stream location: the checks, the response header, the
 * "connected" event and the start of the replay, then heartbeats until the
 * client leaves or the worker shuts down.  What the stream receives comes
 * from the worker's fan-out (ngx_http_webhook_sse_fanout.c).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_webhook_sse_stream.h"
#include "ngx_http_webhook_sse_redis.h"


static ngx_uint_t ngx_http_webhook_sse_transport(ngx_http_request_t *r,
    ngx_http_webhook_sse_loc_conf_t *wlcf, const char **error);
static ngx_int_t ngx_http_webhook_sse_last_event_id(ngx_http_request_t *r,
    ngx_str_t *id);
static ngx_int_t ngx_http_webhook_sse_send_headers(ngx_http_request_t *r);
static ngx_int_t ngx_http_webhook_sse_send_retry(ngx_http_request_t *r);
static ngx_int_t ngx_http_webhook_sse_connected(
    ngx_http_webhook_sse_stream_t *stream, ngx_str_t *session);
static void ngx_http_webhook_sse_write_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_webhook_sse_written(
    ngx_http_webhook_sse_stream_t *stream);
static void ngx_http_webhook_sse_heartbeat_handler(ngx_event_t *ev);
static void ngx_http_webhook_sse_cleanup(void *data);


static ngx_str_t  ngx_http_webhook_sse_last_event_id_header =
    ngx_string("Last-Event-ID");
static ngx_str_t  ngx_http_webhook_sse_accept_header = ngx_string("Accept");

static u_char  ngx_http_webhook_sse_heartbeat_text[] = ": heartbeat\n\n";
static u_char  ngx_http_webhook_sse_retry_text[] = "retry: 1000\n\n";
static u_char  ngx_http_webhook_sse_last_chunk[] = "0" CRLF CRLF;


ngx_int_t
ngx_http_webhook_sse_stream_handler(ngx_http_request_t *r)
{
    ngx_int_t                         rc;
    ngx_str_t                         id;
    ngx_uint_t                        status, transport;
    const char                       *error;
    ngx_pool_cleanup_t               *cln;
    ngx_http_core_loc_conf_t         *clcf;
    ngx_http_webhook_sse_ctx_t       *ctx;
    ngx_http_webhook_sse_zone_t      *zone;
    ngx_http_webhook_sse_stream_t    *stream;
    ngx_http_webhook_sse_replay_t     replay;
    ngx_http_webhook_sse_loc_conf_t  *wlcf;

    wlcf = ngx_http_get_module_loc_conf(r, ngx_http_webhook_sse_module);
    zone = wlcf->stream->data;

    if (r->method != NGX_HTTP_GET) {
        if (ngx_http_webhook_sse_add_header(r, "Allow", "GET") != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_webhook_sse_reject(r, NGX_HTTP_NOT_ALLOWED,
                                           "method not allowed: streams "
                                           "are opened with GET");
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* not in r->pool: a detached stream outlives its request */
    stream = ngx_calloc(sizeof(ngx_http_webhook_sse_stream_t),
                        r->connection->log);
    if (stream == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_webhook_sse_cleanup;
    cln->data = stream;

    ctx = &stream->ctx;
    ngx_http_set_ctx(r, ctx, ngx_http_webhook_sse_module);

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    stream->request = r;
    stream->connection = r->connection;
    stream->conf = wlcf;
    stream->send_timeout = clcf->send_timeout;
    stream->queued_last = &stream->queued;
    stream->held_last = &stream->held;
    stream->busy_last = &stream->busy;

    stream->heartbeat.handler = ngx_http_webhook_sse_heartbeat_handler;
    stream->heartbeat.data = stream;
    stream->heartbeat.log = r->connection->log;
    stream->heartbeat.cancelable = 1;

    rc = ngx_http_webhook_sse_session_value(r, wlcf, &ctx->session, &error);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_webhook_sse_send_error(r, NGX_HTTP_BAD_REQUEST, error);
    }

    status = ngx_http_webhook_sse_check_token(r, wlcf, &ctx->session, &error);
    if (status != NGX_OK) {
        return ngx_http_webhook_sse_send_error(r, status, error);
    }

    transport = ngx_http_webhook_sse_transport(r, wlcf, &error);

    if (transport == 0) {
        return ngx_http_webhook_sse_send_error(r, NGX_HTTP_BAD_REQUEST, error);
    }

    stream->transport = transport;

    if (transport == NGX_HTTP_WEBHOOK_SSE_WEBSOCKET) {
        rc = ngx_http_webhook_sse_websocket_init(stream, &error);

        if (rc == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (rc != NGX_OK) {
            return ngx_http_webhook_sse_send_error(r, rc, error);
        }

    } else if (transport == NGX_HTTP_WEBHOOK_SSE_LONGPOLL) {
        ngx_http_webhook_sse_longpoll_init(stream);
    }

    if (ngx_exiting || ngx_quit || ngx_terminate) {

        if (transport != NGX_HTTP_WEBHOOK_SSE_SSE) {
            /* to come back at once: the new workers answer */
            r->keepalive = 0;
            return ngx_http_webhook_sse_send_error(r,
                                              NGX_HTTP_SERVICE_UNAVAILABLE,
                                              "the server is restarting: "
                                              "retry");
        }

        return ngx_http_webhook_sse_send_retry(r);
    }

    /* webhook_redis: the zone has not caught up with the cluster yet */
    if (!ngx_http_webhook_sse_redis_ready(zone)) {
        return ngx_http_webhook_sse_send_retry(r);
    }

    stream->worker = ngx_http_webhook_sse_fanout_worker(zone);

    if (stream->worker == NULL) {
        return ngx_http_webhook_sse_send_error(r,
                                               NGX_HTTP_SERVICE_UNAVAILABLE,
                                               "this worker cannot serve "
                                               "streams");
    }

    replay.session = ctx->session;
    replay.resume = (ngx_http_webhook_sse_last_event_id(r, &id) == NGX_OK);
    replay.after = replay.resume
                   ? ngx_http_webhook_sse_parse_id(zone, id.data, id.len) : 0;
    replay.limit = wlcf->replay;

    /*
     * webhook_redis: an id a little ahead of this host's zone is one
     * another host gave out a moment ago: live delivery goes on after it.
     */
    replay.ahead = ngx_http_webhook_sse_redis_ahead(zone);

    /* a long-poll answers with messages only */
    if (transport != NGX_HTTP_WEBHOOK_SSE_LONGPOLL) {
        rc = ngx_http_webhook_sse_connected(stream, &ctx->session);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    rc = ngx_http_webhook_sse_fanout_subscribe(stream, &ctx->session,
                                               &replay);

    if (rc == NGX_DECLINED) {
        return ngx_http_webhook_sse_send_error(r,
                                               NGX_HTTP_SERVICE_UNAVAILABLE,
                                               "the webhook zone is full");
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (transport == NGX_HTTP_WEBHOOK_SSE_WEBSOCKET) {
        return ngx_http_webhook_sse_websocket_open(stream);
    }

    if (transport == NGX_HTTP_WEBHOOK_SSE_LONGPOLL) {
        return ngx_http_webhook_sse_longpoll_open(stream);
    }

    rc = ngx_http_webhook_sse_send_headers(r);

    if (rc == NGX_ERROR || rc > NGX_OK) {
        return rc;
    }

    if (ngx_http_webhook_sse_output_flush(stream) != NGX_OK
        || ngx_http_webhook_sse_fanout_catch_up(stream) != NGX_OK)
    {
        return NGX_ERROR;
    }

    r->read_event_handler = ngx_http_test_reading;
    r->write_event_handler = ngx_http_webhook_sse_write_handler;

    if (wlcf->heartbeat
        && ngx_http_webhook_sse_fanout_beat(stream) != NGX_OK)
    {
        ngx_add_timer(&stream->heartbeat, wlcf->heartbeat);
    }

    /* detaching waits until nginx is done with the request's handler */
    if (wlcf->detach) {
        stream->detach = 1;
        ngx_post_event(&stream->heartbeat, &ngx_posted_events);
    }

    r->main->count++;

    return NGX_DONE;
}


/*
 * SSE unless the request asks for another transport: a WebSocket upgrade,
 * "?transport=", or an Accept that wants JSON and not an event stream (a
 * plain GET, curl -N, stays SSE).  0: not one this location allows.
 */

static ngx_uint_t
ngx_http_webhook_sse_transport(ngx_http_request_t *r,
    ngx_http_webhook_sse_loc_conf_t *wlcf, const char **error)
{
    ngx_str_t         value;
    ngx_uint_t        transport;
    ngx_table_elt_t  *h;

    transport = NGX_HTTP_WEBHOOK_SSE_SSE;

    if (ngx_http_arg(r, (u_char *) "transport", 9, &value) == NGX_OK) {

        if (value.len == 3 && ngx_strncmp(value.data, "sse", 3) == 0) {
            transport = NGX_HTTP_WEBHOOK_SSE_SSE;

        } else if (value.len == 9
                   && ngx_strncmp(value.data, "websocket", 9) == 0)
        {
            transport = NGX_HTTP_WEBHOOK_SSE_WEBSOCKET;

        } else if (value.len == 8
                   && ngx_strncmp(value.data, "longpoll", 8) == 0)
        {
            transport = NGX_HTTP_WEBHOOK_SSE_LONGPOLL;

        } else {
            *error = "unknown transport: use sse, websocket or longpoll";
            return 0;
        }

    } else if (r->headers_in.upgrade
               && ngx_strlcasestrn(r->headers_in.upgrade->value.data,
                                   r->headers_in.upgrade->value.data
                                   + r->headers_in.upgrade->value.len,
                                   (u_char *) "websocket", 9 - 1)
                  != NULL)
    {
        transport = NGX_HTTP_WEBHOOK_SSE_WEBSOCKET;

    } else {
        h = ngx_http_webhook_sse_find_header(r,
                                        &ngx_http_webhook_sse_accept_header);

        if (h
            && ngx_strlcasestrn(h->value.data, h->value.data + h->value.len,
                                (u_char *) "application/json", 16 - 1)
               != NULL
            && ngx_strlcasestrn(h->value.data, h->value.data + h->value.len,
                                (u_char *) "text/event-stream", 17 - 1)
               == NULL)
        {
            transport = NGX_HTTP_WEBHOOK_SSE_LONGPOLL;
        }
    }

    if (wlcf->transports & transport) {
        return transport;
    }

    switch (transport) {

    case NGX_HTTP_WEBHOOK_SSE_WEBSOCKET:
        *error = "WebSocket is not enabled on this location "
                 "(webhook_stream_transports)";
        break;

    case NGX_HTTP_WEBHOOK_SSE_LONGPOLL:
        *error = "long-polling is not enabled on this location "
                 "(webhook_stream_transports)";
        break;

    default:
        *error = "SSE is not enabled on this location "
                 "(webhook_stream_transports)";
    }

    return 0;
}


static ngx_int_t
ngx_http_webhook_sse_last_event_id(ngx_http_request_t *r, ngx_str_t *id)
{
    ngx_table_elt_t  *h;

    h = ngx_http_webhook_sse_find_header(r,
                                  &ngx_http_webhook_sse_last_event_id_header);

    if (h && h->value.len) {
        *id = h->value;
        return NGX_OK;
    }

    if (ngx_http_arg(r, (u_char *) "lastEventId", 11, id) == NGX_OK
        && id->len)
    {
        return NGX_OK;
    }

    return NGX_DECLINED;
}


/*
 * A worker on its way out (reload, graceful stop) that still completes a
 * stream request: a stream that only says to come back soon, which the
 * browser does, to a new worker, resuming where it was.  An error status
 * would make EventSource give up for good.
 */

static ngx_int_t
ngx_http_webhook_sse_send_retry(ngx_http_request_t *r)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    rc = ngx_http_webhook_sse_send_headers(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = ngx_http_webhook_sse_retry_text;
    b->last = b->pos + sizeof(ngx_http_webhook_sse_retry_text) - 1;
    b->memory = 1;
    b->flush = 1;
    b->last_buf = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/* "retry" and the "connected" event open every stream */

static ngx_int_t
ngx_http_webhook_sse_connected(ngx_http_webhook_sse_stream_t *stream,
    ngx_str_t *session)
{
    u_char     *text, *p;
    ngx_str_t  *field;

    field = &stream->conf->session_key;

    text = ngx_pnalloc(stream->request->pool,
                       sizeof("retry: 2000\ndata: {\"type\":"
                              "\"connected\",\"\":\"\"}\n\n")
                       + field->len * 6 + session->len * 6);
    if (text == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(text, "retry: 2000\ndata: {\"type\":\"connected\",\"",
                   sizeof("retry: 2000\ndata: {\"type\":\"connected\",\"")
                   - 1);
    p += ngx_http_webhook_sse_json_escape(p, field->data, field->len);
    *p++ = '"';
    *p++ = ':';

    if (session->len) {
        *p++ = '"';
        p += ngx_http_webhook_sse_json_escape(p, session->data,
                                              session->len);
        *p++ = '"';

    } else {
        p = ngx_cpymem(p, "null", 4);
    }

    p = ngx_cpymem(p, "}\n\n", 3);

    if (ngx_http_webhook_sse_output_append_text(stream, text, p - text)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_webhook_sse_send_headers(ngx_http_request_t *r)
{
    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = -1;

    ngx_str_set(&r->headers_out.content_type, "text/event-stream");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    if (ngx_http_webhook_sse_add_header(r, "Cache-Control", "no-cache")
        != NGX_OK
        || ngx_http_webhook_sse_add_header(r, "X-Accel-Buffering", "no")
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    r->allow_ranges = 0;

#if (NGX_HTTP_GZIP)
    /* compression would hold events back */
    r->gzip_tested = 1;
    r->gzip_ok = 0;
#endif

    return ngx_http_send_header(r);
}


static void
ngx_http_webhook_sse_write_handler(ngx_http_request_t *r)
{
    ngx_int_t                       rc;
    ngx_event_t                    *wev;
    ngx_connection_t               *c;
    ngx_http_core_loc_conf_t       *clcf;
    ngx_http_webhook_sse_stream_t  *stream;

    c = r->connection;
    wev = c->write;

    /* the request's ctx is the stream's first member */
    stream = ngx_http_get_module_ctx(r, ngx_http_webhook_sse_module);

    if (wev->timedout) {
        ngx_log_error(NGX_LOG_INFO, c->log, NGX_ETIMEDOUT,
                      "webhook stream: client timed out");
        c->timedout = 1;
        ngx_http_webhook_sse_stream_close(stream, NGX_HTTP_REQUEST_TIME_OUT);
        return;
    }

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    /* limit_rate: its delay timer stands, the send timeout waits */
    if (wev->delayed) {
        if (ngx_handle_write_event(wev, clcf->send_lowat) != NGX_OK) {
            ngx_http_webhook_sse_stream_close(stream, NGX_ERROR);
        }

        return;
    }

    rc = ngx_http_output_filter(r, NULL);

    ngx_http_webhook_sse_output_sent(stream);

    if (rc == NGX_ERROR) {
        ngx_http_webhook_sse_stream_close(stream, NGX_ERROR);
        return;
    }

    if (stream->busy) {
        if (!wev->delayed) {
            ngx_add_timer(wev, stream->send_timeout);
        }

        if (ngx_handle_write_event(wev, clcf->send_lowat) != NGX_OK) {
            ngx_http_webhook_sse_stream_close(stream, NGX_ERROR);
        }

        return;
    }

    /* the send timeout goes, a limit_rate delay stays */
    if (wev->timer_set && !wev->delayed) {
        ngx_del_timer(wev);
    }

    if (ngx_http_webhook_sse_written(stream) != NGX_OK) {
        ngx_http_webhook_sse_stream_close(stream, NGX_ERROR);
    }
}


/* all was sent: the next replay part, or the detach that waited for it */

static ngx_int_t
ngx_http_webhook_sse_written(ngx_http_webhook_sse_stream_t *stream)
{
    if (ngx_http_webhook_sse_fanout_catch_up(stream) != NGX_OK) {
        return NGX_ERROR;
    }

    if (stream->detach_later && stream->busy == NULL
        && !stream->catching_up)
    {
        stream->detach_later = 0;
        stream->detach = 1;
        ngx_post_event(&stream->heartbeat, &ngx_posted_events);
    }

    return NGX_OK;
}


static void
ngx_http_webhook_sse_heartbeat_handler(ngx_event_t *ev)
{
    ngx_http_webhook_sse_stream_t  *stream;

    stream = ev->data;

    if (stream->detach) {
        stream->detach = 0;

        if (ngx_http_webhook_sse_detach(stream) == NGX_ERROR) {
            return;
        }

        /* the heartbeat's own turn may have been taken by this one */
        if (stream->conf->heartbeat && stream->lane == NULL
            && !ev->timer_set)
        {
            ngx_add_timer(ev, stream->conf->heartbeat);
        }

        return;
    }

    /* a stream still sending has no need of a heartbeat */
    if (stream->busy == NULL) {
        if (ngx_http_webhook_sse_output_append_text(stream,
                                        ngx_http_webhook_sse_heartbeat_text,
                                    sizeof(ngx_http_webhook_sse_heartbeat_text)
                                        - 1)
            != NGX_OK
            || ngx_http_webhook_sse_output_flush(stream) != NGX_OK)
        {
            ngx_http_webhook_sse_stream_close(stream, NGX_ERROR);
            return;
        }
    }

    if (stream->lane == NULL) {
        ngx_add_timer(ev, stream->conf->heartbeat);
    }
}


/*
 * Graceful shutdown (reload, quit): tell each client to come back soon,
 * then end its response; they resume on the new workers by Last-Event-ID.
 */

void
ngx_http_webhook_sse_stream_end_all(void *data)
{
    ngx_http_webhook_sse_worker_t  *worker = data;

    ngx_queue_t                    *q;
    ngx_http_webhook_sse_stream_t  *stream;

    ngx_log_error(NGX_LOG_INFO, worker->log, 0,
                  "webhook zone \"%V\": shutting down, ending %ui streams",
                  &worker->zone->shm_zone->shm.name, worker->nstreams);

    if (worker->check.timer_set) {
        ngx_del_timer(&worker->check);
    }

    /* streams still writing move to the tail; closed ones leave */

    while (!ngx_queue_empty(&worker->streams)) {
        q = ngx_queue_head(&worker->streams);
        stream = ngx_queue_data(q, ngx_http_webhook_sse_stream_t,
                                worker_link);

        if (stream->ending) {
            break;
        }

        stream->ending = 1;
        ngx_queue_remove(q);
        ngx_queue_insert_tail(&worker->streams, q);

        if (stream->heartbeat.timer_set) {
            ngx_del_timer(&stream->heartbeat);
        }

        ngx_http_webhook_sse_fanout_unbeat(stream);

        if (stream->transport == NGX_HTTP_WEBHOOK_SSE_WEBSOCKET) {
            ngx_http_webhook_sse_websocket_end(stream);
            continue;
        }

        if (stream->transport == NGX_HTTP_WEBHOOK_SSE_LONGPOLL) {
            ngx_http_webhook_sse_longpoll_end(stream);
            continue;
        }

        if (ngx_http_webhook_sse_output_append_text(stream,
                                        ngx_http_webhook_sse_retry_text,
                                        sizeof(ngx_http_webhook_sse_retry_text)
                                        - 1)
            != NGX_OK
            || ngx_http_webhook_sse_output_flush(stream) != NGX_OK)
        {
            ngx_http_webhook_sse_stream_close(stream, NGX_ERROR);
            continue;
        }

        if (!stream->detached) {
            stream->request->keepalive = 0;
            ngx_http_webhook_sse_stream_close(stream,
                         ngx_http_send_special(stream->request, NGX_HTTP_LAST));
            continue;
        }

        if (stream->chunked
            && (ngx_http_webhook_sse_output_append(stream, NULL,
                                            ngx_http_webhook_sse_last_chunk,
                                   sizeof(ngx_http_webhook_sse_last_chunk) - 1)
                != NGX_OK
                || ngx_http_webhook_sse_output_flush_detached(stream)
                   != NGX_OK))
        {
            ngx_http_webhook_sse_stream_close(stream, NGX_ERROR);
            continue;
        }

        /* the rest is written by the write handler, which then closes */
        if (stream->busy == NULL) {
            ngx_http_webhook_sse_stream_close(stream, NGX_OK);
        }
    }
}


void
ngx_http_webhook_sse_stream_close(ngx_http_webhook_sse_stream_t *stream,
    ngx_int_t rc)
{
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    if (stream->detached) {
        ngx_http_webhook_sse_detached_close(stream);
        return;
    }

    r = stream->request;
    c = r->connection;

    if (rc == NGX_AGAIN) {
        rc = NGX_OK;
    }

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


static void
ngx_http_webhook_sse_cleanup(void *data)
{
    ngx_http_webhook_sse_stream_t  *stream = data;

    if (stream->detached) {
        return;
    }

    ngx_http_webhook_sse_fanout_release(stream);
    ngx_free(stream);
}
