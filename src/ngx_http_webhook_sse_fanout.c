
/*
 * nginx-webhook-sse: a worker's streams of one zone.
 *
 * A stream subscribes to its session's channel and to the broadcast
 * channel; the worker keeps one local channel per zone channel with its
 * streams.  A replay is read from the zone in parts as the client takes
 * them.  A rung doorbell makes the worker collect, in one call to the
 * store, what was published for it, and every stream of a channel gets the
 * same event.  Each stream's cursor (the newest message it got) makes
 * replay and live delivery meet without gaps or duplicates.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_webhook_sse_stream.h"


/* streams written in one go before the worker looks at other events */
#define NGX_HTTP_WEBHOOK_SSE_SLICE       256

/* how often a worker with streams looks at its notices on its own */
#define NGX_HTTP_WEBHOOK_SSE_CHECK       1000

/* a replay part: what webhook_stream_buffer leaves room for, at least */
#define NGX_HTTP_WEBHOOK_SSE_PART_MIN    4096

#define NGX_HTTP_WEBHOOK_SSE_SCRATCH     65536


static ngx_int_t ngx_http_webhook_sse_fanout_copy(
    ngx_http_webhook_sse_worker_t *worker, size_t size);
static size_t ngx_http_webhook_sse_fanout_part(
    ngx_http_webhook_sse_stream_t *stream);
static ngx_int_t ngx_http_webhook_sse_fanout_append(
    ngx_http_webhook_sse_stream_t *stream);
static void ngx_http_webhook_sse_fanout_push(
    ngx_http_webhook_sse_stream_t *stream, ngx_http_webhook_sse_event_t *ev);
static void ngx_http_webhook_sse_fanout_write(
    ngx_http_webhook_sse_worker_t *worker);
static void ngx_http_webhook_sse_fanout_write_handler(ngx_event_t *ev);
static void ngx_http_webhook_sse_fanout_check_handler(ngx_event_t *ev);
static void ngx_http_webhook_sse_fanout_lane_handler(ngx_event_t *ev);
static int ngx_libc_cdecl ngx_http_webhook_sse_fanout_cmp(const void *one,
    const void *two);


static ngx_array_t  *ngx_http_webhook_sse_workers;


ngx_http_webhook_sse_worker_t *
ngx_http_webhook_sse_fanout_init(ngx_cycle_t *cycle,
    ngx_http_webhook_sse_zone_t *zone, ngx_http_webhook_sse_close_pt close_handler)
{
    ngx_http_webhook_sse_worker_t   *worker, **w;

    if (ngx_http_webhook_sse_workers == NULL) {
        ngx_http_webhook_sse_workers = ngx_array_create(cycle->pool, 2,
                                  sizeof(ngx_http_webhook_sse_worker_t *));
        if (ngx_http_webhook_sse_workers == NULL) {
            return NULL;
        }
    }

    worker = ngx_pcalloc(cycle->pool, sizeof(ngx_http_webhook_sse_worker_t));
    if (worker == NULL) {
        return NULL;
    }

    w = ngx_array_push(ngx_http_webhook_sse_workers);
    if (w == NULL) {
        return NULL;
    }

    *w = worker;

    worker->zone = zone;
    worker->close = close_handler;
    worker->log = cycle->log;

    ngx_rbtree_init(&worker->events, &worker->events_sentinel,
                    ngx_rbtree_insert_value);
    ngx_queue_init(&worker->streams);
    ngx_queue_init(&worker->touched);

    worker->writer.handler = ngx_http_webhook_sse_fanout_write_handler;
    worker->writer.data = worker;
    worker->writer.log = cycle->log;

    worker->check.handler = ngx_http_webhook_sse_fanout_check_handler;
    worker->check.data = worker;
    worker->check.log = cycle->log;
    worker->check.cancelable = 1;

    return worker;
}


/*
 * Puts a stream's heartbeats in the lane of its interval: its heartbeat
 * event is posted when due.  NGX_DECLINED: every lane has another
 * interval, the stream keeps a timer of its own.
 */

ngx_int_t
ngx_http_webhook_sse_fanout_beat(ngx_http_webhook_sse_stream_t *stream)
{
    ngx_uint_t                      i;
    ngx_msec_t                      interval;
    ngx_http_webhook_sse_lane_t    *lane;
    ngx_http_webhook_sse_worker_t  *worker;

    worker = stream->worker;
    interval = stream->conf->heartbeat;

    lane = NULL;

    for (i = 0; i < worker->nlanes; i++) {
        if (worker->lanes[i].interval == interval) {
            lane = &worker->lanes[i];
            break;
        }
    }

    if (lane == NULL) {
        if (worker->nlanes == NGX_HTTP_WEBHOOK_SSE_LANES) {
            return NGX_DECLINED;
        }

        lane = &worker->lanes[worker->nlanes++];

        lane->interval = interval;
        ngx_queue_init(&lane->streams);

        lane->timer.handler = ngx_http_webhook_sse_fanout_lane_handler;
        lane->timer.data = lane;
        lane->timer.log = worker->log;
        lane->timer.cancelable = 1;
    }

    /* every stream of a lane waits the same: the tail is due last */

    stream->lane = lane;
    stream->beat_at = ngx_current_msec + interval;
    ngx_queue_insert_tail(&lane->streams, &stream->lane_link);

    if (!lane->timer.timer_set) {
        ngx_add_timer(&lane->timer, interval);
    }

    return NGX_OK;
}


void
ngx_http_webhook_sse_fanout_unbeat(ngx_http_webhook_sse_stream_t *stream)
{
    if (stream->lane) {
        ngx_queue_remove(&stream->lane_link);
        stream->lane = NULL;
    }
}


static void
ngx_http_webhook_sse_fanout_lane_handler(ngx_event_t *ev)
{
    ngx_http_webhook_sse_lane_t *lane = ev->data;

    ngx_queue_t                    *q;
    ngx_msec_int_t                  wait;
    ngx_http_webhook_sse_stream_t  *stream;

    while (!ngx_queue_empty(&lane->streams)) {
        q = ngx_queue_head(&lane->streams);
        stream = ngx_queue_data(q, ngx_http_webhook_sse_stream_t, lane_link);

        wait = (ngx_msec_int_t) (stream->beat_at - ngx_current_msec);

        if (wait > 0) {
            ngx_add_timer(ev, (ngx_msec_t) wait);
            return;
        }

        ngx_queue_remove(q);

        stream->beat_at = ngx_current_msec + lane->interval;
        ngx_queue_insert_tail(&lane->streams, q);

        /* the stream's own handler sends it, as from its own timer */
        ngx_post_event(&stream->heartbeat, &ngx_posted_events);
    }
}


ngx_http_webhook_sse_worker_t *
ngx_http_webhook_sse_fanout_worker(ngx_http_webhook_sse_zone_t *zone)
{
    ngx_uint_t                       i;
    ngx_http_webhook_sse_worker_t  **w;

    if (ngx_http_webhook_sse_workers == NULL) {
        return NULL;
    }

    w = ngx_http_webhook_sse_workers->elts;

    for (i = 0; i < ngx_http_webhook_sse_workers->nelts; i++) {
        if (w[i]->zone == zone) {
            return w[i];
        }
    }

    return NULL;
}


/*
 * Makes room for copies of at least "size" bytes and lets one call to the
 * zone take "size" of it (0: all); allocated before the zone is locked.
 */

static ngx_int_t
ngx_http_webhook_sse_fanout_copy(ngx_http_webhook_sse_worker_t *worker,
    size_t size)
{
    u_char  *start;
    size_t   capacity;

    if (worker->capacity < size || worker->copies.start == NULL) {
        capacity = ngx_max(size, NGX_HTTP_WEBHOOK_SSE_SCRATCH);
        capacity = ngx_max(capacity, worker->capacity * 2);

        start = ngx_alloc(capacity, worker->log);
        if (start == NULL) {
            return NGX_ERROR;
        }

        ngx_free(worker->copies.start);

        worker->copies.start = start;
        worker->capacity = capacity;
    }

    worker->copies.size = size ? size : worker->capacity;

    return NGX_OK;
}


/*
 * Joins the stream to its channels and queues the first part of its
 * replay.  NGX_DECLINED: the zone has no room for the channel.
 */

ngx_int_t
ngx_http_webhook_sse_fanout_subscribe(ngx_http_webhook_sse_stream_t *stream,
    ngx_str_t *session, ngx_http_webhook_sse_replay_t *replay)
{
    size_t                              part;
    ngx_int_t                           rc;
    ngx_http_webhook_sse_worker_t           *worker;
    ngx_http_webhook_sse_lchannel_t         *lc, *nlc;
    ngx_http_webhook_sse_subscribed_t        subscribed;
    ngx_http_webhook_sse_presence_change_t   change;

    worker = stream->worker;
    change.grace = stream->conf->presence_grace;

    nlc = NULL;

    if (session->len) {
        if (ngx_http_webhook_sse_channels_reserve(&worker->channels,
                                                  worker->log)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        nlc = ngx_alloc(sizeof(ngx_http_webhook_sse_lchannel_t) + session->len,
                        worker->log);
        if (nlc == NULL) {
            return NGX_ERROR;
        }
    }

    part = ngx_http_webhook_sse_fanout_part(stream);

    if (ngx_http_webhook_sse_fanout_copy(worker, part) != NGX_OK) {
        ngx_free(nlc);
        return NGX_ERROR;
    }

    for ( ;; ) {
        rc = ngx_http_webhook_sse_store_subscribe(worker->zone, replay,
                                                  &worker->copies,
                                                  &subscribed, &change);
        if (rc != NGX_AGAIN) {
            break;
        }

        /* one message larger than a part */
        if (ngx_http_webhook_sse_fanout_copy(worker, worker->copies.needed)
            != NGX_OK)
        {
            ngx_free(nlc);
            return NGX_ERROR;
        }
    }

    if (rc != NGX_OK) {
        ngx_free(nlc);
        return rc;
    }

    lc = NULL;

    if (session->len) {
        lc = ngx_http_webhook_sse_channels_find(&worker->channels,
                                                subscribed.channel);

        if (lc == NULL) {
            lc = nlc;
            nlc = NULL;

            lc->id = subscribed.channel;
            lc->nstreams = 0;
            lc->session.len = session->len;
            lc->session.data = (u_char *) &lc[1];
            ngx_memcpy(lc->session.data, session->data, session->len);
            ngx_queue_init(&lc->streams);

            ngx_http_webhook_sse_channels_add(&worker->channels, lc);
        }

        ngx_queue_insert_tail(&lc->streams, &stream->channel_link);
        lc->nstreams++;
    }

    ngx_free(nlc);

    ngx_queue_insert_tail(&worker->streams, &stream->worker_link);
    worker->nstreams++;

    if (!worker->check.timer_set) {
        ngx_add_timer(&worker->check, NGX_HTTP_WEBHOOK_SSE_CHECK);
    }

    stream->channel = lc;
    stream->subscribed = 1;
    stream->opened = change.time;

    rc = ngx_http_webhook_sse_fanout_append(stream);

    if (rc == NGX_OK) {
        ngx_http_webhook_sse_presence_changed(worker, stream, session,
                                              &change);
    }

    return rc;
}


/*
 * As much of the replay as webhook_stream_buffer leaves room for next to
 * what the stream holds already: the bigger the part, the less of a
 * fast-turning zone can leave it between two parts.
 */

static size_t
ngx_http_webhook_sse_fanout_part(ngx_http_webhook_sse_stream_t *stream)
{
    size_t                       used;
    ngx_http_webhook_sse_out_t  *out;

    used = stream->unsent + stream->held_bytes;

    for (out = stream->queued; out; out = out->next) {
        used += out->buf.last - out->buf.pos;
    }

    if (used + NGX_HTTP_WEBHOOK_SSE_PART_MIN >= stream->conf->stream_buffer) {
        return NGX_HTTP_WEBHOOK_SSE_PART_MIN;
    }

    return stream->conf->stream_buffer - used;
}


/*
 * Queues what the zone copied for a stream's replay, merged in order with
 * the live events held for it meanwhile; the stream goes on catching up
 * while more remains, and takes live events once it is done.
 */

static ngx_int_t
ngx_http_webhook_sse_fanout_append(ngx_http_webhook_sse_stream_t *stream)
{
    u_char                         *p;
    ngx_uint_t                      i;
    ngx_http_webhook_sse_event_t   *ev, *held;
    ngx_http_webhook_sse_record_t  *rec;
    ngx_http_webhook_sse_worker_t  *worker;

    worker = stream->worker;

    p = worker->copies.start;

    for (i = 0; i < worker->copies.count; i++) {
        rec = (ngx_http_webhook_sse_record_t *) p;
        p += ngx_http_webhook_sse_record_size(rec->len);

        while ((held = ngx_http_webhook_sse_output_held(stream))
               && held->seq <= rec->seq)
        {
            if (held->seq < rec->seq
                && ngx_http_webhook_sse_output_append(stream, held, NULL, 0)
                   != NGX_OK)
            {
                return NGX_ERROR;
            }

            ngx_http_webhook_sse_output_unhold(stream);
        }

        ev = ngx_http_webhook_sse_event_get(worker, rec);
        if (ev == NULL) {
            return NGX_ERROR;
        }

        if (ngx_http_webhook_sse_output_append(stream, ev, NULL, 0)
            != NGX_OK)
        {
            ngx_http_webhook_sse_event_unref(worker, ev);
            return NGX_ERROR;
        }

        ngx_http_webhook_sse_event_unref(worker, ev);

        stream->cursor = rec->seq;
    }

    if (worker->copies.more) {
        stream->catching_up = 1;
        return NGX_OK;
    }

    /* what was held and is no longer in the zone */

    while ((held = ngx_http_webhook_sse_output_held(stream))) {
        if (ngx_http_webhook_sse_output_append(stream, held, NULL, 0)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        stream->cursor = held->seq;
        ngx_http_webhook_sse_output_unhold(stream);
    }

    stream->cursor = ngx_max(stream->cursor, worker->copies.last);
    stream->catching_up = 0;

    return NGX_OK;
}


/*
 * Reads the next parts of a replay from the zone while the stream has
 * sent what it had: a client that does not read holds one part at most.
 */

ngx_int_t
ngx_http_webhook_sse_fanout_catch_up(ngx_http_webhook_sse_stream_t *stream)
{
    size_t                          part;
    ngx_int_t                       rc;
    ngx_http_webhook_sse_replay_t   replay;
    ngx_http_webhook_sse_worker_t  *worker;

    worker = stream->worker;

    while (stream->catching_up && stream->busy == NULL && !stream->ending) {

        part = ngx_http_webhook_sse_fanout_part(stream);

        if (ngx_http_webhook_sse_fanout_copy(worker, part) != NGX_OK) {
            return NGX_ERROR;
        }

        if (stream->channel) {
            replay.session = stream->channel->session;

        } else {
            ngx_str_null(&replay.session);
        }

        replay.after = stream->cursor;
        replay.limit = 0;
        replay.resume = 1;

        for ( ;; ) {
            rc = ngx_http_webhook_sse_store_replay(worker->zone, &replay,
                                                   &worker->copies);
            if (rc != NGX_AGAIN) {
                break;
            }

            if (ngx_http_webhook_sse_fanout_copy(worker,
                                                 worker->copies.needed)
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }

        if (ngx_http_webhook_sse_fanout_append(stream) != NGX_OK) {
            return NGX_ERROR;
        }

        if (ngx_http_webhook_sse_output_flush(stream) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * The doorbell rang: collect what the zone holds for this worker, then
 * hand each event in publish order to the streams of its channel, then
 * write.
 */

void
ngx_http_webhook_sse_fanout_deliver(void *data)
{
    ngx_http_webhook_sse_worker_t  *worker = data;

    u_char                           *p;
    ngx_int_t                         rc;
    ngx_uint_t                        i, n, delivered;
    ngx_queue_t                      *q, *streams;
    ngx_http_webhook_sse_event_t     *ev, **batch;
    ngx_http_webhook_sse_record_t    *rec;
    ngx_http_webhook_sse_stream_t    *stream;
    ngx_http_webhook_sse_lchannel_t  *lc;

    /* even with no streams left: collecting lets the doorbell ring again */

    if (ngx_http_webhook_sse_fanout_copy(worker, 0) != NGX_OK) {
        return;
    }

    for ( ;; ) {
        rc = ngx_http_webhook_sse_store_collect(worker->zone,
                                                &worker->copies);
        if (rc != NGX_AGAIN) {
            break;
        }

        if (ngx_http_webhook_sse_fanout_copy(worker, worker->copies.needed)
            != NGX_OK)
        {
            return;
        }

        worker->copies.size = worker->capacity;
    }

    n = worker->copies.count;

    if (rc != NGX_OK || n == 0) {
        return;
    }

    if (n > worker->batch_size) {
        batch = ngx_alloc(n * 2 * sizeof(ngx_http_webhook_sse_event_t *),
                          worker->log);
        if (batch == NULL) {
            return;
        }

        ngx_free(worker->batch);
        worker->batch = batch;
        worker->batch_size = n * 2;
    }

    batch = worker->batch;
    p = worker->copies.start;

    for (i = 0; i < n; i++) {
        rec = (ngx_http_webhook_sse_record_t *) p;
        p += ngx_http_webhook_sse_record_size(rec->len);

        batch[i] = ngx_http_webhook_sse_event_get(worker, rec);

        if (batch[i] == NULL) {
            /* what was collected is lost to this worker's streams */
            while (i--) {
                ngx_http_webhook_sse_event_unref(worker, batch[i]);
            }

            return;
        }
    }

    if (worker->copies.unsorted) {
        ngx_qsort(batch, n, sizeof(ngx_http_webhook_sse_event_t *),
                  ngx_http_webhook_sse_fanout_cmp);
    }

    delivered = 0;

    for (i = 0; i < n; i++) {
        ev = batch[i];

        if (ev->channel == NGX_HTTP_WEBHOOK_SSE_BROADCAST) {
            streams = &worker->streams;

            for (q = ngx_queue_head(streams);
                 q != ngx_queue_sentinel(streams);
                 q = ngx_queue_next(q))
            {
                stream = ngx_queue_data(q, ngx_http_webhook_sse_stream_t,
                                        worker_link);
                ngx_http_webhook_sse_fanout_push(stream, ev);
                delivered++;
            }

        } else {
            lc = ngx_http_webhook_sse_channels_find(&worker->channels,
                                                    ev->channel);

            if (lc) {
                streams = &lc->streams;

                for (q = ngx_queue_head(streams);
                     q != ngx_queue_sentinel(streams);
                     q = ngx_queue_next(q))
                {
                    stream = ngx_queue_data(q, ngx_http_webhook_sse_stream_t,
                                            channel_link);
                    ngx_http_webhook_sse_fanout_push(stream, ev);
                    delivered++;
                }
            }
        }

        ngx_http_webhook_sse_event_unref(worker, ev);
    }

    if (delivered) {
        (void) ngx_atomic_fetch_add(&worker->zone->sh->delivered, delivered);
    }

    ngx_http_webhook_sse_fanout_write(worker);
}


/*
 * Writes the streams given events, a slice at a time: the first streams
 * of a large channel get the event at once, and between slices the worker
 * reads what else came (publishes, doorbells, new streams).  Events given
 * meanwhile queue behind on the same streams, in order.
 */

static void
ngx_http_webhook_sse_fanout_write(ngx_http_webhook_sse_worker_t *worker)
{
    ngx_uint_t                      n;
    ngx_queue_t                    *q;
    ngx_http_webhook_sse_stream_t  *stream;

    /* writing may close streams, each leaves the touched queue itself */

    for (n = 0; n < NGX_HTTP_WEBHOOK_SSE_SLICE; n++) {

        if (ngx_queue_empty(&worker->touched)) {
            return;
        }

        q = ngx_queue_head(&worker->touched);
        ngx_queue_remove(q);

        stream = ngx_queue_data(q, ngx_http_webhook_sse_stream_t,
                                touched_link);
        stream->touched = 0;

        if (stream->failed
            || ngx_http_webhook_sse_output_flush(stream) != NGX_OK)
        {
            worker->close(stream, NGX_ERROR);
        }
    }

    /*
     * The next turn of the event loop, after epoll: nginx runs what is
     * posted to ngx_posted_events while posting goes on, so a slice
     * posted there would sweep every stream before any other event.
     */

    if (!ngx_queue_empty(&worker->touched) && !worker->writer.posted) {
        ngx_post_event(&worker->writer, &ngx_posted_next_events);
    }
}


static void
ngx_http_webhook_sse_fanout_write_handler(ngx_event_t *ev)
{
    ngx_http_webhook_sse_fanout_write(ev->data);
}


static void
ngx_http_webhook_sse_fanout_push(ngx_http_webhook_sse_stream_t *stream,
    ngx_http_webhook_sse_event_t *ev)
{
    if (stream->ending || ev->seq <= stream->cursor) {
        return;
    }

    /* a stream catching up gets it in order once its replay is there */
    if (stream->catching_up) {
        if (ngx_http_webhook_sse_output_hold(stream, ev) != NGX_OK) {
            stream->failed = 1;

            if (!stream->touched) {
                stream->touched = 1;
                ngx_queue_insert_tail(&stream->worker->touched,
                                      &stream->touched_link);
            }
        }

        return;
    }

    if (ngx_http_webhook_sse_output_append(stream, ev, NULL, 0) != NGX_OK) {
        stream->failed = 1;
    }

    stream->cursor = ev->seq;

    if (!stream->touched) {
        stream->touched = 1;
        ngx_queue_insert_tail(&stream->worker->touched,
                              &stream->touched_link);
    }
}


static int ngx_libc_cdecl
ngx_http_webhook_sse_fanout_cmp(const void *one, const void *two)
{
    ngx_http_webhook_sse_event_t  *a, *b;

    a = *(ngx_http_webhook_sse_event_t **) one;
    b = *(ngx_http_webhook_sse_event_t **) two;

    return (a->seq > b->seq) - (a->seq < b->seq);
}


/*
 * A doorbell that was never rung (a failed send in another worker) must
 * not leave streams waiting: now and then the worker looks by itself.
 */

static void
ngx_http_webhook_sse_fanout_check_handler(ngx_event_t *ev)
{
    ngx_http_webhook_sse_worker_t  *worker;

    worker = ev->data;

    if (worker->nstreams == 0 || ngx_exiting) {
        return;
    }

    ngx_http_webhook_sse_fanout_deliver(worker);

    if (worker->nstreams && !ev->timer_set) {
        ngx_add_timer(ev, NGX_HTTP_WEBHOOK_SSE_CHECK);
    }
}


/* everything a stream holds in the worker: timers, output, subscription */

void
ngx_http_webhook_sse_fanout_release(ngx_http_webhook_sse_stream_t *stream)
{
    ngx_uint_t                               last_of_channel;
    ngx_str_t                               *session;
    ngx_http_webhook_sse_stream_t           *oldest;
    ngx_http_webhook_sse_worker_t           *worker;
    ngx_http_webhook_sse_lchannel_t         *lc;
    ngx_http_webhook_sse_presence_change_t   change;

    static ngx_str_t  broadcast = ngx_null_string;

    worker = stream->worker;

    if (stream->heartbeat.timer_set) {
        ngx_del_timer(&stream->heartbeat);
    }

    if (stream->heartbeat.posted) {
        ngx_delete_posted_event(&stream->heartbeat);
    }

    ngx_http_webhook_sse_fanout_unbeat(stream);

    if (stream->touched) {
        ngx_queue_remove(&stream->touched_link);
        stream->touched = 0;
    }

    ngx_http_webhook_sse_output_free(stream);

    if (!stream->subscribed) {
        return;
    }

    stream->subscribed = 0;

    lc = stream->channel;

    ngx_queue_remove(&stream->worker_link);
    worker->nstreams--;

    last_of_channel = 0;
    session = &broadcast;
    change.since = 0;

    if (lc) {
        ngx_queue_remove(&stream->channel_link);
        lc->nstreams--;

        last_of_channel = (lc->nstreams == 0);
        session = &lc->session;

        /* the channel's streams are in the order they opened */
        if (!last_of_channel) {
            oldest = ngx_queue_data(ngx_queue_head(&lc->streams),
                                    ngx_http_webhook_sse_stream_t,
                                    channel_link);
            change.since = oldest->opened;
        }
    }

    ngx_http_webhook_sse_store_unsubscribe(worker->zone, session,
                                           last_of_channel,
                                           worker->nstreams == 0, &change);

    ngx_http_webhook_sse_presence_changed(worker, NULL, session, &change);

    if (last_of_channel) {
        ngx_http_webhook_sse_channels_delete(&worker->channels, lc);
        ngx_free(lc);
    }

    if (worker->nstreams == 0 && worker->check.timer_set) {
        ngx_del_timer(&worker->check);
    }
}
