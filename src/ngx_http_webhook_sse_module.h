
/*
 * nginx-webhook-sse: types shared by the module's files.
 */


#ifndef _NGX_HTTP_WEBHOOK_SSE_MODULE_H_INCLUDED_
#define _NGX_HTTP_WEBHOOK_SSE_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_webhook_sse_json.h"
#include "ngx_http_webhook_sse_store.h"
#include "ngx_http_webhook_sse_forward.h"


/* "<epoch>-<seq>": two 64-bit decimals and a dash */
#define NGX_HTTP_WEBHOOK_SSE_ID_LEN  (2 * NGX_INT64_LEN + 1)

/* HMAC-SHA256 */
#define NGX_HTTP_WEBHOOK_SSE_MAC_LEN    32

/* secrets one webhook_verify may hold at once (key rotation) */
#define NGX_HTTP_WEBHOOK_SSE_MAX_KEYS   8

#define NGX_HTTP_WEBHOOK_SSE_VERIFY_OFF       0
#define NGX_HTTP_WEBHOOK_SSE_VERIFY_STANDARD  1
#define NGX_HTTP_WEBHOOK_SSE_VERIFY_GITHUB    2

/* webhook_stream_transports: the ways a stream location may be read */
#define NGX_HTTP_WEBHOOK_SSE_SSE              0x0002
#define NGX_HTTP_WEBHOOK_SSE_WEBSOCKET        0x0004
#define NGX_HTTP_WEBHOOK_SSE_LONGPOLL         0x0008


typedef struct {
    ngx_shm_zone_t              *publish;
    ngx_shm_zone_t              *stream;
    ngx_shm_zone_t              *status;
    ngx_shm_zone_t              *presence;
    ngx_shm_zone_t              *history;

    ngx_http_complex_value_t    *session;
    ngx_http_complex_value_t    *secret;

    /* webhook_verify: the scheme, its keys (ngx_str_t), seconds */
    ngx_uint_t                   verify;
    ngx_array_t                 *verify_keys;
    time_t                       verify_tolerance;

    /* webhook_stream_token: keys (ngx_str_t) or NULL, and where it is */
    ngx_array_t                 *token_keys;
    ngx_http_complex_value_t    *token;

    /* webhook_idempotency: the window, 0 when off */
    ngx_msec_t                   idempotency;

    /* webhook_publish_response: parts of the template, NULL: default */
    ngx_array_t                 *publish_response;

    /* empty string: off */
    ngx_str_t                    session_field;
    ngx_str_t                    message_field;

    /* the key naming the session in events: the field, else "sessionId" */
    ngx_str_t                    session_key;

    ngx_msec_t                   heartbeat;
    ngx_uint_t                   replay;
    size_t                       stream_buffer;
    ngx_flag_t                   detach;

    /* webhook_stream_transports (bits), webhook_longpoll_timeout */
    ngx_uint_t                   transports;
    ngx_msec_t                   longpoll_timeout;

    /* webhook_presence_grace, webhook_presence_events */
    ngx_msec_t                   presence_grace;
    ngx_flag_t                   presence_events;

    /* webhook_session's value comes from the query string */
    unsigned                     session_from_args:1;

    /* outbound delivery (ngx_http_webhook_sse_forward_conf.c) */
    ngx_http_webhook_sse_forward_conf_t  *forward;
} ngx_http_webhook_sse_loc_conf_t;


/* the zones the configuration defines (ngx_http_webhook_sse_zone_t *) */
typedef struct {
    ngx_array_t                  zones;
} ngx_http_webhook_sse_main_conf_t;


/* per request (publish, stream, error pages): what logs and variables see */
typedef struct {
    ngx_str_t                    session;
    u_char                       message_id[NGX_HTTP_WEBHOOK_SSE_ID_LEN];
    size_t                       message_id_len;
    /* the message's time, Unix milliseconds */
    int64_t                      message_time;

    /* the JSON replacing an error page nginx made itself */
    ngx_str_t                    error;
} ngx_http_webhook_sse_ctx_t;


extern ngx_module_t  ngx_http_webhook_sse_module;


ngx_int_t ngx_http_webhook_sse_publish_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_webhook_sse_publish_answer(ngx_http_request_t *r,
    ngx_http_webhook_sse_loc_conf_t *wlcf, ngx_http_webhook_sse_ctx_t *ctx);
ngx_int_t ngx_http_webhook_sse_stream_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_webhook_sse_status_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_webhook_sse_presence_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_webhook_sse_history_handler(ngx_http_request_t *r);

ngx_int_t ngx_http_webhook_sse_send_json(ngx_http_request_t *r,
    ngx_uint_t status, u_char *body, size_t len);
ngx_int_t ngx_http_webhook_sse_send_response(ngx_http_request_t *r,
    ngx_uint_t status, ngx_str_t *type, u_char *body, size_t len);
ngx_int_t ngx_http_webhook_sse_send_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *error);
ngx_int_t ngx_http_webhook_sse_reject(ngx_http_request_t *r,
    ngx_uint_t status, const char *error);
ngx_int_t ngx_http_webhook_sse_add_header(ngx_http_request_t *r, char *key,
    char *value);
ngx_table_elt_t *ngx_http_webhook_sse_find_header(ngx_http_request_t *r,
    ngx_str_t *name);
ngx_int_t ngx_http_webhook_sse_read_body(ngx_http_request_t *r,
    ngx_str_t *body);
ngx_int_t ngx_http_webhook_sse_session_value(ngx_http_request_t *r,
    ngx_http_webhook_sse_loc_conf_t *wlcf, ngx_str_t *session,
    const char **error);
ngx_int_t ngx_http_webhook_sse_log_escape(ngx_pool_t *pool, ngx_str_t *src,
    ngx_str_t *dst);
ngx_int_t ngx_http_webhook_sse_form_unescape(ngx_pool_t *pool,
    ngx_str_t *value);

ngx_int_t ngx_http_webhook_sse_error_filter_init(ngx_conf_t *cf);

/* secrets and HMAC (ngx_http_webhook_sse_secret.c) */
char *ngx_http_webhook_sse_conf_secret(ngx_conf_t *cf, ngx_str_t *name,
    ngx_str_t *value, ngx_str_t *secret);
char *ngx_http_webhook_sse_read_secret(ngx_conf_t *cf, ngx_str_t *name,
    ngx_str_t *value, ngx_str_t *secret);
void ngx_http_webhook_sse_secrets_reset(void);
ngx_int_t ngx_http_webhook_sse_secrets_check(ngx_conf_t *cf);
ngx_int_t ngx_http_webhook_sse_hmac_sha256(ngx_str_t *key, u_char *data,
    size_t len, u_char *mac);
ngx_uint_t ngx_http_webhook_sse_mac_equal(u_char *a, u_char *b);
ngx_int_t ngx_http_webhook_sse_match(ngx_array_t *keys, ngx_str_t *data,
    u_char *mac);
ngx_int_t ngx_http_webhook_sse_mac_from_hex(u_char *mac, u_char *hex,
    size_t len);
ngx_int_t ngx_http_webhook_sse_digest(ngx_str_t *a, ngx_str_t *b,
    u_char *digest);

/* who may publish (ngx_http_webhook_sse_verify.c) */
ngx_uint_t ngx_http_webhook_sse_check_secret(ngx_http_request_t *r,
    ngx_http_webhook_sse_loc_conf_t *wlcf, const char **error);
ngx_uint_t ngx_http_webhook_sse_verify(ngx_http_request_t *r,
    ngx_http_webhook_sse_loc_conf_t *wlcf, ngx_str_t *body,
    ngx_str_t *delivery, ngx_str_t *header, const char **error);
char *ngx_http_webhook_sse_verify_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/* the answer to a publish (ngx_http_webhook_sse_response.c) */
char *ngx_http_webhook_sse_response_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_webhook_sse_response_render(ngx_http_request_t *r,
    ngx_array_t *parts, ngx_str_t *body);

/* who may read a stream (ngx_http_webhook_sse_token.c) */
ngx_uint_t ngx_http_webhook_sse_check_token(ngx_http_request_t *r,
    ngx_http_webhook_sse_loc_conf_t *wlcf, ngx_str_t *session,
    const char **error);
char *ngx_http_webhook_sse_token_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/*
 * Cross-worker doorbells (ngx_http_webhook_sse_notify.c): a rung doorbell
 * calls "ring" with "data"; a worker told to shut down calls "close".
 */
typedef void (*ngx_http_webhook_sse_notify_pt)(void *data);

ngx_int_t ngx_http_webhook_sse_notify_init(ngx_cycle_t *cycle,
    ngx_http_webhook_sse_zone_t *zone, ngx_http_webhook_sse_notify_pt ring_handler,
    ngx_http_webhook_sse_notify_pt close_handler, void *data);
void ngx_http_webhook_sse_notify_wake(ngx_http_webhook_sse_zone_t *zone,
    ngx_pid_t pid);
void ngx_http_webhook_sse_notify_exit(ngx_http_webhook_sse_zone_t *zone);


#endif /* _NGX_HTTP_WEBHOOK_SSE_MODULE_H_INCLUDED_ */
