
/*
 * nginx-webhook-sse: the shared zone: channels, history, expiry, eviction,
 * worker slots and their notices.  Every exported function takes the zone
 * lock itself and holds it for the tree, the slab and small copies only;
 * memory is allocated by the callers before, and logs are written after.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_webhook_sse_module.h"


#define NGX_HTTP_WEBHOOK_SSE_LRU_SCAN      64
#define NGX_HTTP_WEBHOOK_SSE_FETCHED_SCAN  256

/* messages a channel may hold past its history for lagging workers */
#define NGX_HTTP_WEBHOOK_SSE_LAG_MAX   4096


/* the digits of a number written again and again */
typedef struct {
    uint64_t  n;
    size_t    len;
    u_char    text[NGX_INT64_LEN];
} ngx_http_webhook_sse_digits_t;


static u_char  ngx_http_webhook_sse_event_head[] =
    "\ndata: {\"type\":\"webhook_message\",\"messageId\":\"";


static void ngx_http_webhook_sse_store_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_http_webhook_sse_channel_t *ngx_http_webhook_sse_store_find(
    ngx_http_webhook_sse_zone_t *zone, ngx_str_t *session, ngx_uint_t create);
static void ngx_http_webhook_sse_store_free_unused(
    ngx_http_webhook_sse_zone_t *zone, ngx_http_webhook_sse_channel_t *channel);
static ngx_int_t ngx_http_webhook_sse_store_copy_replay(
    ngx_http_webhook_sse_zone_t *zone, ngx_http_webhook_sse_channel_t *channel,
    ngx_http_webhook_sse_replay_t *replay,
    ngx_http_webhook_sse_copies_t *copies);
static void ngx_http_webhook_sse_store_copy(
    ngx_http_webhook_sse_copies_t *copies, ngx_http_webhook_sse_msg_t *msg);
static size_t ngx_http_webhook_sse_store_take_new(
    ngx_http_webhook_sse_zone_t *zone, ngx_http_webhook_sse_channel_t *channel,
    ngx_http_webhook_sse_copies_t *copies);
static void ngx_http_webhook_sse_store_forget_channel(
    ngx_http_webhook_sse_zone_t *zone, ngx_http_webhook_sse_channel_t *channel,
    ngx_uint_t s);
static void *ngx_http_webhook_sse_store_alloc(ngx_http_webhook_sse_zone_t *zone,
    size_t size, ngx_http_webhook_sse_channel_t *keep);
static ngx_int_t ngx_http_webhook_sse_store_evict(
    ngx_http_webhook_sse_zone_t *zone, ngx_http_webhook_sse_channel_t *keep);
static void ngx_http_webhook_sse_store_free_msg(
    ngx_http_webhook_sse_zone_t *zone, ngx_http_webhook_sse_msg_t *msg,
    ngx_http_webhook_sse_channel_t *keep);
static void ngx_http_webhook_sse_store_free_channel(
    ngx_http_webhook_sse_zone_t *zone, ngx_http_webhook_sse_channel_t *channel);
static ngx_uint_t ngx_http_webhook_sse_store_idle(
    ngx_http_webhook_sse_channel_t *channel);
static size_t ngx_http_webhook_sse_store_msg_size(ngx_str_t *extra,
    ngx_str_t *members);
static void ngx_http_webhook_sse_store_add(ngx_http_webhook_sse_zone_t *zone,
    ngx_http_webhook_sse_msg_t *msg, ngx_http_webhook_sse_channel_t *channel,
    uint64_t seq, int64_t time, ngx_str_t *extra, ngx_str_t *members,
    ngx_pid_t *wake, ngx_uint_t *nwake);
static void ngx_http_webhook_sse_store_notify(
    ngx_http_webhook_sse_zone_t *zone, ngx_http_webhook_sse_msg_t *msg,
    ngx_pid_t *wake, ngx_uint_t *nwake);
static ngx_uint_t ngx_http_webhook_sse_store_unfetched(
    ngx_http_webhook_sse_msg_t *msg);
static void ngx_http_webhook_sse_store_clear_slot(
    ngx_http_webhook_sse_zone_t *zone, ngx_uint_t s);
static u_char *ngx_http_webhook_sse_format_kept(u_char *p, uint64_t n,
    ngx_http_webhook_sse_digits_t *kept);
static ngx_http_webhook_sse_presence_t *ngx_http_webhook_sse_store_presence_of(
    ngx_http_webhook_sse_channel_t *channel, ngx_uint_t s);
static void ngx_http_webhook_sse_store_presence_forget(
    ngx_http_webhook_sse_zone_t *zone, ngx_http_webhook_sse_channel_t *channel,
    ngx_uint_t s);
static ngx_uint_t ngx_http_webhook_sse_store_presence_total(
    ngx_http_webhook_sse_channel_t *channel, int64_t *since);
static ngx_uint_t ngx_http_webhook_sse_store_vacate(
    ngx_http_webhook_sse_zone_t *zone, ngx_http_webhook_sse_channel_t *channel,
    int64_t now);
static int64_t ngx_http_webhook_sse_store_first_leave(
    ngx_http_webhook_sse_shctx_t *sh);


/* the zones of a cycle's configuration; NULL without an http block */

ngx_array_t *
ngx_http_webhook_sse_zones(ngx_cycle_t *cycle)
{
    ngx_http_webhook_sse_main_conf_t  *wmcf;

    wmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_webhook_sse_module);

    return wmcf ? &wmcf->zones : NULL;
}


/* the webhook_zone of that name defined so far, NULL: none */

ngx_http_webhook_sse_zone_t *
ngx_http_webhook_sse_conf_zone(ngx_conf_t *cf, ngx_str_t *name)
{
    ngx_str_t                          *zone_name;
    ngx_uint_t                          i;
    ngx_http_webhook_sse_zone_t       **zones;
    ngx_http_webhook_sse_main_conf_t   *wmcf;

    wmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_webhook_sse_module);
    zones = wmcf->zones.elts;

    for (i = 0; i < wmcf->zones.nelts; i++) {
        zone_name = &zones[i]->shm_zone->shm.name;

        if (zone_name->len == name->len
            && ngx_strncmp(zone_name->data, name->data, name->len) == 0)
        {
            return zones[i];
        }
    }

    return NULL;
}


ngx_int_t
ngx_http_webhook_sse_store_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_webhook_sse_zone_t  *ozone = data;

    size_t                         len;
    uint64_t                       now;
    ngx_http_webhook_sse_zone_t   *zone;
    ngx_http_webhook_sse_shctx_t  *sh;

    zone = shm_zone->data;

    if (ozone) {
        /* reload: keep the zone and everything in it */
        zone->sh = ozone->sh;
        zone->shpool = ozone->shpool;
        return NGX_OK;
    }

    zone->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        zone->sh = zone->shpool->data;
        return NGX_OK;
    }

    sh = ngx_slab_alloc(zone->shpool, sizeof(ngx_http_webhook_sse_shctx_t));
    if (sh == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(sh, sizeof(ngx_http_webhook_sse_shctx_t));

    zone->sh = sh;
    zone->shpool->data = sh;

    ngx_rbtree_init(&sh->rbtree, &sh->sentinel,
                    ngx_http_webhook_sse_store_rbtree_insert);
    ngx_queue_init(&sh->lru);
    ngx_queue_init(&sh->messages);
    ngx_queue_init(&sh->broadcast.messages);
    ngx_queue_init(&sh->broadcast.lru);
    ngx_queue_init(&sh->leaving);
    sh->broadcast.id = NGX_HTTP_WEBHOOK_SSE_BROADCAST;
    ngx_http_webhook_sse_keys_init(sh);

    /*
     * The epoch tells ids of this zone from those of an earlier one (a
     * full restart), the nonce names this zone's doorbell sockets.
     */
    static uint64_t  last_epoch;

    now = (uint64_t) ngx_http_webhook_sse_now();

    /* zones made in one start share the clock: each gets its own epoch */
    sh->epoch = ngx_max(now, last_epoch + 1);
    last_epoch = sh->epoch;

    sh->nonce = sh->epoch ^ ((uint64_t) ngx_pid << 40)
                ^ (uint64_t) ngx_random();
    sh->next_channel_id = NGX_HTTP_WEBHOOK_SSE_BROADCAST + 1;

    len = sizeof(" in webhook zone \"\"") + shm_zone->shm.name.len;

    zone->shpool->log_ctx = ngx_slab_alloc(zone->shpool, len);
    if (zone->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(zone->shpool->log_ctx, " in webhook zone \"%V\"%Z",
                &shm_zone->shm.name);

    /* a full zone evicts old data; it is not worth a log line each time */
    zone->shpool->log_nomem = 0;

    return NGX_OK;
}


static void
ngx_http_webhook_sse_store_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t               **p;
    ngx_http_webhook_sse_channel_t   *c, *ct;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else {
            c = (ngx_http_webhook_sse_channel_t *) node;
            ct = (ngx_http_webhook_sse_channel_t *) temp;

            p = (ngx_memn2cmp(c->key, ct->key, c->len, ct->len) < 0)
                ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


void
ngx_http_webhook_sse_store_lock(ngx_http_webhook_sse_zone_t *zone)
{
    ngx_shmtx_lock(&zone->shpool->mutex);
}


void
ngx_http_webhook_sse_store_unlock(ngx_http_webhook_sse_zone_t *zone)
{
    ngx_shmtx_unlock(&zone->shpool->mutex);
}


static ngx_http_webhook_sse_channel_t *
ngx_http_webhook_sse_store_find(ngx_http_webhook_sse_zone_t *zone,
    ngx_str_t *session, ngx_uint_t create)
{
    uint32_t                         hash;
    ngx_int_t                        rc;
    ngx_rbtree_node_t               *node, *sentinel;
    ngx_http_webhook_sse_shctx_t    *sh;
    ngx_http_webhook_sse_channel_t  *channel;

    sh = zone->sh;

    if (session == NULL || session->len == 0) {
        return &sh->broadcast;
    }

    hash = ngx_crc32_short(session->data, session->len);

    node = sh->rbtree.root;
    sentinel = sh->rbtree.sentinel;

    while (node != sentinel) {

        if (hash < node->key) {
            node = node->left;
            continue;
        }

        if (hash > node->key) {
            node = node->right;
            continue;
        }

        channel = (ngx_http_webhook_sse_channel_t *) node;

        rc = ngx_memn2cmp(session->data, channel->key, session->len,
                          channel->len);

        if (rc == 0) {
            ngx_queue_remove(&channel->lru);
            ngx_queue_insert_head(&sh->lru, &channel->lru);
            return channel;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    if (!create) {
        return NULL;
    }

    channel = ngx_http_webhook_sse_store_alloc(zone,
                  offsetof(ngx_http_webhook_sse_channel_t, key) + session->len,
                  NULL);
    if (channel == NULL) {
        return NULL;
    }

    ngx_memzero(channel, offsetof(ngx_http_webhook_sse_channel_t, key));

    channel->node.key = hash;
    channel->id = sh->next_channel_id++;
    channel->len = session->len;
    ngx_memcpy(channel->key, session->data, session->len);
    ngx_queue_init(&channel->messages);

    ngx_rbtree_insert(&sh->rbtree, &channel->node);
    ngx_queue_insert_head(&sh->lru, &channel->lru);
    sh->channels++;

    return channel;
}


/*
 * Stores a message and says which workers to wake.  With an idempotency
 * key seen before, nothing is stored: "stored" is the first publish's and
 * idem->outcome tells a retry from a reuse of the key for another request.
 */

ngx_int_t
ngx_http_webhook_sse_store_publish(ngx_http_webhook_sse_zone_t *zone,
    ngx_str_t *session, ngx_str_t *extra, ngx_str_t *members,
    ngx_http_webhook_sse_idempotency_t *idem,
    ngx_http_webhook_sse_stored_t *stored, ngx_pid_t *wake, ngx_uint_t *nwake)
{
    size_t                           size;
    int64_t                          now;
    ngx_http_webhook_sse_key_t      *entry;
    ngx_http_webhook_sse_msg_t      *msg;
    ngx_http_webhook_sse_shctx_t    *sh;
    ngx_http_webhook_sse_channel_t  *channel;

    size = ngx_http_webhook_sse_store_msg_size(extra, members);

    /* refuse what cannot fit rather than empty the zone trying */
    if (size > zone->shm_zone->shm.size / 4) {
        return NGX_DECLINED;
    }

    sh = zone->sh;
    *nwake = 0;

    ngx_http_webhook_sse_store_lock(zone);

    now = ngx_http_webhook_sse_now();

    ngx_http_webhook_sse_store_expire(zone, now);

    entry = NULL;

    if (idem->key.len) {
        while (ngx_http_webhook_sse_keys_evict(zone, now, 1) == NGX_OK) {
            /* void */
        }

        entry = ngx_http_webhook_sse_keys_find(zone, &idem->key, now);

        if (entry) {
            if (ngx_memcmp(entry->digest, idem->digest,
                           NGX_HTTP_WEBHOOK_SSE_DIGEST_LEN)
                == 0)
            {
                idem->outcome = NGX_HTTP_WEBHOOK_SSE_KEY_REPLAYED;
                stored->seq = entry->seq;
                stored->time = entry->time;
                sh->duplicates++;

            } else {
                idem->outcome = NGX_HTTP_WEBHOOK_SSE_KEY_CONFLICT;
            }

            ngx_http_webhook_sse_store_unlock(zone);
            return NGX_OK;
        }
    }

    channel = ngx_http_webhook_sse_store_find(zone, session, 1);
    if (channel == NULL) {
        ngx_http_webhook_sse_store_unlock(zone);
        return NGX_DECLINED;
    }

    /* the key is not in the zone's queue yet: no eviction can take it */

    if (idem->key.len) {
        entry = ngx_http_webhook_sse_store_alloc(zone,
                    ngx_http_webhook_sse_keys_size(&idem->key), channel);
        if (entry == NULL) {
            ngx_http_webhook_sse_store_free_unused(zone, channel);
            ngx_http_webhook_sse_store_unlock(zone);
            return NGX_DECLINED;
        }
    }

    msg = ngx_http_webhook_sse_store_alloc(zone, size, channel);
    if (msg == NULL) {
        if (entry) {
            ngx_slab_free_locked(zone->shpool, entry);
        }

        ngx_http_webhook_sse_store_free_unused(zone, channel);
        ngx_http_webhook_sse_store_unlock(zone);
        return NGX_DECLINED;
    }

    ngx_http_webhook_sse_store_add(zone, msg, channel, ++sh->last_seq, now,
                                   extra, members, wake, nwake);

    if (entry) {
        ngx_http_webhook_sse_keys_insert(zone, entry, idem, msg->seq, now);
    }

    /* copied before the unlock: the message may be gone right after it */
    stored->seq = msg->seq;
    stored->time = now;

    ngx_http_webhook_sse_store_unlock(zone);

    return NGX_OK;
}


static size_t
ngx_http_webhook_sse_store_msg_size(ngx_str_t *extra, ngx_str_t *members)
{
    return offsetof(ngx_http_webhook_sse_msg_t, data)
           + sizeof("id: ") - 1 + NGX_HTTP_WEBHOOK_SSE_ID_LEN
           + sizeof(ngx_http_webhook_sse_event_head) - 1
           + NGX_HTTP_WEBHOOK_SSE_ID_LEN
           + sizeof("\",\"timestamp\":") - 1 + NGX_INT64_LEN
           + 1 + extra->len + 1 + members->len + sizeof("}\n\n") - 1;
}


/*
 * Makes an allocated message the newest of its channel: the SSE event
 * text, the queues and counts, the workers to tell, and the history bound.
 */

static void
ngx_http_webhook_sse_store_add(ngx_http_webhook_sse_zone_t *zone,
    ngx_http_webhook_sse_msg_t *msg, ngx_http_webhook_sse_channel_t *channel,
    uint64_t seq, int64_t time, ngx_str_t *extra, ngx_str_t *members,
    ngx_pid_t *wake, ngx_uint_t *nwake)
{
    u_char                        *p, id[NGX_HTTP_WEBHOOK_SSE_ID_LEN];
    size_t                         id_len;
    ngx_queue_t                   *q;
    ngx_http_webhook_sse_msg_t    *oldest;
    ngx_http_webhook_sse_shctx_t  *sh;

    sh = zone->sh;

    ngx_memzero(msg->unfetched, sizeof(msg->unfetched));

    msg->seq = seq;
    msg->time = time;
    msg->channel = channel;

    id_len = ngx_http_webhook_sse_format_id(id, sh->epoch, seq);

    p = ngx_cpymem(msg->data, "id: ", sizeof("id: ") - 1);
    p = ngx_cpymem(p, id, id_len);
    p = ngx_cpymem(p, ngx_http_webhook_sse_event_head,
                   sizeof(ngx_http_webhook_sse_event_head) - 1);
    p = ngx_cpymem(p, id, id_len);
    p = ngx_cpymem(p, "\",\"timestamp\":", sizeof("\",\"timestamp\":") - 1);
    p = ngx_http_webhook_sse_format_time(p, time);

    if (extra->len) {
        *p++ = ',';
        p = ngx_cpymem(p, extra->data, extra->len);
    }

    if (members->len) {
        *p++ = ',';
        p = ngx_cpymem(p, members->data, members->len);
    }

    p = ngx_cpymem(p, "}\n\n", sizeof("}\n\n") - 1);

    msg->len = p - msg->data;

    ngx_queue_insert_tail(&channel->messages, &msg->channel_queue);
    ngx_queue_insert_tail(&sh->messages, &msg->zone_queue);
    channel->count++;
    sh->retained++;
    sh->published++;

    ngx_http_webhook_sse_store_notify(zone, msg, wake, nwake);

    /*
     * The history bound waits for workers that have not fetched the oldest
     * messages yet, up to a hard limit: a lagging worker must not lose
     * what it was told about.
     */

    while (channel->count > zone->history) {
        q = ngx_queue_head(&channel->messages);
        oldest = ngx_queue_data(q, ngx_http_webhook_sse_msg_t, channel_queue);

        if (ngx_http_webhook_sse_store_unfetched(oldest)
            && channel->count <= zone->history * 2
                                 + NGX_HTTP_WEBHOOK_SSE_LAG_MAX)
        {
            break;
        }

        ngx_http_webhook_sse_store_free_msg(zone, oldest, channel);
    }
}


/*
 * Marks the message unfetched for every worker with streams on its channel
 * and notes the channel for each; a worker not yet woken needs its doorbell
 * rung.
 */

static void
ngx_http_webhook_sse_store_notify(ngx_http_webhook_sse_zone_t *zone,
    ngx_http_webhook_sse_msg_t *msg, ngx_pid_t *wake, ngx_uint_t *nwake)
{
    uint64_t                         bits;
    ngx_uint_t                       w, s;
    ngx_http_webhook_sse_slot_t     *slot;
    ngx_http_webhook_sse_channel_t  *channel;

    channel = msg->channel;

    for (w = 0; w < NGX_HTTP_WEBHOOK_SSE_MASK_WORDS; w++) {

        bits = channel->subscribers[w];

        while (bits) {
            s = w * 64 + __builtin_ctzll(bits);
            bits &= bits - 1;

            slot = zone->sh->slots[s];
            if (slot == NULL) {
                continue;
            }

            ngx_http_webhook_sse_mask_set(msg->unfetched, s);

            if (slot->nnotices == NGX_HTTP_WEBHOOK_SSE_NOTICES) {
                slot->overflow = 1;

            } else if (slot->nnotices == 0
                       || slot->notices[slot->nnotices - 1] != channel)
            {
                slot->notices[slot->nnotices++] = channel;
            }

            if (!slot->woken) {
                slot->woken = 1;
                wake[(*nwake)++] = slot->pid;
            }
        }
    }
}


static ngx_uint_t
ngx_http_webhook_sse_store_unfetched(ngx_http_webhook_sse_msg_t *msg)
{
    ngx_uint_t  w;

    for (w = 0; w < NGX_HTTP_WEBHOOK_SSE_MASK_WORDS; w++) {
        if (msg->unfetched[w]) {
            return 1;
        }
    }

    return 0;
}


/*
 * For other users of the zone (outbound deliveries): memory made by
 * evicting what the store may evict, as for a message.
 */

void *
ngx_http_webhook_sse_store_alloc_evicting(ngx_http_webhook_sse_zone_t *zone,
    size_t size)
{
    return ngx_http_webhook_sse_store_alloc(zone, size, NULL);
}


static void *
ngx_http_webhook_sse_store_alloc(ngx_http_webhook_sse_zone_t *zone,
    size_t size, ngx_http_webhook_sse_channel_t *keep)
{
    void  *p;

    for ( ;; ) {
        p = ngx_slab_alloc_locked(zone->shpool, size);
        if (p) {
            return p;
        }

        if (ngx_http_webhook_sse_store_evict(zone, keep) != NGX_OK) {
            return NULL;
        }
    }
}


/*
 * Frees memory by, in this order: an expired message, an expired
 * idempotency key, the least recently used channel nobody listens to, the
 * oldest message every worker has fetched, the oldest message, the oldest
 * idempotency key.
 */

static ngx_int_t
ngx_http_webhook_sse_store_evict(ngx_http_webhook_sse_zone_t *zone,
    ngx_http_webhook_sse_channel_t *keep)
{
    int64_t                          now;
    ngx_uint_t                       n;
    ngx_queue_t                     *q;
    ngx_http_webhook_sse_msg_t      *msg;
    ngx_http_webhook_sse_shctx_t    *sh;
    ngx_http_webhook_sse_channel_t  *channel;

    sh = zone->sh;
    now = ngx_http_webhook_sse_now();

    if (!ngx_queue_empty(&sh->messages)) {
        msg = ngx_queue_data(ngx_queue_head(&sh->messages),
                             ngx_http_webhook_sse_msg_t, zone_queue);

        if (msg->time + (int64_t) zone->ttl <= now) {
            sh->expired++;
            ngx_http_webhook_sse_store_free_msg(zone, msg, keep);
            return NGX_OK;
        }
    }

    if (ngx_http_webhook_sse_keys_evict(zone, now, 1) == NGX_OK) {
        return NGX_OK;
    }

    n = 0;

    for (q = ngx_queue_last(&sh->lru);
         q != ngx_queue_sentinel(&sh->lru)
         && n < NGX_HTTP_WEBHOOK_SSE_LRU_SCAN;
         q = ngx_queue_prev(q), n++)
    {
        channel = ngx_queue_data(q, ngx_http_webhook_sse_channel_t, lru);

        if (channel != keep && ngx_http_webhook_sse_store_idle(channel)) {
            sh->evicted += channel->count;
            ngx_http_webhook_sse_store_free_channel(zone, channel);
            return NGX_OK;
        }
    }

    /*
     * Of the oldest messages, the first that every worker told about has
     * fetched: a worker that falls behind for a moment (a burst, a long
     * fan-out) keeps what its streams have still to get.  Only the oldest
     * of a channel goes, so that a channel's history never has holes: a
     * client resuming gets what is retained without a gap in it.  Only
     * when none is near does the oldest go, fetched or not.
     */

    n = 0;

    for (q = ngx_queue_head(&sh->messages);
         q != ngx_queue_sentinel(&sh->messages)
         && n < NGX_HTTP_WEBHOOK_SSE_FETCHED_SCAN;
         q = ngx_queue_next(q), n++)
    {
        msg = ngx_queue_data(q, ngx_http_webhook_sse_msg_t, zone_queue);

        if (!ngx_http_webhook_sse_store_unfetched(msg)
            && ngx_queue_head(&msg->channel->messages) == &msg->channel_queue)
        {
            sh->evicted++;
            ngx_http_webhook_sse_store_free_msg(zone, msg, keep);
            return NGX_OK;
        }
    }

    if (!ngx_queue_empty(&sh->messages)) {
        msg = ngx_queue_data(ngx_queue_head(&sh->messages),
                             ngx_http_webhook_sse_msg_t, zone_queue);
        sh->evicted++;
        ngx_http_webhook_sse_store_free_msg(zone, msg, keep);
        return NGX_OK;
    }

    return ngx_http_webhook_sse_keys_evict(zone, now, 0);
}


void
ngx_http_webhook_sse_store_expire(ngx_http_webhook_sse_zone_t *zone,
    int64_t now)
{
    ngx_http_webhook_sse_msg_t    *msg;
    ngx_http_webhook_sse_shctx_t  *sh;

    sh = zone->sh;

    while (!ngx_queue_empty(&sh->messages)) {
        msg = ngx_queue_data(ngx_queue_head(&sh->messages),
                             ngx_http_webhook_sse_msg_t, zone_queue);

        if (msg->time + (int64_t) zone->ttl > now) {
            break;
        }

        sh->expired++;
        ngx_http_webhook_sse_store_free_msg(zone, msg, NULL);
    }
}


static void
ngx_http_webhook_sse_store_free_msg(ngx_http_webhook_sse_zone_t *zone,
    ngx_http_webhook_sse_msg_t *msg, ngx_http_webhook_sse_channel_t *keep)
{
    ngx_http_webhook_sse_channel_t  *channel;

    channel = msg->channel;

    ngx_queue_remove(&msg->channel_queue);
    ngx_queue_remove(&msg->zone_queue);
    channel->count--;
    zone->sh->retained--;

    ngx_slab_free_locked(zone->shpool, msg);

    if (channel != keep) {
        ngx_http_webhook_sse_store_free_unused(zone, channel);
    }
}


/* frees a session channel once it has neither messages nor streams */

static void
ngx_http_webhook_sse_store_free_unused(ngx_http_webhook_sse_zone_t *zone,
    ngx_http_webhook_sse_channel_t *channel)
{
    if (channel->count == 0 && ngx_http_webhook_sse_store_idle(channel)) {
        ngx_http_webhook_sse_store_free_channel(zone, channel);
    }
}


static void
ngx_http_webhook_sse_store_free_channel(ngx_http_webhook_sse_zone_t *zone,
    ngx_http_webhook_sse_channel_t *channel)
{
    ngx_queue_t                 *q;
    ngx_http_webhook_sse_msg_t  *msg;

    while (!ngx_queue_empty(&channel->messages)) {
        q = ngx_queue_head(&channel->messages);
        msg = ngx_queue_data(q, ngx_http_webhook_sse_msg_t, channel_queue);

        ngx_queue_remove(&msg->channel_queue);
        ngx_queue_remove(&msg->zone_queue);
        zone->sh->retained--;

        ngx_slab_free_locked(zone->shpool, msg);
    }

    channel->count = 0;

    if (channel->id == NGX_HTTP_WEBHOOK_SSE_BROADCAST) {
        return;
    }

    ngx_rbtree_delete(&zone->sh->rbtree, &channel->node);
    ngx_queue_remove(&channel->lru);
    zone->sh->channels--;

    ngx_slab_free_locked(zone->shpool, channel);
}


static ngx_uint_t
ngx_http_webhook_sse_store_idle(ngx_http_webhook_sse_channel_t *channel)
{
    ngx_uint_t  w;

    /* a session still present (its grace period runs) stays */
    if (channel->id == NGX_HTTP_WEBHOOK_SSE_BROADCAST || channel->present) {
        return 0;
    }

    for (w = 0; w < NGX_HTTP_WEBHOOK_SSE_MASK_WORDS; w++) {
        if (channel->subscribers[w]) {
            return 0;
        }
    }

    return 1;
}


/*
 * Each worker takes a free slot for its streams' bookkeeping.  Slots of
 * processes that died without releasing them (a crash, kill -9) are
 * reclaimed first, so that counts and subscriptions never drift.  Which
 * processes are gone is asked of the kernel outside the lock.
 */

ngx_int_t
ngx_http_webhook_sse_store_claim_slot(ngx_http_webhook_sse_zone_t *zone)
{
    ngx_int_t                      s, free;
    ngx_uint_t                     streams[NGX_HTTP_WEBHOOK_SSE_SLOTS];
    ngx_pid_t                      pids[NGX_HTTP_WEBHOOK_SSE_SLOTS];
    ngx_uint_t                     gone[NGX_HTTP_WEBHOOK_SSE_SLOTS];
    ngx_http_webhook_sse_slot_t   *slot;
    ngx_http_webhook_sse_shctx_t  *sh;

    sh = zone->sh;
    zone->slot = -1;

    slot = NULL;

    ngx_http_webhook_sse_store_lock(zone);

    for (s = 0; s < NGX_HTTP_WEBHOOK_SSE_SLOTS; s++) {
        pids[s] = sh->slots[s] ? sh->slots[s]->pid : 0;
    }

    ngx_http_webhook_sse_store_unlock(zone);

    for (s = 0; s < NGX_HTTP_WEBHOOK_SSE_SLOTS; s++) {
        gone[s] = pids[s]
                  && (pids[s] == ngx_pid
                      || (kill(pids[s], 0) == -1 && ngx_errno == NGX_ESRCH));
        streams[s] = 0;
    }

    free = -1;

    ngx_http_webhook_sse_store_lock(zone);

    for (s = 0; s < NGX_HTTP_WEBHOOK_SSE_SLOTS; s++) {

        /* the same process as looked at: a pid is not reused that fast */
        if (gone[s] && sh->slots[s] && sh->slots[s]->pid == pids[s]) {
            streams[s] = sh->slots[s]->streams;
            ngx_http_webhook_sse_store_clear_slot(zone, s);

        } else {
            gone[s] = 0;
        }

        if (free == -1 && sh->slots[s] == NULL) {
            free = s;
        }
    }

    if (free != -1) {
        slot = ngx_slab_alloc_locked(zone->shpool,
                                     sizeof(ngx_http_webhook_sse_slot_t));
        if (slot) {
            ngx_memzero(slot, sizeof(ngx_http_webhook_sse_slot_t));
            slot->pid = ngx_pid;
            slot->fetched = sh->last_seq;
            sh->slots[free] = slot;
            zone->slot = free;
        }
    }

    ngx_http_webhook_sse_store_unlock(zone);

    for (s = 0; s < NGX_HTTP_WEBHOOK_SSE_SLOTS; s++) {
        if (gone[s]) {
            ngx_log_error(NGX_LOG_NOTICE, zone->log, 0,
                          "webhook zone \"%V\": reclaimed the slot of "
                          "exited process %P with %ui streams",
                          &zone->shm_zone->shm.name, pids[s], streams[s]);
        }
    }

    if (free == -1) {
        ngx_log_error(NGX_LOG_CRIT, zone->log, 0,
                      "webhook zone \"%V\": more than %d worker processes, "
                      "this one serves no streams",
                      &zone->shm_zone->shm.name, NGX_HTTP_WEBHOOK_SSE_SLOTS);
        return NGX_DECLINED;
    }

    if (slot == NULL) {
        ngx_log_error(NGX_LOG_CRIT, zone->log, 0,
                      "webhook zone \"%V\" is too small for the worker "
                      "bookkeeping", &zone->shm_zone->shm.name);
        return NGX_ERROR;
    }

    return NGX_OK;
}


void
ngx_http_webhook_sse_store_free_slot(ngx_http_webhook_sse_zone_t *zone)
{
    if (zone->slot < 0) {
        return;
    }

    ngx_http_webhook_sse_store_lock(zone);
    ngx_http_webhook_sse_store_clear_slot(zone, zone->slot);
    ngx_http_webhook_sse_store_unlock(zone);

    zone->slot = -1;
}


/* everything of a slot goes: subscriptions and what it had not fetched */

static void
ngx_http_webhook_sse_store_clear_slot(ngx_http_webhook_sse_zone_t *zone,
    ngx_uint_t s)
{
    ngx_queue_t                     *q, *next;
    ngx_http_webhook_sse_msg_t      *msg;
    ngx_http_webhook_sse_shctx_t    *sh;
    ngx_http_webhook_sse_channel_t  *channel;

    sh = zone->sh;

    ngx_http_webhook_sse_mask_clear(sh->broadcast.subscribers, s);

    for (q = ngx_queue_head(&sh->messages);
         q != ngx_queue_sentinel(&sh->messages);
         q = ngx_queue_next(q))
    {
        msg = ngx_queue_data(q, ngx_http_webhook_sse_msg_t, zone_queue);
        ngx_http_webhook_sse_mask_clear(msg->unfetched, s);
    }

    for (q = ngx_queue_head(&sh->lru);
         q != ngx_queue_sentinel(&sh->lru);
         q = next)
    {
        next = ngx_queue_next(q);
        channel = ngx_queue_data(q, ngx_http_webhook_sse_channel_t, lru);

        if (ngx_http_webhook_sse_mask_test(channel->subscribers, s)) {
            ngx_http_webhook_sse_mask_clear(channel->subscribers, s);
            ngx_http_webhook_sse_store_presence_forget(zone, channel, s);

            /* its grace period starts now: the clients reconnect elsewhere */
            (void) ngx_http_webhook_sse_store_vacate(zone, channel,
                                                ngx_http_webhook_sse_now());

            ngx_http_webhook_sse_store_free_unused(zone, channel);
        }
    }

    ngx_slab_free_locked(zone->shpool, sh->slots[s]);
    sh->slots[s] = NULL;
}


/*
 * A new stream of this worker: joins the session's channel and the
 * broadcast one and copies out its first replay part.  NGX_AGAIN: the
 * copies' buffer is too small (copies->needed), nothing changed.
 */

ngx_int_t
ngx_http_webhook_sse_store_subscribe(ngx_http_webhook_sse_zone_t *zone,
    ngx_http_webhook_sse_replay_t *replay,
    ngx_http_webhook_sse_copies_t *copies,
    ngx_http_webhook_sse_subscribed_t *subscribed,
    ngx_http_webhook_sse_presence_change_t *change)
{
    int64_t                           now;
    ngx_int_t                         rc;
    ngx_http_webhook_sse_slot_t      *slot;
    ngx_http_webhook_sse_shctx_t     *sh;
    ngx_http_webhook_sse_channel_t   *channel;
    ngx_http_webhook_sse_presence_t  *presence;

    sh = zone->sh;

    change->transition = NGX_HTTP_WEBHOOK_SSE_PRESENCE_NONE;
    change->streams = 0;

    ngx_http_webhook_sse_store_lock(zone);

    slot = sh->slots[zone->slot];

    if (slot == NULL) {
        ngx_http_webhook_sse_store_unlock(zone);
        return NGX_ERROR;
    }

    now = ngx_http_webhook_sse_now();
    change->time = now;

    ngx_http_webhook_sse_store_expire(zone, now);

    channel = ngx_http_webhook_sse_store_find(zone, &replay->session, 1);

    if (channel == NULL) {
        ngx_http_webhook_sse_store_unlock(zone);
        return NGX_DECLINED;
    }

    /*
     * An id from the future is not ours: replay everything; one just
     * ahead (webhook_redis: given out by another host a moment ago) has
     * nothing to replay, and live delivery goes on after it.
     */
    if (replay->after > sh->last_seq
        && replay->after - sh->last_seq > replay->ahead)
    {
        replay->after = 0;
    }

    rc = ngx_http_webhook_sse_store_copy_replay(zone, channel, replay, copies);

    if (rc != NGX_OK) {
        ngx_http_webhook_sse_store_free_unused(zone, channel);
        ngx_http_webhook_sse_store_unlock(zone);
        return rc;
    }

    if (channel != &sh->broadcast) {
        presence = ngx_http_webhook_sse_store_presence_of(channel, zone->slot);

        if (presence == NULL) {
            presence = ngx_http_webhook_sse_store_alloc(zone,
                                      sizeof(ngx_http_webhook_sse_presence_t),
                                      channel);
            if (presence == NULL) {
                ngx_http_webhook_sse_store_free_unused(zone, channel);
                ngx_http_webhook_sse_store_unlock(zone);
                return NGX_DECLINED;
            }

            presence->slot = zone->slot;
            presence->streams = 0;
            presence->next = channel->presence;
            channel->presence = presence;
        }

        if (presence->streams++ == 0) {
            presence->since = now;
        }

        channel->grace = change->grace;

        /* a stream back within the grace period: no leave, no join */

        if (channel->in_grace) {
            ngx_queue_remove(&channel->leaving);
            channel->in_grace = 0;

        } else if (!channel->present) {
            channel->present = 1;
            change->transition = NGX_HTTP_WEBHOOK_SSE_PRESENCE_OPENED;
        }

        change->streams = ngx_http_webhook_sse_store_presence_total(channel,
                                                                    NULL);
    }

    change->next_leave = ngx_http_webhook_sse_store_first_leave(sh);

    ngx_http_webhook_sse_mask_set(channel->subscribers, zone->slot);
    ngx_http_webhook_sse_mask_set(sh->broadcast.subscribers, zone->slot);
    slot->streams++;

    subscribed->channel = channel->id;
    subscribed->horizon = sh->last_seq;

    ngx_http_webhook_sse_store_unlock(zone);

    return NGX_OK;
}


/* the next part of a stream's replay */

ngx_int_t
ngx_http_webhook_sse_store_replay(ngx_http_webhook_sse_zone_t *zone,
    ngx_http_webhook_sse_replay_t *replay,
    ngx_http_webhook_sse_copies_t *copies)
{
    ngx_int_t                        rc;
    ngx_http_webhook_sse_channel_t  *channel;

    ngx_http_webhook_sse_store_lock(zone);

    /* a channel this worker subscribes to is never freed */
    channel = ngx_http_webhook_sse_store_find(zone, &replay->session, 0);

    if (channel == NULL) {
        channel = &zone->sh->broadcast;
    }

    rc = ngx_http_webhook_sse_store_copy_replay(zone, channel, replay, copies);

    ngx_http_webhook_sse_store_unlock(zone);

    return rc;
}


/*
 * Copies the retained messages of the channel and of the broadcast channel
 * merged in publish order: those after replay->after on a resume, else the
 * newest replay->limit ones; as many whole messages as the buffer holds.
 * copies->last: the last one copied, or the newest sequence number of the
 * zone when nothing more remains.
 */

static ngx_int_t
ngx_http_webhook_sse_store_copy_replay(ngx_http_webhook_sse_zone_t *zone,
    ngx_http_webhook_sse_channel_t *channel,
    ngx_http_webhook_sse_replay_t *replay,
    ngx_http_webhook_sse_copies_t *copies)
{
    size_t                           size;
    ngx_uint_t                       n;
    ngx_queue_t                     *qa, *qb, *ea, *eb;
    ngx_http_webhook_sse_msg_t      *msg, *ma, *mb;
    ngx_http_webhook_sse_channel_t  *broadcast;

    broadcast = &zone->sh->broadcast;

    copies->used = 0;
    copies->count = 0;
    copies->needed = 0;
    copies->unsorted = 0;
    copies->more = 0;
    copies->last = ngx_max(zone->sh->last_seq, replay->after);

    if (!replay->resume && replay->limit == 0) {
        return NGX_OK;
    }

    ea = ngx_queue_sentinel(&channel->messages);
    eb = ngx_queue_sentinel(&broadcast->messages);

    /* from the newest end back to where the replay starts */

    qa = ngx_queue_last(&channel->messages);
    qb = (channel != broadcast) ? ngx_queue_last(&broadcast->messages) : eb;

    for (n = 0; replay->resume || n < replay->limit; n++) {
        ma = (qa != ea)
             ? ngx_queue_data(qa, ngx_http_webhook_sse_msg_t, channel_queue)
             : NULL;
        mb = (qb != eb)
             ? ngx_queue_data(qb, ngx_http_webhook_sse_msg_t, channel_queue)
             : NULL;

        if (ma && (mb == NULL || ma->seq > mb->seq)) {
            if (ma->seq <= replay->after) {
                break;
            }

            qa = ngx_queue_prev(qa);

        } else if (mb && mb->seq > replay->after) {
            qb = ngx_queue_prev(qb);

        } else {
            break;
        }
    }

    /* then forward in publish order */

    qa = ngx_queue_next(qa);
    qb = (channel != broadcast) ? ngx_queue_next(qb) : eb;

    for ( ;; ) {
        ma = (qa != ea)
             ? ngx_queue_data(qa, ngx_http_webhook_sse_msg_t, channel_queue)
             : NULL;
        mb = (qb != eb)
             ? ngx_queue_data(qb, ngx_http_webhook_sse_msg_t, channel_queue)
             : NULL;

        if (ma && (mb == NULL || ma->seq < mb->seq)) {
            msg = ma;

        } else if (mb) {
            msg = mb;

        } else {
            break;
        }

        size = ngx_http_webhook_sse_record_size(msg->len);

        if (copies->used + size > copies->size) {
            if (copies->count == 0) {
                copies->needed = size;
                return NGX_AGAIN;
            }

            copies->more = 1;
            copies->last = replay->after;
            break;
        }

        ngx_http_webhook_sse_store_copy(copies, msg);
        replay->after = msg->seq;

        if (msg == ma) {
            qa = ngx_queue_next(qa);

        } else {
            qb = ngx_queue_next(qb);
        }
    }

    (void) ngx_atomic_fetch_add(&zone->sh->delivered, copies->count);

    return NGX_OK;
}


static void
ngx_http_webhook_sse_store_copy(ngx_http_webhook_sse_copies_t *copies,
    ngx_http_webhook_sse_msg_t *msg)
{
    ngx_http_webhook_sse_record_t  *rec;

    rec = (ngx_http_webhook_sse_record_t *) (copies->start + copies->used);

    rec->channel = msg->channel->id;
    rec->seq = msg->seq;
    rec->len = msg->len;
    ngx_memcpy(&rec[1], msg->data, msg->len);

    copies->used += ngx_http_webhook_sse_record_size(msg->len);
    copies->count++;
}


/*
 * A stream of this worker ended; the worker's last one on its channel (or
 * at all: the broadcast channel) takes the worker off it, with everything
 * it had still to fetch there.
 */

void
ngx_http_webhook_sse_store_unsubscribe(ngx_http_webhook_sse_zone_t *zone,
    ngx_str_t *session, ngx_uint_t last_of_channel, ngx_uint_t last_of_worker,
    ngx_http_webhook_sse_presence_change_t *change)
{
    ngx_http_webhook_sse_slot_t      *slot;
    ngx_http_webhook_sse_channel_t   *channel;
    ngx_http_webhook_sse_presence_t  *presence;

    change->transition = NGX_HTTP_WEBHOOK_SSE_PRESENCE_NONE;
    change->streams = 0;
    change->next_leave = 0;

    if (zone->slot < 0) {
        return;
    }

    ngx_http_webhook_sse_store_lock(zone);

    slot = zone->sh->slots[zone->slot];

    if (slot == NULL) {
        ngx_http_webhook_sse_store_unlock(zone);
        return;
    }

    slot->streams--;

    change->time = ngx_http_webhook_sse_now();

    channel = session->len
              ? ngx_http_webhook_sse_store_find(zone, session, 0) : NULL;

    if (channel) {
        presence = ngx_http_webhook_sse_store_presence_of(channel, zone->slot);

        if (presence && presence->streams) {
            presence->streams--;
            presence->since = change->since;
        }

        if (last_of_channel) {
            ngx_http_webhook_sse_store_forget_channel(zone, channel,
                                                      zone->slot);
        }

        change->streams = ngx_http_webhook_sse_store_presence_total(channel,
                                                                    NULL);
        change->transition = ngx_http_webhook_sse_store_vacate(zone, channel,
                                                               change->time);

        ngx_http_webhook_sse_store_free_unused(zone, channel);
    }

    change->next_leave = ngx_http_webhook_sse_store_first_leave(zone->sh);

    if (last_of_worker) {
        ngx_http_webhook_sse_store_forget_channel(zone, &zone->sh->broadcast,
                                                  zone->slot);
    }

    ngx_http_webhook_sse_store_unlock(zone);
}


static void
ngx_http_webhook_sse_store_forget_channel(ngx_http_webhook_sse_zone_t *zone,
    ngx_http_webhook_sse_channel_t *channel, ngx_uint_t s)
{
    ngx_uint_t                    i, n;
    ngx_queue_t                  *q;
    ngx_http_webhook_sse_msg_t   *msg;
    ngx_http_webhook_sse_slot_t  *slot;

    ngx_http_webhook_sse_mask_clear(channel->subscribers, s);
    ngx_http_webhook_sse_store_presence_forget(zone, channel, s);

    for (q = ngx_queue_head(&channel->messages);
         q != ngx_queue_sentinel(&channel->messages);
         q = ngx_queue_next(q))
    {
        msg = ngx_queue_data(q, ngx_http_webhook_sse_msg_t, channel_queue);
        ngx_http_webhook_sse_mask_clear(msg->unfetched, s);
    }

    /* the notices may name only channels the worker subscribes to */

    slot = zone->sh->slots[s];
    n = 0;

    for (i = 0; i < slot->nnotices; i++) {
        if (slot->notices[i] != channel) {
            slot->notices[n++] = slot->notices[i];
        }
    }

    slot->nnotices = n;
}


/*
 * Hands this worker what was published for it since it last looked: the
 * messages marked unfetched for its slot on the channels its notices name,
 * or on every channel when they overflowed.  NGX_AGAIN: the buffer is too
 * small (copies->needed), nothing was taken.
 */

ngx_int_t
ngx_http_webhook_sse_store_collect(ngx_http_webhook_sse_zone_t *zone,
    ngx_http_webhook_sse_copies_t *copies)
{
    size_t                         size;
    ngx_uint_t                     i;
    ngx_http_webhook_sse_slot_t   *slot;
    ngx_http_webhook_sse_shctx_t  *sh;

    sh = zone->sh;

    copies->used = 0;
    copies->count = 0;
    copies->needed = 0;
    copies->unsorted = 0;
    copies->more = 0;

    ngx_http_webhook_sse_store_lock(zone);

    slot = sh->slots[zone->slot];

    if (slot == NULL) {
        ngx_http_webhook_sse_store_unlock(zone);
        return NGX_DECLINED;
    }

    copies->last = sh->last_seq;

    /* sized first: nothing is taken unless all of it fits */

    if (slot->overflow) {
        size = ngx_http_webhook_sse_store_take_new(zone, NULL, NULL);

    } else {
        size = 0;

        for (i = 0; i < slot->nnotices; i++) {
            size += ngx_http_webhook_sse_store_take_new(zone,
                                                        slot->notices[i],
                                                        NULL);
        }
    }

    if (size > copies->size) {
        ngx_http_webhook_sse_store_unlock(zone);
        copies->needed = size;
        return NGX_AGAIN;
    }

    if (slot->overflow) {
        (void) ngx_http_webhook_sse_store_take_new(zone, NULL, copies);

    } else {
        for (i = 0; i < slot->nnotices; i++) {
            (void) ngx_http_webhook_sse_store_take_new(zone, slot->notices[i],
                                                       copies);
        }

        copies->unsorted = (slot->nnotices > 1);
    }

    slot->nnotices = 0;
    slot->overflow = 0;
    slot->woken = 0;
    slot->fetched = sh->last_seq;

    ngx_http_webhook_sse_store_unlock(zone);

    return NGX_OK;
}


/*
 * The messages of a channel (NULL: of the whole zone) published since the
 * worker last fetched that are still unfetched for it, in publish order:
 * copied and marked fetched, or with copies NULL only sized.
 */

static size_t
ngx_http_webhook_sse_store_take_new(ngx_http_webhook_sse_zone_t *zone,
    ngx_http_webhook_sse_channel_t *channel,
    ngx_http_webhook_sse_copies_t *copies)
{
    size_t                        size;
    ngx_int_t                     s;
    ngx_queue_t                  *q, *first, *queue;
    ngx_http_webhook_sse_msg_t   *msg;
    ngx_http_webhook_sse_slot_t  *slot;

    s = zone->slot;
    slot = zone->sh->slots[s];
    queue = channel ? &channel->messages : &zone->sh->messages;

    size = 0;
    first = ngx_queue_sentinel(queue);

    for (q = ngx_queue_last(queue);
         q != ngx_queue_sentinel(queue);
         q = ngx_queue_prev(q))
    {
        msg = channel
              ? ngx_queue_data(q, ngx_http_webhook_sse_msg_t, channel_queue)
              : ngx_queue_data(q, ngx_http_webhook_sse_msg_t, zone_queue);

        if (msg->seq <= slot->fetched) {
            break;
        }

        first = q;
    }

    for (q = first; q != ngx_queue_sentinel(queue); q = ngx_queue_next(q)) {

        msg = channel
              ? ngx_queue_data(q, ngx_http_webhook_sse_msg_t, channel_queue)
              : ngx_queue_data(q, ngx_http_webhook_sse_msg_t, zone_queue);

        if (!ngx_http_webhook_sse_mask_test(msg->unfetched, s)) {
            continue;
        }

        if (copies == NULL) {
            size += ngx_http_webhook_sse_record_size(msg->len);
            continue;
        }

        ngx_http_webhook_sse_mask_clear(msg->unfetched, s);
        ngx_http_webhook_sse_store_copy(copies, msg);
    }

    /* a channel read from is recently used */
    if (copies && channel && channel != &zone->sh->broadcast) {
        ngx_queue_remove(&channel->lru);
        ngx_queue_insert_head(&zone->sh->lru, &channel->lru);
    }

    return size;
}


/*
 * A doorbell that could not be rung: the worker is woken by the next
 * publish again (and looks at its notices on its own meanwhile).
 */

void
ngx_http_webhook_sse_store_unwake(ngx_http_webhook_sse_zone_t *zone,
    ngx_pid_t pid)
{
    ngx_uint_t                     s;
    ngx_http_webhook_sse_shctx_t  *sh;

    sh = zone->sh;

    ngx_http_webhook_sse_store_lock(zone);

    for (s = 0; s < NGX_HTTP_WEBHOOK_SSE_SLOTS; s++) {
        if (sh->slots[s] && sh->slots[s]->pid == pid) {
            sh->slots[s]->woken = 0;
        }
    }

    ngx_http_webhook_sse_store_unlock(zone);
}


static ngx_http_webhook_sse_presence_t *
ngx_http_webhook_sse_store_presence_of(ngx_http_webhook_sse_channel_t *channel,
    ngx_uint_t s)
{
    ngx_http_webhook_sse_presence_t  *presence;

    for (presence = channel->presence; presence; presence = presence->next) {
        if (presence->slot == s) {
            return presence;
        }
    }

    return NULL;
}


static void
ngx_http_webhook_sse_store_presence_forget(ngx_http_webhook_sse_zone_t *zone,
    ngx_http_webhook_sse_channel_t *channel, ngx_uint_t s)
{
    ngx_http_webhook_sse_presence_t  **pp, *presence;

    for (pp = &channel->presence; *pp; pp = &presence->next) {
        presence = *pp;

        if (presence->slot == s) {
            *pp = presence->next;
            ngx_slab_free_locked(zone->shpool, presence);
            return;
        }
    }
}


/* the open streams of a session, all workers, and when the oldest opened */

static ngx_uint_t
ngx_http_webhook_sse_store_presence_total(
    ngx_http_webhook_sse_channel_t *channel, int64_t *since)
{
    ngx_uint_t                        n;
    ngx_http_webhook_sse_presence_t  *presence;

    n = 0;

    if (since) {
        *since = 0;
    }

    for (presence = channel->presence; presence; presence = presence->next) {
        if (presence->streams == 0) {
            continue;
        }

        n += presence->streams;

        if (since && (*since == 0 || presence->since < *since)) {
            *since = presence->since;
        }
    }

    return n;
}


/*
 * A present session whose last stream is gone: its grace period starts,
 * in the zone's queue by the time it ends (without one, it ends at once:
 * the close is announced by the timer like any other).
 */

static ngx_uint_t
ngx_http_webhook_sse_store_vacate(ngx_http_webhook_sse_zone_t *zone,
    ngx_http_webhook_sse_channel_t *channel, int64_t now)
{
    ngx_queue_t                     *q;
    ngx_http_webhook_sse_channel_t  *c;

    if (!channel->present || channel->in_grace
        || ngx_http_webhook_sse_store_presence_total(channel, NULL))
    {
        return NGX_HTTP_WEBHOOK_SSE_PRESENCE_NONE;
    }

    channel->leave_at = now + (int64_t) channel->grace;
    channel->in_grace = 1;

    for (q = ngx_queue_last(&zone->sh->leaving);
         q != ngx_queue_sentinel(&zone->sh->leaving);
         q = ngx_queue_prev(q))
    {
        c = ngx_queue_data(q, ngx_http_webhook_sse_channel_t, leaving);

        if (c->leave_at <= channel->leave_at) {
            break;
        }
    }

    ngx_queue_insert_after(q, &channel->leaving);

    return NGX_HTTP_WEBHOOK_SSE_PRESENCE_LEAVING;
}


static int64_t
ngx_http_webhook_sse_store_first_leave(ngx_http_webhook_sse_shctx_t *sh)
{
    ngx_http_webhook_sse_channel_t  *channel;

    if (ngx_queue_empty(&sh->leaving)) {
        return 0;
    }

    channel = ngx_queue_data(ngx_queue_head(&sh->leaving),
                             ngx_http_webhook_sse_channel_t, leaving);

    return channel->leave_at;
}


/* the presence of n sessions at once */

void
ngx_http_webhook_sse_store_presence(ngx_http_webhook_sse_zone_t *zone,
    ngx_str_t *sessions, ngx_http_webhook_sse_presence_info_t *info,
    ngx_uint_t n)
{
    ngx_uint_t                       i;
    ngx_http_webhook_sse_channel_t  *channel;

    ngx_http_webhook_sse_store_lock(zone);

    for (i = 0; i < n; i++) {
        info[i].streams = 0;
        info[i].since = 0;

        if (sessions[i].len == 0) {
            continue;
        }

        channel = ngx_http_webhook_sse_store_find(zone, &sessions[i], 0);

        if (channel) {
            info[i].streams = ngx_http_webhook_sse_store_presence_total(
                                                    channel, &info[i].since);
        }
    }

    ngx_http_webhook_sse_store_unlock(zone);
}


/*
 * Closes the sessions whose grace period is over, by any worker: their
 * names are copied out as records (channel id, len, the session) into the
 * buffer the caller allocated; "more" when it was too small for all, and
 * "slots" the worker slots in use.  Returns when the next grace period
 * ends, 0: none runs.
 */

int64_t
ngx_http_webhook_sse_store_settle(ngx_http_webhook_sse_zone_t *zone,
    u_char *buf, size_t size, size_t *used, ngx_uint_t *more,
    ngx_uint_t *slots)
{
    size_t                           rsize;
    int64_t                          now, next;
    ngx_uint_t                       s;
    ngx_queue_t                     *q;
    ngx_http_webhook_sse_record_t   *rec;
    ngx_http_webhook_sse_shctx_t    *sh;
    ngx_http_webhook_sse_channel_t  *channel;

    sh = zone->sh;
    *used = 0;
    *more = 0;

    ngx_http_webhook_sse_store_lock(zone);

    now = ngx_http_webhook_sse_now();

    while (!ngx_queue_empty(&sh->leaving)) {
        q = ngx_queue_head(&sh->leaving);
        channel = ngx_queue_data(q, ngx_http_webhook_sse_channel_t, leaving);

        if (channel->leave_at > now) {
            break;
        }

        rsize = ngx_http_webhook_sse_record_size(channel->len);

        if (*used + rsize > size) {
            *more = 1;
            break;
        }

        rec = (ngx_http_webhook_sse_record_t *) (buf + *used);
        rec->channel = channel->id;
        rec->seq = 0;
        rec->len = channel->len;
        ngx_memcpy(&rec[1], channel->key, channel->len);
        *used += rsize;

        ngx_queue_remove(q);
        channel->in_grace = 0;
        channel->present = 0;

        ngx_http_webhook_sse_store_free_unused(zone, channel);
    }

    next = ngx_http_webhook_sse_store_first_leave(sh);

    *slots = 0;

    for (s = 0; s < NGX_HTTP_WEBHOOK_SSE_SLOTS; s++) {
        if (sh->slots[s]) {
            (*slots)++;
        }
    }

    ngx_http_webhook_sse_store_unlock(zone);

    return next;
}


int64_t
ngx_http_webhook_sse_store_next_leave(ngx_http_webhook_sse_zone_t *zone)
{
    int64_t  next;

    ngx_http_webhook_sse_store_lock(zone);
    next = ngx_http_webhook_sse_store_first_leave(zone->sh);
    ngx_http_webhook_sse_store_unlock(zone);

    return next;
}


ngx_uint_t
ngx_http_webhook_sse_store_streams(ngx_http_webhook_sse_zone_t *zone)
{
    ngx_uint_t                     s, n;
    ngx_http_webhook_sse_shctx_t  *sh;

    sh = zone->sh;
    n = 0;

    ngx_http_webhook_sse_store_lock(zone);

    for (s = 0; s < NGX_HTTP_WEBHOOK_SSE_SLOTS; s++) {
        if (sh->slots[s]) {
            n += sh->slots[s]->streams;
        }
    }

    ngx_http_webhook_sse_store_unlock(zone);

    return n;
}


/*
 * A number written again and again (a zone's epoch, a message's time in
 * milliseconds: the event and the publish's answer, busy publishers in
 * one millisecond) keeps its digits.
 */

static u_char *
ngx_http_webhook_sse_format_kept(u_char *p, uint64_t n,
    ngx_http_webhook_sse_digits_t *kept)
{
    if (n != kept->n || kept->len == 0) {
        kept->len = ngx_http_webhook_sse_format_uint(kept->text, n)
                    - kept->text;
        kept->n = n;
    }

    return ngx_cpymem(p, kept->text, kept->len);
}


size_t
ngx_http_webhook_sse_format_id(u_char *p, uint64_t epoch, uint64_t seq)
{
    u_char  *last;

    static ngx_http_webhook_sse_digits_t  epoch_digits;

    last = ngx_http_webhook_sse_format_kept(p, epoch, &epoch_digits);
    *last++ = '-';
    last = ngx_http_webhook_sse_format_uint(last, seq);

    return last - p;
}


u_char *
ngx_http_webhook_sse_format_time(u_char *p, int64_t time)
{
    static ngx_http_webhook_sse_digits_t  time_digits;

    return ngx_http_webhook_sse_format_kept(p, (uint64_t) time, &time_digits);
}


/*
 * The decimal digits of n, as ngx_sprintf("%uL") writes them, without its
 * walk over a format: ids and times are written on every publish.
 */

u_char *
ngx_http_webhook_sse_format_uint(u_char *p, uint64_t n)
{
    u_char    *q, digits[NGX_INT64_LEN];
    uint64_t   two;

    static const char  pairs[] =
        "00010203040506070809101112131415161718192021222324252627282930313233"
        "34353637383940414243444546474849505152535455565758596061626364656667"
        "6869707172737475767778798081828384858687888990919293949596979899";

    q = digits + NGX_INT64_LEN;

    while (n >= 100) {
        two = (n % 100) * 2;
        n /= 100;

        *--q = pairs[two + 1];
        *--q = pairs[two];
    }

    if (n >= 10) {
        *--q = pairs[n * 2 + 1];
        *--q = pairs[n * 2];

    } else {
        *--q = (u_char) ('0' + n);
    }

    return ngx_cpymem(p, q, digits + NGX_INT64_LEN - q);
}


/* the sequence number of one of this zone's ids; 0 for anything else */

uint64_t
ngx_http_webhook_sse_parse_id(ngx_http_webhook_sse_zone_t *zone, u_char *p,
    size_t len)
{
    u_char    *last;
    uint64_t   n, epoch;

    last = p + len;
    epoch = 0;
    n = 0;

    for ( /* void */ ; p < last; p++) {

        if (*p == '-') {
            if (epoch || n == 0) {
                return 0;
            }

            epoch = n;
            n = 0;
            continue;
        }

        if (*p < '0' || *p > '9' || n > (NGX_MAX_UINT32_VALUE * 1000ULL)) {
            return 0;
        }

        n = n * 10 + (*p - '0');
    }

    if (epoch != zone->sh->epoch) {
        return 0;
    }

    return n;
}


int64_t
ngx_http_webhook_sse_now(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (int64_t) tp->sec * 1000 + tp->msec;
}


/*
 * Stores a message made elsewhere (another host through Redis, a persisted
 * file) under its own sequence number, and says which workers to wake like
 * ngx_http_webhook_sse_store_publish().  "fields" is what follows the
 * timestamp in the event (the publisher's fields, comma-separated, without
 * braces).  Sequence numbers only grow: one at or below the zone's last is
 * a duplicate (NGX_DECLINED); one that expired moves the zone's last
 * forward and stores nothing.  NGX_ERROR: it cannot be kept (one larger
 * than a quarter of the zone still moves the zone's last forward).
 */

ngx_int_t
ngx_http_webhook_sse_store_ingest(ngx_http_webhook_sse_zone_t *zone,
    uint64_t seq, int64_t time, ngx_str_t *session, ngx_str_t *fields,
    ngx_pid_t *wake, ngx_uint_t *nwake)
{
    size_t                           size;
    int64_t                          now;
    ngx_str_t                        none;
    ngx_http_webhook_sse_msg_t      *msg;
    ngx_http_webhook_sse_shctx_t    *sh;
    ngx_http_webhook_sse_channel_t  *channel;

    ngx_str_null(&none);

    size = ngx_http_webhook_sse_store_msg_size(&none, fields);

    sh = zone->sh;

    ngx_http_webhook_sse_store_lock(zone);

    if (seq <= sh->last_seq) {
        ngx_http_webhook_sse_store_unlock(zone);
        return NGX_DECLINED;
    }

    now = ngx_http_webhook_sse_now();

    ngx_http_webhook_sse_store_expire(zone, now);

    if (time + (int64_t) zone->ttl <= now) {
        sh->last_seq = seq;
        ngx_http_webhook_sse_store_unlock(zone);
        return NGX_OK;
    }

    if (size > zone->shm_zone->shm.size / 4) {
        sh->last_seq = seq;
        ngx_http_webhook_sse_store_unlock(zone);
        return NGX_ERROR;
    }

    channel = ngx_http_webhook_sse_store_find(zone, session, 1);
    if (channel == NULL) {
        ngx_http_webhook_sse_store_unlock(zone);
        return NGX_ERROR;
    }

    msg = ngx_http_webhook_sse_store_alloc(zone, size, channel);
    if (msg == NULL) {
        ngx_http_webhook_sse_store_free_unused(zone, channel);
        ngx_http_webhook_sse_store_unlock(zone);
        return NGX_ERROR;
    }

    sh->last_seq = seq;

    ngx_http_webhook_sse_store_add(zone, msg, channel, seq, time, &none,
                                   fields, wake, nwake);

    ngx_http_webhook_sse_store_unlock(zone);

    return NGX_OK;
}


/*
 * The zone takes the ids of a cluster (or of a persisted file) it did not
 * make: what it holds under its own epoch means nothing there and goes.
 */

void
ngx_http_webhook_sse_store_adopt(ngx_http_webhook_sse_zone_t *zone,
    uint64_t epoch, uint64_t last_seq)
{
    ngx_http_webhook_sse_msg_t    *msg;
    ngx_http_webhook_sse_shctx_t  *sh;

    sh = zone->sh;

    ngx_http_webhook_sse_store_lock(zone);

    if (sh->epoch != epoch) {
        while (!ngx_queue_empty(&sh->messages)) {
            msg = ngx_queue_data(ngx_queue_head(&sh->messages),
                                 ngx_http_webhook_sse_msg_t, zone_queue);
            ngx_http_webhook_sse_store_free_msg(zone, msg, NULL);
        }

        sh->epoch = epoch;
        sh->last_seq = last_seq;
    }

    ngx_http_webhook_sse_store_unlock(zone);
}
