
/*
 * nginx-webhook-sse: the shared zone: channels, history, expiry, eviction,
 * worker slots and their notice rings.  Callers hold the zone lock for
 * everything but init, lock/unlock and the id helpers.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_webhook_sse_module.h"


#define NGX_HTTP_WEBHOOK_SSE_LRU_SCAN      64
#define NGX_HTTP_WEBHOOK_SSE_FETCHED_SCAN  256

/* messages a channel may hold past its history for lagging workers */
#define NGX_HTTP_WEBHOOK_SSE_LAG_MAX   4096


static void ngx_http_webhook_sse_store_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
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
static ngx_uint_t ngx_http_webhook_sse_store_notify(
    ngx_http_webhook_sse_zone_t *zone, ngx_http_webhook_sse_channel_t *channel,
    ngx_pid_t *wake, ngx_uint_t *nwake);
static void ngx_http_webhook_sse_store_clear_slot(
    ngx_http_webhook_sse_zone_t *zone, ngx_uint_t s);


ngx_int_t
ngx_http_webhook_sse_store_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_webhook_sse_zone_t  *ozone = data;

    size_t                         len;
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
    sh->broadcast.id = NGX_HTTP_WEBHOOK_SSE_BROADCAST;
    ngx_http_webhook_sse_keys_init(sh);

    /*
     * The epoch tells ids of this zone from those of an earlier one (a
     * full restart), the nonce names this zone's doorbell sockets.
     */
    sh->epoch = (uint64_t) ngx_http_webhook_sse_now();
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


ngx_http_webhook_sse_channel_t *
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
    u_char                          *p, id[NGX_HTTP_WEBHOOK_SSE_ID_LEN];
    size_t                           id_len;
    int64_t                          now;
    ngx_queue_t                     *q;
    ngx_http_webhook_sse_key_t      *entry;
    ngx_http_webhook_sse_msg_t      *msg, *oldest;
    ngx_http_webhook_sse_shctx_t    *sh;
    ngx_http_webhook_sse_channel_t  *channel;

    static u_char  head[] = "\ndata: {\"type\":\"webhook_message\","
                            "\"messageId\":\"";

    size = offsetof(ngx_http_webhook_sse_msg_t, data)
           + sizeof("id: ") - 1 + NGX_HTTP_WEBHOOK_SSE_ID_LEN
           + sizeof(head) - 1 + NGX_HTTP_WEBHOOK_SSE_ID_LEN
           + sizeof("\",\"timestamp\":") - 1 + NGX_INT64_LEN
           + 1 + extra->len + 1 + members->len + sizeof("}\n\n") - 1;

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
            ngx_http_webhook_sse_store_release(zone, channel);
            ngx_http_webhook_sse_store_unlock(zone);
            return NGX_DECLINED;
        }
    }

    msg = ngx_http_webhook_sse_store_alloc(zone, size, channel);
    if (msg == NULL) {
        if (entry) {
            ngx_slab_free_locked(zone->shpool, entry);
        }

        ngx_http_webhook_sse_store_release(zone, channel);
        ngx_http_webhook_sse_store_unlock(zone);
        return NGX_DECLINED;
    }

    msg->seq = ++sh->last_seq;
    msg->time = now;
    msg->channel = channel;

    id_len = ngx_http_webhook_sse_format_id(id, sh->epoch, msg->seq);

    p = ngx_cpymem(msg->data, "id: ", sizeof("id: ") - 1);
    p = ngx_cpymem(p, id, id_len);
    p = ngx_cpymem(p, head, sizeof(head) - 1);
    p = ngx_cpymem(p, id, id_len);
    p = ngx_sprintf(p, "\",\"timestamp\":%L", now);

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

    msg->pending = ngx_http_webhook_sse_store_notify(zone, channel, wake,
                                                     nwake);

    if (entry) {
        ngx_http_webhook_sse_keys_insert(zone, entry, idem, msg->seq, now);
    }

    /*
     * The history bound waits for workers that have not fetched the oldest
     * messages yet, up to a hard limit: a lagging worker must not lose
     * what it was told about.
     */

    while (channel->count > zone->history) {
        q = ngx_queue_head(&channel->messages);
        oldest = ngx_queue_data(q, ngx_http_webhook_sse_msg_t, channel_queue);

        if (oldest->pending
            && channel->count <= zone->history * 2
                                 + NGX_HTTP_WEBHOOK_SSE_LAG_MAX)
        {
            break;
        }

        ngx_http_webhook_sse_store_free_msg(zone, oldest, channel);
    }

    ngx_http_webhook_sse_store_unlock(zone);

    stored->seq = msg->seq;
    stored->time = now;

    return NGX_OK;
}


/*
 * Queue the channel's id on the ring of every worker that has streams on
 * it; a worker whose ring was idle needs its doorbell rung.  Returns the
 * number of workers told.
 */

static ngx_uint_t
ngx_http_webhook_sse_store_notify(ngx_http_webhook_sse_zone_t *zone,
    ngx_http_webhook_sse_channel_t *channel, ngx_pid_t *wake,
    ngx_uint_t *nwake)
{
    uint64_t                      bits;
    ngx_uint_t                    w, s, n;
    ngx_http_webhook_sse_slot_t  *slot;

    n = 0;

    for (w = 0; w < NGX_HTTP_WEBHOOK_SSE_MASK_WORDS; w++) {

        bits = channel->subscribers[w];

        while (bits) {
            s = w * 64 + __builtin_ctzll(bits);
            bits &= bits - 1;

            slot = zone->sh->slots[s];
            if (slot == NULL) {
                continue;
            }

            n++;

            if (slot->nring == NGX_HTTP_WEBHOOK_SSE_RING) {
                slot->overflow = 1;

            } else if (slot->nring == 0
                       || slot->ring[slot->nring - 1] != channel->id)
            {
                slot->ring[slot->nring++] = channel->id;
            }

            if (!slot->armed) {
                slot->armed = 1;
                wake[(*nwake)++] = slot->pid;
            }
        }
    }

    return n;
}


/*
 * A worker stopped following a channel: it will not fetch the messages
 * after "after" that counted on it.
 */

void
ngx_http_webhook_sse_store_unpin(ngx_http_webhook_sse_channel_t *channel,
    uint64_t after)
{
    ngx_queue_t                 *q;
    ngx_http_webhook_sse_msg_t  *msg;

    for (q = ngx_queue_last(&channel->messages);
         q != ngx_queue_sentinel(&channel->messages);
         q = ngx_queue_prev(q))
    {
        msg = ngx_queue_data(q, ngx_http_webhook_sse_msg_t, channel_queue);

        if (msg->seq <= after) {
            break;
        }

        if (msg->pending) {
            msg->pending--;
        }
    }
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
     * fan-out) keeps what its streams have still to get.  Only when none
     * is near does the oldest go, fetched or not.
     */

    n = 0;

    for (q = ngx_queue_head(&sh->messages);
         q != ngx_queue_sentinel(&sh->messages)
         && n < NGX_HTTP_WEBHOOK_SSE_FETCHED_SCAN;
         q = ngx_queue_next(q), n++)
    {
        msg = ngx_queue_data(q, ngx_http_webhook_sse_msg_t, zone_queue);

        if (msg->pending == 0) {
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
        ngx_http_webhook_sse_store_release(zone, channel);
    }
}


/* frees a session channel once it has neither messages nor streams */

void
ngx_http_webhook_sse_store_release(ngx_http_webhook_sse_zone_t *zone,
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

    if (channel->id == NGX_HTTP_WEBHOOK_SSE_BROADCAST) {
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
 * reclaimed first, so that counts and subscriptions never drift.
 */

ngx_int_t
ngx_http_webhook_sse_store_claim_slot(ngx_http_webhook_sse_zone_t *zone)
{
    ngx_uint_t                     s;
    ngx_pid_t                      pid;
    ngx_http_webhook_sse_slot_t   *slot;
    ngx_http_webhook_sse_shctx_t  *sh;

    sh = zone->sh;
    zone->slot = -1;

    ngx_http_webhook_sse_store_lock(zone);

    for (s = 0; s < NGX_HTTP_WEBHOOK_SSE_SLOTS; s++) {
        if (sh->slots[s] == NULL) {
            continue;
        }

        pid = sh->slots[s]->pid;

        if (pid == ngx_pid || (kill(pid, 0) == -1 && ngx_errno == NGX_ESRCH)) {
            ngx_log_error(NGX_LOG_NOTICE, zone->log, 0,
                          "webhook zone \"%V\": reclaiming the slot of "
                          "exited process %P with %ui streams",
                          &zone->shm_zone->shm.name, pid,
                          sh->slots[s]->streams);
            ngx_http_webhook_sse_store_clear_slot(zone, s);
        }
    }

    for (s = 0; s < NGX_HTTP_WEBHOOK_SSE_SLOTS; s++) {
        if (sh->slots[s] == NULL) {
            break;
        }
    }

    if (s == NGX_HTTP_WEBHOOK_SSE_SLOTS) {
        ngx_http_webhook_sse_store_unlock(zone);
        ngx_log_error(NGX_LOG_CRIT, zone->log, 0,
                      "webhook zone \"%V\": more than %d worker processes, "
                      "this one serves no streams",
                      &zone->shm_zone->shm.name, NGX_HTTP_WEBHOOK_SSE_SLOTS);
        return NGX_DECLINED;
    }

    slot = ngx_slab_alloc_locked(zone->shpool,
                                 sizeof(ngx_http_webhook_sse_slot_t));
    if (slot == NULL) {
        ngx_http_webhook_sse_store_unlock(zone);
        ngx_log_error(NGX_LOG_CRIT, zone->log, 0,
                      "webhook zone \"%V\" is too small for the worker "
                      "bookkeeping", &zone->shm_zone->shm.name);
        return NGX_ERROR;
    }

    ngx_memzero(slot, sizeof(ngx_http_webhook_sse_slot_t));
    slot->pid = ngx_pid;
    sh->slots[s] = slot;
    zone->slot = s;

    ngx_http_webhook_sse_store_unlock(zone);

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


static void
ngx_http_webhook_sse_store_clear_slot(ngx_http_webhook_sse_zone_t *zone,
    ngx_uint_t s)
{
    ngx_queue_t                     *q, *next;
    ngx_http_webhook_sse_shctx_t    *sh;
    ngx_http_webhook_sse_channel_t  *channel;

    sh = zone->sh;

    ngx_http_webhook_sse_mask_clear(sh->broadcast.subscribers, s);

    for (q = ngx_queue_head(&sh->lru);
         q != ngx_queue_sentinel(&sh->lru);
         q = next)
    {
        next = ngx_queue_next(q);
        channel = ngx_queue_data(q, ngx_http_webhook_sse_channel_t, lru);

        if (ngx_http_webhook_sse_mask_test(channel->subscribers, s)) {
            ngx_http_webhook_sse_mask_clear(channel->subscribers, s);
            ngx_http_webhook_sse_store_release(zone, channel);
        }
    }

    ngx_slab_free_locked(zone->shpool, sh->slots[s]);
    sh->slots[s] = NULL;
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


size_t
ngx_http_webhook_sse_format_id(u_char *p, uint64_t epoch, uint64_t seq)
{
    return ngx_sprintf(p, "%uL-%uL", epoch, seq) - p;
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
