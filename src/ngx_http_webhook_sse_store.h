
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

/* channel notices a worker holds before it looks at every new message */
#define NGX_HTTP_WEBHOOK_SSE_NOTICES     256

#define NGX_HTTP_WEBHOOK_SSE_BROADCAST   0

/* what of a publish an idempotency key remembers to tell retries apart */
#define NGX_HTTP_WEBHOOK_SSE_DIGEST_LEN  16


typedef struct ngx_http_webhook_sse_channel_s  ngx_http_webhook_sse_channel_t;
typedef struct ngx_http_webhook_sse_outbox_s  ngx_http_webhook_sse_outbox_t;
typedef struct ngx_http_webhook_sse_presence_s  ngx_http_webhook_sse_presence_t;


typedef struct {
    ngx_queue_t                      channel_queue;
    ngx_queue_t                      zone_queue;
    ngx_http_webhook_sse_channel_t  *channel;
    uint64_t                         seq;
    int64_t                          time;
    /* workers (slots) told about it that have not fetched it yet */
    uint64_t                 unfetched[NGX_HTTP_WEBHOOK_SSE_MASK_WORDS];
    size_t                           len;
    u_char                           data[1];
} ngx_http_webhook_sse_msg_t;


/*
 * The streams one worker (slot) has open on a session channel, for
 * presence: one per bit in the channel's subscribers, so that a worker's
 * streams go with its slot, however it ended.
 */
struct ngx_http_webhook_sse_presence_s {
    ngx_http_webhook_sse_presence_t  *next;
    ngx_uint_t                        slot;
    ngx_uint_t                        streams;
    /* when the oldest of them opened, Unix milliseconds */
    int64_t                           since;
};


struct ngx_http_webhook_sse_channel_s {
    ngx_rbtree_node_t                node;
    ngx_queue_t                      lru;
    ngx_queue_t                      messages;
    uint64_t                         id;
    /* workers (slots) with streams on the channel */
    uint64_t                 subscribers[NGX_HTTP_WEBHOOK_SSE_MASK_WORDS];
    ngx_uint_t                       count;

    /* presence: the workers' streams, and the session's join/leave state */
    ngx_http_webhook_sse_presence_t *presence;
    /* in the zone's "leaving" queue while its grace period runs */
    ngx_queue_t                      leaving;
    int64_t                          leave_at;
    ngx_msec_t                       grace;
    /* announced as opened, and not yet as closed */
    unsigned                         present:1;
    unsigned                         in_grace:1;

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


/*
 * A worker's bookkeeping: its streams, the channels with news for it since
 * it last fetched (shared-memory pointers: a channel a worker subscribes to
 * is never freed), and whether its doorbell was rung for them.
 */
typedef struct {
    ngx_pid_t                        pid;
    ngx_uint_t                       streams;
    ngx_uint_t                       woken;
    ngx_uint_t                       overflow;
    uint64_t                         fetched;
    ngx_uint_t                       nnotices;
    ngx_http_webhook_sse_channel_t  *notices[NGX_HTTP_WEBHOOK_SSE_NOTICES];
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

    /* session channels without streams in their grace period, by time */
    ngx_queue_t                      leaving;

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

    /* this worker's slot, -1 when it has none */
    ngx_int_t                        slot;
    ngx_log_t                       *log;

    /* webhook_redis: the zone's Redis link, NULL when local only */
    void                            *redis;

    /* webhook_zone ... persist=PATH, empty when not */
    ngx_str_t                        persist;

    /* webhook_presence_forward, NULL when none */
    void                            *presence_forward;
} ngx_http_webhook_sse_zone_t;


typedef struct {
    uint64_t                         seq;
    int64_t                          time;
} ngx_http_webhook_sse_stored_t;


/*
 * Messages copied out of the zone under its lock into a buffer the caller
 * allocated: records of a header and the event text, 8-byte aligned.  When
 * the buffer is too small nothing is taken and "needed" says what it takes.
 */
typedef struct {
    uint64_t                         channel;
    uint64_t                         seq;
    size_t                           len;
} ngx_http_webhook_sse_record_t;


typedef struct {
    u_char                          *start;
    size_t                           size;
    size_t                           used;
    size_t                           needed;
    ngx_uint_t                       count;
    /* the newest message looked at (a replay goes on after it) */
    uint64_t                         last;
    /* the records of several channels, not in publish order */
    unsigned                         unsorted:1;
    /* a replay that did not fit: more remains */
    unsigned                         more:1;
} ngx_http_webhook_sse_copies_t;


/* what a stream asks to be replayed */
typedef struct {
    ngx_str_t                        session;
    /* messages after this sequence number ... */
    uint64_t                         after;
    /* ... or, without "after", the newest "limit" ones */
    ngx_uint_t                       limit;
    /* how far past the zone's newest "after" may be and still count */
    uint64_t                         ahead;
    unsigned                         resume:1;
} ngx_http_webhook_sse_replay_t;


/* what a subscription changed, for the worker's own bookkeeping */
typedef struct {
    uint64_t                         channel;
    uint64_t                         horizon;
} ngx_http_webhook_sse_subscribed_t;

/*
 * What a stream's subscription or end did to its session's presence
 * (ngx_http_webhook_sse_presence.c): "grace" and "since" in, the rest out.
 */

#define NGX_HTTP_WEBHOOK_SSE_PRESENCE_NONE     0
#define NGX_HTTP_WEBHOOK_SSE_PRESENCE_OPENED   1
#define NGX_HTTP_WEBHOOK_SSE_PRESENCE_LEAVING  2
#define NGX_HTTP_WEBHOOK_SSE_PRESENCE_CLOSED   3

typedef struct {
    /* the stream location's webhook_presence_grace */
    ngx_msec_t                       grace;
    /* on an end: when the worker's oldest stream left on the channel opened */
    int64_t                          since;
    /* when it happened: a subscription's time is the stream's open time */
    int64_t                          time;
    /* the session's open streams afterwards, all workers */
    ngx_uint_t                       streams;
    ngx_uint_t                       transition;
    /* the earliest end of a grace period in the zone, 0: none */
    int64_t                          next_leave;
} ngx_http_webhook_sse_presence_change_t;


/* a session's presence as the presence location answers it */
typedef struct {
    ngx_uint_t                       streams;
    /* when its oldest open stream opened, 0: none open */
    int64_t                          since;
} ngx_http_webhook_sse_presence_info_t;


#define ngx_http_webhook_sse_record_size(len)                                 \
    ngx_align(sizeof(ngx_http_webhook_sse_record_t) + (len), 8)


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


/* the zones of a cycle's configuration (ngx_http_webhook_sse_zone_t *) */
ngx_array_t *ngx_http_webhook_sse_zones(ngx_cycle_t *cycle);
ngx_http_webhook_sse_zone_t *ngx_http_webhook_sse_conf_zone(ngx_conf_t *cf,
    ngx_str_t *name);

ngx_int_t ngx_http_webhook_sse_store_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);

void ngx_http_webhook_sse_store_lock(ngx_http_webhook_sse_zone_t *zone);
void ngx_http_webhook_sse_store_unlock(ngx_http_webhook_sse_zone_t *zone);

ngx_int_t ngx_http_webhook_sse_store_publish(ngx_http_webhook_sse_zone_t *zone,
    ngx_str_t *session, ngx_str_t *extra, ngx_str_t *members,
    ngx_http_webhook_sse_idempotency_t *idem,
    ngx_http_webhook_sse_stored_t *stored, ngx_pid_t *wake,
    ngx_uint_t *nwake);

/* streams of this worker (zone->slot), lock taken inside */
ngx_int_t ngx_http_webhook_sse_store_subscribe(
    ngx_http_webhook_sse_zone_t *zone, ngx_http_webhook_sse_replay_t *replay,
    ngx_http_webhook_sse_copies_t *copies,
    ngx_http_webhook_sse_subscribed_t *subscribed,
    ngx_http_webhook_sse_presence_change_t *change);
ngx_int_t ngx_http_webhook_sse_store_replay(ngx_http_webhook_sse_zone_t *zone,
    ngx_http_webhook_sse_replay_t *replay,
    ngx_http_webhook_sse_copies_t *copies);
void ngx_http_webhook_sse_store_unsubscribe(ngx_http_webhook_sse_zone_t *zone,
    ngx_str_t *session, ngx_uint_t last_of_channel, ngx_uint_t last_of_worker,
    ngx_http_webhook_sse_presence_change_t *change);

/* presence (end of ngx_http_webhook_sse_store.c), lock taken inside */
void ngx_http_webhook_sse_store_presence(ngx_http_webhook_sse_zone_t *zone,
    ngx_str_t *sessions, ngx_http_webhook_sse_presence_info_t *info,
    ngx_uint_t n);
int64_t ngx_http_webhook_sse_store_settle(ngx_http_webhook_sse_zone_t *zone,
    u_char *buf, size_t size, size_t *used, ngx_uint_t *more,
    ngx_uint_t *slots);
int64_t ngx_http_webhook_sse_store_next_leave(
    ngx_http_webhook_sse_zone_t *zone);
ngx_int_t ngx_http_webhook_sse_store_collect(ngx_http_webhook_sse_zone_t *zone,
    ngx_http_webhook_sse_copies_t *copies);
void ngx_http_webhook_sse_store_unwake(ngx_http_webhook_sse_zone_t *zone,
    ngx_pid_t pid);

void *ngx_http_webhook_sse_store_alloc_evicting(
    ngx_http_webhook_sse_zone_t *zone, size_t size);

/* zone lock held */
void ngx_http_webhook_sse_store_expire(ngx_http_webhook_sse_zone_t *zone,
    int64_t now);

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
u_char *ngx_http_webhook_sse_format_uint(u_char *p, uint64_t n);
u_char *ngx_http_webhook_sse_format_time(u_char *p, int64_t time);
uint64_t ngx_http_webhook_sse_parse_id(ngx_http_webhook_sse_zone_t *zone,
    u_char *p, size_t len);
int64_t ngx_http_webhook_sse_now(void);

/* messages that come from elsewhere (Redis, a persisted file) */
ngx_int_t ngx_http_webhook_sse_store_ingest(ngx_http_webhook_sse_zone_t *zone,
    uint64_t seq, int64_t time, ngx_str_t *session, ngx_str_t *fields,
    ngx_pid_t *wake, ngx_uint_t *nwake);
void ngx_http_webhook_sse_store_adopt(ngx_http_webhook_sse_zone_t *zone,
    uint64_t epoch, uint64_t last_seq);


#define ngx_http_webhook_sse_mask_set(m, s)                                   \
    ((m)[(s) / 64] |= ((uint64_t) 1 << ((s) % 64)))
#define ngx_http_webhook_sse_mask_clear(m, s)                                 \
    ((m)[(s) / 64] &= ~((uint64_t) 1 << ((s) % 64)))
#define ngx_http_webhook_sse_mask_test(m, s)                                  \
    ((m)[(s) / 64] & ((uint64_t) 1 << ((s) % 64)))


#endif /* _NGX_HTTP_WEBHOOK_SSE_STORE_H_INCLUDED_ */
