
/*
 * nginx-webhook-sse: a plain HTTP/1.x stream with nothing left to send
 * drops its request: the request is logged and its pool freed, and the
 * stream goes on with the connection and its own state alone, a few
 * hundred bytes instead of the request's several kilobytes.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_webhook_sse_stream.h"


static void ngx_http_webhook_sse_free_buffers(ngx_connection_t *c,
    ngx_chain_t *cl);
static void ngx_http_webhook_sse_detached_read(ngx_event_t *rev);
static void ngx_http_webhook_sse_detached_write(ngx_event_t *wev);


/*
 * NGX_DECLINED: the stream keeps its request, for good: other modules keep
 * state in it (pool cleanups, such as limit_conn's), or nginx does (HTTP/2,
 * TLS, limit_rate).  NGX_AGAIN: still sending, try again once it is out.
 */

ngx_int_t
ngx_http_webhook_sse_detach(ngx_http_webhook_sse_stream_t *stream)
{
    ngx_buf_t               *b;
    ngx_connection_t        *c;
    ngx_http_request_t      *r;
    ngx_pool_cleanup_t      *cln;
    ngx_http_cleanup_t      *hcln;
    ngx_http_connection_t   *hc;

    r = stream->request;
    c = r->connection;

    if (stream->ending) {
        return NGX_DECLINED;
    }

    if (r->out || r->buffered || c->buffered || stream->busy
        || stream->queued || stream->catching_up)
    {
        stream->detach_later = 1;
        return NGX_AGAIN;
    }

    if (r != r->main || r->main->count != 1 || c->data != r
        || r->postponed
        || (r->http_version != NGX_HTTP_VERSION_10
            && r->http_version != NGX_HTTP_VERSION_11)
        || r->limit_rate
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
        if (cln->handler && cln->data != stream) {
            return NGX_DECLINED;
        }
    }

    hc = r->http_connection;

    stream->detached = 1;
    stream->chunked = r->chunked;
    stream->request = NULL;

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    r->keepalive = 0;

    ngx_http_free_request(r, 0);

    /* it pointed into the request's memory; the log line has it */
    ngx_str_null(&stream->ctx.session);

    c->data = stream;
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
        ngx_http_webhook_sse_detached_close(stream);
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


/*
 * A detached stream reads only to see the client leave, or nginx closing
 * it (c->close: worker_shutdown_timeout ran out on an exiting worker).
 */

static void
ngx_http_webhook_sse_detached_read(ngx_event_t *rev)
{
    u_char                          buf[256];
    ssize_t                         n;
    ngx_connection_t               *c;
    ngx_http_webhook_sse_stream_t  *stream;

    c = rev->data;
    stream = c->data;

    if (c->close) {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "webhook stream: closed by the exiting worker");
        ngx_http_webhook_sse_detached_close(stream);
        return;
    }

    for ( ;; ) {
        n = c->recv(c, buf, sizeof(buf));

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == 0 || n == NGX_ERROR) {
            ngx_log_error(NGX_LOG_INFO, c->log, 0,
                          "webhook stream: client closed the connection");
            ngx_http_webhook_sse_detached_close(stream);
            return;
        }

        /* whatever the client sends is of no use: drop it */
    }

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_http_webhook_sse_detached_close(stream);
    }
}


static void
ngx_http_webhook_sse_detached_write(ngx_event_t *wev)
{
    ngx_connection_t               *c;
    ngx_http_webhook_sse_stream_t  *stream;

    c = wev->data;
    stream = c->data;

    if (wev->timedout) {
        ngx_log_error(NGX_LOG_INFO, c->log, NGX_ETIMEDOUT,
                      "webhook stream: client timed out");
        c->timedout = 1;
        ngx_http_webhook_sse_detached_close(stream);
        return;
    }

    if (ngx_http_webhook_sse_output_send(stream) != NGX_OK) {
        ngx_http_webhook_sse_detached_close(stream);
        return;
    }

    if (stream->busy) {
        return;
    }

    if (stream->ending) {
        ngx_http_webhook_sse_detached_close(stream);
        return;
    }

    if (ngx_http_webhook_sse_fanout_catch_up(stream) != NGX_OK) {
        ngx_http_webhook_sse_detached_close(stream);
    }
}


void
ngx_http_webhook_sse_detached_close(ngx_http_webhook_sse_stream_t *stream)
{
    ngx_connection_t  *c;

    c = stream->connection;

    ngx_http_webhook_sse_fanout_release(stream);
    ngx_free(stream);

    ngx_http_close_connection(c);
}
