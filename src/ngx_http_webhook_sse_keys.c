
/*
 * nginx-webhook-sse: idempotency keys in the shared zone.  A retried
 * publish that carries the key of one already stored gets the first one's
 * answer instead of a second message.  Keys leave when their window ends
 * or, under memory pressure, oldest first.  Callers hold the zone lock.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_webhook_sse_module.h"


static void ngx_http_webhook_sse_keys_free(ngx_http_webhook_sse_zone_t *zone,
    ngx_http_webhook_sse_key_t *entry);


void
ngx_http_webhook_sse_keys_init(ngx_http_webhook_sse_shctx_t *sh)
{
    ngx_rbtree_init(&sh->keys, &sh->keys_sentinel,
                    ngx_str_rbtree_insert_value);
    ngx_queue_init(&sh->keys_queue);
}


/* the live entry of a key; one whose window ended is dropped */

ngx_http_webhook_sse_key_t *
ngx_http_webhook_sse_keys_find(ngx_http_webhook_sse_zone_t *zone,
    ngx_str_t *key, int64_t now)
{
    ngx_str_node_t              *sn;
    ngx_http_webhook_sse_key_t  *entry;

    sn = ngx_str_rbtree_lookup(&zone->sh->keys, key,
                               ngx_crc32_short(key->data, key->len));
    if (sn == NULL) {
        return NULL;
    }

    entry = (ngx_http_webhook_sse_key_t *) sn;

    if (entry->expires <= now) {
        ngx_http_webhook_sse_keys_free(zone, entry);
        return NULL;
    }

    return entry;
}


size_t
ngx_http_webhook_sse_keys_size(ngx_str_t *key)
{
    return offsetof(ngx_http_webhook_sse_key_t, data) + key->len;
}


/* "entry" was allocated with keys_size() while the message was stored */

void
ngx_http_webhook_sse_keys_insert(ngx_http_webhook_sse_zone_t *zone,
    ngx_http_webhook_sse_key_t *entry, ngx_http_webhook_sse_idempotency_t *idem,
    uint64_t seq, int64_t now)
{
    ngx_memcpy(entry->data, idem->key.data, idem->key.len);

    entry->sn.str.data = entry->data;
    entry->sn.str.len = idem->key.len;
    entry->sn.node.key = ngx_crc32_short(idem->key.data, idem->key.len);

    entry->expires = now + (int64_t) idem->window;
    entry->seq = seq;
    entry->time = now;
    ngx_memcpy(entry->digest, idem->digest, NGX_HTTP_WEBHOOK_SSE_DIGEST_LEN);

    ngx_rbtree_insert(&zone->sh->keys, &entry->sn.node);
    ngx_queue_insert_tail(&zone->sh->keys_queue, &entry->queue);
    zone->sh->nkeys++;
}


/*
 * Frees the oldest key: only if its window has ended when "expired_only".
 * Windows differ between locations, so a later key may end first: it is
 * dropped when found or when it reaches the head.
 */

ngx_int_t
ngx_http_webhook_sse_keys_evict(ngx_http_webhook_sse_zone_t *zone,
    int64_t now, ngx_uint_t expired_only)
{
    ngx_http_webhook_sse_key_t  *entry;

    if (ngx_queue_empty(&zone->sh->keys_queue)) {
        return NGX_DECLINED;
    }

    entry = ngx_queue_data(ngx_queue_head(&zone->sh->keys_queue),
                           ngx_http_webhook_sse_key_t, queue);

    if (expired_only && entry->expires > now) {
        return NGX_DECLINED;
    }

    ngx_http_webhook_sse_keys_free(zone, entry);

    return NGX_OK;
}


static void
ngx_http_webhook_sse_keys_free(ngx_http_webhook_sse_zone_t *zone,
    ngx_http_webhook_sse_key_t *entry)
{
    ngx_rbtree_delete(&zone->sh->keys, &entry->sn.node);
    ngx_queue_remove(&entry->queue);
    zone->sh->nkeys--;

    ngx_slab_free_locked(zone->shpool, entry);
}
