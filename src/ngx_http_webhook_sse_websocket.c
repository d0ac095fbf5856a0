
/*
 * nginx-webhook-sse: a stream over a WebSocket (RFC 6455).
 *
 * The handshake is answered with 101; the connection then carries one
 * text frame per event, the JSON of the SSE "data:" line: the "connected"
 * event, the replay, the live events, as an SSE stream has them.  Framing
 * is libwslay's event API; the I/O is the connection's, on nginx's
 * events.  Heartbeats are pings: a client that has not answered the last
 * one by the next is closed.  Frames the client sends other than control
 * frames are read and dropped.  The stream keeps its request (unlike a
 * detached SSE stream), so TLS, limit_conn and the access log work as
 * for any request.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/sha.h>
#include <wslay/wslay.h>

#include "ngx_http_webhook_sse_stream.h"


/* what a client may send in one message: only control frames are used */
#define NGX_HTTP_WEBHOOK_SSE_WS_RECV_MAX  65536

#define NGX_HTTP_WEBHOOK_SSE_WS_RESTART   1012

#define NGX_HTTP_WEBHOOK_SSE_UPGRADE_REQUIRED  426


typedef struct {
    wslay_event_context_ptr            ctx;
    ngx_http_webhook_sse_stream_t     *stream;

    /* the 101 response is still in nginx's output filters */
    unsigned                           header_pending:1;
    /* the connection took no more */
    unsigned                           blocked:1;
    /* a ping went out and its pong has not come */
    unsigned                           ping:1;
    /* a close frame is queued: what is left is to send it */
    unsigned                           closing:1;
    unsigned                           eof:1;
} ngx_http_webhook_sse_websocket_t;


static void ngx_http_webhook_sse_websocket_cleanup(void *data);
static ssize_t ngx_http_webhook_sse_websocket_recv_cb(
    wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
    void *user_data);
static ssize_t ngx_http_webhook_sse_websocket_send_cb(
    wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
    void *user_data);
static void ngx_http_webhook_sse_websocket_msg_cb(wslay_event_context_ptr ctx,
    const struct wslay_event_on_msg_recv_arg *arg, void *user_data);
static ngx_int_t ngx_http_webhook_sse_websocket_send(
    ngx_http_webhook_sse_stream_t *stream);
static void ngx_http_webhook_sse_websocket_read(ngx_http_request_t *r);
static void ngx_http_webhook_sse_websocket_write(ngx_http_request_t *r);
static void ngx_http_webhook_sse_websocket_heartbeat(ngx_event_t *ev);
static ngx_uint_t ngx_http_webhook_sse_websocket_done(
    ngx_http_webhook_sse_stream_t *stream);
static void ngx_http_webhook_sse_websocket_close(
    ngx_http_webhook_sse_stream_t *stream, ngx_int_t rc);


static ngx_str_t  ngx_http_webhook_sse_websocket_connection_header =
    ngx_string("Connection");
static ngx_str_t  ngx_http_webhook_sse_websocket_key_header =
    ngx_string("Sec-WebSocket-Key");
static ngx_str_t  ngx_http_webhook_sse_websocket_version_header =
    ngx_string("Sec-WebSocket-Version");

/* RFC 6455, 1.3 */
static u_char  ngx_http_webhook_sse_websocket_guid[] =
    "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

static u_char  ngx_http_webhook_sse_websocket_restart[] = "service restart";


/*
 * Checks the handshake and makes the framing state.  An HTTP status (with
 * "error") when the request is not a WebSocket handshake we can answer.
 */

ngx_int_t
ngx_http_webhook_sse_websocket_init(ngx_http_webhook_sse_stream_t *stream,
    const char **error)
{
    u_char                             buf[32];
    ngx_str_t                          key, decoded;
    ngx_table_elt_t                   *h;
    ngx_pool_cleanup_t                *cln;
    ngx_http_request_t                *r;
    ngx_http_webhook_sse_websocket_t  *ws;

    struct wslay_event_callbacks       callbacks;

    r = stream->request;

    if (r->http_version != NGX_HTTP_VERSION_11
        || r->headers_in.upgrade == NULL
        || ngx_strlcasestrn(r->headers_in.upgrade->value.data,
                            r->headers_in.upgrade->value.data
                            + r->headers_in.upgrade->value.len,
                            (u_char *) "websocket", 9 - 1)
           == NULL
        || (h = ngx_http_webhook_sse_find_header(r,
                         &ngx_http_webhook_sse_websocket_connection_header))
           == NULL
        || ngx_strlcasestrn(h->value.data, h->value.data + h->value.len,
                            (u_char *) "upgrade", 7 - 1)
           == NULL)
    {
        *error = "a WebSocket is opened with an HTTP/1.1 GET carrying "
                 "\"Upgrade: websocket\" and \"Connection: Upgrade\"";
        return NGX_HTTP_BAD_REQUEST;
    }

    h = ngx_http_webhook_sse_find_header(r,
                             &ngx_http_webhook_sse_websocket_version_header);

    if (h == NULL || h->value.len != 2
        || ngx_strncmp(h->value.data, "13", 2) != 0)
    {
        if (ngx_http_webhook_sse_add_header(r, "Sec-WebSocket-Version", "13")
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        /* nginx has no text of its own for this status */
        ngx_str_set(&r->headers_out.status_line, "426 Upgrade Required");

        *error = "unsupported WebSocket version: 13 only";
        return NGX_HTTP_WEBHOOK_SSE_UPGRADE_REQUIRED;
    }

    h = ngx_http_webhook_sse_find_header(r,
                                 &ngx_http_webhook_sse_websocket_key_header);

    /* the key: 16 bytes in base64 */

    decoded.data = buf;

    if (h == NULL) {
        goto bad_key;
    }

    key = h->value;

    if (key.len != 24 || ngx_decode_base64(&decoded, &key) != NGX_OK
        || decoded.len != 16)
    {
        goto bad_key;
    }

    ws = ngx_pcalloc(r->pool, sizeof(ngx_http_webhook_sse_websocket_t));
    if (ws == NULL) {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(&callbacks, sizeof(struct wslay_event_callbacks));

    callbacks.recv_callback = ngx_http_webhook_sse_websocket_recv_cb;
    callbacks.send_callback = ngx_http_webhook_sse_websocket_send_cb;
    callbacks.on_msg_recv_callback = ngx_http_webhook_sse_websocket_msg_cb;

    if (wslay_event_context_server_init(&ws->ctx, &callbacks, ws) != 0) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "webhook stream: wslay_event_context_server_init() "
                      "failed");
        return NGX_ERROR;
    }

    cln->handler = ngx_http_webhook_sse_websocket_cleanup;
    cln->data = ws;

    wslay_event_config_set_max_recv_msg_length(ws->ctx,
                                       NGX_HTTP_WEBHOOK_SSE_WS_RECV_MAX);

    ws->stream = stream;

    stream->send = ngx_http_webhook_sse_websocket_send;
    stream->transport_data = ws;
    stream->heartbeat.handler = ngx_http_webhook_sse_websocket_heartbeat;

    return NGX_OK;

bad_key:

    *error = "a WebSocket handshake needs a Sec-WebSocket-Key of 16 bytes "
             "in base64";
    return NGX_HTTP_BAD_REQUEST;
}


static void
ngx_http_webhook_sse_websocket_cleanup(void *data)
{
    ngx_http_webhook_sse_websocket_t  *ws = data;

    wslay_event_context_free(ws->ctx);
}


/*
 * The stream is subscribed, its first events queued: the 101 response,
 * then the events as the connection takes them.
 */

ngx_int_t
ngx_http_webhook_sse_websocket_open(ngx_http_webhook_sse_stream_t *stream)
{
    u_char                            *p;
    ngx_int_t                          rc;
    ngx_str_t                          src, accept;
    ngx_table_elt_t                   *h;
    ngx_connection_t                  *c;
    ngx_http_request_t                *r;
    ngx_http_webhook_sse_websocket_t  *ws;
    u_char                             digest[SHA_DIGEST_LENGTH];

    r = stream->request;
    c = r->connection;
    ws = stream->transport_data;

    h = ngx_http_webhook_sse_find_header(r,
                                 &ngx_http_webhook_sse_websocket_key_header);

    /* Sec-WebSocket-Accept: base64(SHA-1(key GUID)) */

    src.len = h->value.len + sizeof(ngx_http_webhook_sse_websocket_guid) - 1;
    src.data = ngx_pnalloc(r->pool, src.len);
    if (src.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(src.data, h->value.data, h->value.len);
    ngx_memcpy(p, ngx_http_webhook_sse_websocket_guid,
               sizeof(ngx_http_webhook_sse_websocket_guid) - 1);

    SHA1(src.data, src.len, digest);

    accept.len = ngx_base64_encoded_length(SHA_DIGEST_LENGTH);
    accept.data = ngx_pnalloc(r->pool, accept.len + 1);
    if (accept.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    src.data = digest;
    src.len = SHA_DIGEST_LENGTH;

    ngx_encode_base64(&accept, &src);
    accept.data[accept.len] = '\0';

    r->headers_out.status = NGX_HTTP_SWITCHING_PROTOCOLS;
    ngx_str_set(&r->headers_out.status_line, "101 Switching Protocols");
    r->headers_out.content_length_n = -1;
    r->allow_ranges = 0;
    r->keepalive = 0;

#if (NGX_HTTP_GZIP)
    r->gzip_tested = 1;
    r->gzip_ok = 0;
#endif

    /* the header filter adds "Connection: upgrade" to a 101 */

    if (ngx_http_webhook_sse_add_header(r, "Upgrade", "websocket") != NGX_OK
        || ngx_http_webhook_sse_add_header(r, "Sec-WebSocket-Accept",
                                           (char *) accept.data)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK) {
        return rc;
    }

    /* the write filter keeps a short header back: out with it */

    rc = ngx_http_send_special(r, NGX_HTTP_FLUSH);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    r->read_event_handler = ngx_http_webhook_sse_websocket_read;
    r->write_event_handler = ngx_http_webhook_sse_websocket_write;

    r->main->count++;

    if (r->out || c->buffered) {
        ws->header_pending = 1;

        ngx_add_timer(c->write, stream->send_timeout);

        if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
            return NGX_ERROR;
        }

    } else if (ngx_http_webhook_sse_output_flush(stream) != NGX_OK
               || ngx_http_webhook_sse_fanout_catch_up(stream) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (stream->conf->heartbeat) {
        ngx_add_timer(&stream->heartbeat, stream->conf->heartbeat);
    }

    /* frames the client sent right after its handshake */
    if (c->read->ready || r->header_in->pos < r->header_in->last) {
        ngx_post_event(c->read, &ngx_posted_events);
    }

    return NGX_DONE;
}


static ssize_t
ngx_http_webhook_sse_websocket_recv_cb(wslay_event_context_ptr ctx,
    uint8_t *buf, size_t len, int flags, void *user_data)
{
    ngx_http_webhook_sse_websocket_t *ws = user_data;

    size_t               n;
    ssize_t              rc;
    ngx_buf_t           *b;
    ngx_connection_t    *c;

    c = ws->stream->connection;
    b = ws->stream->request->header_in;

    /* read together with the handshake */

    if (b && b->pos < b->last) {
        n = ngx_min(len, (size_t) (b->last - b->pos));
        ngx_memcpy(buf, b->pos, n);
        b->pos += n;
        return n;
    }

    rc = c->recv(c, buf, len);

    if (rc == NGX_AGAIN) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }

    if (rc == 0 || rc == NGX_ERROR) {
        ws->eof = 1;
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }

    return rc;
}


static ssize_t
ngx_http_webhook_sse_websocket_send_cb(wslay_event_context_ptr ctx,
    const uint8_t *data, size_t len, int flags, void *user_data)
{
    ngx_http_webhook_sse_websocket_t *ws = user_data;

    ssize_t            n;
    ngx_connection_t  *c;

    c = ws->stream->connection;

    n = c->send(c, (u_char *) data, len);

    if (n == NGX_AGAIN) {
        ws->blocked = 1;
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }

    if (n == NGX_ERROR) {
        c->error = 1;
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }

    return n;
}


/* pongs end a wait; data frames are not for us */

static void
ngx_http_webhook_sse_websocket_msg_cb(wslay_event_context_ptr ctx,
    const struct wslay_event_on_msg_recv_arg *arg, void *user_data)
{
    ngx_http_webhook_sse_websocket_t *ws = user_data;

    ngx_connection_t  *c;

    c = ws->stream->connection;

    switch (arg->opcode) {

    case WSLAY_PONG:
        ws->ping = 0;
        break;

    case WSLAY_CONNECTION_CLOSE:
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "webhook stream: client closed the WebSocket (%ud)",
                      (ngx_uint_t) arg->status_code);
        /* wslay has queued the answer */
        ws->closing = 1;
        break;

    case WSLAY_TEXT_FRAME:
    case WSLAY_BINARY_FRAME:
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, c->log, 0,
                       "webhook stream: WebSocket message of %uz bytes "
                       "dropped", arg->msg_length);
        break;

    default:
        break;
    }
}


/*
 * Hands the busy events to wslay one message at a time, as the connection
 * takes them: the unsent output stays in the stream's busy links, shared
 * with the other streams and bounded by webhook_stream_buffer, and wslay
 * holds one frame's copy at most.
 */

static ngx_int_t
ngx_http_webhook_sse_websocket_send(ngx_http_webhook_sse_stream_t *stream)
{
    ngx_str_t                          data;
    ngx_event_t                       *wev;
    ngx_http_webhook_sse_out_t        *out;
    ngx_http_webhook_sse_websocket_t  *ws;

    struct wslay_event_msg             msg;

    ws = stream->transport_data;
    wev = stream->connection->write;

    if (ws->header_pending) {
        return NGX_OK;
    }

    for ( ;; ) {

        if (wslay_event_want_write(ws->ctx)) {
            ws->blocked = 0;

            if (wslay_event_send(ws->ctx) != 0) {
                return NGX_ERROR;
            }

            if (ws->blocked) {
                break;
            }
        }

        out = stream->busy;

        if (out == NULL) {
            break;
        }

        /* after a close frame nothing goes out: the client resumes */

        if (!ws->closing
            && ngx_http_webhook_sse_output_data(out, &data) == NGX_OK)
        {
            msg.opcode = WSLAY_TEXT_FRAME;
            msg.msg = data.data;
            msg.msg_length = data.len;

            if (wslay_event_queue_msg(ws->ctx, &msg) != 0) {
                return NGX_ERROR;
            }
        }

        out->buf.pos = out->buf.last;
        ngx_http_webhook_sse_output_sent(stream);
    }

    if (ws->blocked) {
        if (!wev->timer_set) {
            ngx_add_timer(wev, stream->send_timeout);
        }

        if (ngx_handle_write_event(wev, 0) != NGX_OK) {
            return NGX_ERROR;
        }

    } else if (wev->timer_set) {
        ngx_del_timer(wev);
    }

    return NGX_OK;
}


static void
ngx_http_webhook_sse_websocket_read(ngx_http_request_t *r)
{
    ngx_connection_t                  *c;
    ngx_http_webhook_sse_stream_t     *stream;
    ngx_http_webhook_sse_websocket_t  *ws;

    c = r->connection;
    stream = ngx_http_get_module_ctx(r, ngx_http_webhook_sse_module);
    ws = stream->transport_data;

    if (wslay_event_want_read(ws->ctx)) {

        if (wslay_event_recv(ws->ctx) != 0) {
            if (!ws->eof) {
                ngx_log_error(NGX_LOG_INFO, c->log, 0,
                              "webhook stream: WebSocket read failed");

            } else {
                ngx_log_error(NGX_LOG_INFO, c->log, 0,
                              "webhook stream: client closed the "
                              "connection");
            }

            ngx_http_webhook_sse_websocket_close(stream, NGX_ERROR);
            return;
        }
    }

    /*
     * wslay reads no more after a close frame, or a bad or too big frame:
     * either way it has queued a close frame, the last thing to send
     */

    if (!wslay_event_want_read(ws->ctx)) {
        ws->closing = 1;
    }

    /* a pong, or the close frame */

    if (ngx_http_webhook_sse_websocket_send(stream) != NGX_OK) {
        ngx_http_webhook_sse_websocket_close(stream, NGX_ERROR);
        return;
    }

    if (ngx_http_webhook_sse_websocket_done(stream)) {
        return;
    }

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_http_webhook_sse_websocket_close(stream, NGX_ERROR);
    }
}


static void
ngx_http_webhook_sse_websocket_write(ngx_http_request_t *r)
{
    ngx_int_t                          rc;
    ngx_event_t                       *wev;
    ngx_connection_t                  *c;
    ngx_http_webhook_sse_stream_t     *stream;
    ngx_http_webhook_sse_websocket_t  *ws;

    c = r->connection;
    wev = c->write;
    stream = ngx_http_get_module_ctx(r, ngx_http_webhook_sse_module);
    ws = stream->transport_data;

    if (wev->timedout) {
        ngx_log_error(NGX_LOG_INFO, c->log, NGX_ETIMEDOUT,
                      "webhook stream: client timed out");
        c->timedout = 1;
        ngx_http_webhook_sse_websocket_close(stream, NGX_ERROR);
        return;
    }

    if (ws->header_pending) {
        rc = ngx_http_output_filter(r, NULL);

        if (rc == NGX_ERROR) {
            ngx_http_webhook_sse_websocket_close(stream, NGX_ERROR);
            return;
        }

        if (r->out || c->buffered) {
            if (!wev->timer_set) {
                ngx_add_timer(wev, stream->send_timeout);
            }

            if (ngx_handle_write_event(wev, 0) != NGX_OK) {
                ngx_http_webhook_sse_websocket_close(stream, NGX_ERROR);
            }

            return;
        }

        ws->header_pending = 0;

        if (wev->timer_set) {
            ngx_del_timer(wev);
        }
    }

    /* what came while the header was on its way, then the rest */

    if (ngx_http_webhook_sse_output_flush(stream) != NGX_OK
        || ngx_http_webhook_sse_websocket_send(stream) != NGX_OK)
    {
        ngx_http_webhook_sse_websocket_close(stream, NGX_ERROR);
        return;
    }

    if (ngx_http_webhook_sse_websocket_done(stream)) {
        return;
    }

    if (stream->busy == NULL
        && ngx_http_webhook_sse_fanout_catch_up(stream) != NGX_OK)
    {
        ngx_http_webhook_sse_websocket_close(stream, NGX_ERROR);
    }
}


/*
 * A ping each interval; a client that has not answered the previous one
 * (while nothing held our frames back) is gone or stuck.
 */

static void
ngx_http_webhook_sse_websocket_heartbeat(ngx_event_t *ev)
{
    ngx_http_webhook_sse_stream_t     *stream;
    ngx_http_webhook_sse_websocket_t  *ws;

    struct wslay_event_msg             msg;

    stream = ev->data;
    ws = stream->transport_data;

    if (ws->header_pending || ws->closing) {
        ngx_add_timer(ev, stream->conf->heartbeat);
        return;
    }

    if (ws->ping && !wslay_event_want_write(ws->ctx)) {
        ngx_log_error(NGX_LOG_INFO, stream->connection->log, 0,
                      "webhook stream: no pong from the WebSocket client "
                      "within %M ms, closing", stream->conf->heartbeat);
        ngx_http_webhook_sse_websocket_close(stream, NGX_ERROR);
        return;
    }

    msg.opcode = WSLAY_PING;
    msg.msg = NULL;
    msg.msg_length = 0;

    if (wslay_event_queue_msg(ws->ctx, &msg) != 0
        || ngx_http_webhook_sse_websocket_send(stream) != NGX_OK)
    {
        ngx_http_webhook_sse_websocket_close(stream, NGX_ERROR);
        return;
    }

    ws->ping = 1;

    ngx_add_timer(ev, stream->conf->heartbeat);
}


/* reload or stop: close 1012, the client comes back to a new worker */

void
ngx_http_webhook_sse_websocket_end(ngx_http_webhook_sse_stream_t *stream)
{
    ngx_http_webhook_sse_websocket_t  *ws;

    ws = stream->transport_data;

    if (!ws->closing) {
        ws->closing = 1;

        if (wslay_event_queue_close(ws->ctx, NGX_HTTP_WEBHOOK_SSE_WS_RESTART,
                             ngx_http_webhook_sse_websocket_restart,
                             sizeof(ngx_http_webhook_sse_websocket_restart) - 1)
            != 0)
        {
            ngx_http_webhook_sse_websocket_close(stream, NGX_ERROR);
            return;
        }
    }

    if (ngx_http_webhook_sse_websocket_send(stream) != NGX_OK) {
        ngx_http_webhook_sse_websocket_close(stream, NGX_ERROR);
        return;
    }

    (void) ngx_http_webhook_sse_websocket_done(stream);
}


/* closes a stream whose close frame is out: 1 when it did */

static ngx_uint_t
ngx_http_webhook_sse_websocket_done(ngx_http_webhook_sse_stream_t *stream)
{
    ngx_http_webhook_sse_websocket_t  *ws;

    ws = stream->transport_data;

    if (!ws->closing || ws->header_pending
        || wslay_event_want_write(ws->ctx))
    {
        return 0;
    }

    ngx_http_webhook_sse_websocket_close(stream, NGX_OK);

    return 1;
}


/*
 * NGX_OK: the close handshake is done on our side; nginx's lingering
 * close reads what the client still sends (its close frame) until it
 * closes too, so that our frames are not lost to a reset.
 */

static void
ngx_http_webhook_sse_websocket_close(ngx_http_webhook_sse_stream_t *stream,
    ngx_int_t rc)
{
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = stream->request;
    c = r->connection;

    r->keepalive = 0;

    if (rc == NGX_OK) {
        r->lingering_close = 1;
    }

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}
