
/*
 * nginx-webhook-sse: webhook_status, the zone's figures for operators, as
 * JSON or (?format=prometheus) in the Prometheus text format.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_webhook_sse_module.h"


typedef struct {
    size_t        size;
    size_t        free;
    ngx_uint_t    channels;
    ngx_uint_t    retained;
    ngx_uint_t    streams;
    ngx_uint_t    workers;
    ngx_uint_t    published;
    ngx_uint_t    delivered;
    ngx_uint_t    evicted;
    ngx_uint_t    expired;
    ngx_uint_t    keys;
    ngx_uint_t    duplicates;
    uint64_t      epoch;
    uint64_t      last_seq;
} ngx_http_webhook_sse_figures_t;


static void ngx_http_webhook_sse_figures(ngx_http_webhook_sse_zone_t *zone,
    ngx_http_webhook_sse_figures_t *f);


ngx_int_t
ngx_http_webhook_sse_status_handler(ngx_http_request_t *r)
{
    u_char                           *body, *p;
    size_t                            len;
    ngx_int_t                         rc;
    ngx_str_t                         format, *name, outbound;
    ngx_uint_t                        prometheus;
    ngx_http_webhook_sse_zone_t      *zone;
    ngx_http_webhook_sse_loc_conf_t  *wlcf;
    ngx_http_webhook_sse_figures_t    f;

    static ngx_str_t  prometheus_type =
                          ngx_string("text/plain; version=0.0.4");

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_http_webhook_sse_reject(r, NGX_HTTP_NOT_ALLOWED,
                                           "method not allowed: use GET");
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    wlcf = ngx_http_get_module_loc_conf(r, ngx_http_webhook_sse_module);
    zone = wlcf->status->data;
    name = &zone->shm_zone->shm.name;

    prometheus = (ngx_http_arg(r, (u_char *) "format", 6, &format) == NGX_OK
                  && format.len == 10
                  && ngx_strncmp(format.data, "prometheus", 10) == 0);

    ngx_http_webhook_sse_figures(zone, &f);

    if (ngx_http_webhook_sse_outbox_status(r, zone, prometheus, &outbound)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    len = 2048 + 12 * name->len + outbound.len;

    body = ngx_pnalloc(r->pool, len);
    if (body == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (!prometheus) {
        p = ngx_snprintf(body, len,
                "{\"zone\":\"%V\",\"size\":%uz,\"used\":%uz,\"free\":%uz,"
                "\"channels\":%ui,\"retained\":%ui,\"streams\":%ui,"
                "\"workers\":%ui,\"published\":%ui,\"delivered\":%ui,"
                "\"evicted\":%ui,\"expired\":%ui,\"idempotencyKeys\":%ui,"
                "\"duplicates\":%ui,\"epoch\":%uL,\"lastSeq\":%uL%V}\n",
                name, f.size, f.size - f.free, f.free, f.channels,
                f.retained, f.streams, f.workers, f.published, f.delivered,
                f.evicted, f.expired, f.keys, f.duplicates, f.epoch,
                f.last_seq, &outbound);

        return ngx_http_webhook_sse_send_json(r, NGX_HTTP_OK, body,
                                              p - body);
    }

    p = ngx_snprintf(body, len,
            "# TYPE webhook_zone_size_bytes gauge\n"
            "webhook_zone_size_bytes{zone=\"%V\"} %uz\n"
            "# TYPE webhook_zone_free_bytes gauge\n"
            "webhook_zone_free_bytes{zone=\"%V\"} %uz\n"
            "# TYPE webhook_channels gauge\n"
            "webhook_channels{zone=\"%V\"} %ui\n"
            "# TYPE webhook_retained_messages gauge\n"
            "webhook_retained_messages{zone=\"%V\"} %ui\n"
            "# TYPE webhook_streams gauge\n"
            "webhook_streams{zone=\"%V\"} %ui\n"
            "# TYPE webhook_published_total counter\n"
            "webhook_published_total{zone=\"%V\"} %ui\n"
            "# TYPE webhook_delivered_total counter\n"
            "webhook_delivered_total{zone=\"%V\"} %ui\n"
            "# TYPE webhook_evicted_total counter\n"
            "webhook_evicted_total{zone=\"%V\"} %ui\n"
            "# TYPE webhook_expired_total counter\n"
            "webhook_expired_total{zone=\"%V\"} %ui\n"
            "# TYPE webhook_idempotency_keys gauge\n"
            "webhook_idempotency_keys{zone=\"%V\"} %ui\n"
            "# TYPE webhook_duplicates_total counter\n"
            "webhook_duplicates_total{zone=\"%V\"} %ui\n%V",
            name, f.size, name, f.free, name, f.channels, name, f.retained,
            name, f.streams, name, f.published, name, f.delivered, name,
            f.evicted, name, f.expired, name, f.keys, name, f.duplicates,
            &outbound);

    return ngx_http_webhook_sse_send_response(r, NGX_HTTP_OK, &prometheus_type,
                                              body, p - body);
}


static void
ngx_http_webhook_sse_figures(ngx_http_webhook_sse_zone_t *zone,
    ngx_http_webhook_sse_figures_t *f)
{
    ngx_uint_t                     s;
    ngx_http_webhook_sse_shctx_t  *sh;

    sh = zone->sh;

    ngx_memzero(f, sizeof(ngx_http_webhook_sse_figures_t));

    f->size = zone->shm_zone->shm.size;

    ngx_http_webhook_sse_store_lock(zone);

    /* whole free pages: memory that any allocation size can still use */
    f->free = zone->shpool->pfree * ngx_pagesize;
    f->channels = sh->channels;
    f->retained = sh->retained;
    f->published = sh->published;
    f->delivered = sh->delivered;
    f->evicted = sh->evicted;
    f->expired = sh->expired;
    f->keys = sh->nkeys;
    f->duplicates = sh->duplicates;
    f->epoch = sh->epoch;
    f->last_seq = sh->last_seq;

    for (s = 0; s < NGX_HTTP_WEBHOOK_SSE_SLOTS; s++) {
        if (sh->slots[s]) {
            f->streams += sh->slots[s]->streams;
            f->workers++;
        }
    }

    ngx_http_webhook_sse_store_unlock(zone);
}
