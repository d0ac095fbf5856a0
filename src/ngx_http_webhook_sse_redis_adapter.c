
/*
 * nginx-webhook-sse: hiredis's asynchronous API on nginx's event loop.
 *
 * hiredis owns the socket and says when it wants to read or write; the
 * adapter gives the socket an nginx connection (never closed by nginx: the
 * descriptor is hiredis's) and turns those wishes into nginx events, and
 * nginx's events into redisAsyncHandleRead/Write.  Level-triggered, as
 * hiredis reads and writes once per call.  hiredis 0.14 has no timeouts
 * of its own: the link sets nginx timers (ngx_http_webhook_sse_redis.c).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include <hiredis/async.h>

#include "ngx_http_webhook_sse_redis.h"


static void ngx_http_webhook_sse_redis_read_handler(ngx_event_t *rev);
static void ngx_http_webhook_sse_redis_write_handler(ngx_event_t *wev);
static void ngx_http_webhook_sse_redis_add_read(void *data);
static void ngx_http_webhook_sse_redis_del_read(void *data);
static void ngx_http_webhook_sse_redis_add_write(void *data);
static void ngx_http_webhook_sse_redis_del_write(void *data);
static void ngx_http_webhook_sse_redis_cleanup(void *data);


ngx_int_t
ngx_http_webhook_sse_redis_attach(redisAsyncContext *ac, ngx_log_t *log)
{
    ngx_connection_t  *c;

    if (ac->ev.data != NULL) {
        return NGX_ERROR;
    }

    c = ngx_get_connection(ac->c.fd, log);
    if (c == NULL) {
        return NGX_ERROR;
    }

    c->data = ac;
    c->log = log;
    c->read->log = log;
    c->write->log = log;
    c->read->handler = ngx_http_webhook_sse_redis_read_handler;
    c->write->handler = ngx_http_webhook_sse_redis_write_handler;

    ac->ev.data = c;
    ac->ev.addRead = ngx_http_webhook_sse_redis_add_read;
    ac->ev.delRead = ngx_http_webhook_sse_redis_del_read;
    ac->ev.addWrite = ngx_http_webhook_sse_redis_add_write;
    ac->ev.delWrite = ngx_http_webhook_sse_redis_del_write;
    ac->ev.cleanup = ngx_http_webhook_sse_redis_cleanup;

    return NGX_OK;
}


/* hiredis may free the context (and the connection) in these calls */

static void
ngx_http_webhook_sse_redis_read_handler(ngx_event_t *rev)
{
    ngx_connection_t  *c;

    c = rev->data;

    redisAsyncHandleRead(c->data);
}


static void
ngx_http_webhook_sse_redis_write_handler(ngx_event_t *wev)
{
    ngx_connection_t  *c;

    c = wev->data;

    redisAsyncHandleWrite(c->data);
}


static void
ngx_http_webhook_sse_redis_add_read(void *data)
{
    ngx_connection_t  *c = data;

    if (!c->read->active) {
        if (ngx_add_event(c->read, NGX_READ_EVENT, 0) != NGX_OK) {
            ngx_log_error(NGX_LOG_ALERT, c->log, 0,
                          "webhook redis: cannot watch the connection for "
                          "reading");
        }
    }
}


static void
ngx_http_webhook_sse_redis_del_read(void *data)
{
    ngx_connection_t  *c = data;

    if (c->read->active) {
        (void) ngx_del_event(c->read, NGX_READ_EVENT, 0);
    }
}


static void
ngx_http_webhook_sse_redis_add_write(void *data)
{
    ngx_connection_t  *c = data;

    if (!c->write->active) {
        if (ngx_add_event(c->write, NGX_WRITE_EVENT, 0) != NGX_OK) {
            ngx_log_error(NGX_LOG_ALERT, c->log, 0,
                          "webhook redis: cannot watch the connection for "
                          "writing");
        }
    }
}


static void
ngx_http_webhook_sse_redis_del_write(void *data)
{
    ngx_connection_t  *c = data;

    if (c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, 0);
    }
}


/* the context is being freed; hiredis closes the descriptor itself */

static void
ngx_http_webhook_sse_redis_cleanup(void *data)
{
    ngx_connection_t  *c = data;

    ngx_http_webhook_sse_redis_del_read(c);
    ngx_http_webhook_sse_redis_del_write(c);

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    c->fd = (ngx_socket_t) -1;

    ngx_free_connection(c);
}
