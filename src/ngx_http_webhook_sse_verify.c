
/*
 * nginx-webhook-sse: who may publish.  The shared secret header
 * (webhook_secret) is checked before the body is read; signatures over the
 * body (webhook_verify: Standard Webhooks or GitHub's) after.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_webhook_sse_module.h"


#define NGX_HTTP_WEBHOOK_SSE_TOLERANCE  300


static ngx_uint_t ngx_http_webhook_sse_verify_standard(ngx_http_request_t *r,
    ngx_http_webhook_sse_loc_conf_t *wlcf, ngx_str_t *body,
    ngx_str_t *delivery, ngx_str_t *header, const char **error);
static ngx_uint_t ngx_http_webhook_sse_verify_github(ngx_http_request_t *r,
    ngx_http_webhook_sse_loc_conf_t *wlcf, ngx_str_t *body,
    ngx_str_t *delivery, ngx_str_t *header, const char **error);


static ngx_str_t  ngx_http_webhook_sse_secret_header =
    ngx_string("X-Webhook-Secret");
static ngx_str_t  ngx_http_webhook_sse_id_header =
    ngx_string("webhook-id");
static ngx_str_t  ngx_http_webhook_sse_timestamp_header =
    ngx_string("webhook-timestamp");
static ngx_str_t  ngx_http_webhook_sse_signature_header =
    ngx_string("webhook-signature");
/* Svix, where the standard comes from, still sends these names */
static ngx_str_t  ngx_http_webhook_sse_svix_id_header =
    ngx_string("svix-id");
static ngx_str_t  ngx_http_webhook_sse_svix_timestamp_header =
    ngx_string("svix-timestamp");
static ngx_str_t  ngx_http_webhook_sse_svix_signature_header =
    ngx_string("svix-signature");
static ngx_str_t  ngx_http_webhook_sse_github_header =
    ngx_string("X-Hub-Signature-256");
static ngx_str_t  ngx_http_webhook_sse_github_delivery =
    ngx_string("X-GitHub-Delivery");


/*
 * NGX_OK, or the status to answer with and why.  Constant-time in the
 * secret's content; the length only sets the pace.
 */

ngx_uint_t
ngx_http_webhook_sse_check_secret(ngx_http_request_t *r,
    ngx_http_webhook_sse_loc_conf_t *wlcf, const char **error)
{
    size_t             i;
    ngx_str_t          secret;
    ngx_uint_t         diff;
    ngx_table_elt_t   *h;

    if (wlcf->secret == NULL) {
        return NGX_OK;
    }

    if (ngx_http_complex_value(r, wlcf->secret, &secret) != NGX_OK) {
        *error = "internal error";
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (secret.len == 0) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "webhook_secret evaluated to an empty string, "
                      "refusing the publish");
        *error = "webhook secret is not configured correctly";
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h = ngx_http_webhook_sse_find_header(r,
                                         &ngx_http_webhook_sse_secret_header);

    if (h == NULL) {
        *error = "missing X-Webhook-Secret header";
        return NGX_HTTP_UNAUTHORIZED;
    }

    diff = (h->value.len != secret.len);

    for (i = 0; i < secret.len; i++) {
        diff |= secret.data[i] ^ (i < h->value.len ? h->value.data[i] : 0);
    }

    if (diff) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "webhook publish with a wrong X-Webhook-Secret");
        *error = "invalid webhook secret";
        return NGX_HTTP_UNAUTHORIZED;
    }

    return NGX_OK;
}


/*
 * The signature over the body; NGX_OK, or the status and why.  "delivery"
 * gets the sender's id of the delivery, empty when there is none, and
 * "header" the name of the header it came in.
 */

ngx_uint_t
ngx_http_webhook_sse_verify(ngx_http_request_t *r,
    ngx_http_webhook_sse_loc_conf_t *wlcf, ngx_str_t *body,
    ngx_str_t *delivery, ngx_str_t *header, const char **error)
{
    ngx_uint_t  status;

    delivery->len = 0;
    delivery->data = NULL;
    header->len = 0;
    header->data = NULL;

    switch (wlcf->verify) {

    case NGX_HTTP_WEBHOOK_SSE_VERIFY_STANDARD:
        status = ngx_http_webhook_sse_verify_standard(r, wlcf, body, delivery,
                                                      header, error);
        break;

    case NGX_HTTP_WEBHOOK_SSE_VERIFY_GITHUB:
        status = ngx_http_webhook_sse_verify_github(r, wlcf, body, delivery,
                                                    header, error);
        break;

    default:
        return NGX_OK;
    }

    if (status == NGX_HTTP_UNAUTHORIZED) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "webhook publish refused: %s", *error);
    }

    return status;
}


/*
 * Standard Webhooks: HMAC-SHA256 of "id.timestamp.body", base64, in a
 * space separated list of "v1,<signature>" (several during key rotation).
 */

static ngx_uint_t
ngx_http_webhook_sse_verify_standard(ngx_http_request_t *r,
    ngx_http_webhook_sse_loc_conf_t *wlcf, ngx_str_t *body,
    ngx_str_t *delivery, ngx_str_t *header, const char **error)
{
    u_char           *p, *last, *end;
    time_t            timestamp, now;
    ngx_str_t         data, sig, mac, *name;
    ngx_uint_t        k;
    ngx_table_elt_t  *id, *ts, *signature;
    u_char            buf[NGX_HTTP_WEBHOOK_SSE_MAC_LEN + 3];
    u_char            macs[NGX_HTTP_WEBHOOK_SSE_MAX_KEYS]
                          [NGX_HTTP_WEBHOOK_SSE_MAC_LEN];

    id = ngx_http_webhook_sse_find_header(r, &ngx_http_webhook_sse_id_header);
    ts = ngx_http_webhook_sse_find_header(r,
                                        &ngx_http_webhook_sse_timestamp_header);
    signature = ngx_http_webhook_sse_find_header(r,
                                        &ngx_http_webhook_sse_signature_header);

    name = &ngx_http_webhook_sse_id_header;

    if (id == NULL && ts == NULL && signature == NULL) {
        name = &ngx_http_webhook_sse_svix_id_header;
        id = ngx_http_webhook_sse_find_header(r,
                                        &ngx_http_webhook_sse_svix_id_header);
        ts = ngx_http_webhook_sse_find_header(r,
                                &ngx_http_webhook_sse_svix_timestamp_header);
        signature = ngx_http_webhook_sse_find_header(r,
                                &ngx_http_webhook_sse_svix_signature_header);
    }

    if (id == NULL || id->value.len == 0) {
        *error = "missing webhook-id header";
        return NGX_HTTP_UNAUTHORIZED;
    }

    if (ts == NULL) {
        *error = "missing webhook-timestamp header";
        return NGX_HTTP_UNAUTHORIZED;
    }

    if (signature == NULL) {
        *error = "missing webhook-signature header";
        return NGX_HTTP_UNAUTHORIZED;
    }

    timestamp = ngx_atotm(ts->value.data, ts->value.len);

    if (timestamp == NGX_ERROR) {
        *error = "webhook-timestamp must be a Unix time in seconds";
        return NGX_HTTP_UNAUTHORIZED;
    }

    now = ngx_time();

    if (timestamp < now - wlcf->verify_tolerance
        || timestamp > now + wlcf->verify_tolerance)
    {
        *error = "webhook-timestamp is too old or too far in the future";
        return NGX_HTTP_UNAUTHORIZED;
    }

    data.len = id->value.len + 1 + ts->value.len + 1 + body->len;
    data.data = ngx_pnalloc(r->pool, data.len);
    if (data.data == NULL) {
        *error = "internal error";
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(data.data, id->value.data, id->value.len);
    *p++ = '.';
    p = ngx_cpymem(p, ts->value.data, ts->value.len);
    *p++ = '.';
    ngx_memcpy(p, body->data, body->len);

    for (k = 0; k < wlcf->verify_keys->nelts; k++) {
        if (ngx_http_webhook_sse_hmac_sha256(
                &((ngx_str_t *) wlcf->verify_keys->elts)[k],
                data.data, data.len, macs[k])
            != NGX_OK)
        {
            *error = "internal error";
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    p = signature->value.data;
    last = p + signature->value.len;

    while (p < last) {

        while (p < last && *p == ' ') {
            p++;
        }

        for (end = p; end < last && *end != ' '; end++) {
            /* void */
        }

        /* other versions (v1a: asymmetric) are not ours to check */

        if (end - p > 3 && ngx_strncmp(p, "v1,", 3) == 0
            && ngx_base64_decoded_length((size_t) (end - p - 3)) <= sizeof(buf))
        {
            sig.data = p + 3;
            sig.len = end - p - 3;
            mac.data = buf;

            if (ngx_decode_base64(&mac, &sig) == NGX_OK
                && mac.len == NGX_HTTP_WEBHOOK_SSE_MAC_LEN)
            {
                for (k = 0; k < wlcf->verify_keys->nelts; k++) {
                    if (ngx_http_webhook_sse_mac_equal(buf, macs[k])) {
                        *delivery = id->value;
                        *header = *name;
                        return NGX_OK;
                    }
                }
            }
        }

        p = end;
    }

    *error = "no webhook-signature matches the request";
    return NGX_HTTP_UNAUTHORIZED;
}


/* GitHub: X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body> */

static ngx_uint_t
ngx_http_webhook_sse_verify_github(ngx_http_request_t *r,
    ngx_http_webhook_sse_loc_conf_t *wlcf, ngx_str_t *body,
    ngx_str_t *delivery, ngx_str_t *header, const char **error)
{
    ngx_int_t         rc;
    ngx_table_elt_t  *h;
    u_char            mac[NGX_HTTP_WEBHOOK_SSE_MAC_LEN];

    h = ngx_http_webhook_sse_find_header(r,
                                         &ngx_http_webhook_sse_github_header);

    if (h == NULL) {
        *error = "missing X-Hub-Signature-256 header";
        return NGX_HTTP_UNAUTHORIZED;
    }

    if (h->value.len < 7
        || ngx_strncmp(h->value.data, "sha256=", 7) != 0
        || ngx_http_webhook_sse_mac_from_hex(mac, h->value.data + 7,
                                             h->value.len - 7)
           != NGX_OK)
    {
        *error = "X-Hub-Signature-256 must be sha256= and 64 hex digits";
        return NGX_HTTP_UNAUTHORIZED;
    }

    rc = ngx_http_webhook_sse_match(wlcf->verify_keys, body, mac);

    if (rc == NGX_ERROR) {
        *error = "internal error";
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc != NGX_OK) {
        *error = "X-Hub-Signature-256 does not match the request";
        return NGX_HTTP_UNAUTHORIZED;
    }

    h = ngx_http_webhook_sse_find_header(r,
                                        &ngx_http_webhook_sse_github_delivery);
    if (h) {
        *delivery = h->value;
        *header = ngx_http_webhook_sse_github_delivery;
    }

    return NGX_OK;
}


/*
 * webhook_verify off | standard SECRET... [tolerance=TIME]
 *                    | github SECRET...
 * A secret is text, env=NAME or file=PATH; several allow key rotation.
 */

char *
ngx_http_webhook_sse_verify_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_webhook_sse_loc_conf_t *wlcf = conf;

    u_char      *p;
    time_t       tolerance;
    ngx_str_t   *value, secret, *key, encoded;
    ngx_uint_t   i;

    if (wlcf->verify != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        if (cf->args->nelts != 2) {
            return "takes no secrets with \"off\"";
        }

        wlcf->verify = NGX_HTTP_WEBHOOK_SSE_VERIFY_OFF;
        return NGX_CONF_OK;
    }

    if (ngx_strcmp(value[1].data, "standard") == 0) {
        wlcf->verify = NGX_HTTP_WEBHOOK_SSE_VERIFY_STANDARD;

    } else if (ngx_strcmp(value[1].data, "github") == 0) {
        wlcf->verify = NGX_HTTP_WEBHOOK_SSE_VERIFY_GITHUB;

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid scheme \"%V\": use standard, github "
                           "or off", &value[1]);
        return NGX_CONF_ERROR;
    }

    wlcf->verify_keys = ngx_array_create(cf->pool, 2, sizeof(ngx_str_t));
    if (wlcf->verify_keys == NULL) {
        return NGX_CONF_ERROR;
    }

    tolerance = NGX_HTTP_WEBHOOK_SSE_TOLERANCE;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "tolerance=", 10) == 0) {

            if (wlcf->verify != NGX_HTTP_WEBHOOK_SSE_VERIFY_STANDARD) {
                return "takes tolerance= only with \"standard\"";
            }

            value[i].data += 10;
            value[i].len -= 10;

            tolerance = ngx_parse_time(&value[i], 1);

            if (tolerance == (time_t) NGX_ERROR || tolerance == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid tolerance \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (wlcf->verify_keys->nelts == NGX_HTTP_WEBHOOK_SSE_MAX_KEYS) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "%V: at most %d secrets", &cmd->name,
                               NGX_HTTP_WEBHOOK_SSE_MAX_KEYS);
            return NGX_CONF_ERROR;
        }

        if (ngx_http_webhook_sse_conf_secret(cf, &cmd->name, &value[i],
                                             &secret)
            != NGX_CONF_OK)
        {
            return NGX_CONF_ERROR;
        }

        key = ngx_array_push(wlcf->verify_keys);
        if (key == NULL) {
            return NGX_CONF_ERROR;
        }

        if (wlcf->verify == NGX_HTTP_WEBHOOK_SSE_VERIFY_GITHUB) {
            *key = secret;
            continue;
        }

        /* Standard Webhooks: the key is the base64 after "whsec_" */

        encoded = secret;

        if (encoded.len > 6 && ngx_strncmp(encoded.data, "whsec_", 6) == 0) {
            encoded.data += 6;
            encoded.len -= 6;
        }

        p = ngx_pnalloc(cf->pool, ngx_base64_decoded_length(encoded.len));
        if (p == NULL) {
            return NGX_CONF_ERROR;
        }

        key->data = p;

        if (ngx_decode_base64(key, &encoded) != NGX_OK || key->len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "%V: a standard secret is base64, usually "
                               "after \"whsec_\" (secret number %ui)",
                               &cmd->name, wlcf->verify_keys->nelts);
            return NGX_CONF_ERROR;
        }
    }

    if (wlcf->verify_keys->nelts == 0) {
        return "needs at least one secret";
    }

    wlcf->verify_tolerance = tolerance;

    return NGX_CONF_OK;
}
