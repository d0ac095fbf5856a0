
/*
 * nginx-webhook-sse: secrets and what is done with them: reading them from
 * the configuration, the environment or a file, HMAC-SHA256 and
 * constant-time comparison (OpenSSL, which nginx links already).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "ngx_http_webhook_sse_module.h"


/*
 * TEXT, env=NAME or file=PATH: a constant secret of directive "name".
 * Secrets from the environment or a file are read when the configuration
 * is loaded (by the master, which has the full environment and may read
 * files the workers cannot): workers keep only the value.
 */

char *
ngx_http_webhook_sse_conf_secret(ngx_conf_t *cf, ngx_str_t *name,
    ngx_str_t *value, ngx_str_t *secret)
{
    if (ngx_strncmp(value->data, "env=", 4) == 0
        || ngx_strncmp(value->data, "file=", 5) == 0)
    {
        return ngx_http_webhook_sse_read_secret(cf, name, value, secret);
    }

    if (value->len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%V: a secret must not be empty", name);
        return NGX_CONF_ERROR;
    }

    *secret = *value;

    return NGX_CONF_OK;
}


/*
 * Secrets that could not be read while this configuration was parsed.
 * Each is logged; the configuration fails at its end (postconfiguration)
 * so that all of them are named at once.
 */
static ngx_uint_t  ngx_http_webhook_sse_secrets_unread;


static char *ngx_http_webhook_sse_secret_unread(ngx_conf_t *cf,
    ngx_str_t *secret);


char *
ngx_http_webhook_sse_read_secret(ngx_conf_t *cf, ngx_str_t *name,
    ngx_str_t *value, ngx_str_t *secret)
{
    u_char           *p, *env;
    size_t            len;
    ssize_t           n;
    ngx_str_t         path;
    ngx_file_t        file;
    ngx_file_info_t   fi;

    if (value->data[0] == 'e') {
        env = (u_char *) getenv((char *) value->data + 4);

        if (env == NULL || *env == '\0') {
            if (ngx_process != NGX_PROCESS_SIGNALLER) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "%V: environment variable \"%s\" "
                                   "is not set or empty", name,
                                   value->data + 4);
            }

            return ngx_http_webhook_sse_secret_unread(cf, secret);
        }

        secret->len = ngx_strlen(env);
        secret->data = ngx_pstrdup(cf->pool, &(ngx_str_t) { secret->len, env });

        return (secret->data == NULL) ? NGX_CONF_ERROR : NGX_CONF_OK;
    }

    path.data = value->data + 5;
    path.len = value->len - 5;

    if (ngx_conf_full_name(cf->cycle, &path, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&file, sizeof(ngx_file_t));

    file.name = path;
    file.log = cf->log;
    file.fd = ngx_open_file(path.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (file.fd == NGX_INVALID_FILE) {
        if (ngx_process != NGX_PROCESS_SIGNALLER) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                               "%V: " ngx_open_file_n " \"%s\" failed",
                               name, path.data);
        }

        return ngx_http_webhook_sse_secret_unread(cf, secret);
    }

    if (ngx_fd_info(file.fd, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) > 4096)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%V: \"%s\" is not a small file", name, path.data);
        goto failed;
    }

    len = (size_t) ngx_file_size(&fi);

    p = ngx_pnalloc(cf->pool, len + 1);
    if (p == NULL) {
        goto failed;
    }

    n = ngx_read_file(&file, p, len, 0);

    if (n != (ssize_t) len) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "%V: cannot read \"%s\"", name, path.data);
        goto failed;
    }

    /* the first line is the secret */
    for (n = 0; n < (ssize_t) len && p[n] != LF && p[n] != CR; n++) {
        /* void */
    }

    ngx_close_file(file.fd);

    if (n == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%V: \"%s\" is empty", name, path.data);
        return NGX_CONF_ERROR;
    }

    secret->data = p;
    secret->len = n;

    return NGX_CONF_OK;

failed:

    ngx_close_file(file.fd);

    return NGX_CONF_ERROR;
}


/*
 * A secret that is not there.  "nginx -s reload|quit|stop|reopen" parses
 * the configuration only to find the pid file, and the master it signals
 * reads its secrets itself: the signaller goes on without them, so that a
 * shell without the variables can still signal.  Otherwise parsing goes
 * on too, to name every missing secret, and fails at its end.  The value
 * is never used; it is base64 for "webhook_verify standard".
 */

static char *
ngx_http_webhook_sse_secret_unread(ngx_conf_t *cf, ngx_str_t *secret)
{
    if (ngx_process != NGX_PROCESS_SIGNALLER) {
        ngx_http_webhook_sse_secrets_unread++;
    }

    ngx_str_set(secret, "dW5yZWFk");

    return NGX_CONF_OK;
}


void
ngx_http_webhook_sse_secrets_reset(void)
{
    ngx_http_webhook_sse_secrets_unread = 0;
}


ngx_int_t
ngx_http_webhook_sse_secrets_check(ngx_conf_t *cf)
{
    ngx_uint_t  n;

    n = ngx_http_webhook_sse_secrets_unread;
    ngx_http_webhook_sse_secrets_unread = 0;

    if (n == 0) {
        return NGX_OK;
    }

    ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                  "%ui webhook secret%s could not be read (see above): set "
                  "the variables in the environment nginx starts in, or "
                  "use file=", n, n == 1 ? "" : "s");

    return NGX_ERROR;
}


ngx_int_t
ngx_http_webhook_sse_hmac_sha256(ngx_str_t *key, u_char *data, size_t len,
    u_char *mac)
{
    unsigned int  n;

    n = NGX_HTTP_WEBHOOK_SSE_MAC_LEN;

    if (HMAC(EVP_sha256(), key->data, (int) key->len, data, len, mac, &n)
        == NULL
        || n != NGX_HTTP_WEBHOOK_SSE_MAC_LEN)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* the time taken does not depend on where the two differ */

ngx_uint_t
ngx_http_webhook_sse_mac_equal(u_char *a, u_char *b)
{
    return CRYPTO_memcmp(a, b, NGX_HTTP_WEBHOOK_SSE_MAC_LEN) == 0;
}


/* NGX_OK if one of the keys signs "data" as "mac", else NGX_DECLINED */

ngx_int_t
ngx_http_webhook_sse_match(ngx_array_t *keys, ngx_str_t *data, u_char *mac)
{
    ngx_str_t   *key;
    ngx_uint_t   k, found;
    u_char       expected[NGX_HTTP_WEBHOOK_SSE_MAC_LEN];

    key = keys->elts;
    found = 0;

    for (k = 0; k < keys->nelts; k++) {
        if (ngx_http_webhook_sse_hmac_sha256(&key[k], data->data, data->len,
                                             expected)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        found |= ngx_http_webhook_sse_mac_equal(mac, expected);
    }

    return found ? NGX_OK : NGX_DECLINED;
}


/* what identifies a request: SHA-256 of "a", NUL, "b", shortened */

ngx_int_t
ngx_http_webhook_sse_digest(ngx_str_t *a, ngx_str_t *b, u_char *digest)
{
    ngx_int_t      rc;
    unsigned int   n;
    EVP_MD_CTX    *md;
    u_char         full[EVP_MAX_MD_SIZE];

    md = EVP_MD_CTX_new();
    if (md == NULL) {
        return NGX_ERROR;
    }

    rc = (EVP_DigestInit_ex(md, EVP_sha256(), NULL)
          && EVP_DigestUpdate(md, a->data, a->len)
          && EVP_DigestUpdate(md, "", 1)
          && EVP_DigestUpdate(md, b->data, b->len)
          && EVP_DigestFinal_ex(md, full, &n))
         ? NGX_OK : NGX_ERROR;

    EVP_MD_CTX_free(md);

    ngx_memcpy(digest, full, NGX_HTTP_WEBHOOK_SSE_DIGEST_LEN);

    return rc;
}


/* hex (either case) to bytes: NGX_ERROR unless exactly a MAC's worth */

ngx_int_t
ngx_http_webhook_sse_mac_from_hex(u_char *mac, u_char *hex, size_t len)
{
    u_char      c, v;
    ngx_uint_t  i;

    if (len != 2 * NGX_HTTP_WEBHOOK_SSE_MAC_LEN) {
        return NGX_ERROR;
    }

    for (i = 0; i < len; i++) {
        c = hex[i];

        if (c >= '0' && c <= '9') {
            v = c - '0';

        } else {
            c |= 0x20;

            if (c < 'a' || c > 'f') {
                return NGX_ERROR;
            }

            v = c - 'a' + 10;
        }

        if (i % 2 == 0) {
            mac[i / 2] = (u_char) (v << 4);

        } else {
            mac[i / 2] |= v;
        }
    }

    return NGX_OK;
}
