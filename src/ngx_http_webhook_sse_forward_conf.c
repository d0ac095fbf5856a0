
/*
 * nginx-webhook-sse: the outbound directives (webhook_forward,
 * webhook_forward_*, webhook_callbacks), their merge, URL endpoints and
 * the address checks of webhook_forward_allow.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <curl/curl.h>

#include "ngx_http_webhook_sse_module.h"


#define NGX_HTTP_WEBHOOK_SSE_WHSEC  "whsec_"


static ngx_int_t ngx_http_webhook_sse_forward_new_cycle(ngx_conf_t *cf);
static void ngx_http_webhook_sse_forward_restore(void *data);
static char *ngx_http_webhook_sse_forward_secret(ngx_conf_t *cf,
    ngx_str_t *name, ngx_str_t *param, ngx_http_webhook_sse_forward_t *fwd);
static char *ngx_http_webhook_sse_forward_url(ngx_conf_t *cf,
    ngx_http_webhook_sse_forward_t *fwd, ngx_str_t *url);
static ngx_uint_t ngx_http_webhook_sse_public_addr(struct sockaddr *sa);


static ngx_msec_t  ngx_http_webhook_sse_default_retry[] = {
    4000, 8000, 10000
};


/*
 * Set while the master reads a configuration and inherited by its
 * workers: whether anything is forwarded, and which configuration this is
 * (it grows with every one read).
 */
static ngx_uint_t  ngx_http_webhook_sse_forwarding;
static ngx_uint_t  ngx_http_webhook_sse_generation;
static void       *ngx_http_webhook_sse_cycle;
static ngx_array_t  *ngx_http_webhook_sse_limits;


/* what the configuration before this one had set */
typedef struct {
    void                        *mine;
    void                        *cycle;
    ngx_uint_t                   forwarding;
    ngx_array_t                 *limits;
} ngx_http_webhook_sse_forward_saved_t;


ngx_uint_t
ngx_http_webhook_sse_forward_used(void)
{
    return ngx_http_webhook_sse_forwarding;
}


ngx_uint_t
ngx_http_webhook_sse_forward_generation(void)
{
    return ngx_http_webhook_sse_generation;
}


/* limits of the endpoints of constant URLs, applied when workers start */

ngx_array_t *
ngx_http_webhook_sse_forward_limits(void)
{
    return ngx_http_webhook_sse_limits;
}


ngx_http_webhook_sse_forward_conf_t *
ngx_http_webhook_sse_forward_create_conf(ngx_conf_t *cf)
{
    ngx_http_webhook_sse_forward_conf_t  *fcf;

    fcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_webhook_sse_forward_conf_t));
    if (fcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     fcf->forwards = NULL;
     *     fcf->trusted_certificate = { 0, NULL };
     *     fcf->callbacks = NULL;
     */

    if (cf->cycle != (ngx_cycle_t *) ngx_http_webhook_sse_cycle
        && ngx_http_webhook_sse_forward_new_cycle(cf) != NGX_OK)
    {
        return NULL;
    }

    fcf->retry = NGX_CONF_UNSET_PTR;
    fcf->timeout = NGX_CONF_UNSET_MSEC;
    fcf->concurrency = NGX_CONF_UNSET_UINT;
    fcf->interval = (uint64_t) -1;
    fcf->yield = NGX_CONF_UNSET_MSEC;
    fcf->allow = NGX_CONF_UNSET_PTR;

    return fcf;
}


/*
 * A configuration is being read: its own flags and limits, and those of
 * the running one back should it fail (its pool is then destroyed while
 * it is still the one these statics name).
 */

static ngx_int_t
ngx_http_webhook_sse_forward_new_cycle(ngx_conf_t *cf)
{
    ngx_pool_cleanup_t                    *cln;
    ngx_http_webhook_sse_forward_saved_t  *saved;

    cln = ngx_pool_cleanup_add(cf->cycle->pool,
                               sizeof(ngx_http_webhook_sse_forward_saved_t));
    if (cln == NULL) {
        return NGX_ERROR;
    }

    saved = cln->data;
    saved->mine = cf->cycle;
    saved->cycle = ngx_http_webhook_sse_cycle;
    saved->forwarding = ngx_http_webhook_sse_forwarding;
    saved->limits = ngx_http_webhook_sse_limits;

    cln->handler = ngx_http_webhook_sse_forward_restore;

    ngx_http_webhook_sse_cycle = cf->cycle;
    ngx_http_webhook_sse_generation++;
    ngx_http_webhook_sse_forwarding = 0;
    ngx_http_webhook_sse_limits = NULL;

    return NGX_OK;
}


static void
ngx_http_webhook_sse_forward_restore(void *data)
{
    ngx_http_webhook_sse_forward_saved_t  *saved = data;

    /* an older configuration going away after a newer one took over */
    if (saved->mine != ngx_http_webhook_sse_cycle) {
        return;
    }

    ngx_http_webhook_sse_cycle = saved->cycle;
    ngx_http_webhook_sse_forwarding = saved->forwarding;
    ngx_http_webhook_sse_limits = saved->limits;
}


char *
ngx_http_webhook_sse_forward_merge(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_webhook_sse_loc_conf_t *pwlcf = parent;
    ngx_http_webhook_sse_loc_conf_t *wlcf = child;

    ngx_uint_t                             i;
    ngx_msec_t                            *ms;
    ngx_http_webhook_sse_forward_t        *fwd;
    ngx_http_webhook_sse_forward_conf_t   *prev, *conf;
    ngx_http_webhook_sse_forward_limit_t  *limit;

    prev = pwlcf->forward;
    conf = wlcf->forward;

    if (conf->callbacks && (wlcf->publish || wlcf->stream || wlcf->status)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"webhook_callbacks\" cannot share a location "
                           "with \"webhook_publish\", \"webhook_stream\" "
                           "or \"webhook_status\"");
        return NGX_CONF_ERROR;
    }

    if (conf->forwards && wlcf->publish == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"webhook_forward\" needs \"webhook_publish\" in "
                           "the same location");
        return NGX_CONF_ERROR;
    }

    if (conf->retry == NGX_CONF_UNSET_PTR) {
        conf->retry = prev->retry;
    }

    if (conf->retry == NGX_CONF_UNSET_PTR) {
        conf->retry = ngx_array_create(cf->pool, 3, sizeof(ngx_msec_t));
        if (conf->retry == NULL) {
            return NGX_CONF_ERROR;
        }

        for (i = 0; i < 3; i++) {
            ms = ngx_array_push(conf->retry);
            if (ms == NULL) {
                return NGX_CONF_ERROR;
            }

            *ms = ngx_http_webhook_sse_default_retry[i];
        }
    }

    ngx_conf_merge_msec_value(conf->timeout, prev->timeout, 30000);
    ngx_conf_merge_uint_value(conf->concurrency, prev->concurrency, 10);
    ngx_conf_merge_msec_value(conf->yield, prev->yield, 1000);

    if (conf->interval == (uint64_t) -1) {
        conf->interval = prev->interval;
    }

    if (conf->interval == (uint64_t) -1) {
        /* 100r/m */
        conf->interval = 600000;
    }

    ngx_conf_merge_ptr_value(conf->allow, prev->allow, NULL);

    if (conf->allow == NULL) {
        conf->allow = ngx_pcalloc(cf->pool,
                                  sizeof(ngx_http_webhook_sse_allow_t));
        if (conf->allow == NULL) {
            return NGX_CONF_ERROR;
        }

        conf->allow->public = 1;
    }

    ngx_conf_merge_str_value(conf->trusted_certificate,
                             prev->trusted_certificate, "");

    if (conf->forwards == NULL) {
        return NGX_CONF_OK;
    }

    if (ngx_http_webhook_sse_limits == NULL) {
        ngx_http_webhook_sse_limits = ngx_array_create(cf->pool, 4,
                                sizeof(ngx_http_webhook_sse_forward_limit_t));
        if (ngx_http_webhook_sse_limits == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    fwd = conf->forwards->elts;

    for (i = 0; i < conf->forwards->nelts; i++) {
        if (fwd[i].url.lengths) {
            continue;
        }

        limit = ngx_array_push(ngx_http_webhook_sse_limits);
        if (limit == NULL) {
            return NGX_CONF_ERROR;
        }

        limit->zone = wlcf->publish;
        limit->endpoint = fwd[i].endpoint;
        limit->concurrency = conf->concurrency;
        limit->interval = conf->interval;
        limit->yield = conf->yield;
    }

    return NGX_CONF_OK;
}


/* webhook_forward URL [secret=..] [format=event|conversation] */

char *
ngx_http_webhook_sse_forward(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_webhook_sse_loc_conf_t *wlcf = conf;

    char                                 *rv;
    ngx_str_t                            *value;
    ngx_uint_t                            i;
    ngx_http_webhook_sse_forward_t       *fwd;
    ngx_http_webhook_sse_forward_conf_t  *fcf;

    fcf = wlcf->forward;
    value = cf->args->elts;

    ngx_http_webhook_sse_forwarding = 1;

    if (fcf->forwards == NULL) {
        fcf->forwards = ngx_array_create(cf->pool, 2,
                                      sizeof(ngx_http_webhook_sse_forward_t));
        if (fcf->forwards == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    fwd = ngx_array_push(fcf->forwards);
    if (fwd == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(fwd, sizeof(ngx_http_webhook_sse_forward_t));

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "secret=", 7) == 0) {
            rv = ngx_http_webhook_sse_forward_secret(cf, &cmd->name,
                                                     &value[i], fwd);
            if (rv != NGX_CONF_OK) {
                return rv;
            }

            continue;
        }

        if (ngx_strcmp(value[i].data, "format=event") == 0) {
            fwd->format = NGX_HTTP_WEBHOOK_SSE_FORMAT_EVENT;
            continue;
        }

        if (ngx_strcmp(value[i].data, "format=conversation") == 0) {
            fwd->format = NGX_HTTP_WEBHOOK_SSE_FORMAT_CONVERSATION;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    return ngx_http_webhook_sse_forward_url(cf, fwd, &value[1]);
}


/* the secret=.. parameter of webhook_forward and webhook_presence_forward */

static char *
ngx_http_webhook_sse_forward_secret(ngx_conf_t *cf, ngx_str_t *name,
    ngx_str_t *param, ngx_http_webhook_sse_forward_t *fwd)
{
    char       *rv;
    ngx_str_t   value, secret;

    value.data = param->data + sizeof("secret=") - 1;
    value.len = param->len - (sizeof("secret=") - 1);

    rv = ngx_http_webhook_sse_conf_secret(cf, name, &value, &secret);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    if (ngx_http_webhook_sse_forward_key(&secret, &fwd->secret, cf->pool)
        != NGX_OK)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%V: a \"whsec_\" secret must be base64 "
                           "of 1 to %d bytes", name,
                           NGX_HTTP_WEBHOOK_SSE_FWD_SECRET_MAX);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_webhook_sse_forward_url(ngx_conf_t *cf,
    ngx_http_webhook_sse_forward_t *fwd, ngx_str_t *url)
{
    ngx_uint_t                         plain;
    ngx_http_compile_complex_value_t   ccv;

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = url;
    ccv.complex_value = &fwd->url;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (fwd->url.lengths) {
        /* checked when a publish evaluates it */
        return NGX_CONF_OK;
    }

    fwd->endpoint.data = ngx_pnalloc(cf->pool,
                                     NGX_HTTP_WEBHOOK_SSE_ENDPOINT_MAX);
    if (fwd->endpoint.data == NULL) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_webhook_sse_forward_endpoint(url->data, url->len,
                                              &fwd->endpoint, &plain)
        != NGX_OK)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid webhook_forward URL \"%V\": an absolute "
                           "http:// or https:// URL is needed", url);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * "scheme://host:port" of an absolute http(s) URL into endpoint->data
 * (NGX_HTTP_WEBHOOK_SSE_ENDPOINT_MAX bytes); libcurl's URL parser, so that
 * the endpoint is what the client will connect to.  No network.
 */

ngx_int_t
ngx_http_webhook_sse_forward_endpoint(u_char *url, size_t len,
    ngx_str_t *endpoint, ngx_uint_t *plain)
{
    u_char     *p;
    char       *scheme, *host, *port;
    CURLU      *h;
    ngx_int_t   rc;
    u_char      copy[NGX_HTTP_WEBHOOK_SSE_URL_MAX + 1];

    if (len == 0 || len > NGX_HTTP_WEBHOOK_SSE_URL_MAX) {
        return NGX_DECLINED;
    }

    for (p = url; p < url + len; p++) {
        if (*p <= 0x20 || *p >= 0x7f) {
            return NGX_DECLINED;
        }
    }

    ngx_memcpy(copy, url, len);
    copy[len] = '\0';

    h = curl_url();
    if (h == NULL) {
        return NGX_ERROR;
    }

    scheme = NULL;
    host = NULL;
    port = NULL;
    rc = NGX_DECLINED;

    if (curl_url_set(h, CURLUPART_URL, (char *) copy, 0) != CURLUE_OK
        || curl_url_get(h, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK
        || curl_url_get(h, CURLUPART_HOST, &host, 0) != CURLUE_OK
        || curl_url_get(h, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT)
           != CURLUE_OK)
    {
        goto done;
    }

    if (ngx_strcmp(scheme, "https") == 0) {
        *plain = 0;

    } else if (ngx_strcmp(scheme, "http") == 0) {
        *plain = 1;

    } else {
        goto done;
    }

    if (ngx_strlen(scheme) + ngx_strlen(host) + ngx_strlen(port) + 4
        > NGX_HTTP_WEBHOOK_SSE_ENDPOINT_MAX)
    {
        goto done;
    }

    p = ngx_sprintf(endpoint->data, "%s://%s:%s", scheme, host, port);
    endpoint->len = p - endpoint->data;

    ngx_strlow(endpoint->data, endpoint->data, endpoint->len);

    rc = NGX_OK;

done:

    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(h);

    return rc;
}


/* the HMAC key of a secret: a whsec_ secret is base64, others are bytes */

ngx_int_t
ngx_http_webhook_sse_forward_key(ngx_str_t *value, ngx_str_t *key,
    ngx_pool_t *pool)
{
    ngx_str_t  src;

    if (value->len < sizeof(NGX_HTTP_WEBHOOK_SSE_WHSEC) - 1
        || ngx_strncmp(value->data, NGX_HTTP_WEBHOOK_SSE_WHSEC,
                       sizeof(NGX_HTTP_WEBHOOK_SSE_WHSEC) - 1) != 0)
    {
        if (value->len == 0
            || value->len > NGX_HTTP_WEBHOOK_SSE_FWD_SECRET_MAX)
        {
            return NGX_DECLINED;
        }

        *key = *value;
        return NGX_OK;
    }

    src.data = value->data + sizeof(NGX_HTTP_WEBHOOK_SSE_WHSEC) - 1;
    src.len = value->len - (sizeof(NGX_HTTP_WEBHOOK_SSE_WHSEC) - 1);

    if (src.len == 0 || ngx_base64_decoded_length(src.len)
                        > NGX_HTTP_WEBHOOK_SSE_FWD_SECRET_MAX)
    {
        return NGX_DECLINED;
    }

    key->data = ngx_pnalloc(pool, ngx_base64_decoded_length(src.len));
    if (key->data == NULL) {
        return NGX_ERROR;
    }

    if (ngx_decode_base64(key, &src) != NGX_OK || key->len == 0) {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/* webhook_callbacks NAME */

char *
ngx_http_webhook_sse_callbacks(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_webhook_sse_loc_conf_t *wlcf = conf;

    ngx_str_t                 *value;
    ngx_http_core_loc_conf_t  *clcf;

    if (wlcf->forward->callbacks) {
        return "is duplicate";
    }

    value = cf->args->elts;

    wlcf->forward->callbacks = ngx_shared_memory_add(cf, &value[1], 0,
                                                &ngx_http_webhook_sse_module);
    if (wlcf->forward->callbacks == NULL) {
        return NGX_CONF_ERROR;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_webhook_sse_callbacks_handler;

    ngx_http_webhook_sse_forwarding = 1;

    return NGX_CONF_OK;
}


/* webhook_forward_retry TIME ... | off */

char *
ngx_http_webhook_sse_forward_retry(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_webhook_sse_loc_conf_t *wlcf = conf;

    ngx_str_t                            *value;
    ngx_uint_t                            i;
    ngx_msec_t                           *ms;
    ngx_http_webhook_sse_forward_conf_t  *fcf;

    fcf = wlcf->forward;

    if (fcf->retry != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    if (cf->args->nelts - 1 > NGX_HTTP_WEBHOOK_SSE_RETRY_MAX) {
        return "has too many waits";
    }

    fcf->retry = ngx_array_create(cf->pool, cf->args->nelts,
                                  sizeof(ngx_msec_t));
    if (fcf->retry == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "off") == 0) {
        return NGX_CONF_OK;
    }

    for (i = 1; i < cf->args->nelts; i++) {
        ms = ngx_array_push(fcf->retry);
        if (ms == NULL) {
            return NGX_CONF_ERROR;
        }

        *ms = ngx_parse_time(&value[i], 0);

        if (*ms == (ngx_msec_t) NGX_ERROR) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid wait \"%V\"", &value[i]);
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


char *
ngx_http_webhook_sse_forward_timeout(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_webhook_sse_loc_conf_t *wlcf = conf;

    ngx_str_t  *value;

    if (wlcf->forward->timeout != NGX_CONF_UNSET_MSEC) {
        return "is duplicate";
    }

    value = cf->args->elts;

    wlcf->forward->timeout = ngx_parse_time(&value[1], 0);

    if (wlcf->forward->timeout == (ngx_msec_t) NGX_ERROR
        || wlcf->forward->timeout == 0)
    {
        return "invalid value";
    }

    return NGX_CONF_OK;
}


char *
ngx_http_webhook_sse_forward_concurrency(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_webhook_sse_loc_conf_t *wlcf = conf;

    ngx_int_t   n;
    ngx_str_t  *value;

    if (wlcf->forward->concurrency != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    n = ngx_atoi(value[1].data, value[1].len);

    if (n <= 0 || n > 10000) {
        return "must be 1 to 10000";
    }

    wlcf->forward->concurrency = n;

    return NGX_CONF_OK;
}


/* webhook_forward_yield time | off */

char *
ngx_http_webhook_sse_forward_yield(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_webhook_sse_loc_conf_t *wlcf = conf;

    ngx_str_t  *value;

    if (wlcf->forward->yield != NGX_CONF_UNSET_MSEC) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        wlcf->forward->yield = 0;
        return NGX_CONF_OK;
    }

    wlcf->forward->yield = ngx_parse_time(&value[1], 0);

    if (wlcf->forward->yield == (ngx_msec_t) NGX_ERROR
        || wlcf->forward->yield > 3600000)
    {
        return "invalid value";
    }

    return NGX_CONF_OK;
}


/* webhook_forward_rate Nr/s | Nr/m | off */

char *
ngx_http_webhook_sse_forward_rate(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_webhook_sse_loc_conf_t *wlcf = conf;

    size_t      len;
    uint64_t    per;
    ngx_int_t   n;
    ngx_str_t  *value;

    if (wlcf->forward->interval != (uint64_t) -1) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        wlcf->forward->interval = 0;
        return NGX_CONF_OK;
    }

    len = value[1].len;

    if (len > 3 && ngx_strncmp(value[1].data + len - 3, "r/s", 3) == 0) {
        per = 1000000;

    } else if (len > 3 && ngx_strncmp(value[1].data + len - 3, "r/m", 3) == 0)
    {
        per = 60000000;

    } else {
        return "must be like 100r/m, 20r/s or off";
    }

    n = ngx_atoi(value[1].data, len - 3);

    if (n <= 0 || n > 1000000) {
        return "must be 1 to 1000000 requests per second or minute";
    }

    wlcf->forward->interval = per / n;

    if (wlcf->forward->interval == 0) {
        wlcf->forward->interval = 1;
    }

    return NGX_CONF_OK;
}


/* webhook_forward_allow all | public | CIDR ... */

char *
ngx_http_webhook_sse_forward_allow(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_webhook_sse_loc_conf_t *wlcf = conf;

    ngx_int_t                      rc;
    ngx_str_t                     *value;
    ngx_uint_t                     i;
    ngx_http_webhook_sse_allow_t  *allow;

    if (wlcf->forward->allow != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    allow = ngx_pcalloc(cf->pool, sizeof(ngx_http_webhook_sse_allow_t));
    if (allow == NULL) {
        return NGX_CONF_ERROR;
    }

    wlcf->forward->allow = allow;
    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strcmp(value[i].data, "all") == 0) {
            allow->all = 1;
            continue;
        }

        if (ngx_strcmp(value[i].data, "public") == 0) {
            allow->public = 1;
            continue;
        }

        if (allow->ncidrs == NGX_HTTP_WEBHOOK_SSE_ALLOW_MAX) {
            return "has too many addresses";
        }

        rc = ngx_ptocidr(&value[i], &allow->cidrs[allow->ncidrs]);

        if (rc == NGX_ERROR) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid address \"%V\": all, public or a "
                               "CIDR", &value[i]);
            return NGX_CONF_ERROR;
        }

        if (rc == NGX_DONE) {
            ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                               "low address bits of %V are meaningless",
                               &value[i]);
        }

        allow->ncidrs++;
    }

    return NGX_CONF_OK;
}


char *
ngx_http_webhook_sse_forward_certificate(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_webhook_sse_loc_conf_t *wlcf = conf;

    ngx_str_t  *value, *path;

    path = &wlcf->forward->trusted_certificate;

    if (path->data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 0) {
        return "must not be empty";
    }

    *path = value[1];

    /* full name, NUL-terminated for libcurl */
    if (ngx_conf_full_name(cf->cycle, path, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* does a CIDR of the list name the address */

ngx_uint_t
ngx_http_webhook_sse_allow_names(ngx_http_webhook_sse_allow_t *allow,
    struct sockaddr *sa)
{
    u_char                *p;
    in_addr_t              a;
    ngx_uint_t             i, n;
    ngx_cidr_t            *c;
    struct sockaddr_in    *sin;
#if (NGX_HAVE_INET6)
    struct sockaddr_in6   *sin6;
#endif

    for (i = 0; i < allow->ncidrs; i++) {
        c = &allow->cidrs[i];

        if (sa->sa_family != c->family) {
            continue;
        }

        if (sa->sa_family == AF_INET) {
            sin = (struct sockaddr_in *) sa;
            a = sin->sin_addr.s_addr;

            if ((a & c->u.in.mask) == c->u.in.addr) {
                return 1;
            }

            continue;
        }

#if (NGX_HAVE_INET6)
        if (sa->sa_family == AF_INET6) {
            sin6 = (struct sockaddr_in6 *) sa;
            p = sin6->sin6_addr.s6_addr;

            for (n = 0; n < 16; n++) {
                if ((p[n] & c->u.in6.mask.s6_addr[n])
                    != c->u.in6.addr.s6_addr[n])
                {
                    break;
                }
            }

            if (n == 16) {
                return 1;
            }
        }
#else
        (void) p;
        (void) n;
#endif
    }

    return 0;
}


ngx_uint_t
ngx_http_webhook_sse_allow_check(ngx_http_webhook_sse_allow_t *allow,
    struct sockaddr *sa)
{
    if (allow->all) {
        return 1;
    }

    if (allow->public && ngx_http_webhook_sse_public_addr(sa)) {
        return 1;
    }

    return ngx_http_webhook_sse_allow_names(allow, sa);
}


/*
 * Not loopback, private, shared (CGNAT), link-local, multicast, reserved
 * or unspecified: an address of the Internet.
 */

static ngx_uint_t
ngx_http_webhook_sse_public_addr(struct sockaddr *sa)
{
    u_char                *p;
    uint32_t               a;
#if (NGX_HAVE_INET6)
    struct sockaddr_in     sin;
    struct sockaddr_in6   *sin6;
#endif

    if (sa->sa_family == AF_INET) {
        a = ntohl(((struct sockaddr_in *) sa)->sin_addr.s_addr);

        return !((a >> 24) == 0                         /* 0/8 */
                 || (a >> 24) == 10                     /* 10/8 */
                 || (a >> 24) == 127                    /* 127/8 */
                 || (a >> 22) == (100 << 2 | 1)         /* 100.64/10 */
                 || (a >> 16) == (169 << 8 | 254)       /* 169.254/16 */
                 || (a >> 20) == (172 << 4 | 1)         /* 172.16/12 */
                 || (a >> 16) == (192 << 8 | 168)       /* 192.168/16 */
                 || (a >> 8) == (192 << 16 | 0 << 8)    /* 192.0.0/24 */
                 || (a >> 17) == (198 << 7 | 9)         /* 198.18/15 */
                 || (a >> 28) >= 14);                   /* 224/4, 240/4 */
    }

#if (NGX_HAVE_INET6)
    if (sa->sa_family == AF_INET6) {
        sin6 = (struct sockaddr_in6 *) sa;
        p = sin6->sin6_addr.s6_addr;

        if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)
            || IN6_IS_ADDR_V4COMPAT(&sin6->sin6_addr))
        {
            ngx_memzero(&sin, sizeof(struct sockaddr_in));
            sin.sin_family = AF_INET;
            ngx_memcpy(&sin.sin_addr, p + 12, 4);

            return ngx_http_webhook_sse_public_addr((struct sockaddr *) &sin);
        }

        /* global unicast is 2000::/3; 64:ff9b::/96 maps IPv4 */
        return (p[0] & 0xe0) == 0x20;
    }
#else
    (void) p;
#endif

    return 0;
}


/*
 * webhook_presence_forward ZONE URL [secret=..]: a session's join and
 * leave belong to the zone, not to a location, and a leave comes with no
 * request (a grace period's end, a killed worker's streams): the URL is a
 * constant, kept with the zone, and the http block's webhook_forward_*
 * settings apply to it.
 */

char *
ngx_http_webhook_sse_presence_forward(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_webhook_sse_loc_conf_t *wlcf = conf;

    char                                     *rv;
    ngx_str_t                                *value;
    ngx_uint_t                                i, plain;
    ngx_http_webhook_sse_zone_t              *zone;
    ngx_http_webhook_sse_forward_t           *fwd;
    ngx_http_webhook_sse_presence_forward_t  *pf;

    value = cf->args->elts;

    zone = ngx_http_webhook_sse_conf_zone(cf, &value[1]);

    if (zone == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%V: no webhook_zone \"%V\" defined before it",
                           &cmd->name, &value[1]);
        return NGX_CONF_ERROR;
    }

    pf = zone->presence_forward;

    if (pf == NULL) {
        pf = ngx_pcalloc(cf->pool,
                         sizeof(ngx_http_webhook_sse_presence_forward_t));
        if (pf == NULL) {
            return NGX_CONF_ERROR;
        }

        pf->forwards = ngx_array_create(cf->pool, 2,
                                      sizeof(ngx_http_webhook_sse_forward_t));
        if (pf->forwards == NULL) {
            return NGX_CONF_ERROR;
        }

        /* the http block's settings, complete once the block is read */
        pf->conf = wlcf->forward;

        zone->presence_forward = pf;
    }

    if (pf->forwards->nelts == NGX_HTTP_WEBHOOK_SSE_EVENT_URLS_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%V: more than %d URLs for zone \"%V\"",
                           &cmd->name, NGX_HTTP_WEBHOOK_SSE_EVENT_URLS_MAX,
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    fwd = ngx_array_push(pf->forwards);
    if (fwd == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(fwd, sizeof(ngx_http_webhook_sse_forward_t));

    for (i = 3; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "secret=", 7) == 0) {
            rv = ngx_http_webhook_sse_forward_secret(cf, &cmd->name,
                                                     &value[i], fwd);
            if (rv != NGX_CONF_OK) {
                return rv;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    if (ngx_http_script_variables_count(&value[2]) != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid %V URL \"%V\": an absolute http:// or "
                           "https:// URL without variables is needed (a "
                           "close comes with no request to evaluate them)",
                           &cmd->name, &value[2]);
        return NGX_CONF_ERROR;
    }

    fwd->url.value = value[2];

    fwd->endpoint.data = ngx_pnalloc(cf->pool,
                                     NGX_HTTP_WEBHOOK_SSE_ENDPOINT_MAX);
    if (fwd->endpoint.data == NULL) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_webhook_sse_forward_endpoint(value[2].data, value[2].len,
                                              &fwd->endpoint, &plain)
        != NGX_OK)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid %V URL \"%V\": an absolute http:// or "
                           "https:// URL without variables is needed",
                           &cmd->name, &value[2]);
        return NGX_CONF_ERROR;
    }

    ngx_http_webhook_sse_forwarding = 1;

    return NGX_CONF_OK;
}


/*
 * Once the configuration is read: the webhook_forward_* settings of the
 * http block, their defaults where unset, for each zone's presence
 * forwards, and the limits of their endpoints.
 */

ngx_int_t
ngx_http_webhook_sse_presence_forward_init(ngx_conf_t *cf)
{
    ngx_uint_t                                i, j;
    ngx_http_webhook_sse_zone_t             **zones;
    ngx_http_webhook_sse_forward_t           *fwd;
    ngx_http_webhook_sse_loc_conf_t           parent, child;
    ngx_http_webhook_sse_main_conf_t         *wmcf;
    ngx_http_webhook_sse_forward_limit_t     *limit;
    ngx_http_webhook_sse_presence_forward_t  *pf;

    wmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_webhook_sse_module);
    zones = wmcf->zones.elts;

    for (i = 0; i < wmcf->zones.nelts; i++) {
        pf = zones[i]->presence_forward;

        if (pf == NULL) {
            continue;
        }

        ngx_memzero(&parent, sizeof(ngx_http_webhook_sse_loc_conf_t));
        ngx_memzero(&child, sizeof(ngx_http_webhook_sse_loc_conf_t));

        parent.forward = pf->conf;

        child.forward = ngx_http_webhook_sse_forward_create_conf(cf);
        if (child.forward == NULL) {
            return NGX_ERROR;
        }

        if (ngx_http_webhook_sse_forward_merge(cf, &parent, &child)
            != NGX_CONF_OK)
        {
            return NGX_ERROR;
        }

        pf->conf = child.forward;

        if (ngx_http_webhook_sse_limits == NULL) {
            ngx_http_webhook_sse_limits = ngx_array_create(cf->pool, 4,
                                sizeof(ngx_http_webhook_sse_forward_limit_t));
            if (ngx_http_webhook_sse_limits == NULL) {
                return NGX_ERROR;
            }
        }

        fwd = pf->forwards->elts;

        for (j = 0; j < pf->forwards->nelts; j++) {
            limit = ngx_array_push(ngx_http_webhook_sse_limits);
            if (limit == NULL) {
                return NGX_ERROR;
            }

            limit->zone = zones[i]->shm_zone;
            limit->endpoint = fwd[j].endpoint;
            limit->concurrency = pf->conf->concurrency;
            limit->interval = pf->conf->interval;
        }
    }

    return NGX_OK;
}
