
/*
 * nginx-webhook-sse: signed stream tokens (webhook_stream_token).  The app
 * that knows the secret hands a window "<expires>.<hex HMAC-SHA256 of
 * "<expires>.<session>">"; only with it may the window open that
 * session's stream.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_webhook_sse_module.h"


static ngx_str_t  ngx_http_webhook_sse_default_token =
    ngx_string("$arg_token");


/* NGX_OK, or the status to answer with and why */

ngx_uint_t
ngx_http_webhook_sse_check_token(ngx_http_request_t *r,
    ngx_http_webhook_sse_loc_conf_t *wlcf, ngx_str_t *session,
    const char **error)
{
    u_char           *p, *dot;
    time_t            expires;
    ngx_int_t         rc;
    ngx_str_t         token, data;
    ngx_table_elt_t  *h;
    u_char            mac[NGX_HTTP_WEBHOOK_SSE_MAC_LEN];

    if (wlcf->token_keys == NULL) {
        return NGX_OK;
    }

    if (ngx_http_complex_value(r, wlcf->token, &token) != NGX_OK) {
        *error = "internal error";
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* fetch() based clients may send it as a bearer token instead */

    h = r->headers_in.authorization;

    if (token.len == 0 && h && h->value.len > 7
        && ngx_strncasecmp(h->value.data, (u_char *) "Bearer ", 7) == 0)
    {
        token.data = h->value.data + 7;
        token.len = h->value.len - 7;
    }

    if (token.len == 0) {
        *error = "this stream needs a token";
        return NGX_HTTP_FORBIDDEN;
    }

    dot = ngx_strlchr(token.data, token.data + token.len, '.');

    if (dot == NULL
        || (expires = ngx_atotm(token.data, dot - token.data)) == NGX_ERROR
        || ngx_http_webhook_sse_mac_from_hex(mac, dot + 1,
                                             token.data + token.len - dot - 1)
           != NGX_OK)
    {
        *error = "the stream token is malformed";
        return NGX_HTTP_FORBIDDEN;
    }

    data.len = (dot - token.data) + 1 + session->len;
    data.data = ngx_pnalloc(r->pool, data.len);
    if (data.data == NULL) {
        *error = "internal error";
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(data.data, token.data, dot - token.data + 1);
    ngx_memcpy(p, session->data, session->len);

    rc = ngx_http_webhook_sse_match(wlcf->token_keys, &data, mac);

    if (rc == NGX_ERROR) {
        *error = "internal error";
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "webhook stream with a token for another session "
                      "or secret");
        *error = "the stream token does not match this session";
        return NGX_HTTP_FORBIDDEN;
    }

    if (expires < ngx_time()) {
        *error = "the stream token has expired";
        return NGX_HTTP_FORBIDDEN;
    }

    return NGX_OK;
}


/* webhook_stream_token off | SECRET... [token=VALUE] */

char *
ngx_http_webhook_sse_token_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_webhook_sse_loc_conf_t *wlcf = conf;

    ngx_str_t                         *value, *source, secret, *key;
    ngx_uint_t                         i;
    ngx_http_compile_complex_value_t   ccv;

    if (wlcf->token_keys != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        if (cf->args->nelts != 2) {
            return "takes no secrets with \"off\"";
        }

        wlcf->token_keys = NULL;
        return NGX_CONF_OK;
    }

    wlcf->token_keys = ngx_array_create(cf->pool, 2, sizeof(ngx_str_t));
    if (wlcf->token_keys == NULL) {
        return NGX_CONF_ERROR;
    }

    source = &ngx_http_webhook_sse_default_token;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "token=", 6) == 0) {
            value[i].data += 6;
            value[i].len -= 6;

            if (value[i].len == 0) {
                return "takes a value after \"token=\"";
            }

            source = &value[i];
            continue;
        }

        if (ngx_http_webhook_sse_conf_secret(cf, &cmd->name, &value[i],
                                             &secret)
            != NGX_CONF_OK)
        {
            return NGX_CONF_ERROR;
        }

        key = ngx_array_push(wlcf->token_keys);
        if (key == NULL) {
            return NGX_CONF_ERROR;
        }

        *key = secret;
    }

    if (wlcf->token_keys->nelts == 0) {
        return "needs at least one secret";
    }

    wlcf->token = ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t));
    if (wlcf->token == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = source;
    ccv.complex_value = wlcf->token;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}
