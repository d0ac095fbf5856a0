
/*
 * nginx-webhook-sse: presence, what a stream's start and end do to its
 * session (the webhook_presence location is in presence_handler.c): the zone counts each worker's
 * streams per channel; a session opens when it goes from none to one
 * stream, and closes when it has had none for its grace period
 * (webhook_presence_grace), so that a reconnect is neither.  Grace periods
 * end by a timer of whichever worker looks first: the one that started
 * it, one that started after it (a reload, a killed worker: it looks
 * once a second while workers of an older generation are still there),
 * or one whose stream or presence request saw it pending.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_webhook_sse_stream.h"
#include "ngx_http_webhook_sse_redis.h"


/* a new worker's first look at grace periods others left running */
#define NGX_HTTP_WEBHOOK_SSE_PRESENCE_LOOK   1000

/* session names one timer run takes out of the zone */
#define NGX_HTTP_WEBHOOK_SSE_SETTLE_BUFFER   8192



static void ngx_http_webhook_sse_presence_arm(
    ngx_http_webhook_sse_worker_t *worker, int64_t next);
static void ngx_http_webhook_sse_presence_timer(ngx_event_t *ev);
static void ngx_http_webhook_sse_presence_cluster(
    ngx_http_webhook_sse_worker_t *worker,
    ngx_http_webhook_sse_stream_t *stream, ngx_str_t *session,
    ngx_http_webhook_sse_presence_change_t *change);
static void ngx_http_webhook_sse_presence_announce(
    ngx_http_webhook_sse_zone_t *zone, ngx_http_webhook_sse_stream_t *stream,
    ngx_str_t *session, ngx_uint_t transition, ngx_uint_t streams,
    int64_t time);
static void ngx_http_webhook_sse_presence_post(
    ngx_http_webhook_sse_zone_t *zone, ngx_str_t *session,
    ngx_uint_t transition, ngx_uint_t streams, int64_t time);
static ngx_int_t ngx_http_webhook_sse_presence_event(ngx_pool_t *pool,
    ngx_str_t *key, ngx_str_t *session, ngx_uint_t transition,
    ngx_uint_t streams, int64_t time, ngx_str_t *sse, ngx_str_t *json);


/* a worker's grace timer: a first look soon after it starts */

void
ngx_http_webhook_sse_presence_init(ngx_http_webhook_sse_worker_t *worker)
{
    worker->presence.handler = ngx_http_webhook_sse_presence_timer;
    worker->presence.data = worker;
    worker->presence.log = worker->log;
    worker->presence.cancelable = 1;

    ngx_add_timer(&worker->presence, NGX_HTTP_WEBHOOK_SSE_PRESENCE_LOOK);
}


/* a worker without its grace timer running looks at the zone's next end */

void
ngx_http_webhook_sse_presence_look(ngx_http_webhook_sse_worker_t *worker)
{
    if (!worker->presence.timer_set && worker->presence.handler) {
        ngx_http_webhook_sse_presence_arm(worker,
                         ngx_http_webhook_sse_store_next_leave(worker->zone));
    }
}


/*
 * A stream of this worker started (stream set) or ended: what it did to
 * its session.  A start that opened the session tells the stream when
 * webhook_presence_events is on; a grace period that started gets the
 * timer.
 */

void
ngx_http_webhook_sse_presence_changed(ngx_http_webhook_sse_worker_t *worker,
    ngx_http_webhook_sse_stream_t *stream, ngx_str_t *session,
    ngx_http_webhook_sse_presence_change_t *change)
{
    if (worker->zone->redis && session->len) {
        ngx_http_webhook_sse_presence_cluster(worker, stream, session, change);
    }

    /* closes are announced by the timer when grace periods end */

    if (change->transition == NGX_HTTP_WEBHOOK_SSE_PRESENCE_OPENED) {
        ngx_http_webhook_sse_presence_announce(worker->zone, stream, session,
                                               change->transition,
                                               change->streams, change->time);
    }

    if (change->next_leave && !worker->presence.timer_set
        && worker->presence.handler)
    {
        ngx_http_webhook_sse_presence_arm(worker, change->next_leave);
    }
}


/*
 * webhook_redis: this worker's streams of the session, and when the
 * oldest of them opened, for the presence requests of the other hosts
 */

static void
ngx_http_webhook_sse_presence_cluster(ngx_http_webhook_sse_worker_t *worker,
    ngx_http_webhook_sse_stream_t *stream, ngx_str_t *session,
    ngx_http_webhook_sse_presence_change_t *change)
{
    ngx_http_webhook_sse_stream_t    *oldest;
    ngx_http_webhook_sse_lchannel_t  *lc;

    if (stream == NULL) {
        ngx_http_webhook_sse_redis_stream_closed(worker->zone, session,
                                                 change->since);
        return;
    }

    lc = stream->channel;

    if (lc == NULL) {
        return;
    }

    /* the channel's streams are in the order they opened */
    oldest = ngx_queue_data(ngx_queue_head(&lc->streams),
                            ngx_http_webhook_sse_stream_t, channel_link);

    ngx_http_webhook_sse_redis_stream_opened(worker->zone, session,
                                             lc->nstreams, oldest->opened);
}


static void
ngx_http_webhook_sse_presence_arm(ngx_http_webhook_sse_worker_t *worker,
    int64_t next)
{
    int64_t  now;

    if (next == 0) {
        return;
    }

    now = ngx_http_webhook_sse_now();

    /* a millisecond past the end: the zone compares with "<=" */
    ngx_add_timer(&worker->presence,
                  (ngx_msec_t) (next > now ? next - now + 1 : 1));
}


static void
ngx_http_webhook_sse_presence_timer(ngx_event_t *ev)
{
    ngx_http_webhook_sse_worker_t  *worker = ev->data;

    u_char                         *p, *last;
    size_t                          used;
    int64_t                         next, now;
    ngx_str_t                       session;
    ngx_uint_t                      more, slots;
    ngx_core_conf_t                *ccf;
    ngx_http_webhook_sse_record_t  *rec;

    /* records are 8-byte aligned */
    static uint64_t  buf[NGX_HTTP_WEBHOOK_SSE_SETTLE_BUFFER / 8];

    do {
        next = ngx_http_webhook_sse_store_settle(worker->zone, (u_char *) buf,
                                                 sizeof(buf), &used, &more,
                                                 &slots);

        now = ngx_http_webhook_sse_now();

        p = (u_char *) buf;
        last = p + used;

        while (p < last) {
            rec = (ngx_http_webhook_sse_record_t *) p;

            session.data = (u_char *) &rec[1];
            session.len = rec->len;

            ngx_http_webhook_sse_presence_announce(worker->zone, NULL,
                                     &session,
                                     NGX_HTTP_WEBHOOK_SSE_PRESENCE_CLOSED,
                                     0, now);

            p += ngx_http_webhook_sse_record_size(rec->len);
        }

    } while (more);

    /*
     * Workers of an older generation still have slots (a reload): the
     * grace periods they start as they end their streams may outlive
     * them, so look again until they are gone.
     */

    ccf = (ngx_core_conf_t *) ngx_get_conf(ngx_cycle->conf_ctx,
                                           ngx_core_module);

    if (next == 0 && ngx_process == NGX_PROCESS_WORKER && !ngx_exiting
        && slots > (ngx_uint_t) ccf->worker_processes)
    {
        ngx_add_timer(ev, NGX_HTTP_WEBHOOK_SSE_PRESENCE_LOOK);
        return;
    }

    ngx_http_webhook_sse_presence_arm(worker, next);
}


/*
 * A session opened or closed: the one place both transitions pass, once
 * per transition in the whole zone (the zone decided it under its lock),
 * in the worker that saw it, after the zone was unlocked.  The log has it;
 * with webhook_presence_forward the zone's outbound queue gets the event
 * for its URLs; with webhook_presence_events on, the stream that opened
 * the session gets it.  "stream" is NULL for a close, which comes from the
 * grace timer with no request.
 */

static void
ngx_http_webhook_sse_presence_announce(ngx_http_webhook_sse_zone_t *zone,
    ngx_http_webhook_sse_stream_t *stream, ngx_str_t *session,
    ngx_uint_t transition, ngx_uint_t streams, int64_t time)
{
    ngx_str_t  sse, json;

    /* queued first: the zone decided it, nothing may come in between */

    if (zone->presence_forward) {
        ngx_http_webhook_sse_presence_post(zone, session, transition, streams,
                                           time);
    }

    /* a session is 1..256 bytes without control characters */

    ngx_log_error(NGX_LOG_INFO, zone->log, 0,
                  "webhook zone \"%V\": session \"%V\" %s, %ui streams",
                  &zone->shm_zone->shm.name, session,
                  transition == NGX_HTTP_WEBHOOK_SSE_PRESENCE_OPENED
                  ? "opened" : "closed", streams);

    if (stream == NULL || !stream->conf->presence_events
        || stream->request == NULL)
    {
        return;
    }

    if (ngx_http_webhook_sse_presence_event(stream->request->pool,
                                            &stream->conf->session_key,
                                            session, transition, streams,
                                            time, &sse, &json)
        != NGX_OK
        || ngx_http_webhook_sse_output_append(stream, NULL, sse.data,
                                              sse.len)
           != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ALERT, zone->log, 0,
                      "webhook presence: no memory for an event");
    }
}


/*
 * The event to the zone's webhook_presence_forward URLs: the same JSON
 * object as on the stream, the session always under "sessionId" (no
 * location says otherwise), queued in the zone like a message's
 * deliveries, so that it is retried, survives a reload and is made by
 * another worker should this one be killed.
 */

static void
ngx_http_webhook_sse_presence_post(ngx_http_webhook_sse_zone_t *zone,
    ngx_str_t *session, ngx_uint_t transition, ngx_uint_t streams,
    int64_t time)
{
    ngx_str_t                                 sse, json;
    ngx_pool_t                               *pool;
    ngx_http_webhook_sse_presence_forward_t  *pf;

    static ngx_str_t  key = ngx_string("sessionId");
    static ngx_str_t  prefix = ngx_string("presence-");

    pf = zone->presence_forward;

    pool = ngx_create_pool(NGX_DEFAULT_POOL_SIZE, zone->log);
    if (pool == NULL) {
        goto failed;
    }

    if (ngx_http_webhook_sse_presence_event(pool, &key, session, transition,
                                            streams, time, &sse, &json)
        != NGX_OK)
    {
        ngx_destroy_pool(pool);
        goto failed;
    }

    ngx_http_webhook_sse_outbox_event(zone, pf->forwards, pf->conf, &prefix,
                                      &json);

    ngx_destroy_pool(pool);

    return;

failed:

    ngx_log_error(NGX_LOG_ALERT, zone->log, 0,
                  "webhook_presence_forward: no memory: session \"%V\" %s "
                  "not forwarded", session,
                  transition == NGX_HTTP_WEBHOOK_SSE_PRESENCE_OPENED
                  ? "opened" : "closed");
}


/*
 * {"type":"session_opened"|"session_closed","sessionId":..,"streams":N,
 *  "timestamp":..} as "json", and as an SSE event without an id ("sse":
 *  "data: <json>" and the blank line that ends it), in one allocation.
 */

static ngx_int_t
ngx_http_webhook_sse_presence_event(ngx_pool_t *pool, ngx_str_t *key,
    ngx_str_t *session, ngx_uint_t transition, ngx_uint_t streams,
    int64_t time, ngx_str_t *sse, ngx_str_t *json)
{
    u_char  *text, *p;

    text = ngx_pnalloc(pool, sizeof("data: {\"type\":\"session_opened\","
                                    "\"\":\"\",\"streams\":,"
                                    "\"timestamp\":}\n\n")
                             + key->len * 6 + session->len * 6
                             + NGX_INT_T_LEN + NGX_INT64_LEN);
    if (text == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(text, "data: ", sizeof("data: ") - 1);

    json->data = p;

    p = ngx_sprintf(p, "{\"type\":\"%s\",\"",
                    transition == NGX_HTTP_WEBHOOK_SSE_PRESENCE_OPENED
                    ? "session_opened" : "session_closed");
    p += ngx_http_webhook_sse_json_escape(p, key->data, key->len);
    p = ngx_cpymem(p, "\":\"", 3);
    p += ngx_http_webhook_sse_json_escape(p, session->data, session->len);
    p = ngx_sprintf(p, "\",\"streams\":%ui,\"timestamp\":%L}", streams, time);

    json->len = p - json->data;

    p = ngx_cpymem(p, "\n\n", 2);

    sse->data = text;
    sse->len = p - text;

    return NGX_OK;
}
