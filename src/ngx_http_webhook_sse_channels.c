
/*
 * nginx-webhook-sse: a worker's channels by the zone channel's id.
 *
 * Every event a worker is given is looked up here, so the lookup is an
 * open-addressing table with the ids in the slots (linear probing, at
 * most half full) rather than nginx's rbtree: with a thousand channels a
 * tree walk misses the cache ten times or so, a slot once.  Why not
 * ngx_hash_t: it is built once at configuration time, channels come and
 * go at run time.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_webhook_sse_stream.h"


#define NGX_HTTP_WEBHOOK_SSE_CHANNELS_MIN  64


static ngx_uint_t ngx_http_webhook_sse_channels_slot(
    ngx_http_webhook_sse_channels_t *table, uint64_t id);


/* ids are handed out in order: multiplying spreads neighbours apart */

static ngx_uint_t
ngx_http_webhook_sse_channels_slot(ngx_http_webhook_sse_channels_t *table,
    uint64_t id)
{
    return (ngx_uint_t) ((id * 0x9e3779b97f4a7c15ULL) >> 32) & table->mask;
}


ngx_http_webhook_sse_lchannel_t *
ngx_http_webhook_sse_channels_find(ngx_http_webhook_sse_channels_t *table,
    uint64_t id)
{
    ngx_uint_t                            i;
    ngx_http_webhook_sse_channel_slot_t  *slot;

    if (table->n == 0) {
        return NULL;
    }

    i = ngx_http_webhook_sse_channels_slot(table, id);

    for ( ;; ) {
        slot = &table->slots[i];

        if (slot->channel == NULL) {
            return NULL;
        }

        if (slot->id == id) {
            return slot->channel;
        }

        i = (i + 1) & table->mask;
    }
}


/*
 * Room for one more channel, made before the zone is asked, so that
 * adding it afterwards cannot fail.
 */

ngx_int_t
ngx_http_webhook_sse_channels_reserve(ngx_http_webhook_sse_channels_t *table,
    ngx_log_t *log)
{
    ngx_uint_t                            i, size;
    ngx_http_webhook_sse_channel_slot_t  *slots, *old;

    if (table->slots && (table->n + 1) * 2 <= table->mask + 1) {
        return NGX_OK;
    }

    size = table->slots ? (table->mask + 1) * 2
                        : NGX_HTTP_WEBHOOK_SSE_CHANNELS_MIN;

    slots = ngx_calloc(size * sizeof(ngx_http_webhook_sse_channel_slot_t),
                       log);
    if (slots == NULL) {
        return NGX_ERROR;
    }

    old = table->slots;

    table->slots = slots;
    table->mask = size - 1;
    table->n = 0;

    if (old == NULL) {
        return NGX_OK;
    }

    /* into the new slots, each counted again */

    for (i = 0; i < size / 2; i++) {
        if (old[i].channel) {
            ngx_http_webhook_sse_channels_add(table, old[i].channel);
        }
    }

    ngx_free(old);

    return NGX_OK;
}


/* after ngx_http_webhook_sse_channels_reserve() */

void
ngx_http_webhook_sse_channels_add(ngx_http_webhook_sse_channels_t *table,
    ngx_http_webhook_sse_lchannel_t *lc)
{
    ngx_uint_t  i;

    i = ngx_http_webhook_sse_channels_slot(table, lc->id);

    while (table->slots[i].channel) {
        i = (i + 1) & table->mask;
    }

    table->slots[i].id = lc->id;
    table->slots[i].channel = lc;
    table->n++;
}


/*
 * Empties the channel's slot and moves back the slots after it that
 * would otherwise no longer be found (no tombstones: a long-running
 * worker's table stays as fast as on its first day).
 */

void
ngx_http_webhook_sse_channels_delete(ngx_http_webhook_sse_channels_t *table,
    ngx_http_webhook_sse_lchannel_t *lc)
{
    ngx_uint_t  i, j, home;

    i = ngx_http_webhook_sse_channels_slot(table, lc->id);

    while (table->slots[i].channel != lc) {
        i = (i + 1) & table->mask;
    }

    j = i;

    for ( ;; ) {
        j = (j + 1) & table->mask;

        if (table->slots[j].channel == NULL) {
            break;
        }

        home = ngx_http_webhook_sse_channels_slot(table, table->slots[j].id);

        /* j stays if its home lies cyclically in (i, j] */
        if (((j - home) & table->mask) < ((j - i) & table->mask)) {
            continue;
        }

        table->slots[i] = table->slots[j];
        i = j;
    }

    table->slots[i].channel = NULL;
    table->n--;
}
