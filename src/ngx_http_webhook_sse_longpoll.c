
/*
 * nginx-webhook-sse: a stream read by long-polling.
 *
 * The request subscribes as a stream does, with the same replay: the
 * events after lastEventId (query or Last-Event-ID), else the newest
 * webhook_replay ones.  When there are some, they are the answer at once:
 * a JSON array of the events' objects (the JSON of the SSE "data:" lines).
 * Else the request waits, subscribed, until a delivery brings events or
 * webhook_longpoll_timeout passes, and the answer is what came, or [].
 * The client asks again after the last messageId it got.  A waiting
 * request counts as a stream in activeConnections.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_webhook_sse_stream.h"


static ngx_int_t ngx_http_webhook_sse_longpoll_ready(
    ngx_http_webhook_sse_stream_t *stream);
static void ngx_http_webhook_sse_longpoll_handler(ngx_event_t *ev);
static ngx_int_t ngx_http_webhook_sse_longpoll_answer(
    ngx_http_webhook_sse_stream_t *stream);


void
ngx_http_webhook_sse_longpoll_init(ngx_http_webhook_sse_stream_t *stream)
{
    stream->send = ngx_http_webhook_sse_longpoll_ready;
    stream->heartbeat.handler = ngx_http_webhook_sse_longpoll_handler;
}


/* subscribed, the replay's first part queued: answer now or wait */

ngx_int_t
ngx_http_webhook_sse_longpoll_open(ngx_http_webhook_sse_stream_t *stream)
{
    ngx_http_request_t  *r;

    r = stream->request;

    if (stream->queued) {
        return ngx_http_webhook_sse_longpoll_answer(stream);
    }

    ngx_add_timer(&stream->heartbeat, stream->conf->longpoll_timeout);

    r->read_event_handler = ngx_http_test_reading;
    r->write_event_handler = ngx_http_request_empty_handler;

    r->main->count++;

    return NGX_DONE;
}


/*
 * Events came (the fan-out flushed them to the busy output): the answer
 * goes once the delivery is done; the stream must outlive the fan-out's
 * loop over its streams.
 */

static ngx_int_t
ngx_http_webhook_sse_longpoll_ready(ngx_http_webhook_sse_stream_t *stream)
{
    ngx_event_t  *ev;

    ev = &stream->heartbeat;

    if (ev->posted) {
        return NGX_OK;
    }

    if (ev->timer_set) {
        ngx_del_timer(ev);
    }

    ngx_post_event(ev, &ngx_posted_events);

    return NGX_OK;
}


/* events arrived, or the timeout passed */

static void
ngx_http_webhook_sse_longpoll_handler(ngx_event_t *ev)
{
    ngx_connection_t               *c;
    ngx_http_request_t             *r;
    ngx_http_webhook_sse_stream_t  *stream;

    stream = ev->data;
    r = stream->request;
    c = r->connection;

    ngx_http_finalize_request(r, ngx_http_webhook_sse_longpoll_answer(stream));
    ngx_http_run_posted_requests(c);
}


/* reload or stop: what the stream has, at once, and the connection closed */

void
ngx_http_webhook_sse_longpoll_end(ngx_http_webhook_sse_stream_t *stream)
{
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = stream->request;
    c = r->connection;

    r->keepalive = 0;

    ngx_http_finalize_request(r, ngx_http_webhook_sse_longpoll_answer(stream));
    ngx_http_run_posted_requests(c);
}


/*
 * The answer: the stream's events as a JSON array, copied into the
 * request's pool; the stream leaves its channels first, so that the count
 * of streams is exact once the answer is on its way.
 */

static ngx_int_t
ngx_http_webhook_sse_longpoll_answer(ngx_http_webhook_sse_stream_t *stream)
{
    u_char                      *body, *p;
    size_t                       len;
    ngx_str_t                    data;
    ngx_uint_t                   i;
    ngx_http_request_t          *r;
    ngx_http_webhook_sse_out_t  *out, *lists[2];

    r = stream->request;

    lists[0] = stream->busy;
    lists[1] = stream->queued;

    len = sizeof("[]") - 1;

    for (i = 0; i < 2; i++) {
        for (out = lists[i]; out; out = out->next) {
            if (ngx_http_webhook_sse_output_data(out, &data) == NGX_OK) {
                len += data.len + 1;
            }
        }
    }

    body = ngx_pnalloc(r->pool, len);
    if (body == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = body;
    *p++ = '[';

    for (i = 0; i < 2; i++) {
        for (out = lists[i]; out; out = out->next) {
            if (ngx_http_webhook_sse_output_data(out, &data) != NGX_OK) {
                continue;
            }

            if (p != body + 1) {
                *p++ = ',';
            }

            p = ngx_cpymem(p, data.data, data.len);
        }
    }

    *p++ = ']';

    ngx_http_webhook_sse_fanout_release(stream);

    r->read_event_handler = ngx_http_block_reading;

    if (ngx_http_webhook_sse_add_header(r, "Cache-Control", "no-store")
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_webhook_sse_send_json(r, NGX_HTTP_OK, body, p - body);
}
