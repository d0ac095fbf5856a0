
/*
 * nginx-webhook-sse: errors nginx answers itself in our locations (a body
 * over client_max_body_size is refused before any handler runs, say) go
 * out as our JSON error object instead of an HTML page.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_webhook_sse_module.h"


static ngx_int_t ngx_http_webhook_sse_error_header_filter(
    ngx_http_request_t *r);
static ngx_int_t ngx_http_webhook_sse_error_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static const char *ngx_http_webhook_sse_error_text(ngx_uint_t status);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


ngx_int_t
ngx_http_webhook_sse_error_filter_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_webhook_sse_error_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_webhook_sse_error_body_filter;

    return NGX_OK;
}


static ngx_int_t
ngx_http_webhook_sse_error_header_filter(ngx_http_request_t *r)
{
    u_char                           *p;
    size_t                            len;
    const char                       *text;
    ngx_http_webhook_sse_ctx_t       *ctx;
    ngx_http_webhook_sse_loc_conf_t  *wlcf;

    static u_char  head[] = "{\"success\":false,\"error\":\"";

    wlcf = ngx_http_get_module_loc_conf(r, ngx_http_webhook_sse_module);

    if (r != r->main
        || r->headers_out.status < NGX_HTTP_BAD_REQUEST
        || (wlcf->publish == NULL && wlcf->stream == NULL
            && wlcf->status == NULL)
        || (r->headers_out.content_type.len == sizeof("application/json") - 1
            && ngx_strncmp(r->headers_out.content_type.data,
                           "application/json",
                           sizeof("application/json") - 1) == 0))
    {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_webhook_sse_module);

    if (ctx == NULL) {
        ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_webhook_sse_ctx_t));
        if (ctx == NULL) {
            return NGX_ERROR;
        }

        ngx_http_set_ctx(r, ctx, ngx_http_webhook_sse_module);
    }

    text = ngx_http_webhook_sse_error_text(r->headers_out.status);
    len = ngx_strlen(text);

    p = ngx_pnalloc(r->pool, sizeof(head) - 1 + len + sizeof("\"}\n") - 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ctx->error.data = p;

    p = ngx_cpymem(p, head, sizeof(head) - 1);
    p = ngx_cpymem(p, text, len);
    p = ngx_cpymem(p, "\"}\n", sizeof("\"}\n") - 1);

    ctx->error.len = p - ctx->error.data;

    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.charset.len = 0;

    ngx_http_clear_content_length(r);
    r->headers_out.content_length_n = ctx->error.len;

    return ngx_http_next_header_filter(r);
}


static ngx_int_t
ngx_http_webhook_sse_error_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_buf_t                   *b;
    ngx_uint_t                   last;
    ngx_chain_t                 *cl, out;
    ngx_http_webhook_sse_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_webhook_sse_module);

    if (ctx == NULL || ctx->error.data == NULL || r != r->main) {
        return ngx_http_next_body_filter(r, in);
    }

    /* nginx's page is dropped, ours goes out once with its last buffer */

    last = 0;

    for (cl = in; cl; cl = cl->next) {
        cl->buf->pos = cl->buf->last;
        cl->buf->file_pos = cl->buf->file_last;

        if (cl->buf->last_buf) {
            last = 1;
        }
    }

    if (!last) {
        return NGX_OK;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = ctx->error.data;
    b->last = ctx->error.data + ctx->error.len;
    b->memory = 1;
    b->last_buf = 1;

    ctx->error.data = NULL;

    out.buf = b;
    out.next = NULL;

    return ngx_http_next_body_filter(r, &out);
}


static const char *
ngx_http_webhook_sse_error_text(ngx_uint_t status)
{
    switch (status) {

    case NGX_HTTP_BAD_REQUEST:
        return "bad request";

    case NGX_HTTP_UNAUTHORIZED:
        return "unauthorized";

    case NGX_HTTP_FORBIDDEN:
        return "forbidden";

    case NGX_HTTP_NOT_FOUND:
        return "not found";

    case NGX_HTTP_NOT_ALLOWED:
        return "method not allowed";

    case NGX_HTTP_REQUEST_TIME_OUT:
        return "request timed out";

    case NGX_HTTP_LENGTH_REQUIRED:
        return "length required";

    case NGX_HTTP_REQUEST_ENTITY_TOO_LARGE:
        return "request body is larger than client_max_body_size";

    case NGX_HTTP_TOO_MANY_REQUESTS:
        return "too many requests";

    case NGX_HTTP_INTERNAL_SERVER_ERROR:
        return "internal server error";

    case NGX_HTTP_SERVICE_UNAVAILABLE:
        return "service unavailable";

    default:
        return "request failed";
    }
}
