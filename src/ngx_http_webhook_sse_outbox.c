
/*
 * nginx-webhook-sse: outbound deliveries, queued in the zone.
 *
 * A publish queues one delivery per webhook_forward of its location (and
 * per callback its session registered); each delivery holds everything an
 * attempt needs (URL, key, body, schedule), so any worker can make it.
 * Deliveries wait per endpoint (scheme://host:port) in publish order;
 * the endpoint keeps the counters shared by all workers: attempts in
 * flight (webhook_forward_concurrency) and the start of the next one
 * (webhook_forward_rate, a GCRA).  A worker takes an attempt with a lease
 * (its pid and an expiry): a worker killed in the middle leaves a lease
 * that expires, one that exits hands its attempts back at once, and in
 * both cases another worker makes the attempt again.
 *
 * The zone lock covers the trees, the queues, the slab and copies: bodies
 * are built before it, requests signed and sent after it.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_http.h>

#include <openssl/crypto.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "ngx_http_webhook_sse_module.h"
#include "ngx_http_webhook_sse_payload.h"


#define NGX_HTTP_WEBHOOK_SSE_QUEUED       0
#define NGX_HTTP_WEBHOOK_SSE_LEASED       1
#define NGX_HTTP_WEBHOOK_SSE_KEPT         2

/* what came of an attempt */
#define NGX_HTTP_WEBHOOK_SSE_STALE        0
#define NGX_HTTP_WEBHOOK_SSE_DELIVERED    1
#define NGX_HTTP_WEBHOOK_SSE_RETRIED      2
#define NGX_HTTP_WEBHOOK_SSE_FAILED       3
#define NGX_HTTP_WEBHOOK_SSE_DEAD         4

/* a lease outlives its attempt's timeout by this much */
#define NGX_HTTP_WEBHOOK_SSE_LEASE_GRACE  2000

/* failed and dead deliveries kept per zone (for redrive), oldest dropped */
#define NGX_HTTP_WEBHOOK_SSE_KEPT_MAX     1000

/* endpoints kept with their figures; past it idle ones are forgotten */
#define NGX_HTTP_WEBHOOK_SSE_ENDPOINTS_MAX  1024

/*
 * A turn of the event loop that served this many publishes makes the
 * worker busy for the milliseconds after it: deliveries then wait
 * (webhook_forward_yield), while the deliveries waiting take less than
 * 1/NGX_HTTP_WEBHOOK_SSE_YIELD_SHARE of the zone.
 */
#define NGX_HTTP_WEBHOOK_SSE_BUSY         4
#define NGX_HTTP_WEBHOOK_SSE_BUSY_TIME    50
#define NGX_HTTP_WEBHOOK_SSE_YIELD_SHARE  8

/* how often a worker looks for work others left (expired leases) */
#define NGX_HTTP_WEBHOOK_SSE_SWEEP        1000

/* the longest Retry-After honoured */
#define NGX_HTTP_WEBHOOK_SSE_RETRY_AFTER_MAX  3600

/* latency buckets: 4 per power of two of microseconds */
#define NGX_HTTP_WEBHOOK_SSE_LATENCY_BUCKETS  128

#define NGX_HTTP_WEBHOOK_SSE_SCRATCH      (64 * 1024)

#define NGX_HTTP_WEBHOOK_SSE_HEADERS      8


typedef struct ngx_http_webhook_sse_endpoint_s  ngx_http_webhook_sse_endpoint_t;


struct ngx_http_webhook_sse_endpoint_s {
    ngx_rbtree_node_t                 node;
    ngx_queue_t                       link;
    /* waiting deliveries in publish order, and those in flight */
    ngx_queue_t                       queued;
    ngx_queue_t                       leased;

    ngx_uint_t                        concurrency;
    uint64_t                          interval;
    /* microseconds a delivery may wait while its worker is busy */
    uint64_t                          yield;
    /* microseconds: when the next start is due (GCRA) */
    int64_t                           tat;
    /* a 410 Gone of this configuration generation disabled it */
    ngx_uint_t                        disabled;

    ngx_uint_t                        nqueued;
    ngx_uint_t                        ninflight;
    ngx_uint_t                        nkept;
    ngx_uint_t                        delivered;
    ngx_uint_t                        retried;
    ngx_uint_t                        failed;
    ngx_uint_t                        dead;
    ngx_uint_t                        dropped;
    ngx_uint_t                        status;
    u_char                            error[NGX_HTTP_WEBHOOK_SSE_FWD_ERROR_LEN];
    uint32_t                   latency[NGX_HTTP_WEBHOOK_SSE_LATENCY_BUCKETS];

    size_t                            len;
    u_char                            key[1];
};


typedef struct {
    ngx_rbtree_node_t                 node;
    ngx_queue_t                       queue;
    ngx_http_webhook_sse_endpoint_t  *endpoint;

    /* microseconds: the publish */
    int64_t                           created;
    /* milliseconds: the next attempt, the lease's end */
    int64_t                           due;
    int64_t                           lease;
    ngx_pid_t                         owner;
    ngx_uint_t                        state;
    ngx_uint_t                        attempts;
    ngx_uint_t                        runtime;
    ngx_uint_t                        plain;
    ngx_msec_t                        timeout;
    ngx_uint_t                        nretry;
    ngx_msec_t                        retry[NGX_HTTP_WEBHOOK_SSE_RETRY_MAX];

    ngx_uint_t                        status;
    u_char                            error[NGX_HTTP_WEBHOOK_SSE_FWD_ERROR_LEN];

    size_t                            size;
    size_t                            url_len;
    size_t                            secret_len;
    size_t                            id_len;
    size_t                            body_len;
    size_t                            ca_len;
    /* [allow] url secret id body ca */
    u_char                            data[1];
} ngx_http_webhook_sse_delivery_t;


/* a session's own callback (webhook_callbacks) */
typedef struct {
    ngx_rbtree_node_t                 node;
    size_t                            session_len;
    size_t                            url_len;
    size_t                            secret_len;
    /* session url secret */
    u_char                            data[1];
} ngx_http_webhook_sse_callback_t;


struct ngx_http_webhook_sse_outbox_s {
    ngx_rbtree_t                      callbacks;
    ngx_rbtree_node_t                 callbacks_sentinel;
    ngx_uint_t                        ncallbacks;
    /* bytes of registrations: at most a quarter of the zone */
    size_t                            callback_bytes;
    ngx_uint_t                        nendpoints;
    ngx_rbtree_t                      deliveries;
    ngx_rbtree_node_t                 deliveries_sentinel;
    ngx_rbtree_t                      endpoints;
    ngx_rbtree_node_t                 endpoints_sentinel;
    ngx_queue_t                       endpoint_list;
    ngx_queue_t                       kept;
    ngx_uint_t                        nkept;
    uint64_t                          next_id;
    /* bytes of deliveries queued or in flight */
    size_t                            bytes;
    ngx_uint_t                        waiting;
    ngx_uint_t                        generation;
};


/* a worker's side of one zone's deliveries */
typedef struct {
    ngx_http_webhook_sse_zone_t      *zone;
    ngx_event_t                       timer;
    ngx_event_t                       kick;
    ngx_queue_t                       attempts;
    /* publishes queued since the last dispatch: in one turn */
    ngx_uint_t                        published;
    /* the worker counts as busy until then */
    ngx_msec_t                        busy;
    u_char                           *scratch;
    size_t                            scratch_size;
} ngx_http_webhook_sse_courier_t;


/* an attempt in flight in this worker */
typedef struct {
    ngx_queue_t                       link;
    ngx_http_webhook_sse_courier_t   *courier;
    uint64_t                          id;
    ngx_http_webhook_sse_post_t       post;
    ngx_http_webhook_sse_allow_t      allow;
    char                             *headers[NGX_HTTP_WEBHOOK_SSE_HEADERS];
    u_char                            data[1];
} ngx_http_webhook_sse_attempt_t;


/* one delivery a publish queues, built before the lock */
typedef struct {
    ngx_str_t                         endpoint;
    ngx_str_t                         url;
    ngx_str_t                         secret;
    ngx_str_t                         body;
    ngx_uint_t                        runtime;
    ngx_uint_t                        plain;
    ngx_uint_t                        dropped;
} ngx_http_webhook_sse_parcel_t;


static void ngx_http_webhook_sse_outbox_limits(ngx_shm_zone_t *shm_zone);
static ngx_http_webhook_sse_courier_t *ngx_http_webhook_sse_outbox_courier(
    ngx_http_webhook_sse_zone_t *zone);
static ngx_int_t ngx_http_webhook_sse_outbox_queue(
    ngx_http_webhook_sse_zone_t *zone,
    ngx_http_webhook_sse_forward_conf_t *fcf,
    ngx_http_webhook_sse_parcel_t *parcel, ngx_str_t *id, int64_t created,
    int64_t now);
static ngx_int_t ngx_http_webhook_sse_outbox_parcel(ngx_http_request_t *r,
    ngx_http_webhook_sse_forward_t *fwd, ngx_http_webhook_sse_payload_t *pl,
    ngx_http_webhook_sse_parcel_t *parcel);
static ngx_int_t ngx_http_webhook_sse_outbox_registered(ngx_http_request_t *r,
    ngx_http_webhook_sse_zone_t *zone, ngx_str_t *session,
    ngx_http_webhook_sse_payload_t *pl, ngx_http_webhook_sse_parcel_t *parcel);
static ngx_http_webhook_sse_callback_t *
    ngx_http_webhook_sse_outbox_find_callback(
    ngx_http_webhook_sse_outbox_t *ob, ngx_str_t *session);
static ngx_http_webhook_sse_endpoint_t *ngx_http_webhook_sse_outbox_endpoint(
    ngx_http_webhook_sse_zone_t *zone, ngx_str_t *key);
static void *ngx_http_webhook_sse_outbox_alloc(
    ngx_http_webhook_sse_zone_t *zone, size_t size);
static void ngx_http_webhook_sse_outbox_kick(
    ngx_http_webhook_sse_courier_t *courier);
static void ngx_http_webhook_sse_outbox_handler(ngx_event_t *ev);
static void ngx_http_webhook_sse_outbox_dispatch(
    ngx_http_webhook_sse_courier_t *courier);
static ngx_msec_t ngx_http_webhook_sse_outbox_take(
    ngx_http_webhook_sse_courier_t *courier, ngx_uint_t busy, size_t *taken,
    size_t *need);
static void ngx_http_webhook_sse_outbox_requeue(
    ngx_http_webhook_sse_outbox_t *ob, ngx_http_webhook_sse_delivery_t *d);
static void ngx_http_webhook_sse_outbox_keep(ngx_http_webhook_sse_zone_t *zone,
    ngx_http_webhook_sse_delivery_t *d);
static void ngx_http_webhook_sse_outbox_free(ngx_http_webhook_sse_zone_t *zone,
    ngx_http_webhook_sse_delivery_t *d);
static void ngx_http_webhook_sse_outbox_start(
    ngx_http_webhook_sse_courier_t *courier,
    ngx_http_webhook_sse_delivery_t *d);
static void ngx_http_webhook_sse_outbox_done(void *data,
    ngx_http_webhook_sse_post_result_t *res);
static ngx_http_webhook_sse_delivery_t *ngx_http_webhook_sse_outbox_find(
    ngx_http_webhook_sse_outbox_t *ob, uint64_t id);
static int64_t ngx_http_webhook_sse_outbox_usec(void);
static ngx_uint_t ngx_http_webhook_sse_latency_bucket(int64_t usec);
static int64_t ngx_http_webhook_sse_latency_value(ngx_uint_t bucket);


static ngx_int_t ngx_http_webhook_sse_outbox_sign(ngx_str_t *key,
    u_char *data, size_t len, u_char *mac);
static void ngx_http_webhook_sse_outbox_sign_exit(void);


static ngx_array_t  *ngx_http_webhook_sse_couriers;


/*
 * HMAC contexts keyed with the secrets in use, kept by the worker: a
 * signature then costs the hash alone, not a fetch of the algorithm and
 * the keying of a fresh context (most of OpenSSL's one-shot HMAC()).
 */
#define NGX_HTTP_WEBHOOK_SSE_MACS  8

typedef struct {
    EVP_MAC_CTX                      *ctx;
    size_t                            len;
    u_char                            key[NGX_HTTP_WEBHOOK_SSE_FWD_SECRET_MAX];
} ngx_http_webhook_sse_mac_t;

static EVP_MAC                     *ngx_http_webhook_sse_hmac;
static ngx_http_webhook_sse_mac_t   ngx_http_webhook_sse_macs[
                                        NGX_HTTP_WEBHOOK_SSE_MACS];
static ngx_uint_t                   ngx_http_webhook_sse_mac_next;


/*
 * Every worker of the zones of this configuration: the outbox in the
 * zone (made by the first worker to come), a courier of its own.
 */

ngx_int_t
ngx_http_webhook_sse_outbox_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                       i, generation;
    ngx_array_t                     *zones;
    ngx_http_webhook_sse_zone_t     *zone;
    ngx_http_webhook_sse_outbox_t   *ob;
    ngx_http_webhook_sse_courier_t  *courier;

    if (!ngx_http_webhook_sse_forward_used()) {
        return NGX_OK;
    }

    if (ngx_http_webhook_sse_curl_init(cycle) != NGX_OK) {
        /* publishes still work; their deliveries wait for other workers */
        return NGX_OK;
    }

    ngx_http_webhook_sse_couriers = ngx_array_create(cycle->pool, 2,
                                     sizeof(ngx_http_webhook_sse_courier_t));
    if (ngx_http_webhook_sse_couriers == NULL) {
        return NGX_ERROR;
    }

    generation = ngx_http_webhook_sse_forward_generation();

    zones = ngx_http_webhook_sse_zones(cycle);

    for (i = 0; zones && i < zones->nelts; i++) {
        zone = ((ngx_http_webhook_sse_zone_t **) zones->elts)[i];

        ob = ngx_slab_calloc(zone->shpool,
                             sizeof(ngx_http_webhook_sse_outbox_t));

        ngx_http_webhook_sse_store_lock(zone);

        if (zone->sh->outbox == NULL && ob) {
            ngx_rbtree_init(&ob->deliveries, &ob->deliveries_sentinel,
                            ngx_rbtree_insert_value);
            ngx_rbtree_init(&ob->callbacks, &ob->callbacks_sentinel,
                            ngx_rbtree_insert_value);
            ngx_rbtree_init(&ob->endpoints, &ob->endpoints_sentinel,
                            ngx_rbtree_insert_value);
            ngx_queue_init(&ob->endpoint_list);
            ngx_queue_init(&ob->kept);
            ob->next_id = 1;

            zone->sh->outbox = ob;
            ob = NULL;
        }

        if (zone->sh->outbox
            && zone->sh->outbox->generation != generation)
        {
            /*
             * A new configuration: endpoints a 410 disabled are tried
             * again, its limits hold from now on.
             */
            zone->sh->outbox->generation = generation;
            ngx_http_webhook_sse_outbox_limits(zone->shm_zone);
        }

        ngx_http_webhook_sse_store_unlock(zone);

        if (ob) {
            ngx_slab_free(zone->shpool, ob);
        }

        if (zone->sh->outbox == NULL) {
            ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                          "webhook zone \"%V\" has no room for the outbound "
                          "queue", &zone->shm_zone->shm.name);
            continue;
        }

        courier = ngx_array_push(ngx_http_webhook_sse_couriers);
        if (courier == NULL) {
            return NGX_ERROR;
        }

        ngx_memzero(courier, sizeof(ngx_http_webhook_sse_courier_t));

        courier->zone = zone;
        ngx_queue_init(&courier->attempts);

        courier->timer.handler = ngx_http_webhook_sse_outbox_handler;
        courier->timer.log = cycle->log;
        courier->timer.cancelable = 1;
        courier->kick = courier->timer;
    }

    /* the couriers' events point at the array's final place */
    courier = ngx_http_webhook_sse_couriers->elts;

    for (i = 0; i < ngx_http_webhook_sse_couriers->nelts; i++) {
        courier[i].timer.data = &courier[i];
        courier[i].kick.data = &courier[i];

        /*
         * Work earlier workers left: leases of a killed one, retries.  A
         * timer, not a posted event: nothing would wake the worker for it.
         */
        ngx_add_timer(&courier[i].timer, 1);
    }

    return NGX_OK;
}


/* zone lock held: the limits of the configuration on its endpoints */

static void
ngx_http_webhook_sse_outbox_limits(ngx_shm_zone_t *shm_zone)
{
    ngx_uint_t                             i;
    ngx_array_t                           *limits;
    ngx_http_webhook_sse_endpoint_t       *ep;
    ngx_http_webhook_sse_forward_limit_t  *limit;

    limits = ngx_http_webhook_sse_forward_limits();

    if (limits == NULL) {
        return;
    }

    limit = limits->elts;

    for (i = 0; i < limits->nelts; i++) {
        if (limit[i].zone != shm_zone) {
            continue;
        }

        ep = ngx_http_webhook_sse_outbox_endpoint(shm_zone->data,
                                                  &limit[i].endpoint);
        if (ep == NULL) {
            continue;
        }

        ep->concurrency = limit[i].concurrency;
        ep->interval = limit[i].interval;
        ep->yield = (uint64_t) limit[i].yield * 1000;
        ep->tat = 0;
    }
}


/* an exiting worker hands its attempts in flight back to the others */

void
ngx_http_webhook_sse_outbox_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                        i, n;
    ngx_queue_t                      *q;
    ngx_http_webhook_sse_outbox_t    *ob;
    ngx_http_webhook_sse_attempt_t   *a;
    ngx_http_webhook_sse_courier_t   *courier;
    ngx_http_webhook_sse_delivery_t  *d;

    if (ngx_http_webhook_sse_couriers == NULL) {
        return;
    }

    ngx_http_webhook_sse_curl_exit();
    ngx_http_webhook_sse_outbox_sign_exit();

    courier = ngx_http_webhook_sse_couriers->elts;

    for (i = 0; i < ngx_http_webhook_sse_couriers->nelts; i++) {

        if (courier[i].timer.timer_set) {
            ngx_del_timer(&courier[i].timer);
        }

        if (courier[i].kick.posted) {
            ngx_delete_posted_event(&courier[i].kick);
        }

        ob = courier[i].zone->sh->outbox;
        n = 0;

        ngx_http_webhook_sse_store_lock(courier[i].zone);

        for (q = ngx_queue_head(&courier[i].attempts);
             q != ngx_queue_sentinel(&courier[i].attempts);
             q = ngx_queue_next(q))
        {
            a = ngx_queue_data(q, ngx_http_webhook_sse_attempt_t, link);

            d = ngx_http_webhook_sse_outbox_find(ob, a->id);

            if (d == NULL || d->owner != ngx_pid
                || d->state != NGX_HTTP_WEBHOOK_SSE_LEASED)
            {
                continue;
            }

            /* not an attempt that counts: it was cut short */
            d->attempts--;
            d->due = 0;
            d->endpoint->ninflight--;
            ngx_http_webhook_sse_outbox_requeue(ob, d);
            n++;
        }

        ngx_http_webhook_sse_store_unlock(courier[i].zone);

        if (n) {
            ngx_log_error(NGX_LOG_INFO, cycle->log, 0,
                          "webhook_forward: %ui attempts in flight handed "
                          "back on exit", n);
        }
    }
}


static ngx_http_webhook_sse_courier_t *
ngx_http_webhook_sse_outbox_courier(ngx_http_webhook_sse_zone_t *zone)
{
    ngx_uint_t                       i;
    ngx_http_webhook_sse_courier_t  *courier;

    if (ngx_http_webhook_sse_couriers == NULL) {
        return NULL;
    }

    courier = ngx_http_webhook_sse_couriers->elts;

    for (i = 0; i < ngx_http_webhook_sse_couriers->nelts; i++) {
        if (courier[i].zone == zone) {
            return &courier[i];
        }
    }

    return NULL;
}


/*
 * Before a publish stores its message: NGX_DECLINED when the deliveries
 * waiting in the zone already take their half of it.
 */

ngx_int_t
ngx_http_webhook_sse_outbox_admit(ngx_http_request_t *r)
{
    size_t                            bytes;
    ngx_http_webhook_sse_zone_t      *zone;
    ngx_http_webhook_sse_outbox_t    *ob;
    ngx_http_webhook_sse_loc_conf_t  *wlcf;

    wlcf = ngx_http_get_module_loc_conf(r, ngx_http_webhook_sse_module);

    zone = wlcf->publish->data;
    ob = zone->sh->outbox;

    /* ncallbacks read unlocked: a hint, a word read at once */
    if (ob == NULL || (wlcf->forward->forwards == NULL && !ob->ncallbacks)) {
        return NGX_OK;
    }

    /* a word read at once, without the lock: the bound is not exact */
    bytes = ob->bytes;

    if (bytes < zone->shm_zone->shm.size / 2) {
        return NGX_OK;
    }

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "webhook zone \"%V\": deliveries waiting take %uz bytes, "
                  "half the zone: publish refused",
                  &zone->shm_zone->shm.name, bytes);

    return NGX_DECLINED;
}


/* after a publish stored its message: queue its deliveries */

void
ngx_http_webhook_sse_outbox_enqueue(ngx_http_request_t *r, ngx_str_t *session,
    ngx_str_t *id, int64_t time, ngx_str_t *extra, ngx_str_t *members)
{
    u_char                               *p;
    size_t                                dropped;
    int64_t                               now, created;
    ngx_int_t                             rc;
    ngx_uint_t                            i, n;
    ngx_array_t                          *forwards;
    ngx_http_webhook_sse_zone_t          *zone;
    ngx_http_webhook_sse_outbox_t        *ob;
    ngx_http_webhook_sse_parcel_t        *parcels;
    ngx_http_webhook_sse_forward_t       *fwd;
    ngx_http_webhook_sse_courier_t       *courier;
    ngx_http_webhook_sse_loc_conf_t      *wlcf;
    ngx_http_webhook_sse_forward_conf_t  *fcf;
    ngx_http_webhook_sse_payload_t        pl;

    wlcf = ngx_http_get_module_loc_conf(r, ngx_http_webhook_sse_module);
    fcf = wlcf->forward;
    forwards = fcf->forwards;

    zone = wlcf->publish->data;
    ob = zone->sh->outbox;

    /* ncallbacks read unlocked: a hint, a word read at once */
    if (forwards == NULL && (ob == NULL || !ob->ncallbacks || !session->len)) {
        return;
    }

    if (ob == NULL) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "webhook zone \"%V\" has no outbound queue: message "
                      "\"%V\" not forwarded", &zone->shm_zone->shm.name, id);
        return;
    }

    ngx_memzero(&pl, sizeof(ngx_http_webhook_sse_payload_t));

    pl.id = id->data;
    pl.id_len = id->len;
    pl.time = time;
    pl.session = session->len ? session->data : NULL;
    pl.session_len = session->len;
    pl.message_path = wlcf->message_field.len ? wlcf->message_field.data
                                              : NULL;
    pl.message_path_len = wlcf->message_field.len;

    /* the event's members: the session named by the URL, then the body's */

    pl.members_len = extra->len + (extra->len && members->len) + members->len;

    p = ngx_pnalloc(r->pool, pl.members_len + 1);
    if (p == NULL) {
        goto failed;
    }

    pl.members = p;
    p = ngx_cpymem(p, extra->data, extra->len);

    if (extra->len && members->len) {
        *p++ = ',';
    }

    ngx_memcpy(p, members->data, members->len);

    n = forwards ? forwards->nelts : 0;

    parcels = ngx_pcalloc(r->pool,
                          (n + 1) * sizeof(ngx_http_webhook_sse_parcel_t));
    if (parcels == NULL) {
        goto failed;
    }

    n = 0;

    if (forwards) {
        fwd = forwards->elts;

        for (i = 0; i < forwards->nelts; i++) {
            if (ngx_http_webhook_sse_outbox_parcel(r, &fwd[i], &pl,
                                                   &parcels[n])
                == NGX_OK)
            {
                n++;
            }
        }
    }

    /* the session's own callback, in the conversation format */

    if (session->len && ob->ncallbacks) {
        rc = ngx_http_webhook_sse_outbox_registered(r, zone, session, &pl,
                                                    &parcels[n]);
        if (rc == NGX_ERROR) {
            goto failed;
        }

        if (rc == NGX_OK) {
            n++;
        }
    }

    created = ngx_http_webhook_sse_outbox_usec();
    now = ngx_http_webhook_sse_now();
    dropped = 0;

    ngx_http_webhook_sse_store_lock(zone);

    for (i = 0; i < n; i++) {
        if (ngx_http_webhook_sse_outbox_queue(zone, fcf, &parcels[i], id,
                                              created, now)
            != NGX_OK)
        {
            parcels[i].dropped = 1;
            dropped++;
        }
    }

    ngx_http_webhook_sse_store_unlock(zone);

    for (i = 0; i < n; i++) {
        if (parcels[i].dropped) {
            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "webhook zone \"%V\" has no room: message \"%V\" "
                          "not forwarded to %V", &zone->shm_zone->shm.name,
                          id, &parcels[i].endpoint);
        }
    }

    if (n > dropped) {
        courier = ngx_http_webhook_sse_outbox_courier(zone);

        if (courier) {
            courier->published++;
            ngx_http_webhook_sse_outbox_kick(courier);
        }
    }

    return;

failed:

    ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                  "webhook_forward: out of memory: message \"%V\" not "
                  "forwarded", id);
}


/* URL, endpoint, key and body of one webhook_forward, in the pool */

/*
 * One delivery into the zone's queue, the zone locked: its endpoint (made
 * when new, with the settings of this forward), the delivery with its
 * parts copied in the order the courier reads them.  NGX_DECLINED: no
 * room in the zone, the delivery is dropped.
 */

static ngx_int_t
ngx_http_webhook_sse_outbox_queue(ngx_http_webhook_sse_zone_t *zone,
    ngx_http_webhook_sse_forward_conf_t *fcf,
    ngx_http_webhook_sse_parcel_t *parcel, ngx_str_t *id, int64_t created,
    int64_t now)
{
    u_char                           *p;
    size_t                            size;
    ngx_http_webhook_sse_outbox_t    *ob;
    ngx_http_webhook_sse_endpoint_t  *ep;
    ngx_http_webhook_sse_delivery_t  *d;

    ob = zone->sh->outbox;

    ep = ngx_http_webhook_sse_outbox_endpoint(zone, &parcel->endpoint);
    if (ep == NULL) {
        return NGX_DECLINED;
    }

    ep->concurrency = fcf->concurrency;
    ep->interval = fcf->interval;
    ep->yield = (uint64_t) fcf->yield * 1000;

    size = offsetof(ngx_http_webhook_sse_delivery_t, data)
           + (parcel->runtime ? sizeof(ngx_http_webhook_sse_allow_t) : 0)
           + parcel->url.len + parcel->secret.len + id->len
           + parcel->body.len + fcf->trusted_certificate.len;

    d = ngx_http_webhook_sse_outbox_alloc(zone, size);
    if (d == NULL) {
        ep->dropped++;
        return NGX_DECLINED;
    }

    ngx_memzero(d, offsetof(ngx_http_webhook_sse_delivery_t, data));

    d->node.key = (ngx_rbtree_key_t) ob->next_id++;
    d->endpoint = ep;
    d->created = created;
    d->due = now;
    d->state = NGX_HTTP_WEBHOOK_SSE_QUEUED;
    d->runtime = parcel->runtime;
    d->plain = parcel->plain;
    d->timeout = fcf->timeout;
    d->nretry = fcf->retry->nelts;
    ngx_memcpy(d->retry, fcf->retry->elts,
               fcf->retry->nelts * sizeof(ngx_msec_t));

    d->size = size;
    d->url_len = parcel->url.len;
    d->secret_len = parcel->secret.len;
    d->id_len = id->len;
    d->body_len = parcel->body.len;
    d->ca_len = fcf->trusted_certificate.len;

    p = d->data;

    if (d->runtime) {
        p = ngx_cpymem(p, fcf->allow, sizeof(ngx_http_webhook_sse_allow_t));
    }

    p = ngx_cpymem(p, parcel->url.data, parcel->url.len);
    p = ngx_cpymem(p, parcel->secret.data, parcel->secret.len);
    p = ngx_cpymem(p, id->data, id->len);
    p = ngx_cpymem(p, parcel->body.data, parcel->body.len);
    ngx_memcpy(p, fcf->trusted_certificate.data, fcf->trusted_certificate.len);

    ngx_rbtree_insert(&ob->deliveries, &d->node);
    ngx_queue_insert_tail(&ep->queued, &d->queue);
    ep->nqueued++;
    ob->waiting++;
    ob->bytes += size;

    return NGX_OK;
}


static ngx_int_t
ngx_http_webhook_sse_outbox_parcel(ngx_http_request_t *r,
    ngx_http_webhook_sse_forward_t *fwd, ngx_http_webhook_sse_payload_t *pl,
    ngx_http_webhook_sse_parcel_t *parcel)
{
    u_char  *body;
    size_t   len;

    if (fwd->url.lengths == NULL) {
        parcel->url = fwd->url.value;
        parcel->endpoint = fwd->endpoint;

    } else {
        if (ngx_http_complex_value(r, &fwd->url, &parcel->url) != NGX_OK) {
            return NGX_ERROR;
        }

        parcel->endpoint.data = ngx_pnalloc(r->pool,
                                           NGX_HTTP_WEBHOOK_SSE_ENDPOINT_MAX);
        if (parcel->endpoint.data == NULL) {
            return NGX_ERROR;
        }

        if (ngx_http_webhook_sse_forward_endpoint(parcel->url.data,
                                                  parcel->url.len,
                                                  &parcel->endpoint,
                                                  &parcel->plain)
            != NGX_OK)
        {
            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "webhook_forward URL \"%V\" is not an absolute "
                          "http(s) URL: message \"%*s\" not forwarded",
                          &parcel->url, pl->id_len, pl->id);
            return NGX_DECLINED;
        }
    }

    parcel->secret = fwd->secret;

    if (fwd->format == NGX_HTTP_WEBHOOK_SSE_FORMAT_EVENT) {
        len = ngx_http_webhook_sse_payload_event(NULL, pl);

        parcel->body.data = ngx_pnalloc(r->pool, len);
        if (parcel->body.data == NULL) {
            return NGX_ERROR;
        }

        parcel->body.len = ngx_http_webhook_sse_payload_event(
                                                     parcel->body.data, pl);
        return NGX_OK;
    }

    if (ngx_http_webhook_sse_payload_conversation(pl, &body, &len) != 0) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "webhook_forward: cannot build the conversation "
                      "payload of message \"%*s\"", pl->id_len, pl->id);
        return NGX_ERROR;
    }

    parcel->body.data = ngx_pnalloc(r->pool, len);

    if (parcel->body.data) {
        ngx_memcpy(parcel->body.data, body, len);
        parcel->body.len = len;
    }

    free(body);

    return parcel->body.data ? NGX_OK : NGX_ERROR;
}


/* the parcel of a session's own callback: NGX_DECLINED when it has none */

static ngx_int_t
ngx_http_webhook_sse_outbox_registered(ngx_http_request_t *r,
    ngx_http_webhook_sse_zone_t *zone, ngx_str_t *session,
    ngx_http_webhook_sse_payload_t *pl, ngx_http_webhook_sse_parcel_t *parcel)
{
    u_char                          *body;
    size_t                           len;
    ngx_int_t                        rc;
    ngx_http_webhook_sse_forward_t   fwd;

    ngx_memzero(&fwd, sizeof(ngx_http_webhook_sse_forward_t));

    fwd.url.value.data = ngx_pnalloc(r->pool,
                                     NGX_HTTP_WEBHOOK_SSE_URL_MAX
                                     + NGX_HTTP_WEBHOOK_SSE_FWD_SECRET_MAX
                                     + NGX_HTTP_WEBHOOK_SSE_ENDPOINT_MAX);
    if (fwd.url.value.data == NULL) {
        return NGX_ERROR;
    }

    fwd.secret.data = fwd.url.value.data + NGX_HTTP_WEBHOOK_SSE_URL_MAX;
    fwd.endpoint.data = fwd.secret.data + NGX_HTTP_WEBHOOK_SSE_FWD_SECRET_MAX;

    rc = ngx_http_webhook_sse_outbox_callback(zone, session, &fwd.url.value,
                                              &fwd.secret);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_http_webhook_sse_forward_endpoint(fwd.url.value.data,
                                              fwd.url.value.len,
                                              &fwd.endpoint,
                                              &parcel->plain)
        != NGX_OK)
    {
        return NGX_DECLINED;
    }

    parcel->url = fwd.url.value;
    parcel->endpoint = fwd.endpoint;
    parcel->secret = fwd.secret;
    parcel->runtime = 1;

    if (ngx_http_webhook_sse_payload_conversation(pl, &body, &len) != 0) {
        return NGX_ERROR;
    }

    parcel->body.data = ngx_pnalloc(r->pool, len);

    if (parcel->body.data) {
        ngx_memcpy(parcel->body.data, body, len);
        parcel->body.len = len;
    }

    free(body);

    return parcel->body.data ? NGX_OK : NGX_ERROR;
}


/* zone lock held */

static ngx_http_webhook_sse_endpoint_t *
ngx_http_webhook_sse_outbox_endpoint(ngx_http_webhook_sse_zone_t *zone,
    ngx_str_t *key)
{
    uint32_t                          hash;
    ngx_queue_t                      *q;
    ngx_rbtree_node_t                *node, *sentinel;
    ngx_http_webhook_sse_outbox_t    *ob;
    ngx_http_webhook_sse_endpoint_t  *ep;

    ob = zone->sh->outbox;
    hash = ngx_crc32_short(key->data, key->len);

    node = ob->endpoints.root;
    sentinel = ob->endpoints.sentinel;

    while (node != sentinel) {

        if (hash != node->key) {
            node = (hash < node->key) ? node->left : node->right;
            continue;
        }

        ep = (ngx_http_webhook_sse_endpoint_t *) node;

        if (ep->len == key->len
            && ngx_memcmp(ep->key, key->data, key->len) == 0)
        {
            return ep;
        }

        /* equal hashes go right (ngx_rbtree_insert_value) */
        node = node->right;
    }

    /*
     * Run-time callbacks may name any number of hosts: past the bound,
     * the oldest endpoint with nothing queued, in flight or kept goes,
     * and its figures with it.
     */

    if (ob->nendpoints >= NGX_HTTP_WEBHOOK_SSE_ENDPOINTS_MAX) {
        for (q = ngx_queue_head(&ob->endpoint_list);
             q != ngx_queue_sentinel(&ob->endpoint_list);
             q = ngx_queue_next(q))
        {
            ep = ngx_queue_data(q, ngx_http_webhook_sse_endpoint_t, link);

            if (ep->nqueued == 0 && ep->ninflight == 0 && ep->nkept == 0) {
                ngx_queue_remove(&ep->link);
                ngx_rbtree_delete(&ob->endpoints, &ep->node);
                ngx_slab_free_locked(zone->shpool, ep);
                ob->nendpoints--;
                break;
            }
        }
    }

    ep = ngx_http_webhook_sse_outbox_alloc(zone,
                  offsetof(ngx_http_webhook_sse_endpoint_t, key) + key->len);
    if (ep == NULL) {
        return NULL;
    }

    ob->nendpoints++;

    ngx_memzero(ep, offsetof(ngx_http_webhook_sse_endpoint_t, key));

    ep->node.key = hash;
    ep->len = key->len;
    ngx_memcpy(ep->key, key->data, key->len);
    ngx_queue_init(&ep->queued);
    ngx_queue_init(&ep->leased);

    ngx_rbtree_insert(&ob->endpoints, &ep->node);
    ngx_queue_insert_tail(&ob->endpoint_list, &ep->link);

    return ep;
}


/*
 * Zone lock held.  When memory runs short, kept (failed, dead) deliveries
 * go first, then what the store may evict (old messages): a queued
 * delivery is a promise, a retained message is history.
 */

static void *
ngx_http_webhook_sse_outbox_alloc(ngx_http_webhook_sse_zone_t *zone,
    size_t size)
{
    void                             *p;
    ngx_http_webhook_sse_outbox_t    *ob;
    ngx_http_webhook_sse_delivery_t  *d;

    ob = zone->sh->outbox;

    for ( ;; ) {
        p = ngx_slab_alloc_locked(zone->shpool, size);
        if (p) {
            return p;
        }

        if (ngx_queue_empty(&ob->kept)) {
            return ngx_http_webhook_sse_store_alloc_evicting(zone, size);
        }

        d = ngx_queue_data(ngx_queue_head(&ob->kept),
                           ngx_http_webhook_sse_delivery_t, queue);
        ngx_http_webhook_sse_outbox_free(zone, d);
    }
}


/*
 * The courier looks at the queue on the next turn of the event loop (at
 * once: nginx does not wait for events then), after all this turn's
 * events, pipelined requests included, and that turn's: so it counts the
 * publishes of a whole turn, and starts the deliveries of all of them at
 * once.
 */

static void
ngx_http_webhook_sse_outbox_kick(ngx_http_webhook_sse_courier_t *courier)
{
    if (courier && !courier->kick.posted) {
        ngx_post_event(&courier->kick, &ngx_posted_next_events);
    }
}


static void
ngx_http_webhook_sse_outbox_handler(ngx_event_t *ev)
{
    ngx_http_webhook_sse_courier_t  *courier = ev->data;

    if (ev == &courier->kick) {
        /*
         * The publishes of a turn: one that served many (several
         * connections ready at once, pipelined requests) makes the worker
         * busy.
         */

        if (courier->published >= NGX_HTTP_WEBHOOK_SSE_BUSY) {
            courier->busy = ngx_current_msec
                            + NGX_HTTP_WEBHOOK_SSE_BUSY_TIME;
        }

        courier->published = 0;
    }

    ngx_http_webhook_sse_outbox_dispatch(courier);
}


/* takes what may start now and starts it; sets the timer for the rest */

static void
ngx_http_webhook_sse_outbox_dispatch(ngx_http_webhook_sse_courier_t *courier)
{
    u_char                           *p, *last;
    size_t                            taken, need, size;
    ngx_uint_t                        busy;
    ngx_msec_t                        wait;
    ngx_http_webhook_sse_delivery_t  *d;

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    /* publishes first (ngx_http_webhook_sse_outbox_handler) */
    busy = ((ngx_msec_int_t) (courier->busy - ngx_current_msec) > 0);

    for ( ;; ) {
        if (courier->scratch == NULL) {
            size = NGX_HTTP_WEBHOOK_SSE_SCRATCH;

            courier->scratch = ngx_alloc(size, ngx_cycle->log);
            if (courier->scratch == NULL) {
                wait = NGX_HTTP_WEBHOOK_SSE_SWEEP;
                break;
            }

            courier->scratch_size = size;
        }

        wait = ngx_http_webhook_sse_outbox_take(courier, busy, &taken,
                                                &need);

        p = courier->scratch;
        last = p + taken;

        while (p < last) {
            d = (ngx_http_webhook_sse_delivery_t *) p;
            ngx_http_webhook_sse_outbox_start(courier, d);
            p += ngx_align(d->size, sizeof(uint64_t));
        }

        if (need == 0) {
            break;
        }

        if (need <= courier->scratch_size) {
            continue;
        }

        /* a delivery larger than the scratch space: make room, go on */

        ngx_free(courier->scratch);

        courier->scratch = ngx_alloc(need, ngx_cycle->log);
        if (courier->scratch == NULL) {
            wait = NGX_HTTP_WEBHOOK_SSE_SWEEP;
            break;
        }

        courier->scratch_size = need;
    }

    if (courier->timer.timer_set) {
        ngx_del_timer(&courier->timer);
    }

    ngx_add_timer(&courier->timer, wait);
}


/*
 * Under the lock: expired leases back to their queues, then leases on
 * what may start now, copied to the scratch space.  Returns how long until
 * something more may start.  *need: a delivery that did not fit.
 *
 * A busy worker (publishes waiting on it) starts deliveries only once the
 * oldest waiting one of an endpoint has waited its webhook_forward_yield,
 * or when the deliveries waiting take their share of the zone: so a burst
 * of publishes is served at their own speed, the deliveries follow, and
 * they never wait longer than that bound for it (nor push publishes out
 * of the zone: those are refused at half of it).
 */

static ngx_msec_t
ngx_http_webhook_sse_outbox_take(ngx_http_webhook_sse_courier_t *courier,
    ngx_uint_t busy, size_t *taken, size_t *need)
{
    size_t                            used, size;
    int64_t                           now, usec, wake, tolerance;
    ngx_queue_t                      *q, *next, *eq;
    ngx_http_webhook_sse_zone_t      *zone;
    ngx_http_webhook_sse_outbox_t    *ob;
    ngx_http_webhook_sse_endpoint_t  *ep;
    ngx_http_webhook_sse_delivery_t  *d;

    zone = courier->zone;
    ob = zone->sh->outbox;

    used = 0;
    *need = 0;

    usec = ngx_http_webhook_sse_outbox_usec();
    now = usec / 1000;
    wake = now + NGX_HTTP_WEBHOOK_SSE_SWEEP;

    ngx_http_webhook_sse_store_lock(zone);

    if (busy && ob->bytes >= zone->shm_zone->shm.size
                              / NGX_HTTP_WEBHOOK_SSE_YIELD_SHARE)
    {
        busy = 0;
    }

    for (eq = ngx_queue_head(&ob->endpoint_list);
         eq != ngx_queue_sentinel(&ob->endpoint_list);
         eq = ngx_queue_next(eq))
    {
        ep = ngx_queue_data(eq, ngx_http_webhook_sse_endpoint_t, link);

        /* attempts of workers that died or stalled */

        for (q = ngx_queue_head(&ep->leased);
             q != ngx_queue_sentinel(&ep->leased);
             q = next)
        {
            next = ngx_queue_next(q);
            d = ngx_queue_data(q, ngx_http_webhook_sse_delivery_t, queue);

            if (d->lease > now) {
                wake = ngx_min(wake, d->lease);
                continue;
            }

            d->due = 0;
            ep->ninflight--;
            ngx_http_webhook_sse_outbox_requeue(ob, d);
        }

        tolerance = (ep->interval < 1000) ? 1000 : 0;

        for (q = ngx_queue_head(&ep->queued);
             q != ngx_queue_sentinel(&ep->queued);
             q = next)
        {
            next = ngx_queue_next(q);
            d = ngx_queue_data(q, ngx_http_webhook_sse_delivery_t, queue);

            if (ep->disabled && ep->disabled == ob->generation) {
                d->status = 410;
                ngx_cpystrn(d->error, (u_char *) "endpoint disabled by "
                            "410 Gone until reload",
                            NGX_HTTP_WEBHOOK_SSE_FWD_ERROR_LEN);
                ngx_memcpy(ep->error, d->error,
                           NGX_HTTP_WEBHOOK_SSE_FWD_ERROR_LEN);
                ep->nqueued--;
                ep->failed++;
                ngx_http_webhook_sse_outbox_keep(zone, d);
                continue;
            }

            if (ep->ninflight >= ep->concurrency) {
                break;
            }

            if (d->due > now) {
                wake = ngx_min(wake, d->due);
                continue;
            }

            if (ep->interval && ep->tat - usec > tolerance) {
                wake = ngx_min(wake, (ep->tat - tolerance) / 1000 + 1);
                break;
            }

            if (busy && usec - d->created < (int64_t) ep->yield) {
                /* the oldest waiting: look again on the next turn */
                wake = now;
                break;
            }

            size = ngx_align(d->size, sizeof(uint64_t));

            if (used + size > courier->scratch_size) {
                /* the caller starts these and comes back for more */
                *need = ngx_max(size, courier->scratch_size);
                break;
            }

            ngx_memcpy(courier->scratch + used, d, d->size);
            used += size;

            if (ep->interval) {
                ep->tat = ngx_max(ep->tat, usec) + (int64_t) ep->interval;
            }

            d->owner = ngx_pid;
            d->lease = now + d->timeout + NGX_HTTP_WEBHOOK_SSE_LEASE_GRACE;
            d->attempts++;
            d->state = NGX_HTTP_WEBHOOK_SSE_LEASED;

            ngx_queue_remove(&d->queue);
            ngx_queue_insert_tail(&ep->leased, &d->queue);
            ep->nqueued--;
            ep->ninflight++;
        }

        if (*need) {
            break;
        }
    }

    ngx_http_webhook_sse_store_unlock(zone);

    *taken = used;

    return (wake <= now) ? 1 : (ngx_msec_t) (wake - now);
}


/* zone lock held: back to the endpoint's queue, in publish order */

static void
ngx_http_webhook_sse_outbox_requeue(ngx_http_webhook_sse_outbox_t *ob,
    ngx_http_webhook_sse_delivery_t *d)
{
    ngx_queue_t                      *q;
    ngx_http_webhook_sse_endpoint_t  *ep;
    ngx_http_webhook_sse_delivery_t  *o;

    ep = d->endpoint;

    ngx_queue_remove(&d->queue);

    d->owner = 0;
    d->lease = 0;
    d->state = NGX_HTTP_WEBHOOK_SSE_QUEUED;

    for (q = ngx_queue_head(&ep->queued);
         q != ngx_queue_sentinel(&ep->queued);
         q = ngx_queue_next(q))
    {
        o = ngx_queue_data(q, ngx_http_webhook_sse_delivery_t, queue);

        if (o->node.key > d->node.key) {
            break;
        }
    }

    /* before q: at the tail when q is the sentinel */
    ngx_queue_insert_tail(q, &d->queue);
    ep->nqueued++;
}


/* zone lock held: a failed or dead delivery, kept for redrive */

static void
ngx_http_webhook_sse_outbox_keep(ngx_http_webhook_sse_zone_t *zone,
    ngx_http_webhook_sse_delivery_t *d)
{
    ngx_http_webhook_sse_outbox_t    *ob;
    ngx_http_webhook_sse_delivery_t  *oldest;

    ob = zone->sh->outbox;

    ngx_queue_remove(&d->queue);

    d->state = NGX_HTTP_WEBHOOK_SSE_KEPT;
    d->owner = 0;

    ob->waiting--;
    ob->bytes -= d->size;

    ngx_queue_insert_tail(&ob->kept, &d->queue);
    ob->nkept++;
    d->endpoint->nkept++;

    while (ob->nkept > NGX_HTTP_WEBHOOK_SSE_KEPT_MAX) {
        oldest = ngx_queue_data(ngx_queue_head(&ob->kept),
                                ngx_http_webhook_sse_delivery_t, queue);
        ngx_http_webhook_sse_outbox_free(zone, oldest);
    }
}


/* zone lock held */

static void
ngx_http_webhook_sse_outbox_free(ngx_http_webhook_sse_zone_t *zone,
    ngx_http_webhook_sse_delivery_t *d)
{
    ngx_http_webhook_sse_outbox_t  *ob;

    ob = zone->sh->outbox;

    ngx_queue_remove(&d->queue);
    ngx_rbtree_delete(&ob->deliveries, &d->node);

    if (d->state == NGX_HTTP_WEBHOOK_SSE_KEPT) {
        ob->nkept--;
        d->endpoint->nkept--;

    } else {
        ob->waiting--;
        ob->bytes -= d->size;
    }

    ngx_slab_free_locked(zone->shpool, d);
}


/* a copy of a leased delivery: sign it and hand it to the HTTP client */

static void
ngx_http_webhook_sse_outbox_start(ngx_http_webhook_sse_courier_t *courier,
    ngx_http_webhook_sse_delivery_t *d)
{
    u_char                              *p, *url, *secret, *id, *body, *ca;
    u_char                              *signed_content;
    size_t                               size, len;
    time_t                               ts;
    ngx_str_t                            key, mac_str, b64;
    ngx_uint_t                           n;
    ngx_http_webhook_sse_attempt_t      *a;
    ngx_http_webhook_sse_post_result_t   res;
    u_char                               mac[NGX_HTTP_WEBHOOK_SSE_MAC_LEN];

    static char  content_type[] = "Content-Type: application/json";
    static char  user_agent[] = "User-Agent: nginx-webhook-sse";
    static char  no_expect[] = "Expect:";

    p = d->data;

    if (d->runtime) {
        p += sizeof(ngx_http_webhook_sse_allow_t);
    }

    url = p;
    secret = url + d->url_len;
    id = secret + d->secret_len;
    body = id + d->id_len;
    ca = body + d->body_len;

    ts = ngx_time();

    size = offsetof(ngx_http_webhook_sse_attempt_t, data)
           + d->url_len + 1 + d->body_len + d->ca_len + 1
           + sizeof("webhook-id: ") + d->id_len
           + sizeof("webhook-timestamp: ") + NGX_TIME_T_LEN
           + sizeof("webhook-signature: v1,")
           + ngx_base64_encoded_length(NGX_HTTP_WEBHOOK_SSE_MAC_LEN);

    a = ngx_alloc(size, ngx_cycle->log);
    if (a == NULL) {
        goto failed;
    }

    ngx_memzero(a, offsetof(ngx_http_webhook_sse_attempt_t, data));

    a->courier = courier;
    a->id = (uint64_t) d->node.key;

    if (d->runtime) {
        ngx_memcpy(&a->allow, d->data, sizeof(ngx_http_webhook_sse_allow_t));
        a->post.allow = &a->allow;
    }

    p = a->data;

    a->post.url = (char *) p;
    p = ngx_cpymem(p, url, d->url_len);
    *p++ = '\0';

    a->post.body.data = p;
    a->post.body.len = d->body_len;
    p = ngx_cpymem(p, body, d->body_len);

    if (d->ca_len) {
        a->post.cainfo = (char *) p;
        p = ngx_cpymem(p, ca, d->ca_len);
        *p++ = '\0';
    }

    a->post.timeout = d->timeout;
    a->post.plain = d->plain;
    a->post.headers = a->headers;

    n = 0;
    a->headers[n++] = content_type;
    a->headers[n++] = user_agent;
    a->headers[n++] = no_expect;

    a->headers[n++] = (char *) p;
    p = ngx_sprintf(p, "webhook-id: %*s%Z", d->id_len, id);

    a->headers[n++] = (char *) p;
    p = ngx_sprintf(p, "webhook-timestamp: %T%Z", ts);

    if (d->secret_len) {
        len = ngx_http_webhook_sse_payload_signed_content(NULL, id, d->id_len,
                                                          ts, body,
                                                          d->body_len);

        signed_content = ngx_alloc(len, ngx_cycle->log);
        if (signed_content == NULL) {
            ngx_free(a);
            goto failed;
        }

        ngx_http_webhook_sse_payload_signed_content(signed_content, id,
                                                    d->id_len, ts, body,
                                                    d->body_len);

        key.data = secret;
        key.len = d->secret_len;

        if (ngx_http_webhook_sse_outbox_sign(&key, signed_content, len, mac)
            != NGX_OK)
        {
            ngx_free(signed_content);
            ngx_free(a);
            goto failed;
        }

        ngx_free(signed_content);

        a->headers[n++] = (char *) p;
        p = ngx_cpymem(p, "webhook-signature: v1,",
                       sizeof("webhook-signature: v1,") - 1);

        mac_str.data = mac;
        mac_str.len = NGX_HTTP_WEBHOOK_SSE_MAC_LEN;
        b64.data = p;

        ngx_encode_base64(&b64, &mac_str);

        p += b64.len;
        *p++ = '\0';
    }

    a->headers[n] = NULL;

    ngx_queue_insert_tail(&courier->attempts, &a->link);

    if (ngx_http_webhook_sse_curl_post(&a->post,
                                       ngx_http_webhook_sse_outbox_done, a)
        != NGX_OK)
    {
        ngx_queue_remove(&a->link);
        ngx_free(a);
        goto failed;
    }

    return;

failed:

    /* as if the attempt had failed on the network: it is retried */

    a = ngx_calloc(sizeof(ngx_http_webhook_sse_attempt_t), ngx_cycle->log);
    if (a == NULL) {
        /* the lease expires and another attempt is made */
        return;
    }

    a->courier = courier;
    a->id = (uint64_t) d->node.key;
    ngx_queue_insert_tail(&courier->attempts, &a->link);

    ngx_memzero(&res, sizeof(ngx_http_webhook_sse_post_result_t));
    ngx_cpystrn((u_char *) res.error, (u_char *) "the worker could not start "
                "the request", sizeof(res.error));

    ngx_http_webhook_sse_outbox_done(a, &res);
}


/* the HTTP client's answer: delivered, retried, failed or dead */

static void
ngx_http_webhook_sse_outbox_done(void *data,
    ngx_http_webhook_sse_post_result_t *res)
{
    ngx_http_webhook_sse_attempt_t *a = data;

    size_t                            endpoint_len;
    int64_t                           now, wait;
    ngx_uint_t                        retry, disable, outcome, attempts;
    ngx_http_webhook_sse_zone_t      *zone;
    ngx_http_webhook_sse_outbox_t    *ob;
    ngx_http_webhook_sse_courier_t   *courier;
    ngx_http_webhook_sse_endpoint_t  *ep;
    ngx_http_webhook_sse_delivery_t  *d;
    u_char                     endpoint[NGX_HTTP_WEBHOOK_SSE_ENDPOINT_MAX];

    courier = a->courier;
    zone = courier->zone;
    ob = zone->sh->outbox;

    ngx_queue_remove(&a->link);

    retry = 0;
    disable = 0;

    if (res->status >= 200 && res->status < 300) {
        /* void */

    } else if (res->status == 0 || res->status == 408 || res->status == 429
               || res->status >= 500)
    {
        retry = 1;

    } else if (res->status == 410) {
        disable = 1;
    }

    now = ngx_http_webhook_sse_now();
    outcome = NGX_HTTP_WEBHOOK_SSE_STALE;
    attempts = 0;
    endpoint_len = 0;

    ngx_http_webhook_sse_store_lock(zone);

    d = ngx_http_webhook_sse_outbox_find(ob, a->id);

    if (d && d->owner == ngx_pid && d->state == NGX_HTTP_WEBHOOK_SSE_LEASED) {
        ep = d->endpoint;
        ep->ninflight--;

        d->status = res->status;
        ngx_cpystrn(d->error, (u_char *) res->error,
                    NGX_HTTP_WEBHOOK_SSE_FWD_ERROR_LEN);
        ep->status = res->status;
        ngx_cpystrn(ep->error, (u_char *) res->error,
                    NGX_HTTP_WEBHOOK_SSE_FWD_ERROR_LEN);

        attempts = d->attempts;
        endpoint_len = ngx_min(ep->len, NGX_HTTP_WEBHOOK_SSE_ENDPOINT_MAX);
        ngx_memcpy(endpoint, ep->key, endpoint_len);

        if (res->status >= 200 && res->status < 300) {
            outcome = NGX_HTTP_WEBHOOK_SSE_DELIVERED;
            ep->delivered++;
            ep->latency[ngx_http_webhook_sse_latency_bucket(
                   ngx_http_webhook_sse_outbox_usec() - d->created)]++;
            ngx_http_webhook_sse_outbox_free(zone, d);

        } else if (retry && d->attempts <= d->nretry) {
            outcome = NGX_HTTP_WEBHOOK_SSE_RETRIED;
            ep->retried++;

            wait = d->retry[d->attempts - 1];

            if (res->retry_after * 1000 > wait) {
                wait = ngx_min(res->retry_after,
                               NGX_HTTP_WEBHOOK_SSE_RETRY_AFTER_MAX) * 1000;
            }

            d->due = now + wait;
            ngx_http_webhook_sse_outbox_requeue(ob, d);

        } else {
            if (retry) {
                outcome = NGX_HTTP_WEBHOOK_SSE_DEAD;
                ep->dead++;

            } else {
                outcome = NGX_HTTP_WEBHOOK_SSE_FAILED;
                ep->failed++;
            }

            if (disable) {
                ep->disabled = ob->generation;
            }

            ngx_http_webhook_sse_outbox_keep(zone, d);
        }
    }

    ngx_http_webhook_sse_store_unlock(zone);

    switch (outcome) {

    case NGX_HTTP_WEBHOOK_SSE_RETRIED:
        ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                      "webhook_forward to %*s: attempt %ui failed (%s), "
                      "retried", endpoint_len, endpoint, attempts,
                      res->error);
        break;

    case NGX_HTTP_WEBHOOK_SSE_FAILED:
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "webhook_forward to %*s: delivery %uL failed for good "
                      "after attempt %ui (%s)%s", endpoint_len, endpoint,
                      a->id, attempts, res->error,
                      disable ? ": endpoint disabled until reload" : "");
        break;

    case NGX_HTTP_WEBHOOK_SSE_DEAD:
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "webhook_forward to %*s: delivery %uL dead after %ui "
                      "attempts (%s)", endpoint_len, endpoint, a->id,
                      attempts, res->error);
        break;

    default:
        break;
    }

    ngx_free(a);

    ngx_http_webhook_sse_outbox_kick(courier);
}


/* HMAC-SHA256 of data with key, through a kept context of that key */

static ngx_int_t
ngx_http_webhook_sse_outbox_sign(ngx_str_t *key, u_char *data, size_t len,
    u_char *mac)
{
    size_t                       n;
    ngx_uint_t                   i;
    OSSL_PARAM                   params[2];
    ngx_http_webhook_sse_mac_t  *m;

    if (key->len > NGX_HTTP_WEBHOOK_SSE_FWD_SECRET_MAX) {
        return ngx_http_webhook_sse_hmac_sha256(key, data, len, mac);
    }

    if (ngx_http_webhook_sse_hmac == NULL) {
        ngx_http_webhook_sse_hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);

        if (ngx_http_webhook_sse_hmac == NULL) {
            return ngx_http_webhook_sse_hmac_sha256(key, data, len, mac);
        }
    }

    m = NULL;

    for (i = 0; i < NGX_HTTP_WEBHOOK_SSE_MACS; i++) {
        if (ngx_http_webhook_sse_macs[i].ctx
            && ngx_http_webhook_sse_macs[i].len == key->len
            && ngx_memcmp(ngx_http_webhook_sse_macs[i].key, key->data,
                          key->len)
               == 0)
        {
            m = &ngx_http_webhook_sse_macs[i];
            break;
        }
    }

    if (m) {
        /* the same key again: the context starts over with it */
        if (EVP_MAC_init(m->ctx, NULL, 0, NULL) != 1) {
            goto failed;
        }

    } else {
        m = &ngx_http_webhook_sse_macs[ngx_http_webhook_sse_mac_next];
        ngx_http_webhook_sse_mac_next = (ngx_http_webhook_sse_mac_next + 1)
                                        % NGX_HTTP_WEBHOOK_SSE_MACS;

        if (m->ctx) {
            EVP_MAC_CTX_free(m->ctx);
            OPENSSL_cleanse(m->key, m->len);
        }

        m->len = 0;

        m->ctx = EVP_MAC_CTX_new(ngx_http_webhook_sse_hmac);
        if (m->ctx == NULL) {
            return ngx_http_webhook_sse_hmac_sha256(key, data, len, mac);
        }

        params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                                     (char *) "SHA256", 0);
        params[1] = OSSL_PARAM_construct_end();

        if (EVP_MAC_init(m->ctx, key->data, key->len, params) != 1) {
            goto failed;
        }

        ngx_memcpy(m->key, key->data, key->len);
        m->len = key->len;
    }

    if (EVP_MAC_update(m->ctx, data, len) != 1
        || EVP_MAC_final(m->ctx, mac, &n, NGX_HTTP_WEBHOOK_SSE_MAC_LEN) != 1
        || n != NGX_HTTP_WEBHOOK_SSE_MAC_LEN)
    {
        goto failed;
    }

    return NGX_OK;

failed:

    EVP_MAC_CTX_free(m->ctx);
    OPENSSL_cleanse(m->key, m->len);
    m->ctx = NULL;
    m->len = 0;

    return ngx_http_webhook_sse_hmac_sha256(key, data, len, mac);
}


static void
ngx_http_webhook_sse_outbox_sign_exit(void)
{
    ngx_uint_t  i;

    for (i = 0; i < NGX_HTTP_WEBHOOK_SSE_MACS; i++) {
        if (ngx_http_webhook_sse_macs[i].ctx) {
            EVP_MAC_CTX_free(ngx_http_webhook_sse_macs[i].ctx);
            ngx_http_webhook_sse_macs[i].ctx = NULL;
        }

        OPENSSL_cleanse(ngx_http_webhook_sse_macs[i].key,
                        ngx_http_webhook_sse_macs[i].len);
        ngx_http_webhook_sse_macs[i].len = 0;
    }

    if (ngx_http_webhook_sse_hmac) {
        EVP_MAC_free(ngx_http_webhook_sse_hmac);
        ngx_http_webhook_sse_hmac = NULL;
    }
}


static ngx_http_webhook_sse_delivery_t *
ngx_http_webhook_sse_outbox_find(ngx_http_webhook_sse_outbox_t *ob,
    uint64_t id)
{
    ngx_rbtree_node_t  *node, *sentinel;

    node = ob->deliveries.root;
    sentinel = ob->deliveries.sentinel;

    while (node != sentinel) {

        if ((ngx_rbtree_key_t) id == node->key) {
            return (ngx_http_webhook_sse_delivery_t *) node;
        }

        node = ((ngx_rbtree_key_t) id < node->key) ? node->left : node->right;
    }

    return NULL;
}


static int64_t
ngx_http_webhook_sse_outbox_usec(void)
{
    struct timeval  tv;

    ngx_gettimeofday(&tv);

    return (int64_t) tv.tv_sec * 1000000 + tv.tv_usec;
}


static ngx_uint_t
ngx_http_webhook_sse_latency_bucket(int64_t usec)
{
    ngx_uint_t  e, b;

    if (usec < 4) {
        return (usec < 0) ? 0 : (ngx_uint_t) usec;
    }

    e = 63 - __builtin_clzll((unsigned long long) usec);
    b = e * 4 + (((uint64_t) usec >> (e - 2)) & 3);

    return ngx_min(b, NGX_HTTP_WEBHOOK_SSE_LATENCY_BUCKETS - 1);
}


/* the upper end of a bucket, microseconds */

static int64_t
ngx_http_webhook_sse_latency_value(ngx_uint_t bucket)
{
    ngx_uint_t  e, m;

    if (bucket < 8) {
        return bucket + 1;
    }

    e = bucket / 4;
    m = bucket % 4;

    return (int64_t) ((4 + m + 1) << (e - 2));
}


typedef struct {
    u_char      key[NGX_HTTP_WEBHOOK_SSE_ENDPOINT_MAX];
    size_t      len;
    uint64_t    queued;
    uint64_t    inflight;
    uint64_t    kept;
    uint64_t    delivered;
    uint64_t    retried;
    uint64_t    failed;
    uint64_t    dead;
    uint64_t    dropped;
    uint64_t    disabled;
    uint64_t    status;
    uint64_t    p50;
    uint64_t    p99;
    u_char      error[NGX_HTTP_WEBHOOK_SSE_FWD_ERROR_LEN];
    uint32_t    latency[NGX_HTTP_WEBHOOK_SSE_LATENCY_BUCKETS];
} ngx_http_webhook_sse_endpoint_figures_t;


typedef struct {
    char       *name;
    char       *type;
    char       *help;
    size_t      offset;
} ngx_http_webhook_sse_metric_t;


#define ngx_http_webhook_sse_figure(field)                                    \
    offsetof(ngx_http_webhook_sse_endpoint_figures_t, field)

static ngx_http_webhook_sse_metric_t  ngx_http_webhook_sse_metrics[] = {
    { "queued", "gauge", "Deliveries waiting for their attempt.",
      ngx_http_webhook_sse_figure(queued) },
    { "inflight", "gauge", "Deliveries being attempted.",
      ngx_http_webhook_sse_figure(inflight) },
    { "delivered_total", "counter", "Deliveries answered 2xx.",
      ngx_http_webhook_sse_figure(delivered) },
    { "retried_total", "counter", "Attempts that will be retried.",
      ngx_http_webhook_sse_figure(retried) },
    { "failed_total", "counter", "Attempts that failed.",
      ngx_http_webhook_sse_figure(failed) },
    { "dead_total", "counter", "Deliveries given up after the last retry.",
      ngx_http_webhook_sse_figure(dead) },
    { "kept", "gauge", "Dead deliveries kept for a redrive.",
      ngx_http_webhook_sse_figure(kept) },
    { "dropped_total", "counter", "Dead deliveries dropped from the kept.",
      ngx_http_webhook_sse_figure(dropped) },
    { "disabled", "gauge", "1 when the endpoint answered 410 Gone.",
      ngx_http_webhook_sse_figure(disabled) },
    { "last_status", "gauge", "HTTP status of the last attempt.",
      ngx_http_webhook_sse_figure(status) },
    { "latency_p50_microseconds", "gauge",
      "Median publish-to-delivered time.",
      ngx_http_webhook_sse_figure(p50) },
    { "latency_p99_microseconds", "gauge",
      "99th percentile publish-to-delivered time.",
      ngx_http_webhook_sse_figure(p99) },
    { NULL, NULL, NULL, 0 }
};


static int64_t ngx_http_webhook_sse_latency_rank(uint32_t *latency,
    ngx_uint_t permille);


/*
 * The figures of every endpoint for webhook_status: *out is a JSON member
 * (",\"outbound\":[...]") or Prometheus lines, empty without an outbox.
 */

ngx_int_t
ngx_http_webhook_sse_outbox_status(ngx_http_request_t *r,
    ngx_http_webhook_sse_zone_t *zone, ngx_uint_t prometheus, ngx_str_t *out)
{
    u_char                                   *p, *last;
    size_t                                    len;
    ngx_str_t                                *name;
    ngx_uint_t                                n, i, cap;
    ngx_queue_t                              *q;
    ngx_http_webhook_sse_outbox_t            *ob;
    ngx_http_webhook_sse_endpoint_t          *ep;
    ngx_http_webhook_sse_metric_t            *m;
    ngx_http_webhook_sse_endpoint_figures_t  *f, *fig;

    out->len = 0;
    out->data = (u_char *) "";

    ob = zone->sh->outbox;

    if (ob == NULL) {
        return NGX_OK;
    }

    name = &zone->shm_zone->shm.name;

    ngx_http_webhook_sse_store_lock(zone);

    cap = 0;

    for (q = ngx_queue_head(&ob->endpoint_list);
         q != ngx_queue_sentinel(&ob->endpoint_list);
         q = ngx_queue_next(q))
    {
        cap++;
    }

    ngx_http_webhook_sse_store_unlock(zone);

    /* endpoints made in between are left for the next look */

    fig = ngx_palloc(r->pool,
          (cap + 1) * sizeof(ngx_http_webhook_sse_endpoint_figures_t));
    if (fig == NULL) {
        return NGX_ERROR;
    }

    n = 0;

    ngx_http_webhook_sse_store_lock(zone);

    for (q = ngx_queue_head(&ob->endpoint_list);
         q != ngx_queue_sentinel(&ob->endpoint_list) && n < cap;
         q = ngx_queue_next(q))
    {
        ep = ngx_queue_data(q, ngx_http_webhook_sse_endpoint_t, link);
        f = &fig[n++];

        f->len = ngx_min(ep->len, NGX_HTTP_WEBHOOK_SSE_ENDPOINT_MAX);
        ngx_memcpy(f->key, ep->key, f->len);
        f->queued = ep->nqueued;
        f->inflight = ep->ninflight;
        f->kept = ep->nkept;
        f->delivered = ep->delivered;
        f->retried = ep->retried;
        f->failed = ep->failed;
        f->dead = ep->dead;
        f->dropped = ep->dropped;
        f->disabled = (ep->disabled && ep->disabled == ob->generation);
        f->status = ep->status;
        ngx_memcpy(f->error, ep->error, NGX_HTTP_WEBHOOK_SSE_FWD_ERROR_LEN);
        ngx_memcpy(f->latency, ep->latency, sizeof(ep->latency));
    }

    ngx_http_webhook_sse_store_unlock(zone);

    len = 64 + n * (1024 + 6 * NGX_HTTP_WEBHOOK_SSE_FWD_ERROR_LEN
                    + 20 * (NGX_HTTP_WEBHOOK_SSE_ENDPOINT_MAX + name->len));

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;
    last = p + len;

    if (!prometheus) {
        p = ngx_cpymem(p, ",\"outbound\":[", sizeof(",\"outbound\":[") - 1);

        for (i = 0; i < n; i++) {
            f = &fig[i];

            p = ngx_slprintf(p, last, "%s{\"endpoint\":\"",
                             i ? "," : "");
            p += ngx_http_webhook_sse_json_escape(p, f->key, f->len);
            p = ngx_slprintf(p, last,
                    "\",\"queued\":%uL,\"inflight\":%uL,\"delivered\":%uL,"
                    "\"retried\":%uL,\"failed\":%uL,\"dead\":%uL,"
                    "\"kept\":%uL,\"dropped\":%uL,\"disabled\":%s,"
                    "\"lastStatus\":%uL,\"lastError\":\"",
                    f->queued, f->inflight, f->delivered, f->retried,
                    f->failed, f->dead, f->kept, f->dropped,
                    f->disabled ? "true" : "false", f->status);
            p += ngx_http_webhook_sse_json_escape(p, f->error,
                                                  ngx_strlen(f->error));
            p = ngx_slprintf(p, last,
                    "\",\"latencyP50Us\":%L,\"latencyP99Us\":%L}",
                    ngx_http_webhook_sse_latency_rank(f->latency, 500),
                    ngx_http_webhook_sse_latency_rank(f->latency, 990));
        }

        *p++ = ']';

        out->len = p - out->data;

        return NGX_OK;
    }

    for (i = 0; i < n; i++) {
        fig[i].p50 = ngx_http_webhook_sse_latency_rank(fig[i].latency, 500);
        fig[i].p99 = ngx_http_webhook_sse_latency_rank(fig[i].latency, 990);
    }

    /* a metric's lines together, under one HELP and TYPE */

    for (m = ngx_http_webhook_sse_metrics; m->name; m++) {

        if (n) {
            p = ngx_slprintf(p, last, "# HELP webhook_forward_%s %s\n"
                             "# TYPE webhook_forward_%s %s\n",
                             m->name, m->help, m->name, m->type);
        }

        for (i = 0; i < n; i++) {
            p = ngx_slprintf(p, last, "webhook_forward_%s{zone=\"%V\","
                             "endpoint=\"%*s\"} %uL\n", m->name, name,
                             fig[i].len, fig[i].key,
                             *(uint64_t *) ((u_char *) &fig[i] + m->offset));
        }
    }

    out->len = p - out->data;

    return NGX_OK;
}


/* the latency under which permille/1000 of the deliveries were, 0: none */

static int64_t
ngx_http_webhook_sse_latency_rank(uint32_t *latency, ngx_uint_t permille)
{
    uint64_t    total, seen, rank;
    ngx_uint_t  b;

    total = 0;

    for (b = 0; b < NGX_HTTP_WEBHOOK_SSE_LATENCY_BUCKETS; b++) {
        total += latency[b];
    }

    if (total == 0) {
        return 0;
    }

    rank = (total * permille + 999) / 1000;
    seen = 0;

    for (b = 0; b < NGX_HTTP_WEBHOOK_SSE_LATENCY_BUCKETS; b++) {
        seen += latency[b];

        if (seen >= rank) {
            break;
        }
    }

    return ngx_http_webhook_sse_latency_value(b);
}


/* webhook_callbacks: a session's callback, kept in the zone */

ngx_int_t
ngx_http_webhook_sse_outbox_register(ngx_http_webhook_sse_zone_t *zone,
    ngx_str_t *session, ngx_str_t *url, ngx_str_t *secret)
{
    u_char                           *p;
    size_t                            size, old_size;
    ngx_http_webhook_sse_outbox_t    *ob;
    ngx_http_webhook_sse_callback_t  *cb, *old;

    ob = zone->sh->outbox;

    if (ob == NULL) {
        return NGX_ERROR;
    }

    size = offsetof(ngx_http_webhook_sse_callback_t, data)
           + session->len + url->len + secret->len;

    ngx_http_webhook_sse_store_lock(zone);

    /* a later registration replaces an earlier one, once it is stored */

    old = ngx_http_webhook_sse_outbox_find_callback(ob, session);
    old_size = 0;

    if (old) {
        old_size = offsetof(ngx_http_webhook_sse_callback_t, data)
                   + old->session_len + old->url_len + old->secret_len;
    }

    /* registrations may push out messages, not fill the zone with them */

    if (ob->callback_bytes - old_size + size > zone->shm_zone->shm.size / 4)
    {
        ngx_http_webhook_sse_store_unlock(zone);
        return NGX_DECLINED;
    }

    cb = ngx_http_webhook_sse_outbox_alloc(zone, size);
    if (cb == NULL) {
        ngx_http_webhook_sse_store_unlock(zone);
        return NGX_DECLINED;
    }

    if (old) {
        ngx_rbtree_delete(&ob->callbacks, &old->node);
        ngx_slab_free_locked(zone->shpool, old);
        ob->ncallbacks--;
        ob->callback_bytes -= old_size;
    }

    cb->node.key = ngx_crc32_short(session->data, session->len);
    cb->session_len = session->len;
    cb->url_len = url->len;
    cb->secret_len = secret->len;

    p = ngx_cpymem(cb->data, session->data, session->len);
    p = ngx_cpymem(p, url->data, url->len);
    ngx_memcpy(p, secret->data, secret->len);

    ngx_rbtree_insert(&ob->callbacks, &cb->node);
    ob->ncallbacks++;
    ob->callback_bytes += size;

    ngx_http_webhook_sse_store_unlock(zone);

    return NGX_OK;
}


/*
 * A session's callback, copied to url (NGX_HTTP_WEBHOOK_SSE_URL_MAX bytes)
 * and secret (NGX_HTTP_WEBHOOK_SSE_FWD_SECRET_MAX); NGX_DECLINED: none.
 */

ngx_int_t
ngx_http_webhook_sse_outbox_callback(ngx_http_webhook_sse_zone_t *zone,
    ngx_str_t *session, ngx_str_t *url, ngx_str_t *secret)
{
    ngx_http_webhook_sse_outbox_t    *ob;
    ngx_http_webhook_sse_callback_t  *cb;

    ob = zone->sh->outbox;

    if (ob == NULL) {
        return NGX_DECLINED;
    }

    ngx_http_webhook_sse_store_lock(zone);

    cb = ngx_http_webhook_sse_outbox_find_callback(ob, session);

    if (cb == NULL) {
        ngx_http_webhook_sse_store_unlock(zone);
        return NGX_DECLINED;
    }

    url->len = cb->url_len;
    ngx_memcpy(url->data, cb->data + cb->session_len, cb->url_len);

    secret->len = cb->secret_len;
    ngx_memcpy(secret->data, cb->data + cb->session_len + cb->url_len,
               cb->secret_len);

    ngx_http_webhook_sse_store_unlock(zone);

    return NGX_OK;
}


ngx_int_t
ngx_http_webhook_sse_outbox_unregister(ngx_http_webhook_sse_zone_t *zone,
    ngx_str_t *session)
{
    ngx_http_webhook_sse_outbox_t    *ob;
    ngx_http_webhook_sse_callback_t  *cb;

    ob = zone->sh->outbox;

    if (ob == NULL) {
        return NGX_DECLINED;
    }

    ngx_http_webhook_sse_store_lock(zone);

    cb = ngx_http_webhook_sse_outbox_find_callback(ob, session);

    if (cb) {
        ngx_rbtree_delete(&ob->callbacks, &cb->node);
        ob->ncallbacks--;
        ob->callback_bytes -= offsetof(ngx_http_webhook_sse_callback_t, data)
                              + cb->session_len + cb->url_len
                              + cb->secret_len;
        ngx_slab_free_locked(zone->shpool, cb);
    }

    ngx_http_webhook_sse_store_unlock(zone);

    return cb ? NGX_OK : NGX_DECLINED;
}


/* zone lock held */

static ngx_http_webhook_sse_callback_t *
ngx_http_webhook_sse_outbox_find_callback(ngx_http_webhook_sse_outbox_t *ob,
    ngx_str_t *session)
{
    uint32_t                          hash;
    ngx_rbtree_node_t                *node, *sentinel;
    ngx_http_webhook_sse_callback_t  *cb;

    hash = ngx_crc32_short(session->data, session->len);

    node = ob->callbacks.root;
    sentinel = ob->callbacks.sentinel;

    while (node != sentinel) {

        if (hash != node->key) {
            node = (hash < node->key) ? node->left : node->right;
            continue;
        }

        cb = (ngx_http_webhook_sse_callback_t *) node;

        if (cb->session_len == session->len
            && ngx_memcmp(cb->data, session->data, session->len) == 0)
        {
            return cb;
        }

        node = node->right;
    }

    return NULL;
}


/*
 * Failed and dead deliveries to an endpoint (all endpoints: NULL) are
 * queued again, their attempts counted afresh.  Returns how many.
 */

ngx_uint_t
ngx_http_webhook_sse_outbox_redrive(ngx_http_webhook_sse_zone_t *zone,
    ngx_str_t *endpoint)
{
    ngx_uint_t                        n;
    ngx_queue_t                      *q, *next;
    ngx_http_webhook_sse_outbox_t    *ob;
    ngx_http_webhook_sse_endpoint_t  *ep;
    ngx_http_webhook_sse_delivery_t  *d;

    ob = zone->sh->outbox;

    if (ob == NULL) {
        return 0;
    }

    n = 0;

    ngx_http_webhook_sse_store_lock(zone);

    for (q = ngx_queue_head(&ob->kept);
         q != ngx_queue_sentinel(&ob->kept);
         q = next)
    {
        next = ngx_queue_next(q);
        d = ngx_queue_data(q, ngx_http_webhook_sse_delivery_t, queue);
        ep = d->endpoint;

        if (endpoint
            && (ep->len != endpoint->len
                || ngx_memcmp(ep->key, endpoint->data, endpoint->len) != 0))
        {
            continue;
        }

        ob->nkept--;
        ep->nkept--;
        ob->waiting++;
        ob->bytes += d->size;

        d->attempts = 0;
        d->due = 0;

        if (ep->disabled == ob->generation) {
            /* a redrive is the operator's word that the endpoint is back */
            ep->disabled = 0;
        }

        ngx_http_webhook_sse_outbox_requeue(ob, d);
        n++;
    }

    ngx_http_webhook_sse_store_unlock(zone);

    if (n) {
        ngx_http_webhook_sse_outbox_kick(
                                 ngx_http_webhook_sse_outbox_courier(zone));
    }

    return n;
}


/*
 * An event of the zone itself, with no request behind it (a session's
 * join or leave, webhook_presence_forward): the body the caller built, to
 * each of "forwards" (constant URLs) with the settings "fcf".  One
 * webhook-id, "<prefix><nonce>-<n>", the same for every delivery and
 * attempt of the event, so that receivers can tell a retry from a new
 * event: the zone's nonce (random, never adopted from Redis, unlike the
 * epoch) keeps ids of different hosts and restarts apart.  Refused,
 * with a warning, when the deliveries waiting already take half the zone,
 * as publishes are.
 */

void
ngx_http_webhook_sse_outbox_event(ngx_http_webhook_sse_zone_t *zone,
    ngx_array_t *forwards, ngx_http_webhook_sse_forward_conf_t *fcf,
    ngx_str_t *prefix, ngx_str_t *body)
{
    size_t                            bytes;
    int64_t                           now, created;
    ngx_str_t                         id;
    ngx_uint_t                        i, n, dropped;
    ngx_http_webhook_sse_outbox_t    *ob;
    ngx_http_webhook_sse_forward_t   *fwd;
    ngx_http_webhook_sse_parcel_t     parcel;
    u_char                          drop[NGX_HTTP_WEBHOOK_SSE_EVENT_URLS_MAX];
    u_char                            idbuf[64 + NGX_HTTP_WEBHOOK_SSE_ID_LEN];

    ob = zone->sh->outbox;
    fwd = forwards->elts;
    n = ngx_min(forwards->nelts, NGX_HTTP_WEBHOOK_SSE_EVENT_URLS_MAX);

    if (ob == NULL || prefix->len > 64) {
        ngx_log_error(NGX_LOG_WARN, zone->log, 0,
                      "webhook zone \"%V\" has no outbound queue: event "
                      "%V not forwarded", &zone->shm_zone->shm.name, body);
        return;
    }

    /* a word read at once, without the lock: the bound is not exact */
    bytes = ob->bytes;

    if (bytes >= zone->shm_zone->shm.size / 2) {
        ngx_log_error(NGX_LOG_WARN, zone->log, 0,
                      "webhook zone \"%V\": deliveries waiting take %uz "
                      "bytes, half the zone: event %V not forwarded",
                      &zone->shm_zone->shm.name, bytes, body);
        return;
    }

    created = ngx_http_webhook_sse_outbox_usec();
    now = ngx_http_webhook_sse_now();
    dropped = 0;

    ngx_http_webhook_sse_store_lock(zone);

    id.data = idbuf;
    id.len = ngx_sprintf(idbuf, "%V%016uxL-%uL", prefix, zone->sh->nonce,
                         ob->next_id)
             - idbuf;

    ngx_memzero(&parcel, sizeof(ngx_http_webhook_sse_parcel_t));

    for (i = 0; i < n; i++) {
        parcel.endpoint = fwd[i].endpoint;
        parcel.url = fwd[i].url.value;
        parcel.secret = fwd[i].secret;
        parcel.body = *body;

        drop[i] = (ngx_http_webhook_sse_outbox_queue(zone, fcf, &parcel, &id,
                                                     created, now)
                   != NGX_OK);
        dropped += drop[i];
    }

    ngx_http_webhook_sse_store_unlock(zone);

    for (i = 0; i < n; i++) {
        if (drop[i]) {
            ngx_log_error(NGX_LOG_WARN, zone->log, 0,
                          "webhook zone \"%V\" has no room: event \"%V\" "
                          "not forwarded to %V", &zone->shm_zone->shm.name,
                          &id, &fwd[i].endpoint);
        }
    }

    if (n > dropped) {
        ngx_http_webhook_sse_outbox_kick(
                                 ngx_http_webhook_sse_outbox_courier(zone));
    }
}
