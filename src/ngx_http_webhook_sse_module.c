
/*
 * nginx-webhook-sse: directives, configuration, variables and the worker
 * life cycle.  Handlers and what they share live in their own files.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_webhook_sse_module.h"
#include "ngx_http_webhook_sse_stream.h"
#include "ngx_http_webhook_sse_redis.h"
#include "ngx_http_webhook_sse_persist.h"


#define NGX_HTTP_WEBHOOK_SSE_FIELD_MAX  128


static ngx_int_t ngx_http_webhook_sse_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_http_webhook_sse_init(ngx_conf_t *cf);
static void *ngx_http_webhook_sse_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_webhook_sse_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_webhook_sse_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_webhook_sse_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_webhook_sse_handler_slot(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_webhook_sse_session(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_webhook_sse_field(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_webhook_sse_secret(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_webhook_sse_time_or_off(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static ngx_int_t ngx_http_webhook_sse_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_webhook_sse_session_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v);
static ngx_int_t ngx_http_webhook_sse_init_process(ngx_cycle_t *cycle);
static void ngx_http_webhook_sse_exit_process(ngx_cycle_t *cycle);
static ngx_int_t ngx_http_webhook_sse_init_module(ngx_cycle_t *cycle);
static void ngx_http_webhook_sse_exit_master(ngx_cycle_t *cycle);


static ngx_conf_num_bounds_t  ngx_http_webhook_sse_replay_bounds = {
    ngx_conf_check_num_bounds, 0, 100000
};


static ngx_conf_bitmask_t  ngx_http_webhook_sse_transports[] = {
    { ngx_string("sse"), NGX_HTTP_WEBHOOK_SSE_SSE },
    { ngx_string("websocket"), NGX_HTTP_WEBHOOK_SSE_WEBSOCKET },
    { ngx_string("longpoll"), NGX_HTTP_WEBHOOK_SSE_LONGPOLL },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_http_webhook_sse_commands[] = {

    { ngx_string("webhook_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1234,
      ngx_http_webhook_sse_zone,
      0,
      0,
      NULL },

    { ngx_string("webhook_redis"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_2MORE,
      ngx_http_webhook_sse_redis_conf,
      0,
      0,
      NULL },

    { ngx_string("webhook_publish"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_webhook_sse_handler_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_webhook_sse_loc_conf_t, publish),
      NULL },

    { ngx_string("webhook_stream"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_webhook_sse_handler_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_webhook_sse_loc_conf_t, stream),
      NULL },

    { ngx_string("webhook_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_webhook_sse_handler_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_webhook_sse_loc_conf_t, status),
      NULL },

    { ngx_string("webhook_presence"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_webhook_sse_handler_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_webhook_sse_loc_conf_t, presence),
      NULL },

    { ngx_string("webhook_history"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_webhook_sse_handler_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_webhook_sse_loc_conf_t, history),
      NULL },

    { ngx_string("webhook_presence_grace"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_webhook_sse_time_or_off,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_webhook_sse_loc_conf_t, presence_grace),
      NULL },

    { ngx_string("webhook_presence_events"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_webhook_sse_loc_conf_t, presence_events),
      NULL },

    { ngx_string("webhook_session"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_webhook_sse_session,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("webhook_session_field"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_webhook_sse_field,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_webhook_sse_loc_conf_t, session_field),
      NULL },

    { ngx_string("webhook_message_field"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_webhook_sse_field,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_webhook_sse_loc_conf_t, message_field),
      NULL },

    { ngx_string("webhook_secret"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_webhook_sse_secret,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("webhook_verify"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_webhook_sse_verify_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("webhook_idempotency"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_webhook_sse_time_or_off,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_webhook_sse_loc_conf_t, idempotency),
      NULL },

    { ngx_string("webhook_publish_response"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_webhook_sse_response_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("webhook_stream_token"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_webhook_sse_token_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("webhook_heartbeat"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_webhook_sse_time_or_off,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_webhook_sse_loc_conf_t, heartbeat),
      NULL },

    { ngx_string("webhook_replay"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_webhook_sse_loc_conf_t, replay),
      &ngx_http_webhook_sse_replay_bounds },

    { ngx_string("webhook_stream_buffer"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_webhook_sse_loc_conf_t, stream_buffer),
      NULL },

    { ngx_string("webhook_stream_detach"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_webhook_sse_loc_conf_t, detach),
      NULL },

    { ngx_string("webhook_stream_transports"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_conf_set_bitmask_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_webhook_sse_loc_conf_t, transports),
      &ngx_http_webhook_sse_transports },

    { ngx_string("webhook_longpoll_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_webhook_sse_loc_conf_t, longpoll_timeout),
      NULL },

    { ngx_string("webhook_forward"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE123,
      ngx_http_webhook_sse_forward,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("webhook_presence_forward"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE23,
      ngx_http_webhook_sse_presence_forward,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("webhook_callbacks"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_webhook_sse_callbacks,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("webhook_forward_retry"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_webhook_sse_forward_retry,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("webhook_forward_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_webhook_sse_forward_timeout,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("webhook_forward_concurrency"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_webhook_sse_forward_concurrency,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("webhook_forward_yield"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_webhook_sse_forward_yield,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("webhook_forward_rate"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_webhook_sse_forward_rate,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("webhook_forward_allow"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_webhook_sse_forward_allow,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("webhook_forward_trusted_certificate"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_webhook_sse_forward_certificate,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_webhook_sse_module_ctx = {
    ngx_http_webhook_sse_add_variables,    /* preconfiguration */
    ngx_http_webhook_sse_init,             /* postconfiguration */

    ngx_http_webhook_sse_create_main_conf, /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_webhook_sse_create_loc_conf,  /* create location configuration */
    ngx_http_webhook_sse_merge_loc_conf    /* merge location configuration */
};


ngx_module_t  ngx_http_webhook_sse_module = {
    NGX_MODULE_V1,
    &ngx_http_webhook_sse_module_ctx,      /* module context */
    ngx_http_webhook_sse_commands,         /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    ngx_http_webhook_sse_init_module,      /* init module */
    ngx_http_webhook_sse_init_process,     /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_webhook_sse_exit_process,     /* exit process */
    ngx_http_webhook_sse_exit_master,      /* exit master */
    NGX_MODULE_V1_PADDING
};


#define NGX_HTTP_WEBHOOK_SSE_VAR_MESSAGE_ID  0
#define NGX_HTTP_WEBHOOK_SSE_VAR_SESSION     1
#define NGX_HTTP_WEBHOOK_SSE_VAR_TIMESTAMP   2


static ngx_http_variable_t  ngx_http_webhook_sse_vars[] = {

    { ngx_string("webhook_message_id"), NULL,
      ngx_http_webhook_sse_variable, NGX_HTTP_WEBHOOK_SSE_VAR_MESSAGE_ID,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("webhook_session"), NULL,
      ngx_http_webhook_sse_variable, NGX_HTTP_WEBHOOK_SSE_VAR_SESSION,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("webhook_timestamp"), NULL,
      ngx_http_webhook_sse_variable, NGX_HTTP_WEBHOOK_SSE_VAR_TIMESTAMP,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_str_t  ngx_http_webhook_sse_default_session =
    ngx_string("$arg_sessionId");


static ngx_int_t
ngx_http_webhook_sse_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    ngx_http_webhook_sse_secrets_reset();

    for (v = ngx_http_webhook_sse_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


/* every zone named by webhook_publish or webhook_stream must be defined */

static ngx_int_t
ngx_http_webhook_sse_init(ngx_conf_t *cf)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_shm_zone_t   *shm_zone;

    part = &cf->cycle->shared_memory.part;
    shm_zone = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            shm_zone = part->elts;
            i = 0;
        }

        if (shm_zone[i].tag == &ngx_http_webhook_sse_module
            && shm_zone[i].data == NULL)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "unknown webhook zone \"%V\": no webhook_zone "
                               "defines it", &shm_zone[i].shm.name);
            return NGX_ERROR;
        }
    }

    if (ngx_http_webhook_sse_secrets_check(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_webhook_sse_presence_forward_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_webhook_sse_error_filter_init(cf);
}


static void *
ngx_http_webhook_sse_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_webhook_sse_main_conf_t  *wmcf;

    wmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_webhook_sse_main_conf_t));
    if (wmcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&wmcf->zones, cf->pool, 2,
                       sizeof(ngx_http_webhook_sse_zone_t *))
        != NGX_OK)
    {
        return NULL;
    }

    return wmcf;
}


static void *
ngx_http_webhook_sse_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_webhook_sse_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_webhook_sse_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->publish = NULL;
     *     conf->stream = NULL;
     *     conf->status = NULL;
     *     conf->session_field = { 0, NULL };
     *     conf->message_field = { 0, NULL };
     *     conf->session_from_args = 0;
     *     conf->transports = 0;
     */

    conf->session = NGX_CONF_UNSET_PTR;
    conf->secret = NGX_CONF_UNSET_PTR;
    conf->verify = NGX_CONF_UNSET_UINT;
    conf->token_keys = NGX_CONF_UNSET_PTR;
    conf->idempotency = NGX_CONF_UNSET_MSEC;
    conf->publish_response = NGX_CONF_UNSET_PTR;
    conf->heartbeat = NGX_CONF_UNSET_MSEC;
    conf->replay = NGX_CONF_UNSET_UINT;
    conf->stream_buffer = NGX_CONF_UNSET_SIZE;
    conf->detach = NGX_CONF_UNSET;
    conf->longpoll_timeout = NGX_CONF_UNSET_MSEC;
    conf->presence_grace = NGX_CONF_UNSET_MSEC;
    conf->presence_events = NGX_CONF_UNSET;

    conf->forward = ngx_http_webhook_sse_forward_create_conf(cf);
    if (conf->forward == NULL) {
        return NULL;
    }

    return conf;
}


static char *
ngx_http_webhook_sse_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_http_webhook_sse_loc_conf_t *prev = parent;
    ngx_http_webhook_sse_loc_conf_t *conf = child;

    ngx_http_compile_complex_value_t   ccv;

    if (conf->session == NGX_CONF_UNSET_PTR
        && prev->session != NGX_CONF_UNSET_PTR && prev->session != NULL)
    {
        conf->session = prev->session;
        conf->session_from_args = prev->session_from_args;
    }

    if (conf->session == NGX_CONF_UNSET_PTR
        && (conf->stream || conf->presence || conf->history))
    {
        conf->session = ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t));
        if (conf->session == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

        ccv.cf = cf;
        ccv.value = &ngx_http_webhook_sse_default_session;
        ccv.complex_value = conf->session;

        if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        conf->session_from_args = 1;
    }

    ngx_conf_merge_ptr_value(conf->session, prev->session, NULL);
    ngx_conf_merge_ptr_value(conf->secret, prev->secret, NULL);

    if (conf->verify == NGX_CONF_UNSET_UINT) {
        conf->verify = (prev->verify == NGX_CONF_UNSET_UINT)
                       ? NGX_HTTP_WEBHOOK_SSE_VERIFY_OFF : prev->verify;
        conf->verify_keys = prev->verify_keys;
        conf->verify_tolerance = prev->verify_tolerance;
    }

    if (conf->token_keys == NGX_CONF_UNSET_PTR) {
        conf->token_keys = (prev->token_keys == NGX_CONF_UNSET_PTR)
                           ? NULL : prev->token_keys;
        conf->token = prev->token;
    }

    ngx_conf_merge_msec_value(conf->idempotency, prev->idempotency,
                              86400000);
    ngx_conf_merge_ptr_value(conf->publish_response, prev->publish_response,
                             NULL);

    if (conf->session_field.data == NULL) {
        conf->session_field = prev->session_field;
    }

    if (conf->session_field.data == NULL) {
        ngx_str_set(&conf->session_field, "sessionId");
    }

    conf->session_key = conf->session_field;

    if (conf->session_key.len == 0) {
        ngx_str_set(&conf->session_key, "sessionId");
    }

    if (conf->message_field.data == NULL) {
        conf->message_field = prev->message_field;
    }

    if (conf->message_field.data == NULL) {
        ngx_str_set(&conf->message_field, "message");
    }

    ngx_conf_merge_msec_value(conf->heartbeat, prev->heartbeat, 30000);
    ngx_conf_merge_uint_value(conf->replay, prev->replay, 5);
    ngx_conf_merge_size_value(conf->stream_buffer, prev->stream_buffer,
                              256 * 1024);
    ngx_conf_merge_value(conf->detach, prev->detach, 1);
    ngx_conf_merge_msec_value(conf->presence_grace, prev->presence_grace,
                              5000);
    ngx_conf_merge_value(conf->presence_events, prev->presence_events, 0);

    ngx_conf_merge_bitmask_value(conf->transports, prev->transports,
                                 (NGX_CONF_BITMASK_SET
                                  |NGX_HTTP_WEBHOOK_SSE_SSE
                                  |NGX_HTTP_WEBHOOK_SSE_WEBSOCKET
                                  |NGX_HTTP_WEBHOOK_SSE_LONGPOLL));
    ngx_conf_merge_msec_value(conf->longpoll_timeout, prev->longpoll_timeout,
                              30000);

    return ngx_http_webhook_sse_forward_merge(cf, prev, conf);
}


/* webhook_zone zone=NAME:SIZE [history=N] [ttl=TIME] [persist=PATH] */

static char *
ngx_http_webhook_sse_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    u_char                            *p;
    ngx_http_webhook_sse_zone_t      **zp;
    ngx_http_webhook_sse_main_conf_t  *wmcf;
    ssize_t                       size;
    ngx_str_t                    *value, name, s, persist;
    ngx_int_t                     history;
    ngx_msec_t                    ttl;
    ngx_uint_t                    i;
    ngx_shm_zone_t               *shm_zone;
    ngx_http_webhook_sse_zone_t  *zone;

    value = cf->args->elts;

    size = 0;
    name.len = 0;
    history = 100;
    ttl = 3600 * 1000;
    ngx_str_null(&persist);

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "zone=", 5) == 0) {

            name.data = value[i].data + 5;

            p = (u_char *) ngx_strchr(name.data, ':');

            if (p == NULL) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid zone size \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            name.len = p - name.data;

            s.data = p + 1;
            s.len = value[i].data + value[i].len - s.data;

            size = ngx_parse_size(&s);

            if (size == NGX_ERROR) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid zone size \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            if (size < (ssize_t) (16 * ngx_pagesize)) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "zone \"%V\" is too small: at least %uzk",
                                   &value[i], 16 * ngx_pagesize / 1024);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "history=", 8) == 0) {

            history = ngx_atoi(value[i].data + 8, value[i].len - 8);

            if (history <= 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid history \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "ttl=", 4) == 0) {

            s.data = value[i].data + 4;
            s.len = value[i].len - 4;

            ttl = ngx_parse_time(&s, 0);

            if (ttl == (ngx_msec_t) NGX_ERROR || ttl == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid ttl \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "persist=", 8) == 0) {
            persist = value[i];
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    if (name.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" must have \"zone=NAME:SIZE\" parameter",
                           &cmd->name);
        return NGX_CONF_ERROR;
    }

    zone = ngx_pcalloc(cf->pool, sizeof(ngx_http_webhook_sse_zone_t));
    if (zone == NULL) {
        return NGX_CONF_ERROR;
    }

    zone->history = history;
    zone->ttl = ttl;
    zone->slot = -1;

    if (persist.len
        && ngx_http_webhook_sse_persist_conf(cf, zone, &persist)
           != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    shm_zone = ngx_shared_memory_add(cf, &name, size,
                                     &ngx_http_webhook_sse_module);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate webhook zone \"%V\"", &name);
        return NGX_CONF_ERROR;
    }

    zone->shm_zone = shm_zone;

    shm_zone->init = ngx_http_webhook_sse_store_init_zone;
    shm_zone->data = zone;

    wmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_webhook_sse_module);

    zp = ngx_array_push(&wmcf->zones);
    if (zp == NULL) {
        return NGX_CONF_ERROR;
    }

    *zp = zone;

    return NGX_CONF_OK;
}



/*
 * webhook_publish NAME, webhook_stream NAME, webhook_status NAME,
 * webhook_presence NAME, webhook_history NAME
 */

static char *
ngx_http_webhook_sse_handler_slot(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    char  *p = conf;

    ngx_str_t                 *value;
    ngx_shm_zone_t           **field;
    ngx_http_webhook_sse_loc_conf_t  *wlcf = conf;
    ngx_http_core_loc_conf_t  *clcf;

    field = (ngx_shm_zone_t **) (p + cmd->offset);

    if (wlcf->publish || wlcf->stream || wlcf->status || wlcf->presence
        || wlcf->history)
    {
        return "is duplicate: a location publishes, streams, reports "
               "status, presence or history";
    }

    value = cf->args->elts;

    *field = ngx_shared_memory_add(cf, &value[1], 0,
                                   &ngx_http_webhook_sse_module);
    if (*field == NULL) {
        return NGX_CONF_ERROR;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (field == &wlcf->publish) {
        clcf->handler = ngx_http_webhook_sse_publish_handler;

    } else if (field == &wlcf->stream) {
        clcf->handler = ngx_http_webhook_sse_stream_handler;

    } else if (field == &wlcf->presence) {
        clcf->handler = ngx_http_webhook_sse_presence_handler;

    } else if (field == &wlcf->history) {
        clcf->handler = ngx_http_webhook_sse_history_handler;

    } else {
        clcf->handler = ngx_http_webhook_sse_status_handler;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_webhook_sse_session(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_webhook_sse_loc_conf_t *wlcf = conf;

    ngx_str_t                         *value;
    ngx_http_compile_complex_value_t   ccv;

    if (wlcf->session != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    wlcf->session = ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t));
    if (wlcf->session == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = &value[1];
    ccv.complex_value = wlcf->session;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    /* query arguments arrive percent-encoded: decode them, nothing else */
    wlcf->session_from_args = (value[1].len > 5
                               && ngx_strncmp(value[1].data, "$arg_", 5) == 0);

    return NGX_CONF_OK;
}


/* webhook_session_field NAME|off, webhook_message_field NAME|off */

static char *
ngx_http_webhook_sse_field(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    ngx_str_t   *field, *value;
    ngx_uint_t   i;

    field = (ngx_str_t *) (p + cmd->offset);

    if (field->data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        field->len = 0;
        field->data = (u_char *) "";
        return NGX_CONF_OK;
    }

    if (value[1].len == 0 || value[1].len > NGX_HTTP_WEBHOOK_SSE_FIELD_MAX
        || value[1].data[0] == '.' || value[1].data[value[1].len - 1] == '.')
    {
        goto invalid;
    }

    for (i = 0; i < value[1].len; i++) {
        if (value[1].data[i] < 0x20 || value[1].data[i] == 0x7f
            || value[1].data[i] == '"' || value[1].data[i] == '\\'
            || (value[1].data[i] == '.' && value[1].data[i + 1] == '.'))
        {
            goto invalid;
        }
    }

    *field = value[1];

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid field name \"%V\": a JSON key or dotted path "
                       "of up to %d characters", &value[1],
                       NGX_HTTP_WEBHOOK_SSE_FIELD_MAX);
    return NGX_CONF_ERROR;
}


/* webhook_secret TEXT | env=NAME | file=PATH */

static char *
ngx_http_webhook_sse_secret(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_webhook_sse_loc_conf_t *wlcf = conf;

    char                              *rv;
    ngx_str_t                         *value, secret;
    ngx_http_compile_complex_value_t   ccv;

    if (wlcf->secret != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    wlcf->secret = ngx_pcalloc(cf->pool, sizeof(ngx_http_complex_value_t));
    if (wlcf->secret == NULL) {
        return NGX_CONF_ERROR;
    }

    if (ngx_strncmp(value[1].data, "env=", 4) == 0
        || ngx_strncmp(value[1].data, "file=", 5) == 0)
    {
        rv = ngx_http_webhook_sse_read_secret(cf, &cmd->name, &value[1],
                                              &secret);
        if (rv != NGX_CONF_OK) {
            return rv;
        }

        /* a constant: not compiled, so '$' in it stays a plain '$' */
        wlcf->secret->value = secret;
        return NGX_CONF_OK;
    }

    if (value[1].len == 0) {
        return "must not be empty";
    }

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = &value[1];
    ccv.complex_value = wlcf->secret;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_webhook_sse_time_or_off(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    char  *p = conf;

    ngx_str_t   *value;
    ngx_msec_t  *msp;

    msp = (ngx_msec_t *) (p + cmd->offset);

    if (*msp != NGX_CONF_UNSET_MSEC) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        *msp = 0;
        return NGX_CONF_OK;
    }

    *msp = ngx_parse_time(&value[1], 0);

    if (*msp == (ngx_msec_t) NGX_ERROR || *msp == 0) {
        return "invalid value";
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_webhook_sse_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_webhook_sse_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_webhook_sse_module);

    if (ctx == NULL && r != r->main) {
        ctx = ngx_http_get_module_ctx(r->main, ngx_http_webhook_sse_module);
    }

    if (ctx == NULL && data == NGX_HTTP_WEBHOOK_SSE_VAR_SESSION) {
        return ngx_http_webhook_sse_session_variable(r->main, v);
    }

    if (ctx == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    if (data == NGX_HTTP_WEBHOOK_SSE_VAR_MESSAGE_ID) {
        if (ctx->message_id_len == 0) {
            v->not_found = 1;
            return NGX_OK;
        }

        v->data = ctx->message_id;
        v->len = ctx->message_id_len;

    } else if (data == NGX_HTTP_WEBHOOK_SSE_VAR_TIMESTAMP) {
        if (ctx->message_id_len == 0) {
            v->not_found = 1;
            return NGX_OK;
        }

        v->data = ngx_pnalloc(r->pool, NGX_INT64_LEN);
        if (v->data == NULL) {
            return NGX_ERROR;
        }

        v->len = ngx_sprintf(v->data, "%L", ctx->message_time) - v->data;

    } else {
        v->data = ctx->session.data;
        v->len = ctx->session.len;
    }

    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


/*
 * $webhook_session before the handler ran: e.g. in an auth_request
 * subrequest, the session the main request's location will stream, from
 * the same webhook_session value and checks, so that an application asked
 * about it sees exactly that session (not its own parse of the URI).
 */

static ngx_int_t
ngx_http_webhook_sse_session_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v)
{
    ngx_int_t                         rc;
    ngx_str_t                         session;
    const char                       *error;
    ngx_http_webhook_sse_loc_conf_t  *wlcf;

    wlcf = ngx_http_get_module_loc_conf(r, ngx_http_webhook_sse_module);

    rc = ngx_http_webhook_sse_session_value(r, wlcf, &session, &error);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_DECLINED || session.len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->data = session.data;
    v->len = session.len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_webhook_sse_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                      i;
    ngx_array_t                    *zones;
    ngx_http_webhook_sse_zone_t    *zone;
    ngx_http_webhook_sse_worker_t  *worker;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    zones = ngx_http_webhook_sse_zones(cycle);

    for (i = 0; zones && i < zones->nelts; i++) {
        zone = ((ngx_http_webhook_sse_zone_t **) zones->elts)[i];
        zone->log = cycle->log;

        if (zone->redis) {
            ngx_http_webhook_sse_redis_init_process(cycle, zone);
        }

        /*
         * A worker that cannot take part in streaming still serves
         * publishes: failures are logged, not fatal.
         */

        if (ngx_http_webhook_sse_store_claim_slot(zone) != NGX_OK) {
            continue;
        }

        worker = ngx_http_webhook_sse_fanout_init(cycle, zone,
                                            ngx_http_webhook_sse_stream_close);

        if (worker == NULL
            || ngx_http_webhook_sse_notify_init(cycle, zone,
                                           ngx_http_webhook_sse_fanout_deliver,
                                           ngx_http_webhook_sse_stream_end_all,
                                           worker)
               != NGX_OK)
        {
            ngx_http_webhook_sse_store_free_slot(zone);
            continue;
        }

        ngx_http_webhook_sse_presence_init(worker);
    }

    return ngx_http_webhook_sse_outbox_init_process(cycle);
}


static void
ngx_http_webhook_sse_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                    i;
    ngx_array_t                  *zones;
    ngx_http_webhook_sse_zone_t  *zone;

    ngx_http_webhook_sse_outbox_exit_process(cycle);

    zones = ngx_http_webhook_sse_zones(cycle);

    for (i = 0; zones && i < zones->nelts; i++) {
        zone = ((ngx_http_webhook_sse_zone_t **) zones->elts)[i];

        ngx_http_webhook_sse_notify_exit(zone);
        ngx_http_webhook_sse_store_free_slot(zone);

        if (zone->redis) {
            ngx_http_webhook_sse_redis_exit_process(zone);
        }
    }
}


/*
 * Which build runs: once in the master at start and on each reload (the
 * text is also what `strings` finds in the .so, docs/install.md); and,
 * with persist=, the first start loads what the last stop saved.
 */

static ngx_int_t
ngx_http_webhook_sse_init_module(ngx_cycle_t *cycle)
{
    ngx_uint_t                    i;
    ngx_array_t                  *zones;
    ngx_http_webhook_sse_zone_t  *zone;

    ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0,
                  "webhook-sse/" NGX_HTTP_WEBHOOK_SSE_VERSION
                  " (built for " NGINX_VER ")");

    if (ngx_test_config || ngx_process == NGX_PROCESS_SIGNALLER
        || !ngx_is_init_cycle(cycle->old_cycle))
    {
        return NGX_OK;
    }

    zones = ngx_http_webhook_sse_zones(cycle);

    for (i = 0; zones && i < zones->nelts; i++) {
        zone = ((ngx_http_webhook_sse_zone_t **) zones->elts)[i];
        ngx_http_webhook_sse_persist_load(cycle, zone);
    }

    return NGX_OK;
}


/* persist=: the workers are gone, the zone is saved */

static void
ngx_http_webhook_sse_exit_master(ngx_cycle_t *cycle)
{
    ngx_uint_t                    i;
    ngx_array_t                  *zones;
    ngx_http_webhook_sse_zone_t  *zone;

    zones = ngx_http_webhook_sse_zones(cycle);

    for (i = 0; zones && i < zones->nelts; i++) {
        zone = ((ngx_http_webhook_sse_zone_t **) zones->elts)[i];
        ngx_http_webhook_sse_persist_save(cycle, zone);
    }
}
