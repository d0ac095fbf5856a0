
/*
 * nginx-webhook-sse: what every request handler shares: the session a
 * request names, header lookups and the JSON answers.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_webhook_sse_module.h"


static ngx_int_t ngx_http_webhook_sse_unescape_session(ngx_http_request_t *r,
    ngx_str_t *session);


/*
 * The session a request names through webhook_session; empty when none.
 * NGX_DECLINED: the value is not a valid session id ("error" says why).
 */

ngx_int_t
ngx_http_webhook_sse_session_value(ngx_http_request_t *r,
    ngx_http_webhook_sse_loc_conf_t *wlcf, ngx_str_t *session,
    const char **error)
{
    ngx_int_t  rc;

    session->len = 0;
    session->data = NULL;

    *error = "the session must be 1 to 256 bytes without control characters";

    if (wlcf->session == NULL) {
        return NGX_OK;
    }

    if (ngx_http_complex_value(r, wlcf->session, session) != NGX_OK) {
        return NGX_ERROR;
    }

    if (session->len == 0) {
        return NGX_OK;
    }

    if (wlcf->session_from_args) {
        rc = ngx_http_webhook_sse_unescape_session(r, session);

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (rc == NGX_DECLINED) {
            *error = "the session has a malformed percent-escape: "
                     "use %XX with two hex digits";
            return NGX_DECLINED;
        }

        if (!ngx_http_webhook_sse_json_utf8_valid(session->data,
                                                  session->len))
        {
            *error = "invalid UTF-8 in the session";
            return NGX_DECLINED;
        }
    }

    if (!ngx_http_webhook_sse_json_session_valid(session->data,
                                                 session->len))
    {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_webhook_sse_unescape_session(ngx_http_request_t *r,
    ngx_str_t *session)
{
    if (ngx_strlchr(session->data, session->data + session->len, '%') == NULL
        && ngx_strlchr(session->data, session->data + session->len, '+')
           == NULL)
    {
        return NGX_OK;
    }

    return ngx_http_webhook_sse_form_unescape(r->pool, session);
}


/*
 * A value of a query string or form body as a form decodes it: %XX is the
 * byte XX, '+' a space; into a new buffer.  ngx_unescape_uri() keeps a
 * malformed escape as it is; a value must not silently become another
 * one, so that is NGX_DECLINED here.
 */

ngx_int_t
ngx_http_webhook_sse_form_unescape(ngx_pool_t *pool, ngx_str_t *value)
{
    u_char     *src, *dst, *last;
    ngx_int_t   hi, lo;

    dst = ngx_pnalloc(pool, value->len);
    if (dst == NULL) {
        return NGX_ERROR;
    }

    src = value->data;
    last = src + value->len;
    value->data = dst;

    while (src < last) {

        if (*src == '+') {
            *dst++ = ' ';
            src++;
            continue;
        }

        if (*src != '%') {
            *dst++ = *src++;
            continue;
        }

        if (last - src < 3) {
            return NGX_DECLINED;
        }

        hi = ngx_hextoi(src + 1, 1);
        lo = ngx_hextoi(src + 2, 1);

        if (hi == NGX_ERROR || lo == NGX_ERROR) {
            return NGX_DECLINED;
        }

        *dst++ = (u_char) (hi << 4 | lo);
        src += 3;
    }

    value->len = dst - value->data;

    return NGX_OK;
}


/* an answer before the body was read: the body is discarded */

ngx_int_t
ngx_http_webhook_sse_reject(ngx_http_request_t *r, ngx_uint_t status,
    const char *error)
{
    ngx_int_t  rc;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_http_webhook_sse_send_error(r, status, error);
}


ngx_int_t
ngx_http_webhook_sse_add_header(ngx_http_request_t *r, char *key,
    char *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.len = ngx_strlen(key);
    h->key.data = (u_char *) key;
    h->value.len = ngx_strlen(value);
    h->value.data = (u_char *) value;

    return NGX_OK;
}


ngx_table_elt_t *
ngx_http_webhook_sse_find_header(ngx_http_request_t *r, ngx_str_t *name)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == name->len
            && ngx_strncasecmp(h[i].key.data, name->data, name->len) == 0)
        {
            return &h[i];
        }
    }
}


ngx_int_t
ngx_http_webhook_sse_send_json(ngx_http_request_t *r, ngx_uint_t status,
    u_char *body, size_t len)
{
    static ngx_str_t  type = ngx_string("application/json");

    return ngx_http_webhook_sse_send_response(r, status, &type, body, len);
}


ngx_int_t
ngx_http_webhook_sse_send_response(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *type, u_char *body, size_t len)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    r->headers_out.status = status;
    r->headers_out.content_length_n = len;

    r->headers_out.content_type = *type;
    r->headers_out.content_type_len = type->len;
    r->headers_out.content_type_lowcase = NULL;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = body;
    b->last = body + len;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


ngx_int_t
ngx_http_webhook_sse_send_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *error)
{
    u_char  *body, *p;
    size_t   len;

    static u_char  head[] = "{\"success\":false,\"error\":\"";

    len = ngx_strlen(error);

    body = ngx_pnalloc(r->pool, sizeof(head) - 1 + len * 6 + 3);
    if (body == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(body, head, sizeof(head) - 1);
    p += ngx_http_webhook_sse_json_escape(p, (u_char *) error, len);
    *p++ = '"';
    *p++ = '}';
    *p++ = LF;

    return ngx_http_webhook_sse_send_json(r, status, body, p - body);
}


/*
 * A copy of a client's value fit for error_log: control bytes, bytes past
 * ASCII, '"' and '\\' become \xHH, as in nginx's access_log escaping.
 */

ngx_int_t
ngx_http_webhook_sse_log_escape(ngx_pool_t *pool, ngx_str_t *src,
    ngx_str_t *dst)
{
    u_char  *p, c;
    size_t   i, n;

    static u_char  hex[] = "0123456789ABCDEF";

    n = 0;

    for (i = 0; i < src->len; i++) {
        c = src->data[i];
        if (c < 0x20 || c > 0x7e || c == '"' || c == '\\') {
            n++;
        }
    }

    if (n == 0) {
        *dst = *src;
        return NGX_OK;
    }

    p = ngx_pnalloc(pool, src->len + n * 3);
    if (p == NULL) {
        return NGX_ERROR;
    }

    dst->data = p;

    for (i = 0; i < src->len; i++) {
        c = src->data[i];

        if (c < 0x20 || c > 0x7e || c == '"' || c == '\\') {
            *p++ = '\\';
            *p++ = 'x';
            *p++ = hex[c >> 4];
            *p++ = hex[c & 0xf];
            continue;
        }

        *p++ = c;
    }

    dst->len = p - dst->data;

    return NGX_OK;
}


/* the request body in one piece of r->pool (empty: data NULL) */

ngx_int_t
ngx_http_webhook_sse_read_body(ngx_http_request_t *r, ngx_str_t *body)
{
    u_char       *p;
    off_t         len;
    ssize_t       n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    body->len = 0;
    body->data = NULL;

    if (r->request_body == NULL) {
        return NGX_OK;
    }

    len = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        len += ngx_buf_size(cl->buf);
    }

    if (len == 0) {
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    body->data = p;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (b->in_file) {
            n = ngx_read_file(b->file, p, b->file_last - b->file_pos,
                              b->file_pos);

            if (n != b->file_last - b->file_pos) {
                ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                              "webhook: cannot read the request body from "
                              "\"%V\"", &b->file->name);
                return NGX_ERROR;
            }

            p += n;
            continue;
        }

        p = ngx_cpymem(p, b->pos, b->last - b->pos);
    }

    body->len = p - body->data;

    return NGX_OK;
}
