
/*
 * nginx-webhook-sse: a zone's channels shared by several hosts through
 * Redis (webhook_redis).
 */


#ifndef _NGX_HTTP_WEBHOOK_SSE_REDIS_H_INCLUDED_
#define _NGX_HTTP_WEBHOOK_SSE_REDIS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_webhook_sse_module.h"


struct redisAsyncContext;


/*
 * A presence request's continuation: the other hosts' streams were added
 * to "info" (rc NGX_OK), or Redis could not say in time (rc NGX_ERROR);
 * returns what the request is finalized with.
 */
typedef ngx_int_t (*ngx_http_webhook_sse_redis_presence_pt)(
    ngx_http_request_t *r, void *data, ngx_int_t rc);


char *ngx_http_webhook_sse_redis_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
void ngx_http_webhook_sse_redis_init_process(ngx_cycle_t *cycle,
    ngx_http_webhook_sse_zone_t *zone);
void ngx_http_webhook_sse_redis_exit_process(
    ngx_http_webhook_sse_zone_t *zone);

ngx_int_t ngx_http_webhook_sse_redis_publish(ngx_http_request_t *r,
    ngx_http_webhook_sse_zone_t *zone, ngx_str_t *session, ngx_str_t *extra,
    ngx_str_t *members, ngx_http_webhook_sse_idempotency_t *idem);
ngx_uint_t ngx_http_webhook_sse_redis_ready(ngx_http_webhook_sse_zone_t *zone);
uint64_t ngx_http_webhook_sse_redis_ahead(ngx_http_webhook_sse_zone_t *zone);
u_char *ngx_http_webhook_sse_redis_status(ngx_http_webhook_sse_zone_t *zone,
    u_char *p, u_char *last);
u_char *ngx_http_webhook_sse_redis_prometheus(
    ngx_http_webhook_sse_zone_t *zone, u_char *p, u_char *last);

/* presence across hosts: this worker's streams of a session changed */
void ngx_http_webhook_sse_redis_stream_opened(
    ngx_http_webhook_sse_zone_t *zone, ngx_str_t *session,
    ngx_uint_t streams, int64_t since);
void ngx_http_webhook_sse_redis_stream_closed(
    ngx_http_webhook_sse_zone_t *zone, ngx_str_t *session, int64_t since);
ngx_int_t ngx_http_webhook_sse_redis_presence(ngx_http_request_t *r,
    ngx_http_webhook_sse_zone_t *zone, ngx_str_t *sessions,
    ngx_http_webhook_sse_presence_info_t *info, ngx_uint_t n,
    ngx_http_webhook_sse_redis_presence_pt answer, void *data);

/* the event loop adapter (ngx_http_webhook_sse_redis_adapter.c) */
ngx_int_t ngx_http_webhook_sse_redis_attach(struct redisAsyncContext *ac,
    ngx_log_t *log);


#endif /* _NGX_HTTP_WEBHOOK_SSE_REDIS_H_INCLUDED_ */
