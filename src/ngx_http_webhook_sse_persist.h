
/*
 * nginx-webhook-sse: a zone's messages kept across restarts
 * (webhook_zone ... persist=PATH).
 */


#ifndef _NGX_HTTP_WEBHOOK_SSE_PERSIST_H_INCLUDED_
#define _NGX_HTTP_WEBHOOK_SSE_PERSIST_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_webhook_sse_store.h"


char *ngx_http_webhook_sse_persist_conf(ngx_conf_t *cf,
    ngx_http_webhook_sse_zone_t *zone, ngx_str_t *value);
void ngx_http_webhook_sse_persist_load(ngx_cycle_t *cycle,
    ngx_http_webhook_sse_zone_t *zone);
void ngx_http_webhook_sse_persist_save(ngx_cycle_t *cycle,
    ngx_http_webhook_sse_zone_t *zone);


#endif /* _NGX_HTTP_WEBHOOK_SSE_PERSIST_H_INCLUDED_ */
