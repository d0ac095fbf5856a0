
/*
 * nginx-webhook-sse: the history location.
 *
 * GET ?sessionId=X[&after=<messageId>][&limit=N] answers the retained
 * messages of the session (and the broadcasts), oldest first, as the
 * event objects a stream gets: {"events":[..],"next":"<id>"|null}.  A
 * "next" asks for the following page with after=<next>; null: nothing
 * more is retained now, and a stream opened with Last-Event-ID set to the
 * last event's id goes on from there live.  The zone copies the messages
 * out in one call, the replay copy streams use.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_webhook_sse_module.h"


#define NGX_HTTP_WEBHOOK_SSE_HISTORY_LIMIT    100
#define NGX_HTTP_WEBHOOK_SSE_HISTORY_MAX      1000

/* what one page copies out of the zone at most, unless one message is more */
#define NGX_HTTP_WEBHOOK_SSE_HISTORY_BUFFER   (256 * 1024)


static ngx_int_t ngx_http_webhook_sse_history_args(ngx_http_request_t *r,
    ngx_http_webhook_sse_zone_t *zone, ngx_http_webhook_sse_replay_t *replay,
    ngx_uint_t *limit, const char **error);
static ngx_int_t ngx_http_webhook_sse_history_event(
    ngx_http_webhook_sse_record_t *rec, ngx_str_t *json);


ngx_int_t
ngx_http_webhook_sse_history_handler(ngx_http_request_t *r)
{
    u_char                           *body, *p, *start, *next;
    size_t                            size, len;
    ngx_int_t                         rc;
    ngx_str_t                         json;
    ngx_uint_t                        status, limit, i;
    const char                       *error;
    ngx_http_webhook_sse_zone_t      *zone;
    ngx_http_webhook_sse_record_t    *rec, *last;
    ngx_http_webhook_sse_replay_t     replay;
    ngx_http_webhook_sse_copies_t     copies;
    ngx_http_webhook_sse_loc_conf_t  *wlcf;
    u_char                            id[NGX_HTTP_WEBHOOK_SSE_ID_LEN];

    wlcf = ngx_http_get_module_loc_conf(r, ngx_http_webhook_sse_module);
    zone = wlcf->history->data;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        if (ngx_http_webhook_sse_add_header(r, "Allow", "GET, HEAD")
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_webhook_sse_reject(r, NGX_HTTP_NOT_ALLOWED,
                                           "method not allowed: history is "
                                           "read with GET");
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_webhook_sse_session_value(r, wlcf, &replay.session, &error);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_webhook_sse_send_error(r, NGX_HTTP_BAD_REQUEST, error);
    }

    /* who may read a session's stream may read its history */

    status = ngx_http_webhook_sse_check_token(r, wlcf, &replay.session,
                                              &error);
    if (status != NGX_OK) {
        return ngx_http_webhook_sse_send_error(r, status, error);
    }

    if (ngx_http_webhook_sse_history_args(r, zone, &replay, &limit, &error)
        != NGX_OK)
    {
        return ngx_http_webhook_sse_send_error(r, NGX_HTTP_BAD_REQUEST, error);
    }

    /* allocated before the zone is locked; larger only for a large message */

    size = NGX_HTTP_WEBHOOK_SSE_HISTORY_BUFFER;

    for ( ;; ) {
        start = ngx_alloc(size, r->connection->log);
        if (start == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_memzero(&copies, sizeof(ngx_http_webhook_sse_copies_t));
        copies.start = start;
        copies.size = size;

        rc = ngx_http_webhook_sse_store_replay(zone, &replay, &copies);

        if (rc != NGX_AGAIN) {
            break;
        }

        ngx_free(start);
        size = copies.needed;
    }

    if (rc != NGX_OK) {
        ngx_free(start);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the JSON of the first "limit" events, and whether more remain */

    len = sizeof("{\"events\":[],\"next\":\"\"}\n")
          + NGX_HTTP_WEBHOOK_SSE_ID_LEN;

    p = start;
    last = NULL;

    for (i = 0; i < copies.count && i < limit; i++) {
        rec = (ngx_http_webhook_sse_record_t *) p;
        len += rec->len + 1;
        last = rec;
        p += ngx_http_webhook_sse_record_size(rec->len);
    }

    next = NULL;

    if (last && (copies.count > limit || copies.more)) {
        next = id;
        next[ngx_http_webhook_sse_format_id(id, zone->sh->epoch, last->seq)]
            = '\0';
    }

    body = ngx_pnalloc(r->pool, len);
    if (body == NULL) {
        ngx_free(start);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(body, "{\"events\":[", sizeof("{\"events\":[") - 1);

    rec = (ngx_http_webhook_sse_record_t *) start;

    for (i = 0; i < copies.count && i < limit; i++) {
        if (ngx_http_webhook_sse_history_event(rec, &json) != NGX_OK) {
            ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                          "webhook history: a retained message without "
                          "\"data:\"");
            ngx_free(start);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (i) {
            *p++ = ',';
        }

        p = ngx_cpymem(p, json.data, json.len);

        rec = (ngx_http_webhook_sse_record_t *)
                  ((u_char *) rec + ngx_http_webhook_sse_record_size(rec->len));
    }

    ngx_free(start);

    if (next) {
        p = ngx_sprintf(p, "],\"next\":\"%s\"}\n", next);

    } else {
        p = ngx_cpymem(p, "],\"next\":null}\n",
                       sizeof("],\"next\":null}\n") - 1);
    }

    return ngx_http_webhook_sse_send_json(r, NGX_HTTP_OK, body, p - body);
}


/*
 * after: an id of this zone (one of another zone or none: from the
 * oldest retained, as a stream's Last-Event-ID); limit: 1..1000.
 */

static ngx_int_t
ngx_http_webhook_sse_history_args(ngx_http_request_t *r,
    ngx_http_webhook_sse_zone_t *zone, ngx_http_webhook_sse_replay_t *replay,
    ngx_uint_t *limit, const char **error)
{
    ngx_int_t  n;
    ngx_str_t  value;

    replay->resume = 1;
    replay->after = 0;
    replay->limit = 0;

    if (ngx_http_arg(r, (u_char *) "after", 5, &value) == NGX_OK
        && value.len)
    {
        replay->after = ngx_http_webhook_sse_parse_id(zone, value.data,
                                                      value.len);
    }

    *limit = NGX_HTTP_WEBHOOK_SSE_HISTORY_LIMIT;

    if (ngx_http_arg(r, (u_char *) "limit", 5, &value) == NGX_OK) {
        n = ngx_atoi(value.data, value.len);

        if (n < 1 || n > NGX_HTTP_WEBHOOK_SSE_HISTORY_MAX) {
            *error = "limit must be a number from 1 to 1000";
            return NGX_ERROR;
        }

        *limit = n;
    }

    return NGX_OK;
}


/* the event object of a copied message: its "data:" line */

static ngx_int_t
ngx_http_webhook_sse_history_event(ngx_http_webhook_sse_record_t *rec,
    ngx_str_t *json)
{
    u_char  *p, *last;

    p = (u_char *) &rec[1];
    last = p + rec->len;

    while (p < last) {
        if (last - p > 6 && ngx_strncmp(p, "data: ", 6) == 0) {
            json->data = p + 6;

            for (p += 6; p < last && *p != LF; p++) {
                /* void */
            }

            json->len = p - json->data;
            return NGX_OK;
        }

        p = ngx_strlchr(p, last, LF);
        if (p == NULL) {
            break;
        }

        p++;
    }

    return NGX_DECLINED;
}
