
/*
 * nginx-webhook-sse: webhook_status, the zone's figures for operators, as
 * JSON or in the Prometheus text format (?format=prometheus, or a client
 * that accepts text/plain or OpenMetrics but not JSON: a plain scrape).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_webhook_sse_module.h"
#include "ngx_http_webhook_sse_redis.h"


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


static ngx_uint_t ngx_http_webhook_sse_wants_text(ngx_http_request_t *r);
static void ngx_http_webhook_sse_figures(ngx_http_webhook_sse_zone_t *zone,
    ngx_http_webhook_sse_figures_t *f);


/*
 * The text format: every figure of the JSON with HELP and TYPE, so that
 * "promtool check metrics" is content and a plain scrape needs no params.
 */

#define ngx_http_webhook_sse_metric(name, type, help)                         \
    "# HELP " name " " help "\n"                                              \
    "# TYPE " name " " type "\n"                                              \
    name "{zone=\"%V\"} "


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
        ngx_string("text/plain; version=0.0.4; charset=utf-8");

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        if (ngx_http_webhook_sse_add_header(r, "Allow", "GET, HEAD")
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

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

    if (ngx_http_arg(r, (u_char *) "format", 6, &format) == NGX_OK) {

        if (format.len == 10
            && ngx_strncmp(format.data, "prometheus", 10) == 0)
        {
            prometheus = 1;

        } else if (format.len == 4
                   && ngx_strncmp(format.data, "json", 4) == 0)
        {
            prometheus = 0;

        } else {
            return ngx_http_webhook_sse_send_error(r, NGX_HTTP_BAD_REQUEST,
                                                   "unknown format: use "
                                                   "format=json or "
                                                   "format=prometheus");
        }

    } else {
        prometheus = ngx_http_webhook_sse_wants_text(r);

        if (ngx_http_webhook_sse_add_header(r, "Vary", "Accept") != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    ngx_http_webhook_sse_figures(zone, &f);

    if (ngx_http_webhook_sse_outbox_status(r, zone, prometheus, &outbound)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    len = 4096 + 16 * name->len + outbound.len;

    body = ngx_pnalloc(r->pool, len);
    if (body == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (!prometheus) {
        p = ngx_snprintf(body, len,
                "{\"version\":\"" NGX_HTTP_WEBHOOK_SSE_VERSION "\","
                "\"zone\":\"%V\",\"size\":%uz,\"used\":%uz,\"free\":%uz,"
                "\"channels\":%ui,\"retained\":%ui,\"streams\":%ui,"
                "\"workers\":%ui,\"published\":%ui,\"delivered\":%ui,"
                "\"evicted\":%ui,\"expired\":%ui,\"idempotencyKeys\":%ui,"
                "\"duplicates\":%ui,\"epoch\":%uL,\"lastSeq\":%uL%V",
                name, f.size, f.size - f.free, f.free, f.channels,
                f.retained, f.streams, f.workers, f.published, f.delivered,
                f.evicted, f.expired, f.keys, f.duplicates, f.epoch,
                f.last_seq, &outbound);

        /* webhook_redis: the cluster's figures */
        p = ngx_http_webhook_sse_redis_status(zone, p, body + len - 2);
        *p++ = '}';
        *p++ = '\n';

        return ngx_http_webhook_sse_send_json(r, NGX_HTTP_OK, body,
                                              p - body);
    }

    p = ngx_snprintf(body, len,
            "# HELP webhook_build_info The module's version.\n"
            "# TYPE webhook_build_info gauge\n"
            "webhook_build_info{version=\"" NGX_HTTP_WEBHOOK_SSE_VERSION
            "\"} 1\n"
            ngx_http_webhook_sse_metric("webhook_zone_size_bytes", "gauge",
                "Size of the shared memory zone.") "%uz\n"
            ngx_http_webhook_sse_metric("webhook_zone_used_bytes", "gauge",
                "Zone memory in use (size minus whole free pages).") "%uz\n"
            ngx_http_webhook_sse_metric("webhook_zone_free_bytes", "gauge",
                "Whole free pages of the zone, in bytes.") "%uz\n"
            ngx_http_webhook_sse_metric("webhook_channels", "gauge",
                "Session channels in the zone.") "%ui\n"
            ngx_http_webhook_sse_metric("webhook_retained_messages", "gauge",
                "Messages retained for replay.") "%ui\n"
            ngx_http_webhook_sse_metric("webhook_streams", "gauge",
                "Open streams, all workers.") "%ui\n"
            ngx_http_webhook_sse_metric("webhook_workers", "gauge",
                "Worker processes that joined the zone.") "%ui\n"
            ngx_http_webhook_sse_metric("webhook_published_total", "counter",
                "Messages published.") "%ui\n"
            ngx_http_webhook_sse_metric("webhook_delivered_total", "counter",
                "Messages handed to streams.") "%ui\n"
            ngx_http_webhook_sse_metric("webhook_evicted_total", "counter",
                "Messages dropped early for memory.") "%ui\n"
            ngx_http_webhook_sse_metric("webhook_expired_total", "counter",
                "Messages dropped at their ttl.") "%ui\n"
            ngx_http_webhook_sse_metric("webhook_idempotency_keys", "gauge",
                "Idempotency keys remembered.") "%ui\n"
            ngx_http_webhook_sse_metric("webhook_duplicates_total", "counter",
                "Repeated publishes answered from an idempotency key.")
                "%ui\n"
            ngx_http_webhook_sse_metric("webhook_zone_epoch", "gauge",
                "Epoch of the zone's message ids (Unix ms of its creation).")
                "%uL\n"
            ngx_http_webhook_sse_metric("webhook_last_sequence", "gauge",
                "Sequence number of the last message id.") "%uL\n%V",
            name, f.size, name, f.size - f.free, name, f.free,
            name, f.channels, name, f.retained, name, f.streams,
            name, f.workers, name, f.published, name, f.delivered,
            name, f.evicted, name, f.expired, name, f.keys,
            name, f.duplicates, name, f.epoch, name, f.last_seq, &outbound);

    /* webhook_redis: the cluster's figures */
    p = ngx_http_webhook_sse_redis_prometheus(zone, p, body + len);

    return ngx_http_webhook_sse_send_response(r, NGX_HTTP_OK, &prometheus_type,
                                              body, p - body);
}


/*
 * Without ?format=: the text format for a client that asks for it and not
 * for JSON (Prometheus sends "application/openmetrics-text;..,
 * text/plain;version=0.0.4;q=0.5" and any type at q=0.1), JSON for the
 * rest (curl, browsers).
 */

static ngx_uint_t
ngx_http_webhook_sse_wants_text(ngx_http_request_t *r)
{
    u_char           *start, *end;
    ngx_table_elt_t  *h;

    static ngx_str_t  accept = ngx_string("Accept");

    h = ngx_http_webhook_sse_find_header(r, &accept);

    if (h == NULL) {
        return 0;
    }

    start = h->value.data;
    end = start + h->value.len;

    if (ngx_strlcasestrn(start, end, (u_char *) "application/json", 16 - 1)) {
        return 0;
    }

    return ngx_strlcasestrn(start, end, (u_char *) "text/plain", 10 - 1)
           != NULL
           || ngx_strlcasestrn(start, end,
                               (u_char *) "application/openmetrics-text",
                               28 - 1)
              != NULL;
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
