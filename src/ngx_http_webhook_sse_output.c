
/*
 * nginx-webhook-sse: events shared by the streams of a worker, and each
 * stream's output: what is queued, what the output filters (or, detached,
 * the connection) still hold, and the bound on it.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_webhook_sse_stream.h"


/* spare output links a worker keeps */
#define NGX_HTTP_WEBHOOK_SSE_FREE_MAX  4096


static ngx_http_webhook_sse_out_t *ngx_http_webhook_sse_output_link(
    ngx_http_webhook_sse_stream_t *stream, ngx_http_webhook_sse_event_t *ev,
    u_char *data, size_t len);
static void ngx_http_webhook_sse_output_link_free(
    ngx_http_webhook_sse_worker_t *worker, ngx_http_webhook_sse_out_t *out);
static ngx_uint_t ngx_http_webhook_sse_output_too_slow(
    ngx_http_webhook_sse_stream_t *stream);


/*
 * The event of a copied message, with a reference for the caller: one that
 * is alive in this worker already (another stream's replay, a delivery) is
 * shared instead of copied again.
 */

ngx_http_webhook_sse_event_t *
ngx_http_webhook_sse_event_get(ngx_http_webhook_sse_worker_t *worker,
    ngx_http_webhook_sse_record_t *rec)
{
    u_char                        *p;
    size_t                         n;
    ngx_rbtree_node_t             *node, *sentinel;
    ngx_http_webhook_sse_event_t  *ev;

    node = worker->events.root;
    sentinel = worker->events.sentinel;

    while (node != sentinel) {

        ev = (ngx_http_webhook_sse_event_t *) node;

        if (rec->seq == ev->seq) {
            ev->refs++;
            return ev;
        }

        node = (rec->seq < ev->seq) ? node->left : node->right;
    }

    ev = ngx_alloc(offsetof(ngx_http_webhook_sse_event_t, data) + rec->len
                   + sizeof(CRLF) - 1, worker->log);
    if (ev == NULL) {
        return NULL;
    }

    ev->node.key = (ngx_rbtree_key_t) rec->seq;
    ev->seq = rec->seq;
    ev->channel = rec->channel;
    ev->refs = 1;
    ev->len = rec->len;
    ngx_memcpy(ev->data, &rec[1], rec->len);

    /* the chunk: size line right-aligned before the data, CRLF after */

    p = ev->data;
    *--p = LF;
    *--p = CR;

    n = rec->len;

    do {
        *--p = "0123456789abcdef"[n & 0xf];
        n >>= 4;
    } while (n);

    ev->chunk = p;
    ev->data[rec->len] = CR;
    ev->data[rec->len + 1] = LF;
    ev->chunk_len = (ev->data - p) + rec->len + sizeof(CRLF) - 1;

    ngx_rbtree_insert(&worker->events, &ev->node);

    return ev;
}


void
ngx_http_webhook_sse_event_unref(ngx_http_webhook_sse_worker_t *worker,
    ngx_http_webhook_sse_event_t *ev)
{
    if (--ev->refs) {
        return;
    }

    ngx_rbtree_delete(&worker->events, &ev->node);
    ngx_free(ev);
}


/* queues an event, or static text when ev is NULL, on a stream */

ngx_int_t
ngx_http_webhook_sse_output_append(ngx_http_webhook_sse_stream_t *stream,
    ngx_http_webhook_sse_event_t *ev, u_char *data, size_t len)
{
    ngx_http_webhook_sse_out_t  *out;

    out = ngx_http_webhook_sse_output_link(stream, ev, data, len);
    if (out == NULL) {
        return NGX_ERROR;
    }

    *stream->queued_last = out;
    stream->queued_last = &out->next;

    return NGX_OK;
}


/* a buffer for an event, in the framing the stream's response needs */

static ngx_http_webhook_sse_out_t *
ngx_http_webhook_sse_output_link(ngx_http_webhook_sse_stream_t *stream,
    ngx_http_webhook_sse_event_t *ev, u_char *data, size_t len)
{
    ngx_http_webhook_sse_out_t     *out;
    ngx_http_webhook_sse_worker_t  *worker;

    worker = stream->worker;

    out = worker->free;

    if (out) {
        worker->free = out->next;
        worker->nfree--;

    } else {
        out = ngx_alloc(sizeof(ngx_http_webhook_sse_out_t), worker->log);
        if (out == NULL) {
            return NULL;
        }
    }

    ngx_memzero(&out->buf, sizeof(ngx_buf_t));

    if (ev) {
        if (stream->detached && stream->chunked) {
            data = ev->chunk;
            len = ev->chunk_len;

        } else {
            data = ev->data;
            len = ev->len;
        }

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

    return out;
}


static void
ngx_http_webhook_sse_output_link_free(ngx_http_webhook_sse_worker_t *worker,
    ngx_http_webhook_sse_out_t *out)
{
    if (out->event) {
        ngx_http_webhook_sse_event_unref(worker, out->event);
    }

    if (worker->nfree == NGX_HTTP_WEBHOOK_SSE_FREE_MAX) {
        ngx_free(out);
        return;
    }

    out->next = worker->free;
    worker->free = out;
    worker->nfree++;
}


/*
 * Hands the queued buffers to the output filters in one call, the last
 * one flushed; a stream whose unsent output passes webhook_stream_buffer
 * is too slow to keep.
 */

ngx_int_t
ngx_http_webhook_sse_output_flush(ngx_http_webhook_sse_stream_t *stream)
{
    ngx_int_t                    rc;
    ngx_event_t                 *wev;
    ngx_http_request_t          *r;
    ngx_http_webhook_sse_out_t  *out;

    if (stream->queued == NULL) {
        return NGX_OK;
    }

    /* a detached stream, or a transport that writes its own way */
    if (stream->detached || stream->send) {
        return ngx_http_webhook_sse_output_flush_detached(stream);
    }

    r = stream->request;
    wev = r->connection->write;

    for (out = stream->queued; out; out = out->next) {
        out->cl.buf = &out->buf;
        out->cl.next = out->next ? &out->next->cl : NULL;
        stream->unsent += out->buf.last - out->buf.pos;

        if (out->next == NULL) {
            out->buf.flush = 1;
        }
    }

    out = stream->queued;

    *stream->busy_last = stream->queued;
    stream->busy_last = stream->queued_last;

    stream->queued = NULL;
    stream->queued_last = &stream->queued;

    rc = ngx_http_output_filter(r, &out->cl);

    ngx_http_webhook_sse_output_sent(stream);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (ngx_http_webhook_sse_output_too_slow(stream)) {
        return NGX_ERROR;
    }

    if (stream->busy) {
        /* a limit_rate delay keeps its own timer */
        if (!wev->timer_set && !wev->delayed) {
            ngx_add_timer(wev, stream->send_timeout);
        }

        /* the write event is armed only when there is something to send */
        if (ngx_handle_write_event(wev, 0) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * Static text (the opening, heartbeats, the retry before the end): for a
 * detached stream of a chunked response as a chunk of its own.
 */

ngx_int_t
ngx_http_webhook_sse_output_append_text(ngx_http_webhook_sse_stream_t *stream,
    u_char *data, size_t len)
{
    u_char                      *p;
    ngx_http_webhook_sse_out_t  *out;

    static u_char  crlf[] = CRLF;

    if (!(stream->detached && stream->chunked)) {
        return ngx_http_webhook_sse_output_append(stream, NULL, data, len);
    }

    out = ngx_http_webhook_sse_output_link(stream, NULL, NULL, 0);
    if (out == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(out->chunk, "%xz" CRLF, len);

    out->buf.start = out->chunk;
    out->buf.pos = out->chunk;
    out->buf.last = p;
    out->buf.end = p;

    *stream->queued_last = out;
    stream->queued_last = &out->next;

    if (ngx_http_webhook_sse_output_append(stream, NULL, data, len) != NGX_OK
        || ngx_http_webhook_sse_output_append(stream, NULL, crlf, 2)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* the queued buffers, each a complete chunk where the response is chunked */

ngx_int_t
ngx_http_webhook_sse_output_flush_detached(
    ngx_http_webhook_sse_stream_t *stream)
{
    ngx_http_webhook_sse_out_t  *out;

    for (out = stream->queued; out; out = out->next) {
        stream->unsent += out->buf.last - out->buf.pos;
    }

    *stream->busy_last = stream->queued;
    stream->busy_last = stream->queued_last;

    stream->queued = NULL;
    stream->queued_last = &stream->queued;

    if (ngx_http_webhook_sse_output_send(stream) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_webhook_sse_output_too_slow(stream)) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * Writes a detached stream's busy buffers straight to the connection; a
 * WebSocket or a long-poll has its transport take them.
 */

ngx_int_t
ngx_http_webhook_sse_output_send(ngx_http_webhook_sse_stream_t *stream)
{
    ssize_t                      n;
    ngx_chain_t                 *rest;
    ngx_event_t                 *wev;
    ngx_connection_t            *c;
    ngx_http_webhook_sse_out_t  *out;

    c = stream->connection;
    wev = c->write;

    if (stream->send) {
        return stream->send(stream);
    }

    if (stream->busy == NULL) {
        return NGX_OK;
    }

    out = stream->busy;

    if (out->next == NULL && wev->ready) {

        /* the usual case, one event: one send(), no chain to build */

        n = c->send(c, out->buf.pos, out->buf.last - out->buf.pos);

        if (n == NGX_ERROR) {
            c->error = 1;
            return NGX_ERROR;
        }

        if (n > 0) {
            out->buf.pos += n;
        }

    } else {

        for ( /* void */ ; out; out = out->next) {
            out->cl.buf = &out->buf;
            out->cl.next = out->next ? &out->next->cl : NULL;
        }

        rest = c->send_chain(c, &stream->busy->cl, 0);

        if (rest == NGX_CHAIN_ERROR) {
            c->error = 1;
            return NGX_ERROR;
        }
    }

    ngx_http_webhook_sse_output_sent(stream);

    if (stream->busy) {
        ngx_add_timer(wev, stream->send_timeout);

        if (ngx_handle_write_event(wev, 0) != NGX_OK) {
            return NGX_ERROR;
        }

    } else if (wev->timer_set) {
        ngx_del_timer(wev);
    }

    return NGX_OK;
}


static ngx_uint_t
ngx_http_webhook_sse_output_too_slow(ngx_http_webhook_sse_stream_t *stream)
{
    if (stream->unsent + stream->held_bytes <= stream->conf->stream_buffer) {
        return 0;
    }

    ngx_log_error(NGX_LOG_WARN, stream->connection->log, 0,
                  "webhook stream too slow: %uz bytes unsent, closing",
                  stream->unsent + stream->held_bytes);

    return 1;
}


/*
 * A live event for a stream still reading its replay is held until the
 * replay reaches it: it may leave the zone before that.  Held and unsent
 * output together are bounded by webhook_stream_buffer.
 */

ngx_int_t
ngx_http_webhook_sse_output_hold(ngx_http_webhook_sse_stream_t *stream,
    ngx_http_webhook_sse_event_t *ev)
{
    ngx_http_webhook_sse_out_t  *out;

    if (ev->seq <= stream->held_seq) {
        return NGX_OK;
    }

    out = ngx_http_webhook_sse_output_link(stream, ev, NULL, 0);
    if (out == NULL) {
        return NGX_ERROR;
    }

    if (stream->held == NULL) {
        stream->held_last = &stream->held;
    }

    *stream->held_last = out;
    stream->held_last = &out->next;
    stream->held_bytes += ev->len;
    stream->held_seq = ev->seq;

    if (ngx_http_webhook_sse_output_too_slow(stream)) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_http_webhook_sse_event_t *
ngx_http_webhook_sse_output_held(ngx_http_webhook_sse_stream_t *stream)
{
    return stream->held ? stream->held->event : NULL;
}


void
ngx_http_webhook_sse_output_unhold(ngx_http_webhook_sse_stream_t *stream)
{
    ngx_http_webhook_sse_out_t  *out;

    out = stream->held;
    stream->held = out->next;
    stream->held_bytes -= out->event->len;

    if (stream->held == NULL) {
        stream->held_last = &stream->held;
    }

    ngx_http_webhook_sse_output_link_free(stream->worker, out);
}


/* lets go of the buffers that were written */

void
ngx_http_webhook_sse_output_sent(ngx_http_webhook_sse_stream_t *stream)
{
    ngx_http_webhook_sse_out_t  *out;

    while (stream->busy && stream->busy->buf.pos == stream->busy->buf.last) {
        out = stream->busy;
        stream->busy = out->next;
        stream->unsent -= out->buf.end - out->buf.start;

        ngx_http_webhook_sse_output_link_free(stream->worker, out);
    }

    if (stream->busy == NULL) {
        stream->busy_last = &stream->busy;
    }
}


/* everything a stream still holds of output, sent or not */

void
ngx_http_webhook_sse_output_free(ngx_http_webhook_sse_stream_t *stream)
{
    ngx_http_webhook_sse_out_t  *out;

    while (stream->busy) {
        out = stream->busy;
        stream->busy = out->next;
        ngx_http_webhook_sse_output_link_free(stream->worker, out);
    }

    while (stream->queued) {
        out = stream->queued;
        stream->queued = out->next;
        ngx_http_webhook_sse_output_link_free(stream->worker, out);
    }

    while (stream->held) {
        ngx_http_webhook_sse_output_unhold(stream);
    }

    stream->busy_last = &stream->busy;
    stream->queued_last = &stream->queued;
    stream->unsent = 0;
}


/*
 * The JSON of an event's "data:" line, for the transports that carry it
 * without the SSE framing; NGX_DECLINED: the text has none (a heartbeat
 * comment, a retry).
 */

ngx_int_t
ngx_http_webhook_sse_output_data(ngx_http_webhook_sse_out_t *out,
    ngx_str_t *data)
{
    u_char  *p, *last, *eol;

    p = out->buf.pos;
    last = out->buf.last;

    while (p < last) {
        eol = ngx_strlchr(p, last, '\n');

        if (eol == NULL) {
            eol = last;
        }

        if (eol - p >= 6 && ngx_strncmp(p, "data: ", 6) == 0) {
            data->data = p + 6;
            data->len = eol - p - 6;
            return NGX_OK;
        }

        p = eol + 1;
    }

    return NGX_DECLINED;
}
