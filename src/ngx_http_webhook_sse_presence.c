
/*
 * nginx-webhook-sse: presence.
 *
 * The presence location: how many streams a session has open on all
 * workers and since when (GET one session, POST many).  And what a
 * stream's start and end do to its session: the zone counts each worker's
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


/* sessions one POST may ask about */
#define NGX_HTTP_WEBHOOK_SSE_PRESENCE_MAX    100

/* a new worker's first look at grace periods others left running */
#define NGX_HTTP_WEBHOOK_SSE_PRESENCE_LOOK   1000

/* session names one timer run takes out of the zone */
#define NGX_HTTP_WEBHOOK_SSE_SETTLE_BUFFER   8192


typedef struct {
    ngx_array_t                      *sessions;
    ngx_pool_t                       *pool;
} ngx_http_webhook_sse_presence_list_t;


static ngx_int_t ngx_http_webhook_sse_presence_get(ngx_http_request_t *r,
    ngx_http_webhook_sse_loc_conf_t *wlcf);
static void ngx_http_webhook_sse_presence_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_webhook_sse_presence_post(ngx_http_request_t *r);
static int ngx_http_webhook_sse_presence_item(void *data,
    const unsigned char *s, size_t len);
static ngx_int_t ngx_http_webhook_sse_presence_answer(ngx_http_request_t *r,
    ngx_http_webhook_sse_loc_conf_t *wlcf, ngx_str_t *sessions,
    ngx_uint_t n, ngx_uint_t list);
static void ngx_http_webhook_sse_presence_arm(
    ngx_http_webhook_sse_worker_t *worker, int64_t next);
static void ngx_http_webhook_sse_presence_timer(ngx_event_t *ev);
static void ngx_http_webhook_sse_presence_announce(
    ngx_http_webhook_sse_zone_t *zone, ngx_http_webhook_sse_stream_t *stream,
    ngx_str_t *session, ngx_uint_t transition, ngx_uint_t streams,
    int64_t time);
static ngx_int_t ngx_http_webhook_sse_presence_event(ngx_pool_t *pool,
    ngx_str_t *key, ngx_str_t *session, ngx_uint_t transition,
    ngx_uint_t streams, int64_t time, ngx_str_t *sse, ngx_str_t *json);


ngx_int_t
ngx_http_webhook_sse_presence_handler(ngx_http_request_t *r)
{
    ngx_int_t                         rc;
    ngx_uint_t                        status;
    const char                       *error;
    ngx_http_webhook_sse_loc_conf_t  *wlcf;

    wlcf = ngx_http_get_module_loc_conf(r, ngx_http_webhook_sse_module);

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD|NGX_HTTP_POST))) {
        if (ngx_http_webhook_sse_add_header(r, "Allow", "GET, HEAD, POST")
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_webhook_sse_reject(r, NGX_HTTP_NOT_ALLOWED,
                                           "method not allowed: use GET or "
                                           "POST");
    }

    /* presence is private: the publishers' secret guards it */

    status = ngx_http_webhook_sse_check_secret(r, wlcf, &error);
    if (status != NGX_OK) {
        return ngx_http_webhook_sse_reject(r, status, error);
    }

    if (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        return ngx_http_webhook_sse_presence_get(r, wlcf);
    }

    rc = ngx_http_read_client_request_body(r,
                                  ngx_http_webhook_sse_presence_body_handler);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


static ngx_int_t
ngx_http_webhook_sse_presence_get(ngx_http_request_t *r,
    ngx_http_webhook_sse_loc_conf_t *wlcf)
{
    ngx_int_t    rc;
    ngx_str_t    session, body, delivery, header;
    ngx_uint_t   status;
    const char  *error;

    /* a signed request (webhook_verify) signs an empty body */

    body.len = 0;
    body.data = (u_char *) "";

    status = ngx_http_webhook_sse_verify(r, wlcf, &body, &delivery, &header,
                                         &error);
    if (status != NGX_OK) {
        return ngx_http_webhook_sse_send_error(r, status, error);
    }

    rc = ngx_http_webhook_sse_session_value(r, wlcf, &session, &error);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_webhook_sse_send_error(r, NGX_HTTP_BAD_REQUEST, error);
    }

    if (session.len == 0) {
        return ngx_http_webhook_sse_send_error(r, NGX_HTTP_BAD_REQUEST,
                                               "missing sessionId");
    }

    return ngx_http_webhook_sse_presence_answer(r, wlcf, &session, 1, 0);
}


static void
ngx_http_webhook_sse_presence_body_handler(ngx_http_request_t *r)
{
    ngx_http_finalize_request(r, ngx_http_webhook_sse_presence_post(r));
}


static ngx_int_t
ngx_http_webhook_sse_presence_post(ngx_http_request_t *r)
{
    int                                    rc;
    ngx_str_t                              body, delivery, header;
    ngx_uint_t                             status;
    const char                            *error;
    ngx_http_webhook_sse_loc_conf_t       *wlcf;
    ngx_http_webhook_sse_presence_list_t   list;
    char                    message[NGX_HTTP_WEBHOOK_SSE_JSON_ERROR_LEN];

    wlcf = ngx_http_get_module_loc_conf(r, ngx_http_webhook_sse_module);

    if (ngx_http_webhook_sse_read_body(r, &body) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (body.data == NULL) {
        ngx_str_set(&body, "");
    }

    status = ngx_http_webhook_sse_verify(r, wlcf, &body, &delivery, &header,
                                         &error);
    if (status != NGX_OK) {
        return ngx_http_webhook_sse_send_error(r, status, error);
    }

    list.pool = r->pool;
    list.sessions = ngx_array_create(r->pool, 8, sizeof(ngx_str_t));
    if (list.sessions == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_webhook_sse_json_list(body.data, body.len, "sessionIds",
                                        NGX_HTTP_WEBHOOK_SSE_PRESENCE_MAX,
                                        ngx_http_webhook_sse_presence_item,
                                        &list, message);

    if (rc == NGX_HTTP_WEBHOOK_SSE_JSON_INVALID) {
        return ngx_http_webhook_sse_send_error(r, NGX_HTTP_BAD_REQUEST,
                                               message);
    }

    if (rc != NGX_HTTP_WEBHOOK_SSE_JSON_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_webhook_sse_presence_answer(r, wlcf, list.sessions->elts,
                                                list.sessions->nelts, 1);
}


static int
ngx_http_webhook_sse_presence_item(void *data, const unsigned char *s,
    size_t len)
{
    ngx_http_webhook_sse_presence_list_t  *list = data;

    ngx_str_t  *session;

    session = ngx_array_push(list->sessions);
    if (session == NULL) {
        return -1;
    }

    session->data = ngx_pnalloc(list->pool, len);
    if (session->data == NULL) {
        return -1;
    }

    ngx_memcpy(session->data, s, len);
    session->len = len;

    return 0;
}


/*
 * {"sessionId":"X","streams":N,"since":<ms>|null}, or for a list
 * {"sessions":[..]} of those in the order asked.
 */

static ngx_int_t
ngx_http_webhook_sse_presence_answer(ngx_http_request_t *r,
    ngx_http_webhook_sse_loc_conf_t *wlcf, ngx_str_t *sessions, ngx_uint_t n,
    ngx_uint_t list)
{
    u_char                                *body, *p;
    size_t                                 len;
    ngx_uint_t                             i;
    ngx_str_t                             *key;
    ngx_http_webhook_sse_zone_t           *zone;
    ngx_http_webhook_sse_worker_t         *worker;
    ngx_http_webhook_sse_presence_info_t  *info;

    zone = wlcf->presence->data;
    key = &wlcf->session_key;

    info = ngx_palloc(r->pool, (n ? n : 1)
                               * sizeof(ngx_http_webhook_sse_presence_info_t));
    if (info == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    len = sizeof("{\"sessions\":[]}\n");

    for (i = 0; i < n; i++) {
        len += sizeof("{\"\":\"\",\"streams\":,\"since\":},") - 1
               + key->len * 6 + sessions[i].len * 6
               + NGX_INT_T_LEN + NGX_INT64_LEN;
    }

    body = ngx_pnalloc(r->pool, len);
    if (body == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_webhook_sse_store_presence(zone, sessions, info, n);

    p = body;

    if (list) {
        p = ngx_cpymem(p, "{\"sessions\":[", sizeof("{\"sessions\":[") - 1);
    }

    for (i = 0; i < n; i++) {
        if (i) {
            *p++ = ',';
        }

        *p++ = '{';
        *p++ = '"';
        p += ngx_http_webhook_sse_json_escape(p, key->data, key->len);
        p = ngx_cpymem(p, "\":\"", 3);
        p += ngx_http_webhook_sse_json_escape(p, sessions[i].data,
                                              sessions[i].len);
        p = ngx_sprintf(p, "\",\"streams\":%ui,\"since\":", info[i].streams);

        if (info[i].streams) {
            p = ngx_sprintf(p, "%L}", info[i].since);

        } else {
            p = ngx_cpymem(p, "null}", 5);
        }
    }

    if (list) {
        p = ngx_cpymem(p, "]}", 2);
    }

    *p++ = LF;

    /* a grace period left by a worker gone meanwhile ends here too */

    worker = ngx_http_webhook_sse_fanout_worker(zone);

    if (worker && !worker->presence.timer_set && worker->presence.handler) {
        ngx_http_webhook_sse_presence_arm(worker,
                               ngx_http_webhook_sse_store_next_leave(zone));
    }

    return ngx_http_webhook_sse_send_json(r, NGX_HTTP_OK, body, p - body);
}


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
 * in the worker that saw it, after the zone was unlocked.  The log has it
 * and, with webhook_presence_events on, the stream that opened the
 * session gets the event.
 *
 * HOOK for outbound join/leave POSTs (webhook_forward ... events=presence):
 * enqueue a delivery here, for every transition, with the JSON object
 * ngx_http_webhook_sse_presence_event() builds ("json"; allocate it from
 * the delivery's own memory: "stream" is NULL for a close, which comes
 * from the grace timer with no request).  Nothing else needs to change.
 */

static void
ngx_http_webhook_sse_presence_announce(ngx_http_webhook_sse_zone_t *zone,
    ngx_http_webhook_sse_stream_t *stream, ngx_str_t *session,
    ngx_uint_t transition, ngx_uint_t streams, int64_t time)
{
    ngx_str_t  sse, json;

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
