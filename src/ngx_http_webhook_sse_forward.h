
/*
 * nginx-webhook-sse: outbound delivery, the parts the other files see:
 * the configuration (ngx_http_webhook_sse_forward_conf.c), the queue in
 * the zone (ngx_http_webhook_sse_outbox.c) and the HTTP client on
 * libcurl (ngx_http_webhook_sse_curl.c).
 */


#ifndef _NGX_HTTP_WEBHOOK_SSE_FORWARD_H_INCLUDED_
#define _NGX_HTTP_WEBHOOK_SSE_FORWARD_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_webhook_sse_store.h"


/* waits of webhook_forward_retry, entries of webhook_forward_allow */
#define NGX_HTTP_WEBHOOK_SSE_RETRY_MAX       16
#define NGX_HTTP_WEBHOOK_SSE_ALLOW_MAX       16

/* URLs of one zone's webhook_presence_forward */
#define NGX_HTTP_WEBHOOK_SSE_EVENT_URLS_MAX  16

#define NGX_HTTP_WEBHOOK_SSE_FORMAT_EVENT         0
#define NGX_HTTP_WEBHOOK_SSE_FORMAT_CONVERSATION  1

/* "https://" host ":" port, the key of an endpoint */
#define NGX_HTTP_WEBHOOK_SSE_ENDPOINT_MAX    300
#define NGX_HTTP_WEBHOOK_SSE_URL_MAX         2048
#define NGX_HTTP_WEBHOOK_SSE_FWD_SECRET_MAX  256
#define NGX_HTTP_WEBHOOK_SSE_FWD_ERROR_LEN   120


/* which addresses a run-time URL may connect to */
typedef struct {
    ngx_uint_t                   all;
    ngx_uint_t                   public;
    ngx_uint_t                   ncidrs;
    ngx_cidr_t                   cidrs[NGX_HTTP_WEBHOOK_SSE_ALLOW_MAX];
} ngx_http_webhook_sse_allow_t;


/* one webhook_forward */
typedef struct {
    ngx_http_complex_value_t     url;
    /* of a URL without variables, checked when the configuration loads */
    ngx_str_t                    endpoint;
    /* the HMAC key (a whsec_ secret decoded), empty: unsigned */
    ngx_str_t                    secret;
    ngx_uint_t                   format;
} ngx_http_webhook_sse_forward_t;


typedef struct {
    ngx_array_t                 *forwards;
    ngx_array_t                 *retry;
    ngx_msec_t                   timeout;
    ngx_uint_t                   concurrency;
    /* microseconds between two starts, 0: no limit */
    uint64_t                     interval;
    /* how long deliveries may wait while the worker serves publishes */
    ngx_msec_t                   yield;
    ngx_http_webhook_sse_allow_t  *allow;
    /* NUL-terminated path, empty: the system's CAs */
    ngx_str_t                    trusted_certificate;
    /* webhook_callbacks */
    ngx_shm_zone_t              *callbacks;
} ngx_http_webhook_sse_forward_conf_t;


/*
 * webhook_presence_forward: where a zone's joins and leaves are POSTed,
 * with the http block's webhook_forward_* settings
 */
typedef struct {
    ngx_array_t                 *forwards;
    ngx_http_webhook_sse_forward_conf_t  *conf;
} ngx_http_webhook_sse_presence_forward_t;


/* the limits a configuration sets on an endpoint of a constant URL */
typedef struct {
    ngx_shm_zone_t              *zone;
    ngx_str_t                    endpoint;
    ngx_uint_t                   concurrency;
    uint64_t                     interval;
    ngx_msec_t                   yield;
} ngx_http_webhook_sse_forward_limit_t;


/* what the HTTP client is asked to do */
typedef struct {
    char                        *url;
    ngx_str_t                    body;
    /* "Name: value" lines, NULL-terminated */
    char                       **headers;
    ngx_msec_t                   timeout;
    char                        *cainfo;
    /* NULL: any address (URLs of nginx.conf) */
    ngx_http_webhook_sse_allow_t  *allow;
    /* plain http:// only to addresses the allow list names */
    ngx_uint_t                   plain;
} ngx_http_webhook_sse_post_t;


/* and what came of it */
typedef struct {
    /* 0: no answer (network, TLS, timeout, refused address) */
    ngx_uint_t                   status;
    /* Retry-After in seconds, 0: none */
    time_t                       retry_after;
    ngx_uint_t                   timed_out;
    char                         error[NGX_HTTP_WEBHOOK_SSE_FWD_ERROR_LEN];
} ngx_http_webhook_sse_post_result_t;


typedef void (*ngx_http_webhook_sse_post_done_pt)(void *data,
    ngx_http_webhook_sse_post_result_t *result);


/* configuration (ngx_http_webhook_sse_forward_conf.c) */
ngx_http_webhook_sse_forward_conf_t *ngx_http_webhook_sse_forward_create_conf(
    ngx_conf_t *cf);
char *ngx_http_webhook_sse_forward_merge(ngx_conf_t *cf, void *parent,
    void *child);
char *ngx_http_webhook_sse_forward(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_webhook_sse_forward_retry(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_webhook_sse_forward_timeout(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
char *ngx_http_webhook_sse_forward_concurrency(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
char *ngx_http_webhook_sse_forward_rate(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_webhook_sse_forward_yield(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_webhook_sse_forward_allow(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_webhook_sse_forward_certificate(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
char *ngx_http_webhook_sse_callbacks(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_webhook_sse_presence_forward(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
ngx_int_t ngx_http_webhook_sse_presence_forward_init(ngx_conf_t *cf);
ngx_int_t ngx_http_webhook_sse_forward_endpoint(u_char *url, size_t len,
    ngx_str_t *endpoint, ngx_uint_t *plain);
ngx_int_t ngx_http_webhook_sse_forward_key(ngx_str_t *value, ngx_str_t *key,
    ngx_pool_t *pool);
ngx_uint_t ngx_http_webhook_sse_allow_names(ngx_http_webhook_sse_allow_t *allow,
    struct sockaddr *sa);
ngx_uint_t ngx_http_webhook_sse_forward_used(void);
ngx_uint_t ngx_http_webhook_sse_forward_generation(void);
ngx_array_t *ngx_http_webhook_sse_forward_limits(void);
ngx_uint_t ngx_http_webhook_sse_allow_check(
    ngx_http_webhook_sse_allow_t *allow, struct sockaddr *sa);

/* webhook_callbacks (ngx_http_webhook_sse_callbacks.c) */
ngx_int_t ngx_http_webhook_sse_callbacks_handler(ngx_http_request_t *r);

/* the HTTP client (ngx_http_webhook_sse_curl.c) */
ngx_int_t ngx_http_webhook_sse_curl_init(ngx_cycle_t *cycle);
void ngx_http_webhook_sse_curl_exit(void);
ngx_int_t ngx_http_webhook_sse_curl_post(ngx_http_webhook_sse_post_t *post,
    ngx_http_webhook_sse_post_done_pt done, void *data);

/* the queue (ngx_http_webhook_sse_outbox.c) */
ngx_int_t ngx_http_webhook_sse_outbox_init_process(ngx_cycle_t *cycle);
void ngx_http_webhook_sse_outbox_exit_process(ngx_cycle_t *cycle);
ngx_int_t ngx_http_webhook_sse_outbox_admit(ngx_http_request_t *r);
void ngx_http_webhook_sse_outbox_enqueue(ngx_http_request_t *r,
    ngx_str_t *session, ngx_str_t *id, int64_t time, ngx_str_t *extra,
    ngx_str_t *members);
ngx_int_t ngx_http_webhook_sse_outbox_register(
    ngx_http_webhook_sse_zone_t *zone, ngx_str_t *session, ngx_str_t *url,
    ngx_str_t *secret);
ngx_int_t ngx_http_webhook_sse_outbox_callback(
    ngx_http_webhook_sse_zone_t *zone, ngx_str_t *session, ngx_str_t *url,
    ngx_str_t *secret);
ngx_int_t ngx_http_webhook_sse_outbox_unregister(
    ngx_http_webhook_sse_zone_t *zone, ngx_str_t *session);
void ngx_http_webhook_sse_outbox_event(ngx_http_webhook_sse_zone_t *zone,
    ngx_array_t *forwards, ngx_http_webhook_sse_forward_conf_t *fcf,
    ngx_str_t *prefix, ngx_str_t *body);
ngx_uint_t ngx_http_webhook_sse_outbox_redrive(
    ngx_http_webhook_sse_zone_t *zone, ngx_str_t *endpoint);
ngx_int_t ngx_http_webhook_sse_outbox_status(ngx_http_request_t *r,
    ngx_http_webhook_sse_zone_t *zone, ngx_uint_t prometheus,
    ngx_str_t *out);


#endif /* _NGX_HTTP_WEBHOOK_SSE_FORWARD_H_INCLUDED_ */
