
/*
 * nginx-webhook-sse: the shared zone.
 *
 * Slab-allocated; an rbtree of session channels keyed by the session id,
 * each with its bounded history; one broadcast channel; all messages also
 * in one zone-wide queue in publish order (for TTL expiry and eviction of
 * the oldest).  Shared memory holds no pointer to process-local memory.
 */


#ifndef _NGX_HTTP_WEBHOOK_SSE_STORE_H_INCLUDED_
#define _NGX_HTTP_WEBHOOK_SSE_STORE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/* worker processes of all live generations that may subscribe at once */
#define NGX_HTTP_WEBHOOK_SSE_SLOTS       128
#define NGX_HTTP_WEBHOOK_SSE_MASK_WORDS  (NGX_HTTP_WEBHOOK_SSE_SLOTS / 64)

/* pending channel notices per worker before it rescans all its channels */
#define NGX_HTTP_WEBHOOK_SSE_RING        256

#define NGX_HTTP_WEBHOOK_SSE_BROADCAST   0

/* what of a publish an idempotency key remembers to tell retries apart */
#define NGX_HTTP_WEBHOOK_SSE_DIGEST_LEN  16


typedef struct ngx_http_webhook_sse_channel_s  ngx_http_webhook_sse_channel_t;
typedef struct ngx_http_webhook_sse_outbox_s  ngx_http_webhook_sse_outbox_t;


typedef struct {
    ngx_queue_t                      channel_queue;
    ngx_queue_t                      zone_queue;
    ngx_http_webhook_sse_channel_t  *channel;
    uint64_t                         seq;
    int64_t                          time;
    /* workers that subscribed when it was published and have not fetched */
    ngx_uint_t                       pending;
    size_t                           len;
    u_char                           data[1];
} ngx_http_webhook_sse_msg_t;


struct ngx_http_webhook_sse_channel_s {
    ngx_rbtree_node_t                node;
    ngx_queue_t                      lru;
    ngx_queue_t                      messages;
    uint64_t                         id;
    /* workers (slots) with streams on the channel */
    uint64_t                 subscribers[NGX_HTTP_WEBHOOK_SSE_MASK_WORDS];
    ngx_uint_t                       count;
    size_t                           len;
    u_char                           key[1];
};


/* a publish's idempotency key, remembered for its window */
typedef struct {
    ngx_str_node_t                   sn;
    ngx_queue_t                      queue;
    int64_t                          expires;
    uint64_t                         seq;
    int64_t                          time;
    u_char                           digest[NGX_HTTP_WEBHOOK_SSE_DIGEST_LEN];
    u_char                           data[1];
} ngx_http_webhook_sse_key_t;


typedef struct {
    ngx_pid_t                        pid;
    ngx_uint_t                       streams;
    ngx_uint_t                       armed;
    ngx_uint_t                       overflow;
    ngx_uint_t                       nring;
    uint64_t                         ring[NGX_HTTP_WEBHOOK_SSE_RING];
} ngx_http_webhook_sse_slot_t;


typedef struct {
    ngx_rbtree_t                     rbtree;
    ngx_rbtree_node_t                sentinel;
    ngx_queue_t                      lru;
    ngx_queue_t                      messages;
    ngx_http_webhook_sse_channel_t   broadcast;

    /* idempotency keys: by key, and in the order they were stored */
    ngx_rbtree_t                     keys;
    ngx_rbtree_node_t                keys_sentinel;
    ngx_queue_t                      keys_queue;

    uint64_t                         epoch;
    uint64_t                         nonce;
    uint64_t                         last_seq;
    uint64_t                         next_channel_id;

    ngx_uint_t                       channels;
    ngx_uint_t                       retained;
    ngx_uint_t                       published;
    ngx_uint_t                       evicted;
    ngx_uint_t                       expired;
    ngx_uint_t                       nkeys;
    ngx_uint_t                       duplicates;
    ngx_atomic_t                     delivered;

    ngx_http_webhook_sse_slot_t     *slots[NGX_HTTP_WEBHOOK_SSE_SLOTS];

    /* outbound deliveries (ngx_http_webhook_sse_outbox.c) */
    ngx_http_webhook_sse_outbox_t   *outbox;
} ngx_http_webhook_sse_shctx_t;


/* process-local view of a zone, one per configuration cycle */
typedef struct {
    ngx_http_webhook_sse_shctx_t    *sh;
    ngx_slab_pool_t                 *shpool;
    ngx_shm_zone_t                  *shm_zone;
    ngx_uint_t                       history;
    ngx_msec_t                       ttl;

    /* worker state */
    ngx_int_t                        slot;
    ngx_connection_t                *doorbell;
    ngx_rbtree_t                     lchannels;
    ngx_rbtree_node_t                lsentinel;
    struct ngx_http_webhook_sse_lchannel_s  *broadcast;
    ngx_queue_t                      streams;
    ngx_uint_t                       nstreams;
    void                            *free;
    ngx_uint_t                       nfree;
    ngx_queue_t                      touched;
    ngx_log_t                       *log;
} ngx_http_webhook_sse_zone_t;


typedef struct {
    uint64_t                         seq;
    int64_t                          time;
} ngx_http_webhook_sse_stored_t;


#define NGX_HTTP_WEBHOOK_SSE_KEY_NEW       0
#define NGX_HTTP_WEBHOOK_SSE_KEY_REPLAYED  1
#define NGX_HTTP_WEBHOOK_SSE_KEY_CONFLICT  2

/* a publish's idempotency key as the request gives it */
typedef struct {
    ngx_str_t                        key;
    u_char                           digest[NGX_HTTP_WEBHOOK_SSE_DIGEST_LEN];
    ngx_msec_t                       window;
    ngx_uint_t                       outcome;
} ngx_http_webhook_sse_idempotency_t;


ngx_int_t ngx_http_webhook_sse_store_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);

void ngx_http_webhook_sse_store_lock(ngx_http_webhook_sse_zone_t *zone);
void ngx_http_webhook_sse_store_unlock(ngx_http_webhook_sse_zone_t *zone);

ngx_http_webhook_sse_channel_t *ngx_http_webhook_sse_store_find(
    ngx_http_webhook_sse_zone_t *zone, ngx_str_t *session, ngx_uint_t create);

ngx_int_t ngx_http_webhook_sse_store_publish(ngx_http_webhook_sse_zone_t *zone,
    ngx_str_t *session, ngx_str_t *extra, ngx_str_t *members,
    ngx_http_webhook_sse_idempotency_t *idem,
    ngx_http_webhook_sse_stored_t *stored, ngx_pid_t *wake,
    ngx_uint_t *nwake);

void *ngx_http_webhook_sse_store_alloc_evicting(
    ngx_http_webhook_sse_zone_t *zone, size_t size);

void ngx_http_webhook_sse_store_expire(ngx_http_webhook_sse_zone_t *zone,
    int64_t now);
void ngx_http_webhook_sse_store_unpin(ngx_http_webhook_sse_channel_t *channel,
    uint64_t after);
void ngx_http_webhook_sse_store_release(ngx_http_webhook_sse_zone_t *zone,
    ngx_http_webhook_sse_channel_t *channel);

ngx_int_t ngx_http_webhook_sse_store_claim_slot(
    ngx_http_webhook_sse_zone_t *zone);
void ngx_http_webhook_sse_store_free_slot(ngx_http_webhook_sse_zone_t *zone);
ngx_uint_t ngx_http_webhook_sse_store_streams(
    ngx_http_webhook_sse_zone_t *zone);

/* idempotency keys (ngx_http_webhook_sse_keys.c), zone lock held */
void ngx_http_webhook_sse_keys_init(ngx_http_webhook_sse_shctx_t *sh);
ngx_http_webhook_sse_key_t *ngx_http_webhook_sse_keys_find(
    ngx_http_webhook_sse_zone_t *zone, ngx_str_t *key, int64_t now);
size_t ngx_http_webhook_sse_keys_size(ngx_str_t *key);
void ngx_http_webhook_sse_keys_insert(ngx_http_webhook_sse_zone_t *zone,
    ngx_http_webhook_sse_key_t *entry,
    ngx_http_webhook_sse_idempotency_t *idem, uint64_t seq, int64_t now);
ngx_int_t ngx_http_webhook_sse_keys_evict(ngx_http_webhook_sse_zone_t *zone,
    int64_t now, ngx_uint_t expired_only);

size_t ngx_http_webhook_sse_format_id(u_char *p, uint64_t epoch,
    uint64_t seq);
uint64_t ngx_http_webhook_sse_parse_id(ngx_http_webhook_sse_zone_t *zone,
    u_char *p, size_t len);
int64_t ngx_http_webhook_sse_now(void);


#define ngx_http_webhook_sse_mask_set(m, s)                                   \
    ((m)[(s) / 64] |= ((uint64_t) 1 << ((s) % 64)))
#define ngx_http_webhook_sse_mask_clear(m, s)                                 \
    ((m)[(s) / 64] &= ~((uint64_t) 1 << ((s) % 64)))
#define ngx_http_webhook_sse_mask_test(m, s)                                  \
    ((m)[(s) / 64] & ((uint64_t) 1 << ((s) % 64)))


#endif /* _NGX_HTTP_WEBHOOK_SSE_STORE_H_INCLUDED_ */
