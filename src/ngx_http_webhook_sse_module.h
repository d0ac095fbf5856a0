
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


typedef struct {
    ngx_shm_zone_t              *publish;
    ngx_shm_zone_t              *stream;
    ngx_shm_zone_t              *status;

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

    /* empty string: off */
    ngx_str_t                    session_field;
    ngx_str_t                    message_field;

    /* the key naming the session in events: the field, else "sessionId" */
    ngx_str_t                    session_key;

    ngx_msec_t                   heartbeat;
    ngx_uint_t                   replay;
    size_t                       stream_buffer;
    ngx_flag_t                   detach;

    /* webhook_session's value comes from the query string */
    unsigned                     session_from_args:1;

    /* outbound delivery (ngx_http_webhook_sse_forward_conf.c) */
    ngx_http_webhook_sse_forward_conf_t  *forward;
} ngx_http_webhook_sse_loc_conf_t;


typedef struct ngx_http_webhook_sse_lchannel_s  ngx_http_webhook_sse_lchannel_t;
typedef struct ngx_http_webhook_sse_event_s  ngx_http_webhook_sse_event_t;


/* one formatted SSE event in worker memory, shared by the streams */
struct ngx_http_webhook_sse_event_s {
    ngx_http_webhook_sse_event_t  *next;
    ngx_uint_t                     refs;
    uint64_t                       seq;
    ngx_http_webhook_sse_lchannel_t  *channel;
    size_t                         len;
    u_char                         data[1];
};


typedef struct ngx_http_webhook_sse_out_s  ngx_http_webhook_sse_out_t;

/* a stream's view of an event (or of a static text) on its way out */
struct ngx_http_webhook_sse_out_s {
    ngx_buf_t                      buf;
    ngx_chain_t                    cl;
    ngx_http_webhook_sse_event_t  *event;
    ngx_http_webhook_sse_out_t    *next;
    /* a chunk size line of a detached stream */
    u_char                         chunk[NGX_OFF_T_LEN + 2];
};


/* per request: publish and stream; a detached stream outlives its request */
typedef struct {
    ngx_http_request_t          *request;
    ngx_connection_t            *connection;
    ngx_http_webhook_sse_loc_conf_t  *conf;
    ngx_msec_t                   send_timeout;
    ngx_http_webhook_sse_zone_t *zone;

    ngx_str_t                    session;
    u_char                       message_id[NGX_HTTP_WEBHOOK_SSE_ID_LEN];
    size_t                       message_id_len;

    /* the JSON replacing an error page nginx made itself */
    ngx_str_t                    error;

    /* streams only */
    ngx_http_webhook_sse_lchannel_t  *channel;
    ngx_queue_t                  channel_link;
    ngx_queue_t                  zone_link;
    ngx_queue_t                  touched_link;
    uint64_t                     cursor;
    ngx_event_t                  heartbeat;

    /* appended, not yet handed to the output filters */
    ngx_http_webhook_sse_out_t  *queued;
    ngx_http_webhook_sse_out_t **queued_last;

    /* handed to the output filters, not yet sent */
    ngx_http_webhook_sse_out_t  *busy;
    ngx_http_webhook_sse_out_t **busy_last;
    size_t                       pending;

    /* the opening replay, allowed on top of webhook_stream_buffer */
    size_t                       slack;

    unsigned                     subscribed:1;
    unsigned                     touched:1;
    unsigned                     ending:1;
    unsigned                     failed:1;
    unsigned                     detach:1;
    unsigned                     detach_later:1;
    unsigned                     detached:1;
    unsigned                     chunked:1;
} ngx_http_webhook_sse_ctx_t;


extern ngx_module_t  ngx_http_webhook_sse_module;


ngx_int_t ngx_http_webhook_sse_publish_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_webhook_sse_stream_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_webhook_sse_status_handler(ngx_http_request_t *r);

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
ngx_int_t ngx_http_webhook_sse_get_session(ngx_http_request_t *r,
    ngx_http_webhook_sse_loc_conf_t *wlcf, ngx_str_t *session);

ngx_int_t ngx_http_webhook_sse_error_filter_init(ngx_conf_t *cf);

/* secrets and HMAC (ngx_http_webhook_sse_secret.c) */
char *ngx_http_webhook_sse_conf_secret(ngx_conf_t *cf, ngx_str_t *name,
    ngx_str_t *value, ngx_str_t *secret);
char *ngx_http_webhook_sse_read_secret(ngx_conf_t *cf, ngx_str_t *name,
    ngx_str_t *value, ngx_str_t *secret);
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
    ngx_str_t *delivery, const char **error);
char *ngx_http_webhook_sse_verify_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/* who may read a stream (ngx_http_webhook_sse_token.c) */
ngx_uint_t ngx_http_webhook_sse_check_token(ngx_http_request_t *r,
    ngx_http_webhook_sse_loc_conf_t *wlcf, ngx_str_t *session,
    const char **error);
char *ngx_http_webhook_sse_token_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/* cross-worker doorbells (ngx_http_webhook_sse_notify.c) */
ngx_int_t ngx_http_webhook_sse_notify_init(ngx_cycle_t *cycle,
    ngx_http_webhook_sse_zone_t *zone);
void ngx_http_webhook_sse_notify_ring(ngx_http_webhook_sse_zone_t *zone,
    ngx_pid_t pid);
void ngx_http_webhook_sse_notify_exit(ngx_http_webhook_sse_zone_t *zone);

/* delivery to local streams (ngx_http_webhook_sse_stream.c) */
void ngx_http_webhook_sse_deliver(ngx_http_webhook_sse_zone_t *zone);
void ngx_http_webhook_sse_end_streams(ngx_http_webhook_sse_zone_t *zone);


#endif /* _NGX_HTTP_WEBHOOK_SSE_MODULE_H_INCLUDED_ */
