
/*
 * nginx-webhook-sse: webhook_callbacks, a session's own callback URL.
 * PUT or POST {"sessionId", "callback_url", "secret"} registers it (kept
 * in the zone: it survives reload, a later one replaces it), GET
 * ?sessionId= shows it (never the secret), DELETE ?sessionId= removes it,
 * POST ?redrive=ENDPOINT|all queues failed and dead deliveries again.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_webhook_sse_module.h"
#include "ngx_http_webhook_sse_payload.h"


static ngx_int_t ngx_http_webhook_sse_callbacks_arg(ngx_http_request_t *r,
    char *name, ngx_str_t *value);
static ngx_int_t ngx_http_webhook_sse_callbacks_show(ngx_http_request_t *r,
    ngx_http_webhook_sse_zone_t *zone, ngx_str_t *session);
static ngx_int_t ngx_http_webhook_sse_callbacks_remove(ngx_http_request_t *r,
    ngx_http_webhook_sse_zone_t *zone, ngx_str_t *session);
static ngx_int_t ngx_http_webhook_sse_callbacks_redrive(ngx_http_request_t *r,
    ngx_http_webhook_sse_zone_t *zone, ngx_str_t *endpoint);
static void ngx_http_webhook_sse_callbacks_body(ngx_http_request_t *r);
static ngx_int_t ngx_http_webhook_sse_callbacks_register(
    ngx_http_request_t *r);
static ngx_int_t ngx_http_webhook_sse_callbacks_answer(ngx_http_request_t *r,
    ngx_str_t *session, ngx_str_t *url, ngx_int_t secret);


ngx_int_t
ngx_http_webhook_sse_callbacks_handler(ngx_http_request_t *r)
{
    ngx_int_t                         rc;
    ngx_str_t                         session, endpoint;
    ngx_uint_t                        status;
    const char                       *error;
    ngx_http_webhook_sse_zone_t      *zone;
    ngx_http_webhook_sse_loc_conf_t  *wlcf;

    wlcf = ngx_http_get_module_loc_conf(r, ngx_http_webhook_sse_module);
    zone = wlcf->forward->callbacks->data;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD|NGX_HTTP_DELETE
                       |NGX_HTTP_POST|NGX_HTTP_PUT)))
    {
        if (ngx_http_webhook_sse_add_header(r, "Allow",
                                            "GET, HEAD, PUT, POST, DELETE")
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_webhook_sse_reject(r, NGX_HTTP_NOT_ALLOWED,
                                           "method not allowed: PUT or POST "
                                           "registers, GET shows, DELETE "
                                           "removes");
    }

    status = ngx_http_webhook_sse_check_secret(r, wlcf, &error);
    if (status != NGX_OK) {
        return ngx_http_webhook_sse_reject(r, status, error);
    }

    if (zone->sh->outbox == NULL) {
        return ngx_http_webhook_sse_reject(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                           "the webhook zone has no "
                                           "outbound queue");
    }

    if (r->method & NGX_HTTP_POST) {
        rc = ngx_http_webhook_sse_callbacks_arg(r, "redrive", &endpoint);

        if (rc == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (rc == NGX_OK) {
            rc = ngx_http_discard_request_body(r);
            if (rc != NGX_OK) {
                return rc;
            }

            return ngx_http_webhook_sse_callbacks_redrive(r, zone, &endpoint);
        }
    }

    if (r->method & (NGX_HTTP_POST|NGX_HTTP_PUT)) {
        rc = ngx_http_read_client_request_body(r,
                                       ngx_http_webhook_sse_callbacks_body);

        if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
            return rc;
        }

        return NGX_DONE;
    }

    rc = ngx_http_webhook_sse_callbacks_arg(r, "sessionId", &session);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED
        || !ngx_http_webhook_sse_json_session_valid(session.data,
                                                    session.len))
    {
        return ngx_http_webhook_sse_reject(r, NGX_HTTP_BAD_REQUEST,
                                           "?sessionId= must name a "
                                           "session: 1 to 256 bytes without "
                                           "control characters");
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (r->method & NGX_HTTP_DELETE) {
        return ngx_http_webhook_sse_callbacks_remove(r, zone, &session);
    }

    return ngx_http_webhook_sse_callbacks_show(r, zone, &session);
}


/* a query argument, percent-decoded; NGX_DECLINED: absent or empty */

static ngx_int_t
ngx_http_webhook_sse_callbacks_arg(ngx_http_request_t *r, char *name,
    ngx_str_t *value)
{
    u_char     *dst, *src;
    ngx_str_t   raw;

    if (ngx_http_arg(r, (u_char *) name, ngx_strlen(name), &raw) != NGX_OK
        || raw.len == 0)
    {
        return NGX_DECLINED;
    }

    dst = ngx_pnalloc(r->pool, raw.len);
    if (dst == NULL) {
        return NGX_ERROR;
    }

    value->data = dst;
    src = raw.data;

    ngx_unescape_uri(&dst, &src, raw.len, 0);

    value->len = dst - value->data;

    return value->len ? NGX_OK : NGX_DECLINED;
}


static ngx_int_t
ngx_http_webhook_sse_callbacks_show(ngx_http_request_t *r,
    ngx_http_webhook_sse_zone_t *zone, ngx_str_t *session)
{
    ngx_str_t  url, secret;

    url.data = ngx_pnalloc(r->pool, NGX_HTTP_WEBHOOK_SSE_URL_MAX
                                    + NGX_HTTP_WEBHOOK_SSE_FWD_SECRET_MAX);
    if (url.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    secret.data = url.data + NGX_HTTP_WEBHOOK_SSE_URL_MAX;

    if (ngx_http_webhook_sse_outbox_callback(zone, session, &url, &secret)
        != NGX_OK)
    {
        return ngx_http_webhook_sse_send_error(r, NGX_HTTP_NOT_FOUND,
                                               "no callback is registered "
                                               "for this session");
    }

    return ngx_http_webhook_sse_callbacks_answer(r, session, &url,
                                                 secret.len != 0);
}


static ngx_int_t
ngx_http_webhook_sse_callbacks_remove(ngx_http_request_t *r,
    ngx_http_webhook_sse_zone_t *zone, ngx_str_t *session)
{
    if (ngx_http_webhook_sse_outbox_unregister(zone, session) != NGX_OK) {
        return ngx_http_webhook_sse_send_error(r, NGX_HTTP_NOT_FOUND,
                                               "no callback is registered "
                                               "for this session");
    }

    return ngx_http_webhook_sse_callbacks_answer(r, session, NULL, 0);
}


static ngx_int_t
ngx_http_webhook_sse_callbacks_redrive(ngx_http_request_t *r,
    ngx_http_webhook_sse_zone_t *zone, ngx_str_t *endpoint)
{
    u_char      *body, *p;
    ngx_uint_t   n;

    if (endpoint->len == 3 && ngx_strncmp(endpoint->data, "all", 3) == 0) {
        endpoint = NULL;
    }

    n = ngx_http_webhook_sse_outbox_redrive(zone, endpoint);

    body = ngx_pnalloc(r->pool, sizeof("{\"success\":true,\"redriven\":}\n")
                                + NGX_INT_T_LEN);
    if (body == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_sprintf(body, "{\"success\":true,\"redriven\":%ui}\n", n);

    return ngx_http_webhook_sse_send_json(r, NGX_HTTP_OK, body, p - body);
}


static void
ngx_http_webhook_sse_callbacks_body(ngx_http_request_t *r)
{
    ngx_http_finalize_request(r, ngx_http_webhook_sse_callbacks_register(r));
}


static ngx_int_t
ngx_http_webhook_sse_callbacks_register(ngx_http_request_t *r)
{
    u_char                                *p;
    size_t                                 len;
    ngx_int_t                              rc;
    ngx_str_t                              session, url, value, key;
    ngx_str_t                              endpoint;
    ngx_uint_t                             plain;
    ngx_chain_t                           *cl;
    ngx_http_webhook_sse_zone_t           *zone;
    ngx_http_webhook_sse_loc_conf_t       *wlcf;
    ngx_http_webhook_sse_registration_t    reg;
    u_char                  ep[NGX_HTTP_WEBHOOK_SSE_ENDPOINT_MAX];

    wlcf = ngx_http_get_module_loc_conf(r, ngx_http_webhook_sse_module);
    zone = wlcf->forward->callbacks->data;

    len = 0;

    if (r->request_body) {
        for (cl = r->request_body->bufs; cl; cl = cl->next) {
            if (cl->buf->in_file) {
                return ngx_http_webhook_sse_send_error(r,
                                       NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                       "a registration must fit in "
                                       "client_body_buffer_size");
            }

            len += cl->buf->last - cl->buf->pos;
        }
    }

    p = ngx_pnalloc(r->pool, len + 1);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    value.data = p;

    if (r->request_body) {
        for (cl = r->request_body->bufs; cl; cl = cl->next) {
            p = ngx_cpymem(p, cl->buf->pos, cl->buf->last - cl->buf->pos);
        }
    }

    value.len = p - value.data;

    if (ngx_http_webhook_sse_payload_registration(value.data, value.len,
                                                  &reg)
        != 0)
    {
        rc = ngx_http_webhook_sse_send_error(r, NGX_HTTP_BAD_REQUEST,
                                             reg.error);
        ngx_http_webhook_sse_payload_registration_free(&reg);
        return rc;
    }

    /* copies out of the parse tree, freed before anything can fail */

    session.len = reg.session_len;
    url.len = reg.url_len;
    value.len = reg.secret_len;

    session.data = ngx_pnalloc(r->pool, session.len + url.len + value.len
                                        + 1);
    if (session.data == NULL) {
        ngx_http_webhook_sse_payload_registration_free(&reg);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    url.data = ngx_cpymem(session.data, reg.session, session.len);
    value.data = ngx_cpymem(url.data, reg.url, url.len);

    if (reg.secret) {
        ngx_memcpy(value.data, reg.secret, value.len);
    }

    ngx_http_webhook_sse_payload_registration_free(&reg);

    if (!ngx_http_webhook_sse_json_session_valid(session.data, session.len)) {
        return ngx_http_webhook_sse_send_error(r, NGX_HTTP_BAD_REQUEST,
                                               "sessionId must be 1 to 256 "
                                               "bytes without control "
                                               "characters");
    }

    endpoint.data = ep;

    if (ngx_http_webhook_sse_forward_endpoint(url.data, url.len, &endpoint,
                                              &plain)
        != NGX_OK)
    {
        return ngx_http_webhook_sse_send_error(r, NGX_HTTP_BAD_REQUEST,
                                               "callback_url must be an "
                                               "absolute https:// URL");
    }

    if (plain && wlcf->forward->allow->ncidrs == 0) {
        return ngx_http_webhook_sse_send_error(r, NGX_HTTP_BAD_REQUEST,
                                               "callback_url must be "
                                               "https:// unless "
                                               "webhook_forward_allow names "
                                               "its address");
    }

    key.len = 0;
    key.data = NULL;

    if (value.len
        && ngx_http_webhook_sse_forward_key(&value, &key, r->pool) != NGX_OK)
    {
        return ngx_http_webhook_sse_send_error(r, NGX_HTTP_BAD_REQUEST,
                                               "secret must be whsec_ and "
                                               "base64, or 1 to 256 bytes");
    }

    rc = ngx_http_webhook_sse_outbox_register(zone, &session, &url, &key);

    if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "webhook zone \"%V\" cannot store a callback",
                      &zone->shm_zone->shm.name);

        return ngx_http_webhook_sse_send_error(r,
                                               NGX_HTTP_SERVICE_UNAVAILABLE,
                                               "the webhook zone cannot "
                                               "store the callback");
    }

    return ngx_http_webhook_sse_callbacks_answer(r, &session, &url,
                                                 key.len != 0);
}


/* {"success":true,"sessionId":..[,"callback_url":..,"signed":..]} */

static ngx_int_t
ngx_http_webhook_sse_callbacks_answer(ngx_http_request_t *r,
    ngx_str_t *session, ngx_str_t *url, ngx_int_t secret)
{
    u_char  *body, *p;
    size_t   len;

    len = sizeof("{\"success\":true,\"sessionId\":\"\",\"callback_url\":\"\","
                 "\"signed\":false}\n")
          + 6 * session->len + (url ? 6 * url->len : 0);

    body = ngx_pnalloc(r->pool, len);
    if (body == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(body, "{\"success\":true,\"sessionId\":\"",
                   sizeof("{\"success\":true,\"sessionId\":\"") - 1);
    p += ngx_http_webhook_sse_json_escape(p, session->data, session->len);
    *p++ = '"';

    if (url) {
        p = ngx_cpymem(p, ",\"callback_url\":\"",
                       sizeof(",\"callback_url\":\"") - 1);
        p += ngx_http_webhook_sse_json_escape(p, url->data, url->len);
        p = ngx_sprintf(p, "\",\"signed\":%s",
                        secret ? "true" : "false");
    }

    *p++ = '}';
    *p++ = LF;

    return ngx_http_webhook_sse_send_json(r, NGX_HTTP_OK, body, p - body);
}
