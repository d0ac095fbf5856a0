
/*
 * nginx-webhook-sse: SSE streams.
 *
 * A stream subscribes to its session's channel and to the broadcast
 * channel.  The worker keeps one local channel per subscribed zone channel
 * with its streams; a doorbell makes it fetch, once, the new messages of
 * the channels named in its notice ring, and every stream gets the same
 * event buffer.  Each stream's cursor (the last sequence number it got)
 * makes replay and live delivery meet without gaps or duplicates.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_webhook_sse_module.h"
#include "ngx_http_webhook_sse_redis.h"


#define NGX_HTTP_WEBHOOK_SSE_FREE_MAX  4096


struct ngx_http_webhook_sse_lchannel_s {
    ngx_rbtree_node_t                  node;
    ngx_queue_t                        streams;
    ngx_uint_t                         nstreams;
    uint64_t                           fetched;
    ngx_http_webhook_sse_lchannel_t   *next_dirty;
    ngx_str_t                          session;
    unsigned                           dirty:1;
};


static ngx_int_t ngx_http_webhook_sse_subscribe(ngx_http_request_t *r,
    ngx_http_webhook_sse_ctx_t *ctx, ngx_uint_t resume, uint64_t after);
static ngx_int_t ngx_http_webhook_sse_replay(ngx_http_webhook_sse_ctx_t *ctx,
    ngx_http_webhook_sse_channel_t *channel, ngx_uint_t resume,
    uint64_t after, ngx_uint_t limit);
static ngx_int_t ngx_http_webhook_sse_last_event_id(ngx_http_request_t *r,
    ngx_str_t *id);
static ngx_int_t ngx_http_webhook_sse_send_headers(ngx_http_request_t *r);
static ngx_int_t ngx_http_webhook_sse_send_retry(ngx_http_request_t *r);
static ngx_int_t ngx_http_webhook_sse_connected(ngx_http_request_t *r,
    ngx_http_webhook_sse_ctx_t *ctx);
static ngx_http_webhook_sse_lchannel_t *ngx_http_webhook_sse_lchannel(
    ngx_http_webhook_sse_zone_t *zone, uint64_t id);
static ngx_int_t ngx_http_webhook_sse_fetch(ngx_http_webhook_sse_zone_t *zone,
    ngx_http_webhook_sse_lchannel_t *lc, uint64_t horizon);
static ngx_uint_t ngx_http_webhook_sse_push(ngx_http_webhook_sse_ctx_t *ctx,
    ngx_http_webhook_sse_event_t *ev);
static ngx_http_webhook_sse_event_t *ngx_http_webhook_sse_event(
    ngx_http_webhook_sse_zone_t *zone, ngx_http_webhook_sse_msg_t *msg);
static void ngx_http_webhook_sse_event_release(
    ngx_http_webhook_sse_event_t *ev);
static ngx_int_t ngx_http_webhook_sse_append(ngx_http_webhook_sse_ctx_t *ctx,
    ngx_http_webhook_sse_event_t *ev, u_char *data, size_t len);
static ngx_int_t ngx_http_webhook_sse_flush(ngx_http_webhook_sse_ctx_t *ctx);
static void ngx_http_webhook_sse_update_busy(ngx_http_webhook_sse_ctx_t *ctx);
static void ngx_http_webhook_sse_write_handler(ngx_http_request_t *r);
static void ngx_http_webhook_sse_heartbeat_handler(ngx_event_t *ev);
static ngx_int_t ngx_http_webhook_sse_detach(ngx_http_request_t *r,
    ngx_http_webhook_sse_ctx_t *ctx);
static void ngx_http_webhook_sse_free_buffers(ngx_connection_t *c,
    ngx_chain_t *cl);
static void ngx_http_webhook_sse_detached_read(ngx_event_t *rev);
static void ngx_http_webhook_sse_detached_write(ngx_event_t *wev);
static ngx_int_t ngx_http_webhook_sse_send(ngx_http_webhook_sse_ctx_t *ctx);
static ngx_int_t ngx_http_webhook_sse_flush_detached(
    ngx_http_webhook_sse_ctx_t *ctx, ngx_uint_t chunked);
static ngx_uint_t ngx_http_webhook_sse_too_slow(
    ngx_http_webhook_sse_ctx_t *ctx);
static void ngx_http_webhook_sse_close(ngx_http_webhook_sse_ctx_t *ctx,
    ngx_int_t rc);
static void ngx_http_webhook_sse_cleanup(void *data);
static void ngx_http_webhook_sse_release(ngx_http_webhook_sse_ctx_t *ctx);
static int ngx_libc_cdecl ngx_http_webhook_sse_cmp_events(const void *one,
    const void *two);


static ngx_str_t  ngx_http_webhook_sse_last_event_id_header =
    ngx_string("Last-Event-ID");

static u_char  ngx_http_webhook_sse_heartbeat_text[] = ": heartbeat\n\n";
static u_char  ngx_http_webhook_sse_retry_text[] = "retry: 1000\n\n";
static u_char  ngx_http_webhook_sse_last_chunk[] = "0" CRLF CRLF;

/* events fetched by one delivery, process-local scratch */
static ngx_http_webhook_sse_event_t  **ngx_http_webhook_sse_batch;
static ngx_uint_t                      ngx_http_webhook_sse_batch_size;


ngx_int_t
ngx_http_webhook_sse_stream_handler(ngx_http_request_t *r)
{
    uint64_t                          after;
    ngx_int_t                         rc;
    ngx_str_t                         id;
    ngx_uint_t                        resume, status;
    const char                       *error;
    ngx_pool_cleanup_t               *cln;
    ngx_http_core_loc_conf_t         *clcf;
    ngx_http_webhook_sse_ctx_t       *ctx;
    ngx_http_webhook_sse_out_t       *out;
    ngx_http_webhook_sse_zone_t      *zone;
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
    ctx = ngx_calloc(sizeof(ngx_http_webhook_sse_ctx_t), r->connection->log);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_webhook_sse_cleanup;
    cln->data = ctx;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    ctx->request = r;
    ctx->connection = r->connection;
    ctx->conf = wlcf;
    ctx->send_timeout = clcf->send_timeout;
    ctx->zone = zone;
    ctx->queued_last = &ctx->queued;
    ctx->busy_last = &ctx->busy;

    ngx_http_set_ctx(r, ctx, ngx_http_webhook_sse_module);

    rc = ngx_http_webhook_sse_get_session(r, wlcf, &ctx->session);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_webhook_sse_send_error(r, NGX_HTTP_BAD_REQUEST,
                                               "the session must be 1 to 256 "
                                               "bytes without control "
                                               "characters");
    }

    status = ngx_http_webhook_sse_check_token(r, wlcf, &ctx->session, &error);
    if (status != NGX_OK) {
        return ngx_http_webhook_sse_send_error(r, status, error);
    }

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        return ngx_http_webhook_sse_send_retry(r);
    }

    /* webhook_redis: the zone has not caught up with the cluster yet */
    if (!ngx_http_webhook_sse_redis_ready(zone)) {
        return ngx_http_webhook_sse_send_retry(r);
    }

    if (zone->doorbell == NULL || zone->slot < 0) {
        return ngx_http_webhook_sse_send_error(r,
                                               NGX_HTTP_SERVICE_UNAVAILABLE,
                                               "this worker cannot serve "
                                               "streams");
    }

    resume = (ngx_http_webhook_sse_last_event_id(r, &id) == NGX_OK);
    after = resume ? ngx_http_webhook_sse_parse_id(zone, id.data, id.len) : 0;

    rc = ngx_http_webhook_sse_connected(r, ctx);
    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_webhook_sse_subscribe(r, ctx, resume, after);

    if (rc == NGX_DECLINED) {
        return ngx_http_webhook_sse_send_error(r,
                                               NGX_HTTP_SERVICE_UNAVAILABLE,
                                               "the webhook zone is full");
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /*
     * A client resuming after a long absence gets its whole backlog at
     * once: it is slow only if it falls behind beyond that.
     */
    for (out = ctx->queued; out; out = out->next) {
        ctx->slack += out->buf.last - out->buf.pos;
    }

    rc = ngx_http_webhook_sse_send_headers(r);

    if (rc == NGX_ERROR || rc > NGX_OK) {
        return rc;
    }

    if (ngx_http_webhook_sse_flush(ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    r->read_event_handler = ngx_http_test_reading;
    r->write_event_handler = ngx_http_webhook_sse_write_handler;

    ctx->heartbeat.handler = ngx_http_webhook_sse_heartbeat_handler;
    ctx->heartbeat.data = ctx;
    ctx->heartbeat.log = r->connection->log;
    ctx->heartbeat.cancelable = 1;

    if (wlcf->heartbeat) {
        ngx_add_timer(&ctx->heartbeat, wlcf->heartbeat);
    }

    /* detaching waits until nginx is done with the request's handler */
    if (wlcf->detach) {
        ctx->detach = 1;
        ngx_post_event(&ctx->heartbeat, &ngx_posted_events);
    }

    r->main->count++;

    return NGX_DONE;
}


/*
 * A plain HTTP/1.x stream with nothing left to send drops its request:
 * the request is logged and its pool freed, and the stream goes on with
 * the connection and the context alone, a few hundred bytes instead of
 * the request's several kilobytes.  Requests other modules keep state in
 * (pool cleanups, such as limit_conn's) are left as they are.
 */

static ngx_int_t
ngx_http_webhook_sse_detach(ngx_http_request_t *r,
    ngx_http_webhook_sse_ctx_t *ctx)
{
    ngx_buf_t               *b;
    ngx_connection_t        *c;
    ngx_pool_cleanup_t      *cln;
    ngx_http_cleanup_t      *hcln;
    ngx_http_connection_t   *hc;

    c = r->connection;

    if (ctx->ending) {
        return NGX_DECLINED;
    }

    /* still sending (a long replay): try again once it is out */
    if (r->out || r->buffered || c->buffered || ctx->busy) {
        ctx->detach_later = 1;
        return NGX_AGAIN;
    }

    if (r != r->main || r->main->count != 1 || c->data != r
        || r->postponed
#if (NGX_HTTP_V2)
        || r->stream
#endif
#if (NGX_HTTP_SSL)
        || c->ssl
#endif
       )
    {
        return NGX_DECLINED;
    }

    /*
     * An upstream that served a subrequest (auth_request) leaves its
     * cleanup behind, spent: the handler is gone.
     */

    for (hcln = r->cleanup; hcln; hcln = hcln->next) {
        if (hcln->handler) {
            return NGX_DECLINED;
        }
    }

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler != ngx_http_webhook_sse_cleanup) {
            return NGX_DECLINED;
        }
    }

    hc = r->http_connection;

    ctx->detached = 1;
    ctx->chunked = r->chunked;
    ctx->request = NULL;

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    r->keepalive = 0;

    ngx_http_free_request(r, 0);

    /* it pointed into the request's memory; the log line has it */
    ngx_str_null(&ctx->session);

    c->data = ctx;
    c->destroyed = 0;
    c->log->action = "streaming webhook events";

    /* as for a keepalive connection: the header buffers go too */

    b = c->buffer;

    if (b && ngx_pfree(c->pool, b->start) == NGX_OK) {
        c->buffer = NULL;
    }

    ngx_http_webhook_sse_free_buffers(c, hc->free);
    ngx_http_webhook_sse_free_buffers(c, hc->busy);

    hc->free = NULL;
    hc->busy = NULL;
    hc->nbusy = 0;

    c->read->handler = ngx_http_webhook_sse_detached_read;
    c->write->handler = ngx_http_webhook_sse_detached_write;

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_http_webhook_sse_close(ctx, NGX_ERROR);
        return NGX_ERROR;
    }

    if (c->read->ready) {
        ngx_post_event(c->read, &ngx_posted_events);
    }

    return NGX_OK;
}


/* large header buffers, allocated outside c->pool */

static void
ngx_http_webhook_sse_free_buffers(ngx_connection_t *c, ngx_chain_t *cl)
{
    ngx_chain_t  *ln;

    while (cl) {
        ln = cl;
        cl = cl->next;
        ngx_pfree(c->pool, ln->buf->start);
        ngx_free_chain(c->pool, ln);
    }
}


/* a detached stream reads only to see the client leave */

static void
ngx_http_webhook_sse_detached_read(ngx_event_t *rev)
{
    u_char                       buf[256];
    ssize_t                      n;
    ngx_connection_t            *c;
    ngx_http_webhook_sse_ctx_t  *ctx;

    c = rev->data;
    ctx = c->data;

    for ( ;; ) {
        n = c->recv(c, buf, sizeof(buf));

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == 0 || n == NGX_ERROR) {
            ngx_log_error(NGX_LOG_INFO, c->log, 0,
                          "webhook stream: client closed the connection");
            ngx_http_webhook_sse_close(ctx, NGX_ERROR);
            return;
        }

        /* whatever the client sends is of no use: drop it */
    }

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_http_webhook_sse_close(ctx, NGX_ERROR);
    }
}


static void
ngx_http_webhook_sse_detached_write(ngx_event_t *wev)
{
    ngx_connection_t            *c;
    ngx_http_webhook_sse_ctx_t  *ctx;

    c = wev->data;
    ctx = c->data;

    if (wev->timedout) {
        ngx_log_error(NGX_LOG_INFO, c->log, NGX_ETIMEDOUT,
                      "webhook stream: client timed out");
        c->timedout = 1;
        ngx_http_webhook_sse_close(ctx, NGX_ERROR);
        return;
    }

    if (ngx_http_webhook_sse_send(ctx) != NGX_OK) {
        ngx_http_webhook_sse_close(ctx, NGX_ERROR);
        return;
    }

    if (ctx->ending && ctx->busy == NULL) {
        ngx_http_webhook_sse_close(ctx, NGX_OK);
    }
}


/* writes a detached stream's busy buffers straight to the connection */

static ngx_int_t
ngx_http_webhook_sse_send(ngx_http_webhook_sse_ctx_t *ctx)
{
    ngx_chain_t                 *rest;
    ngx_event_t                 *wev;
    ngx_connection_t            *c;
    ngx_http_webhook_sse_out_t  *out;

    c = ctx->connection;
    wev = c->write;

    if (ctx->busy == NULL) {
        return NGX_OK;
    }

    for (out = ctx->busy; out; out = out->next) {
        out->cl.buf = &out->buf;
        out->cl.next = out->next ? &out->next->cl : NULL;
    }

    rest = c->send_chain(c, &ctx->busy->cl, 0);

    if (rest == NGX_CHAIN_ERROR) {
        c->error = 1;
        return NGX_ERROR;
    }

    ngx_http_webhook_sse_update_busy(ctx);

    if (ctx->busy) {
        ngx_add_timer(wev, ctx->send_timeout);

        if (ngx_handle_write_event(wev, 0) != NGX_OK) {
            return NGX_ERROR;
        }

    } else if (wev->timer_set) {
        ngx_del_timer(wev);
    }

    return NGX_OK;
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
ngx_http_webhook_sse_connected(ngx_http_request_t *r,
    ngx_http_webhook_sse_ctx_t *ctx)
{
    u_char                           *text, *p;
    ngx_str_t                        *field;
    ngx_http_webhook_sse_loc_conf_t  *wlcf;

    wlcf = ngx_http_get_module_loc_conf(r, ngx_http_webhook_sse_module);

    field = &wlcf->session_key;

    text = ngx_pnalloc(r->pool, sizeof("retry: 2000\ndata: {\"type\":"
                                       "\"connected\",\"\":\"\"}\n\n")
                                + field->len * 6 + ctx->session.len * 6);
    if (text == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(text, "retry: 2000\ndata: {\"type\":\"connected\",\"",
                   sizeof("retry: 2000\ndata: {\"type\":\"connected\",\"")
                   - 1);
    p += ngx_http_webhook_sse_json_escape(p, field->data, field->len);
    *p++ = '"';
    *p++ = ':';

    if (ctx->session.len) {
        *p++ = '"';
        p += ngx_http_webhook_sse_json_escape(p, ctx->session.data,
                                              ctx->session.len);
        *p++ = '"';

    } else {
        p = ngx_cpymem(p, "null", 4);
    }

    p = ngx_cpymem(p, "}\n\n", 3);

    if (ngx_http_webhook_sse_append(ctx, NULL, text, p - text) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_OK;
}


/*
 * Under the zone lock: join the session's channel (and the broadcast one),
 * queue the replay, and start the cursor at the newest message so that
 * live delivery goes on exactly where the replay ends.
 */

static ngx_int_t
ngx_http_webhook_sse_subscribe(ngx_http_request_t *r,
    ngx_http_webhook_sse_ctx_t *ctx, ngx_uint_t resume, uint64_t after)
{
    uint64_t                          horizon, cursor;
    ngx_int_t                         rc;
    ngx_http_webhook_sse_zone_t      *zone;
    ngx_http_webhook_sse_shctx_t     *sh;
    ngx_http_webhook_sse_channel_t   *channel;
    ngx_http_webhook_sse_lchannel_t  *lc, *nlc, *broadcast;
    ngx_http_webhook_sse_loc_conf_t  *wlcf;

    wlcf = ngx_http_get_module_loc_conf(r, ngx_http_webhook_sse_module);

    zone = ctx->zone;
    sh = zone->sh;
    broadcast = zone->broadcast;

    if (broadcast == NULL) {
        broadcast = ngx_calloc(sizeof(ngx_http_webhook_sse_lchannel_t),
                               zone->log);
        if (broadcast == NULL) {
            return NGX_ERROR;
        }

        ngx_queue_init(&broadcast->streams);
        broadcast->node.key = NGX_HTTP_WEBHOOK_SSE_BROADCAST;
        zone->broadcast = broadcast;
    }

    nlc = NULL;

    if (ctx->session.len) {
        nlc = ngx_calloc(sizeof(ngx_http_webhook_sse_lchannel_t)
                         + ctx->session.len, zone->log);
        if (nlc == NULL) {
            return NGX_ERROR;
        }
    }

    ngx_http_webhook_sse_store_lock(zone);

    ngx_http_webhook_sse_store_expire(zone, ngx_http_webhook_sse_now());

    channel = ngx_http_webhook_sse_store_find(zone, &ctx->session, 1);

    if (channel == NULL) {
        ngx_http_webhook_sse_store_unlock(zone);
        ngx_free(nlc);
        return NGX_DECLINED;
    }

    horizon = sh->last_seq;
    cursor = horizon;

    /*
     * An id from the future is not ours: replay everything.  With
     * webhook_redis it may be one another host gave out a moment ago:
     * nothing to replay, live delivery goes on after it.
     */
    if (after > horizon) {
        if (ngx_http_webhook_sse_redis_ahead(zone, after, horizon)) {
            cursor = after;

        } else {
            after = 0;
        }
    }

    rc = ngx_http_webhook_sse_replay(ctx, channel, resume, after,
                                     wlcf->replay);

    if (rc != NGX_OK) {
        ngx_http_webhook_sse_store_release(zone, channel);
        ngx_http_webhook_sse_store_unlock(zone);
        ngx_free(nlc);
        return NGX_ERROR;
    }

    lc = NULL;

    if (ctx->session.len) {
        lc = ngx_http_webhook_sse_lchannel(zone, channel->id);

        if (lc == NULL) {
            lc = nlc;
            nlc = NULL;

            lc->node.key = channel->id;
            lc->fetched = horizon;
            lc->session.len = ctx->session.len;
            lc->session.data = (u_char *) &lc[1];
            ngx_memcpy(lc->session.data, ctx->session.data,
                       ctx->session.len);
            ngx_queue_init(&lc->streams);

            ngx_rbtree_insert(&zone->lchannels, &lc->node);

            ngx_http_webhook_sse_mask_set(channel->subscribers, zone->slot);
        }
    }

    if (zone->nstreams == 0) {
        broadcast->fetched = horizon;
        ngx_http_webhook_sse_mask_set(sh->broadcast.subscribers, zone->slot);
    }

    sh->slots[zone->slot]->streams++;

    ngx_http_webhook_sse_store_unlock(zone);

    ngx_free(nlc);

    if (lc) {
        ngx_queue_insert_tail(&lc->streams, &ctx->channel_link);
        lc->nstreams++;
    }

    ngx_queue_insert_tail(&zone->streams, &ctx->zone_link);
    zone->nstreams++;

    ctx->channel = lc;
    ctx->cursor = cursor;
    ctx->subscribed = 1;

    return NGX_OK;
}


/*
 * Queues the retained messages of the channel and of the broadcast channel
 * merged in publish order: all after "after" on a resume, else the last
 * "limit" ones.  Walks both histories from their newest end.
 */

static ngx_int_t
ngx_http_webhook_sse_replay(ngx_http_webhook_sse_ctx_t *ctx,
    ngx_http_webhook_sse_channel_t *channel, ngx_uint_t resume,
    uint64_t after, ngx_uint_t limit)
{
    ngx_uint_t                       n, i;
    ngx_queue_t                     *qa, *qb, **q;
    ngx_http_webhook_sse_msg_t      *msg, *ma, *mb;
    ngx_http_webhook_sse_zone_t     *zone;
    ngx_http_webhook_sse_event_t    *ev, **events;
    ngx_http_webhook_sse_channel_t  *broadcast;

    zone = ctx->zone;
    broadcast = &zone->sh->broadcast;

    n = channel->count;
    if (channel != broadcast) {
        n += broadcast->count;
    }

    if (n == 0 || (!resume && limit == 0)) {
        return NGX_OK;
    }

    events = ngx_alloc(n * sizeof(ngx_http_webhook_sse_event_t *), zone->log);
    if (events == NULL) {
        return NGX_ERROR;
    }

    qa = ngx_queue_last(&channel->messages);
    qb = (channel != broadcast) ? ngx_queue_last(&broadcast->messages)
                                : ngx_queue_sentinel(&broadcast->messages);

    n = 0;

    for ( ;; ) {
        ma = (qa != ngx_queue_sentinel(&channel->messages))
             ? ngx_queue_data(qa, ngx_http_webhook_sse_msg_t, channel_queue)
             : NULL;
        mb = (qb != ngx_queue_sentinel(&broadcast->messages))
             ? ngx_queue_data(qb, ngx_http_webhook_sse_msg_t, channel_queue)
             : NULL;

        if (ma && (mb == NULL || ma->seq > mb->seq)) {
            msg = ma;
            q = &qa;

        } else if (mb) {
            msg = mb;
            q = &qb;

        } else {
            break;
        }

        if (msg->seq <= after || (!resume && n == limit)) {
            break;
        }

        ev = ngx_http_webhook_sse_event(zone, msg);
        if (ev == NULL) {
            goto failed;
        }

        events[n++] = ev;
        *q = ngx_queue_prev(*q);
    }

    for (i = n; i > 0; i--) {
        if (ngx_http_webhook_sse_append(ctx, events[i - 1], NULL, 0)
            != NGX_OK)
        {
            n = i;
            goto failed;
        }
    }

    (void) ngx_atomic_fetch_add(&zone->sh->delivered, n);

    ngx_free(events);

    return NGX_OK;

failed:

    for (i = 0; i < n; i++) {
        if (events[i]->refs == 0) {
            ngx_free(events[i]);
        }
    }

    ngx_free(events);

    return NGX_ERROR;
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


static ngx_http_webhook_sse_lchannel_t *
ngx_http_webhook_sse_lchannel(ngx_http_webhook_sse_zone_t *zone, uint64_t id)
{
    ngx_rbtree_node_t  *node, *sentinel;

    if (id == NGX_HTTP_WEBHOOK_SSE_BROADCAST) {
        return zone->broadcast;
    }

    node = zone->lchannels.root;
    sentinel = zone->lchannels.sentinel;

    while (node != sentinel) {

        if (id == node->key) {
            return (ngx_http_webhook_sse_lchannel_t *) node;
        }

        node = (id < node->key) ? node->left : node->right;
    }

    return NULL;
}


/*
 * The doorbell rang: fetch once what the ring names, then hand each event
 * in publish order to the streams of its channel, then write.
 */

void
ngx_http_webhook_sse_deliver(ngx_http_webhook_sse_zone_t *zone)
{
    uint64_t                          horizon;
    ngx_uint_t                        i, n, overflow, nchannels, delivered;
    ngx_queue_t                      *q;
    ngx_rbtree_node_t                *node;
    ngx_http_webhook_sse_ctx_t       *ctx;
    ngx_http_webhook_sse_slot_t      *slot;
    ngx_http_webhook_sse_event_t     *ev;
    ngx_http_webhook_sse_lchannel_t  *lc, *dirty;
    uint64_t                          ids[NGX_HTTP_WEBHOOK_SSE_RING];

    if (zone->slot < 0 || zone->broadcast == NULL) {
        return;
    }

    dirty = NULL;
    nchannels = 0;
    delivered = 0;
    ngx_http_webhook_sse_batch_size = 0;

    ngx_http_webhook_sse_store_lock(zone);

    slot = zone->sh->slots[zone->slot];

    n = slot->nring;
    ngx_memcpy(ids, slot->ring, n * sizeof(uint64_t));
    overflow = slot->overflow;

    slot->nring = 0;
    slot->overflow = 0;
    slot->armed = 0;

    /* everything up to here is stored; later messages ring again */
    horizon = zone->sh->last_seq;

    for (i = 0; i < n; i++) {
        lc = ngx_http_webhook_sse_lchannel(zone, ids[i]);

        if (lc && !lc->dirty) {
            lc->dirty = 1;
            lc->next_dirty = dirty;
            dirty = lc;
        }
    }

    if (overflow) {
        lc = zone->broadcast;

        if (!lc->dirty) {
            lc->dirty = 1;
            lc->next_dirty = dirty;
            dirty = lc;
        }

        if (zone->lchannels.root != zone->lchannels.sentinel) {
            for (node = ngx_rbtree_min(zone->lchannels.root,
                                       zone->lchannels.sentinel);
                 node;
                 node = ngx_rbtree_next(&zone->lchannels, node))
            {
                lc = (ngx_http_webhook_sse_lchannel_t *) node;

                if (!lc->dirty) {
                    lc->dirty = 1;
                    lc->next_dirty = dirty;
                    dirty = lc;
                }
            }
        }
    }

    for (lc = dirty; lc; lc = lc->next_dirty) {
        if (ngx_http_webhook_sse_fetch(zone, lc, horizon) != NGX_OK) {
            break;
        }

        nchannels++;
    }

    ngx_http_webhook_sse_store_unlock(zone);

    n = ngx_http_webhook_sse_batch_size;

    if (nchannels > 1 && n > 1) {
        ngx_qsort(ngx_http_webhook_sse_batch, n,
                  sizeof(ngx_http_webhook_sse_event_t *),
                  ngx_http_webhook_sse_cmp_events);
    }

    for (i = 0; i < n; i++) {
        ev = ngx_http_webhook_sse_batch[i];
        lc = ev->channel;

        if (lc == zone->broadcast) {
            for (q = ngx_queue_head(&zone->streams);
                 q != ngx_queue_sentinel(&zone->streams);
                 q = ngx_queue_next(q))
            {
                ctx = ngx_queue_data(q, ngx_http_webhook_sse_ctx_t, zone_link);
                delivered += ngx_http_webhook_sse_push(ctx, ev);
            }

        } else {
            for (q = ngx_queue_head(&lc->streams);
                 q != ngx_queue_sentinel(&lc->streams);
                 q = ngx_queue_next(q))
            {
                ctx = ngx_queue_data(q, ngx_http_webhook_sse_ctx_t,
                                     channel_link);
                delivered += ngx_http_webhook_sse_push(ctx, ev);
            }
        }

        ngx_http_webhook_sse_event_release(ev);
    }

    if (delivered) {
        (void) ngx_atomic_fetch_add(&zone->sh->delivered, delivered);
    }

    for (lc = dirty; lc; lc = lc->next_dirty) {
        lc->dirty = 0;
    }

    /* writing may close streams, each leaves the touched queue itself */

    while (!ngx_queue_empty(&zone->touched)) {
        q = ngx_queue_head(&zone->touched);
        ngx_queue_remove(q);

        ctx = ngx_queue_data(q, ngx_http_webhook_sse_ctx_t, touched_link);
        ctx->touched = 0;

        if (ctx->failed || ngx_http_webhook_sse_flush(ctx) != NGX_OK) {
            ngx_http_webhook_sse_close(ctx, NGX_ERROR);
        }
    }
}


/* copies the messages in (lc->fetched, horizon] out of the zone */

static ngx_int_t
ngx_http_webhook_sse_fetch(ngx_http_webhook_sse_zone_t *zone,
    ngx_http_webhook_sse_lchannel_t *lc, uint64_t horizon)
{
    size_t                           size;
    ngx_queue_t                     *q, *first;
    ngx_http_webhook_sse_msg_t      *msg;
    ngx_http_webhook_sse_event_t    *ev, **batch;
    ngx_http_webhook_sse_channel_t  *channel;

    if (lc->fetched >= horizon) {
        return NGX_OK;
    }

    if (lc == zone->broadcast) {
        channel = (zone->nstreams) ? &zone->sh->broadcast : NULL;

    } else {
        channel = ngx_http_webhook_sse_store_find(zone, &lc->session, 0);
    }

    if (channel == NULL) {
        lc->fetched = horizon;
        return NGX_OK;
    }

    first = ngx_queue_sentinel(&channel->messages);

    for (q = ngx_queue_last(&channel->messages);
         q != ngx_queue_sentinel(&channel->messages);
         q = ngx_queue_prev(q))
    {
        msg = ngx_queue_data(q, ngx_http_webhook_sse_msg_t, channel_queue);

        if (msg->seq <= lc->fetched) {
            break;
        }

        first = q;
    }

    for (q = first;
         q != ngx_queue_sentinel(&channel->messages);
         q = ngx_queue_next(q))
    {
        msg = ngx_queue_data(q, ngx_http_webhook_sse_msg_t, channel_queue);

        if (msg->seq > horizon) {
            break;
        }

        if (msg->pending) {
            msg->pending--;
        }

        if (ngx_http_webhook_sse_batch_size % 64 == 0) {
            size = (ngx_http_webhook_sse_batch_size + 64)
                   * sizeof(ngx_http_webhook_sse_event_t *);

            batch = ngx_alloc(size, zone->log);
            if (batch == NULL) {
                return NGX_ERROR;
            }

            if (ngx_http_webhook_sse_batch) {
                ngx_memcpy(batch, ngx_http_webhook_sse_batch,
                           ngx_http_webhook_sse_batch_size
                           * sizeof(ngx_http_webhook_sse_event_t *));
                ngx_free(ngx_http_webhook_sse_batch);
            }

            ngx_http_webhook_sse_batch = batch;
        }

        ev = ngx_http_webhook_sse_event(zone, msg);
        if (ev == NULL) {
            return NGX_ERROR;
        }

        /* the batch holds one reference until every stream has it */
        ev->refs = 1;
        ev->channel = lc;

        ngx_http_webhook_sse_batch[ngx_http_webhook_sse_batch_size++] = ev;
    }

    lc->fetched = horizon;

    return NGX_OK;
}


static int ngx_libc_cdecl
ngx_http_webhook_sse_cmp_events(const void *one, const void *two)
{
    ngx_http_webhook_sse_event_t  *a, *b;

    a = *(ngx_http_webhook_sse_event_t **) one;
    b = *(ngx_http_webhook_sse_event_t **) two;

    return (a->seq > b->seq) - (a->seq < b->seq);
}


/* 1 when the event was handed to the stream */

static ngx_uint_t
ngx_http_webhook_sse_push(ngx_http_webhook_sse_ctx_t *ctx,
    ngx_http_webhook_sse_event_t *ev)
{
    if (ctx->ending || ev->seq <= ctx->cursor) {
        return 0;
    }

    if (ngx_http_webhook_sse_append(ctx, ev, NULL, 0) != NGX_OK) {
        ctx->failed = 1;
    }

    ctx->cursor = ev->seq;

    if (!ctx->touched) {
        ctx->touched = 1;
        ngx_queue_insert_tail(&ctx->zone->touched, &ctx->touched_link);
    }

    return 1;
}


static ngx_http_webhook_sse_event_t *
ngx_http_webhook_sse_event(ngx_http_webhook_sse_zone_t *zone,
    ngx_http_webhook_sse_msg_t *msg)
{
    ngx_http_webhook_sse_event_t  *ev;

    ev = ngx_alloc(offsetof(ngx_http_webhook_sse_event_t, data) + msg->len,
                   zone->log);
    if (ev == NULL) {
        return NULL;
    }

    ev->next = NULL;
    ev->refs = 0;
    ev->seq = msg->seq;
    ev->channel = NULL;
    ev->len = msg->len;
    ngx_memcpy(ev->data, msg->data, msg->len);

    return ev;
}


static void
ngx_http_webhook_sse_event_release(ngx_http_webhook_sse_event_t *ev)
{
    if (--ev->refs == 0) {
        ngx_free(ev);
    }
}


/* queues an event, or static text when ev is NULL, on a stream */

static ngx_int_t
ngx_http_webhook_sse_append(ngx_http_webhook_sse_ctx_t *ctx,
    ngx_http_webhook_sse_event_t *ev, u_char *data, size_t len)
{
    ngx_http_webhook_sse_out_t   *out;
    ngx_http_webhook_sse_zone_t  *zone;

    zone = ctx->zone;

    out = zone->free;

    if (out) {
        zone->free = out->next;
        zone->nfree--;

    } else {
        out = ngx_alloc(sizeof(ngx_http_webhook_sse_out_t), zone->log);
        if (out == NULL) {
            return NGX_ERROR;
        }
    }

    ngx_memzero(&out->buf, sizeof(ngx_buf_t));

    if (ev) {
        data = ev->data;
        len = ev->len;
        ev->refs++;
    }

    out->event = ev;
    out->next = NULL;

    out->buf.start = data;
    out->buf.pos = data;
    out->buf.last = data + len;
    out->buf.end = data + len;
    out->buf.memory = 1;
    out->buf.tag = (ngx_buf_tag_t) &ngx_http_webhook_sse_module;

    *ctx->queued_last = out;
    ctx->queued_last = &out->next;

    return NGX_OK;
}


static void
ngx_http_webhook_sse_out_free(ngx_http_webhook_sse_zone_t *zone,
    ngx_http_webhook_sse_out_t *out)
{
    if (out->event) {
        ngx_http_webhook_sse_event_release(out->event);
    }

    if (zone->nfree == NGX_HTTP_WEBHOOK_SSE_FREE_MAX) {
        ngx_free(out);
        return;
    }

    out->next = zone->free;
    zone->free = out;
    zone->nfree++;
}


/*
 * Hands the queued buffers to the output filters in one call, the last
 * one flushed; a stream whose unsent output passes webhook_stream_buffer
 * is too slow to keep.
 */

static ngx_int_t
ngx_http_webhook_sse_flush(ngx_http_webhook_sse_ctx_t *ctx)
{
    ngx_int_t                    rc;
    ngx_connection_t            *c;
    ngx_http_request_t          *r;
    ngx_http_webhook_sse_out_t  *out;

    if (ctx->queued == NULL) {
        return NGX_OK;
    }

    if (ctx->detached) {
        return ngx_http_webhook_sse_flush_detached(ctx, ctx->chunked);
    }

    r = ctx->request;
    c = r->connection;

    for (out = ctx->queued; out; out = out->next) {
        out->cl.buf = &out->buf;
        out->cl.next = out->next ? &out->next->cl : NULL;
        ctx->pending += out->buf.last - out->buf.pos;

        if (out->next == NULL) {
            out->buf.flush = 1;
        }
    }

    out = ctx->queued;

    *ctx->busy_last = ctx->queued;
    ctx->busy_last = ctx->queued_last;

    ctx->queued = NULL;
    ctx->queued_last = &ctx->queued;

    rc = ngx_http_output_filter(r, &out->cl);

    ngx_http_webhook_sse_update_busy(ctx);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (ngx_http_webhook_sse_too_slow(ctx)) {
        return NGX_ERROR;
    }

    if (ctx->busy) {
        if (!c->write->timer_set) {
            ngx_add_timer(c->write, ctx->send_timeout);
        }

        /* the write event is armed only when there is something to send */
        if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* chunked: the queued buffers go out as one chunk of the response */

static ngx_int_t
ngx_http_webhook_sse_flush_detached(ngx_http_webhook_sse_ctx_t *ctx,
    ngx_uint_t chunked)
{
    size_t                        len;
    ngx_http_webhook_sse_out_t   *out, *head, **tail;

    static u_char  crlf[] = CRLF;

    if (chunked) {
        len = 0;

        for (out = ctx->queued; out; out = out->next) {
            len += out->buf.last - out->buf.pos;
        }

        /* one chunk for the whole batch */

        if (ngx_http_webhook_sse_append(ctx, NULL, crlf, 2) != NGX_OK) {
            return NGX_ERROR;
        }

        head = ctx->queued;
        tail = ctx->queued_last;

        ctx->queued = NULL;
        ctx->queued_last = &ctx->queued;

        if (ngx_http_webhook_sse_append(ctx, NULL, NULL, 0) != NGX_OK) {
            ctx->queued = head;
            ctx->queued_last = tail;
            return NGX_ERROR;
        }

        out = ctx->queued;
        out->buf.start = out->chunk;
        out->buf.pos = out->chunk;
        out->buf.last = ngx_sprintf(out->chunk, "%xz" CRLF, len);
        out->buf.end = out->buf.last;
        out->next = head;
        ctx->queued_last = tail;
    }

    for (out = ctx->queued; out; out = out->next) {
        ctx->pending += out->buf.last - out->buf.pos;
    }

    *ctx->busy_last = ctx->queued;
    ctx->busy_last = ctx->queued_last;

    ctx->queued = NULL;
    ctx->queued_last = &ctx->queued;

    if (ngx_http_webhook_sse_send(ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_webhook_sse_too_slow(ctx)) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_uint_t
ngx_http_webhook_sse_too_slow(ngx_http_webhook_sse_ctx_t *ctx)
{
    if (ctx->pending <= ctx->conf->stream_buffer + ctx->slack) {
        return 0;
    }

    ngx_log_error(NGX_LOG_WARN, ctx->connection->log, 0,
                  "webhook stream too slow: %uz bytes unsent, closing",
                  ctx->pending);

    return 1;
}


static void
ngx_http_webhook_sse_update_busy(ngx_http_webhook_sse_ctx_t *ctx)
{
    ngx_http_webhook_sse_out_t  *out;

    while (ctx->busy && ctx->busy->buf.pos == ctx->busy->buf.last) {
        out = ctx->busy;
        ctx->busy = out->next;
        ctx->pending -= out->buf.end - out->buf.start;

        /* the replay leaves first: what it allowed shrinks with it */
        ctx->slack -= ngx_min(ctx->slack,
                              (size_t) (out->buf.end - out->buf.start));

        ngx_http_webhook_sse_out_free(ctx->zone, out);
    }

    if (ctx->busy == NULL) {
        ctx->busy_last = &ctx->busy;
    }
}


static void
ngx_http_webhook_sse_write_handler(ngx_http_request_t *r)
{
    ngx_int_t                    rc;
    ngx_event_t                 *wev;
    ngx_connection_t            *c;
    ngx_http_core_loc_conf_t    *clcf;
    ngx_http_webhook_sse_ctx_t  *ctx;

    c = r->connection;
    wev = c->write;
    ctx = ngx_http_get_module_ctx(r, ngx_http_webhook_sse_module);

    if (wev->timedout) {
        ngx_log_error(NGX_LOG_INFO, c->log, NGX_ETIMEDOUT,
                      "webhook stream: client timed out");
        c->timedout = 1;
        ngx_http_webhook_sse_close(ctx, NGX_HTTP_REQUEST_TIME_OUT);
        return;
    }

    rc = ngx_http_output_filter(r, NULL);

    ngx_http_webhook_sse_update_busy(ctx);

    if (rc == NGX_ERROR) {
        ngx_http_webhook_sse_close(ctx, NGX_ERROR);
        return;
    }

    if (ctx->busy) {
        clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

        ngx_add_timer(wev, ctx->send_timeout);

        if (ngx_handle_write_event(wev, clcf->send_lowat) != NGX_OK) {
            ngx_http_webhook_sse_close(ctx, NGX_ERROR);
        }

        return;
    }

    if (wev->timer_set) {
        ngx_del_timer(wev);
    }

    if (ctx->detach_later) {
        ctx->detach_later = 0;
        ctx->detach = 1;
        ngx_post_event(&ctx->heartbeat, &ngx_posted_events);
    }
}


static void
ngx_http_webhook_sse_heartbeat_handler(ngx_event_t *ev)
{
    ngx_http_webhook_sse_ctx_t  *ctx;

    ctx = ev->data;

    if (ctx->detach) {
        ctx->detach = 0;

        if (ngx_http_webhook_sse_detach(ctx->request, ctx) == NGX_ERROR) {
            return;
        }

        /* the heartbeat's own turn may have been taken by this one */
        if (ctx->conf->heartbeat && !ev->timer_set) {
            ngx_add_timer(ev, ctx->conf->heartbeat);
        }

        return;
    }

    /* a stream still sending has no need of a heartbeat */
    if (ctx->busy == NULL) {
        if (ngx_http_webhook_sse_append(ctx, NULL,
                                        ngx_http_webhook_sse_heartbeat_text,
                                    sizeof(ngx_http_webhook_sse_heartbeat_text)
                                        - 1)
            != NGX_OK
            || ngx_http_webhook_sse_flush(ctx) != NGX_OK)
        {
            ngx_http_webhook_sse_close(ctx, NGX_ERROR);
            return;
        }
    }

    ngx_add_timer(ev, ctx->conf->heartbeat);
}


/*
 * Graceful shutdown (reload, quit): tell each client to come back soon,
 * then end its response; they resume on the new workers by Last-Event-ID.
 */

void
ngx_http_webhook_sse_end_streams(ngx_http_webhook_sse_zone_t *zone)
{
    ngx_queue_t                 *q;
    ngx_http_webhook_sse_ctx_t  *ctx;

    /* streams still writing move to the tail; closed ones leave */

    while (!ngx_queue_empty(&zone->streams)) {
        q = ngx_queue_head(&zone->streams);
        ctx = ngx_queue_data(q, ngx_http_webhook_sse_ctx_t, zone_link);

        if (ctx->ending) {
            break;
        }

        ctx->ending = 1;
        ngx_queue_remove(q);
        ngx_queue_insert_tail(&zone->streams, q);

        if (ctx->heartbeat.timer_set) {
            ngx_del_timer(&ctx->heartbeat);
        }

        if (ngx_http_webhook_sse_append(ctx, NULL,
                                        ngx_http_webhook_sse_retry_text,
                                        sizeof(ngx_http_webhook_sse_retry_text)
                                        - 1)
            != NGX_OK
            || ngx_http_webhook_sse_flush(ctx) != NGX_OK)
        {
            ngx_http_webhook_sse_close(ctx, NGX_ERROR);
            continue;
        }

        if (!ctx->detached) {
            ctx->request->keepalive = 0;
            ngx_http_webhook_sse_close(ctx,
                          ngx_http_send_special(ctx->request, NGX_HTTP_LAST));
            continue;
        }

        if (ctx->chunked
            && (ngx_http_webhook_sse_append(ctx, NULL,
                                            ngx_http_webhook_sse_last_chunk,
                                   sizeof(ngx_http_webhook_sse_last_chunk) - 1)
                != NGX_OK
                /* the terminating chunk goes out as it is */
                || ngx_http_webhook_sse_flush_detached(ctx, 0) != NGX_OK))
        {
            ngx_http_webhook_sse_close(ctx, NGX_ERROR);
            continue;
        }

        /* the rest is written by the write handler, which then closes */
        if (ctx->busy == NULL) {
            ngx_http_webhook_sse_close(ctx, NGX_OK);
        }
    }
}


static void
ngx_http_webhook_sse_close(ngx_http_webhook_sse_ctx_t *ctx, ngx_int_t rc)
{
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    c = ctx->connection;

    if (ctx->detached) {
        ngx_http_webhook_sse_release(ctx);
        ngx_free(ctx);
        ngx_http_close_connection(c);
        return;
    }

    r = ctx->request;

    if (rc == NGX_AGAIN) {
        rc = NGX_OK;
    }

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


static void
ngx_http_webhook_sse_cleanup(void *data)
{
    ngx_http_webhook_sse_ctx_t *ctx = data;

    if (ctx->detached) {
        return;
    }

    ngx_http_webhook_sse_release(ctx);
    ngx_free(ctx);
}


/* everything a stream holds: timers, buffers, its subscription */

static void
ngx_http_webhook_sse_release(ngx_http_webhook_sse_ctx_t *ctx)
{
    ngx_http_webhook_sse_out_t       *out;
    ngx_http_webhook_sse_zone_t      *zone;
    ngx_http_webhook_sse_shctx_t     *sh;
    ngx_http_webhook_sse_channel_t   *channel;
    ngx_http_webhook_sse_lchannel_t  *lc;

    zone = ctx->zone;
    sh = zone->sh;

    if (ctx->heartbeat.timer_set) {
        ngx_del_timer(&ctx->heartbeat);
    }

    if (ctx->heartbeat.posted) {
        ngx_delete_posted_event(&ctx->heartbeat);
    }

    if (ctx->touched) {
        ngx_queue_remove(&ctx->touched_link);
        ctx->touched = 0;
    }

    while (ctx->busy) {
        out = ctx->busy;
        ctx->busy = out->next;
        ngx_http_webhook_sse_out_free(zone, out);
    }

    while (ctx->queued) {
        out = ctx->queued;
        ctx->queued = out->next;
        ngx_http_webhook_sse_out_free(zone, out);
    }

    if (!ctx->subscribed) {
        return;
    }

    ctx->subscribed = 0;

    lc = ctx->channel;

    ngx_queue_remove(&ctx->zone_link);
    zone->nstreams--;

    if (lc) {
        ngx_queue_remove(&ctx->channel_link);
        lc->nstreams--;
    }

    ngx_http_webhook_sse_store_lock(zone);

    if (zone->slot >= 0 && sh->slots[zone->slot]) {
        sh->slots[zone->slot]->streams--;

        if (lc && lc->nstreams == 0) {
            channel = ngx_http_webhook_sse_store_find(zone, &lc->session, 0);

            if (channel) {
                ngx_http_webhook_sse_mask_clear(channel->subscribers,
                                                zone->slot);
                ngx_http_webhook_sse_store_unpin(channel, lc->fetched);
                ngx_http_webhook_sse_store_release(zone, channel);
            }
        }

        if (zone->nstreams == 0) {
            ngx_http_webhook_sse_mask_clear(sh->broadcast.subscribers,
                                            zone->slot);
            ngx_http_webhook_sse_store_unpin(&sh->broadcast,
                                             zone->broadcast->fetched);
        }
    }

    ngx_http_webhook_sse_store_unlock(zone);

    if (lc && lc->nstreams == 0) {
        ngx_rbtree_delete(&zone->lchannels, &lc->node);
        ngx_free(lc);
    }
}
