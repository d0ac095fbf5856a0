
/*
 * nginx-webhook-sse: POST publishes a message, GET/HEAD reports health.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_webhook_sse_module.h"
#include "ngx_http_webhook_sse_redis.h"


static ngx_int_t ngx_http_webhook_sse_health(ngx_http_request_t *r,
    ngx_http_webhook_sse_zone_t *zone);
static ngx_uint_t ngx_http_webhook_sse_is_json(ngx_http_request_t *r);
static ngx_uint_t ngx_http_webhook_sse_is_form(ngx_http_request_t *r);
static ngx_int_t ngx_http_webhook_sse_form_payload(ngx_http_request_t *r,
    ngx_str_t *body);
static void ngx_http_webhook_sse_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_webhook_sse_publish(ngx_http_request_t *r);
static void *ngx_http_webhook_sse_pool_alloc(void *pool, size_t size);
static ngx_int_t ngx_http_webhook_sse_idempotency_key(ngx_http_request_t *r,
    ngx_http_webhook_sse_loc_conf_t *wlcf, ngx_str_t *delivery,
    ngx_str_t *header, ngx_str_t *key);
static ngx_int_t ngx_http_webhook_sse_store(ngx_http_request_t *r,
    ngx_http_webhook_sse_loc_conf_t *wlcf, ngx_str_t *session,
    ngx_str_t *extra, ngx_str_t *members,
    ngx_http_webhook_sse_idempotency_t *idem, ngx_str_t *header);


static ngx_str_t  ngx_http_webhook_sse_idempotency_header =
    ngx_string("Idempotency-Key");


ngx_int_t
ngx_http_webhook_sse_publish_handler(ngx_http_request_t *r)
{
    ngx_int_t                         rc;
    ngx_uint_t                        status;
    const char                       *error;
    ngx_http_webhook_sse_loc_conf_t  *wlcf;

    wlcf = ngx_http_get_module_loc_conf(r, ngx_http_webhook_sse_module);

    if (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) {
        return ngx_http_webhook_sse_health(r, wlcf->publish->data);
    }

    if (!(r->method & NGX_HTTP_POST)) {
        if (ngx_http_webhook_sse_add_header(r, "Allow", "GET, HEAD, POST")
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_webhook_sse_reject(r, NGX_HTTP_NOT_ALLOWED,
                                           "method not allowed: use POST "
                                           "to publish");
    }

    status = ngx_http_webhook_sse_check_secret(r, wlcf, &error);
    if (status != NGX_OK) {
        return ngx_http_webhook_sse_reject(r, status, error);
    }

    if (wlcf->verify == NGX_HTTP_WEBHOOK_SSE_VERIFY_GITHUB) {

        /* GitHub's other content type: payload=<the JSON, form-encoded> */

        if (!ngx_http_webhook_sse_is_json(r)
            && !ngx_http_webhook_sse_is_form(r))
        {
            return ngx_http_webhook_sse_reject(r,
                                           NGX_HTTP_UNSUPPORTED_MEDIA_TYPE,
                                           "Content-Type must be "
                                           "application/json or "
                                           "application/x-www-form-urlencoded");
        }

    } else if (!ngx_http_webhook_sse_is_json(r)) {
        return ngx_http_webhook_sse_reject(r, NGX_HTTP_UNSUPPORTED_MEDIA_TYPE,
                                           "Content-Type must be "
                                           "application/json");
    }

    rc = ngx_http_read_client_request_body(r,
                                           ngx_http_webhook_sse_body_handler);

    /* 413 and the like: nginx's answer, made JSON by the error filter */
    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


static ngx_int_t
ngx_http_webhook_sse_health(ngx_http_request_t *r,
    ngx_http_webhook_sse_zone_t *zone)
{
    u_char     *body, *p;
    ngx_int_t   rc;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    body = ngx_pnalloc(r->pool, sizeof("{\"status\":\"ok\","
                                       "\"activeConnections\":}\n")
                                + NGX_INT_T_LEN);
    if (body == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_sprintf(body, "{\"status\":\"ok\",\"activeConnections\":%ui}\n",
                    ngx_http_webhook_sse_store_streams(zone));

    return ngx_http_webhook_sse_send_json(r, NGX_HTTP_OK, body, p - body);
}


/* application/json or any application/...+json, parameters allowed */

static ngx_uint_t
ngx_http_webhook_sse_is_json(ngx_http_request_t *r)
{
    u_char  *p, *last, *end;

    if (r->headers_in.content_type == NULL) {
        return 0;
    }

    p = r->headers_in.content_type->value.data;
    last = p + r->headers_in.content_type->value.len;

    /* the usual spelling, compared at once */

    if (last - p >= 16
        && ngx_strncmp(p, "application/json", 16) == 0
        && (last - p == 16 || p[16] == ';' || p[16] == ' '))
    {
        return 1;
    }

    for (end = p; end < last && *end != ';' && *end != ' '; end++) {
        /* void */
    }

    if (end - p < 16 || ngx_strncasecmp(p, (u_char *) "application/", 12)) {
        return 0;
    }

    return ngx_strncasecmp(end - 4, (u_char *) "json", 4) == 0
           && (end - p == 16 || *(end - 5) == '+');
}


static ngx_uint_t
ngx_http_webhook_sse_is_form(ngx_http_request_t *r)
{
    size_t   len;
    u_char  *p;

    static u_char  form[] = "application/x-www-form-urlencoded";

    if (r->headers_in.content_type == NULL) {
        return 0;
    }

    p = r->headers_in.content_type->value.data;
    len = r->headers_in.content_type->value.len;

    return len >= sizeof(form) - 1
           && ngx_strncasecmp(p, form, sizeof(form) - 1) == 0
           && (len == sizeof(form) - 1
               || p[sizeof(form) - 1] == ';' || p[sizeof(form) - 1] == ' ');
}


/*
 * The JSON of a form-encoded GitHub delivery: the value of its "payload"
 * field, decoded.  The signature was checked over the form as sent.
 * NGX_DECLINED: there is none, or it is not decodable.
 */

static ngx_int_t
ngx_http_webhook_sse_form_payload(ngx_http_request_t *r, ngx_str_t *body)
{
    u_char     *p, *last, *end;
    ngx_int_t   rc;
    ngx_str_t   value;

    p = body->data;
    last = p + body->len;

    while (p < last) {

        end = ngx_strlchr(p, last, '&');
        if (end == NULL) {
            end = last;
        }

        if (end - p >= 8 && ngx_strncmp(p, "payload=", 8) == 0) {
            value.data = p + 8;
            value.len = end - p - 8;

            rc = ngx_http_webhook_sse_form_unescape(r->pool, &value);

            if (rc == NGX_OK) {
                *body = value;
            }

            return rc;
        }

        p = end + 1;
    }

    return NGX_DECLINED;
}


static void
ngx_http_webhook_sse_body_handler(ngx_http_request_t *r)
{
    ngx_http_finalize_request(r, ngx_http_webhook_sse_publish(r));
}


static ngx_int_t
ngx_http_webhook_sse_publish(ngx_http_request_t *r)
{
    u_char                              *p;
    ngx_int_t                            rc;
    ngx_str_t                            body, session, extra, members;
    ngx_str_t                            delivery, header, *field;
    ngx_uint_t                           status;
    const char                          *error;
    ngx_http_webhook_sse_loc_conf_t     *wlcf;
    ngx_http_webhook_sse_json_conf_t     jconf;
    ngx_http_webhook_sse_json_result_t   res;
    ngx_http_webhook_sse_idempotency_t   idem;

    wlcf = ngx_http_get_module_loc_conf(r, ngx_http_webhook_sse_module);

    rc = ngx_http_webhook_sse_read_body(r, &body);
    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    status = ngx_http_webhook_sse_verify(r, wlcf, &body, &delivery, &header,
                                         &error);
    if (status != NGX_OK) {
        return ngx_http_webhook_sse_send_error(r, status, error);
    }

    if (body.len == 0) {
        return ngx_http_webhook_sse_send_error(r, NGX_HTTP_BAD_REQUEST,
                                               "request body is empty");
    }

    if (wlcf->verify == NGX_HTTP_WEBHOOK_SSE_VERIFY_GITHUB
        && ngx_http_webhook_sse_is_form(r))
    {
        rc = ngx_http_webhook_sse_form_payload(r, &body);

        if (rc == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (rc == NGX_DECLINED) {
            return ngx_http_webhook_sse_send_error(r, NGX_HTTP_BAD_REQUEST,
                                                   "a form body needs a "
                                                   "payload= field, "
                                                   "percent-encoded");
        }
    }

    ngx_memzero(&idem, sizeof(ngx_http_webhook_sse_idempotency_t));

    rc = ngx_http_webhook_sse_idempotency_key(r, wlcf, &delivery, &header,
                                              &idem.key);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        if (delivery.len) {
            p = ngx_pnalloc(r->pool, header.len + sizeof(" must be at most "
                                                         "255 bytes"));
            if (p == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            ngx_sprintf(p, "%V must be at most 255 bytes%Z", &header);

            return ngx_http_webhook_sse_send_error(r, NGX_HTTP_BAD_REQUEST,
                                                   (const char *) p);
        }

        return ngx_http_webhook_sse_send_error(r, NGX_HTTP_BAD_REQUEST,
                                               "Idempotency-Key must be 1 to "
                                               "255 printable ASCII "
                                               "characters");
    }

    rc = ngx_http_webhook_sse_session_value(r, wlcf, &session, &error);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_webhook_sse_send_error(r, NGX_HTTP_BAD_REQUEST, error);
    }

    jconf.session_path = wlcf->session_field.len ? wlcf->session_field.data
                                                 : NULL;
    jconf.session_path_len = wlcf->session_field.len;
    jconf.drop_key = NULL;
    jconf.drop_key_len = 0;

    if (session.len) {
        /*
         * webhook_session names the target: the body's field is not
         * looked at, and the event names the session it went to.
         */
        jconf.session_path = NULL;
        jconf.session_path_len = 0;
        jconf.drop_key = wlcf->session_key.data;
        jconf.drop_key_len = wlcf->session_key.len;
    }

    jconf.message_path = wlcf->message_field.len ? wlcf->message_field.data
                                                 : NULL;
    jconf.message_path_len = wlcf->message_field.len;

    /* the members and the session live as long as the request */
    jconf.alloc = ngx_http_webhook_sse_pool_alloc;
    jconf.alloc_data = r->pool;

    rc = ngx_http_webhook_sse_json_parse(&jconf, body.data, body.len, &res);

    if (rc == NGX_HTTP_WEBHOOK_SSE_JSON_NOMEM) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "webhook publish: out of memory parsing a body of "
                      "%uz bytes", body.len);
        ngx_http_webhook_sse_json_free(&res);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc != NGX_HTTP_WEBHOOK_SSE_JSON_OK) {
        rc = ngx_http_webhook_sse_send_error(r, NGX_HTTP_BAD_REQUEST,
                                             res.error);
        ngx_http_webhook_sse_json_free(&res);
        return rc;
    }

    extra.len = 0;
    extra.data = NULL;

    if (session.len && res.session == NULL) {

        /* the session came from the URL: the event names it too */

        field = &wlcf->session_key;

        p = ngx_pnalloc(r->pool, field->len * 6 + session.len * 6 + 5);
        if (p == NULL) {
            ngx_http_webhook_sse_json_free(&res);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        extra.data = p;

        *p++ = '"';
        p += ngx_http_webhook_sse_json_escape(p, field->data, field->len);
        *p++ = '"';
        *p++ = ':';
        *p++ = '"';
        p += ngx_http_webhook_sse_json_escape(p, session.data, session.len);
        *p++ = '"';

        extra.len = p - extra.data;

    } else if (session.len == 0 && res.session) {
        session.len = res.session_len;
        session.data = res.session;
    }

    members.data = res.members;
    members.len = res.members_len;

    if (idem.key.len) {
        idem.window = wlcf->idempotency;

        if (ngx_http_webhook_sse_digest(&session, &body, idem.digest)
            != NGX_OK)
        {
            ngx_http_webhook_sse_json_free(&res);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (((ngx_http_webhook_sse_zone_t *) wlcf->publish->data)->redis) {
        /* several hosts: Redis stores it, the answer comes later */
        rc = ngx_http_webhook_sse_redis_publish(r, wlcf->publish->data,
                                                &session, &extra, &members,
                                                &idem);
        ngx_http_webhook_sse_json_free(&res);
        return rc;
    }

    rc = ngx_http_webhook_sse_store(r, wlcf, &session, &extra, &members,
                                    &idem, &header);

    ngx_http_webhook_sse_json_free(&res);

    return rc;
}


static void *
ngx_http_webhook_sse_pool_alloc(void *pool, size_t size)
{
    return ngx_pnalloc(pool, size);
}


/*
 * The key that makes a retried publish a replay; empty when idempotency is
 * off or there is none.  With webhook_verify it is the verified delivery
 * id and nothing else: a captured request sent again with a fresh
 * Idempotency-Key is still the same delivery.  Without, the
 * Idempotency-Key header.  "header" gets the name of the header used.
 * NGX_DECLINED: that header is not a usable key.
 */

static ngx_int_t
ngx_http_webhook_sse_idempotency_key(ngx_http_request_t *r,
    ngx_http_webhook_sse_loc_conf_t *wlcf, ngx_str_t *delivery,
    ngx_str_t *header, ngx_str_t *key)
{
    size_t            i;
    ngx_table_elt_t  *h;

    key->len = 0;
    key->data = NULL;

    if (wlcf->idempotency == 0) {
        return NGX_OK;
    }

    if (wlcf->verify != NGX_HTTP_WEBHOOK_SSE_VERIFY_OFF) {

        if (delivery->len > 255) {
            return NGX_DECLINED;
        }

        *key = *delivery;
        return NGX_OK;
    }

    ngx_str_set(header, "Idempotency-Key");

    h = ngx_http_webhook_sse_find_header(r,
                                    &ngx_http_webhook_sse_idempotency_header);

    if (h == NULL) {
        return NGX_OK;
    }

    if (h->value.len == 0 || h->value.len > 255) {
        return NGX_DECLINED;
    }

    for (i = 0; i < h->value.len; i++) {
        if (h->value.data[i] < 0x20 || h->value.data[i] > 0x7e) {
            return NGX_DECLINED;
        }
    }

    *key = h->value;

    return NGX_OK;
}


static ngx_int_t
ngx_http_webhook_sse_store(ngx_http_request_t *r,
    ngx_http_webhook_sse_loc_conf_t *wlcf, ngx_str_t *session,
    ngx_str_t *extra, ngx_str_t *members,
    ngx_http_webhook_sse_idempotency_t *idem, ngx_str_t *header)
{
    u_char                         *p;
    ngx_str_t                       logged;
    ngx_int_t                       rc;
    ngx_str_t                       id;
    ngx_pid_t                       wake[NGX_HTTP_WEBHOOK_SSE_SLOTS];
    ngx_uint_t                      i, nwake;
    ngx_http_webhook_sse_ctx_t     *ctx;
    ngx_http_webhook_sse_zone_t    *zone;
    ngx_http_webhook_sse_stored_t   stored;

    zone = wlcf->publish->data;

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_webhook_sse_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->session = *session;

    ngx_http_set_ctx(r, ctx, ngx_http_webhook_sse_module);

    if (ngx_http_webhook_sse_outbox_admit(r) != NGX_OK) {
        return ngx_http_webhook_sse_send_error(r,
                                               NGX_HTTP_SERVICE_UNAVAILABLE,
                                               "the outbound delivery queue "
                                               "is full");
    }

    rc = ngx_http_webhook_sse_store_publish(zone, session, extra, members,
                                            idem, &stored, wake, &nwake);

    if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "webhook zone \"%V\" cannot store a message of %uz "
                      "bytes", &zone->shm_zone->shm.name, members->len);

        return ngx_http_webhook_sse_send_error(r,
                                               NGX_HTTP_SERVICE_UNAVAILABLE,
                                               "the webhook zone cannot "
                                               "store the message");
    }

    if (idem->outcome == NGX_HTTP_WEBHOOK_SSE_KEY_CONFLICT) {
        /* nginx knows no reason phrase for 422 */
        ngx_str_set(&r->headers_out.status_line, "422 Unprocessable Entity");

        p = ngx_pnalloc(r->pool, sizeof("this  was used for a different "
                                        "request") + header->len);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_sprintf(p, "this %V was used for a different request%Z", header);

        return ngx_http_webhook_sse_send_error(r, 422, (const char *) p);
    }

    if (idem->outcome == NGX_HTTP_WEBHOOK_SSE_KEY_REPLAYED) {

        /* a delivery id is any header value: no control bytes in the log */

        if (ngx_http_webhook_sse_log_escape(r->pool, &idem->key, &logged)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "webhook publish repeated with %V \"%V\": "
                      "answered with the first one's message",
                      header, &logged);

        if (ngx_http_webhook_sse_add_header(r, "Idempotent-Replayed", "true")
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    for (i = 0; i < nwake; i++) {
        ngx_http_webhook_sse_notify_wake(zone, wake[i]);
    }

    ctx->message_id_len = ngx_http_webhook_sse_format_id(ctx->message_id,
                                                         zone->sh->epoch,
                                                         stored.seq);
    ctx->message_time = stored.time;

    if (idem->outcome == NGX_HTTP_WEBHOOK_SSE_KEY_NEW) {
        id.data = ctx->message_id;
        id.len = ctx->message_id_len;

        ngx_http_webhook_sse_outbox_enqueue(r, session, &id, stored.time,
                                            extra, members);
    }

    return ngx_http_webhook_sse_publish_answer(r, wlcf, ctx);
}
