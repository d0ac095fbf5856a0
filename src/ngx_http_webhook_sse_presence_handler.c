
/*
 * nginx-webhook-sse: the webhook_presence location: how many streams a
 * session has open on all workers and since when (GET one session, POST
 * many), guarded like publishes.  With webhook_redis, the streams of the
 * other hosts are added from Redis (ngx_http_webhook_sse_redis.c) before
 * the answer goes out.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_webhook_sse_stream.h"
#include "ngx_http_webhook_sse_redis.h"


/* sessions one POST may ask about */
#define NGX_HTTP_WEBHOOK_SSE_PRESENCE_MAX    100


typedef struct {
    ngx_array_t                      *sessions;
    ngx_pool_t                       *pool;
} ngx_http_webhook_sse_presence_list_t;


/* a request's question and the answer as far as it is known */
typedef struct {
    ngx_http_webhook_sse_loc_conf_t       *conf;
    ngx_str_t                             *sessions;
    ngx_http_webhook_sse_presence_info_t  *info;
    ngx_uint_t                             n;
    ngx_uint_t                             list;
} ngx_http_webhook_sse_presence_query_t;


static ngx_int_t ngx_http_webhook_sse_presence_get(ngx_http_request_t *r,
    ngx_http_webhook_sse_loc_conf_t *wlcf);
static void ngx_http_webhook_sse_presence_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_webhook_sse_presence_post(ngx_http_request_t *r);
static int ngx_http_webhook_sse_presence_item(void *data,
    const unsigned char *s, size_t len);
static ngx_int_t ngx_http_webhook_sse_presence_answer(ngx_http_request_t *r,
    ngx_http_webhook_sse_loc_conf_t *wlcf, ngx_str_t *sessions,
    ngx_uint_t n, ngx_uint_t list);
static ngx_int_t ngx_http_webhook_sse_presence_cluster(ngx_http_request_t *r,
    void *data, ngx_int_t rc);
static ngx_int_t ngx_http_webhook_sse_presence_send(ngx_http_request_t *r,
    ngx_http_webhook_sse_presence_query_t *q);


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
 * This host's streams from its zone; with webhook_redis, the other hosts'
 * are added before the answer goes out (503 when Redis cannot tell).
 */

static ngx_int_t
ngx_http_webhook_sse_presence_answer(ngx_http_request_t *r,
    ngx_http_webhook_sse_loc_conf_t *wlcf, ngx_str_t *sessions, ngx_uint_t n,
    ngx_uint_t list)
{
    ngx_int_t                               rc;
    ngx_http_webhook_sse_zone_t            *zone;
    ngx_http_webhook_sse_worker_t          *worker;
    ngx_http_webhook_sse_presence_query_t  *q;

    zone = wlcf->presence->data;

    q = ngx_palloc(r->pool, sizeof(ngx_http_webhook_sse_presence_query_t));
    if (q == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* a GET's session is on its caller's stack: the answer may come later */
    q->sessions = ngx_palloc(r->pool, (n ? n : 1) * sizeof(ngx_str_t));
    if (q->sessions == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(q->sessions, sessions, n * sizeof(ngx_str_t));

    q->conf = wlcf;
    q->n = n;
    q->list = list;

    q->info = ngx_palloc(r->pool, (n ? n : 1)
                         * sizeof(ngx_http_webhook_sse_presence_info_t));
    if (q->info == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_webhook_sse_store_presence(zone, sessions, q->info, n);

    /* a grace period left by a worker gone meanwhile ends here too */

    worker = ngx_http_webhook_sse_fanout_worker(zone);

    if (worker) {
        ngx_http_webhook_sse_presence_look(worker);
    }

    if (zone->redis == NULL || n == 0) {
        return ngx_http_webhook_sse_presence_send(r, q);
    }

    rc = ngx_http_webhook_sse_redis_presence(r, zone, sessions, q->info, n,
                                 ngx_http_webhook_sse_presence_cluster, q);

    if (rc == NGX_DECLINED) {
        return ngx_http_webhook_sse_presence_cluster(r, q, NGX_ERROR);
    }

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return rc;
}


/* the other hosts' streams are in, or Redis could not say */

static ngx_int_t
ngx_http_webhook_sse_presence_cluster(ngx_http_request_t *r, void *data,
    ngx_int_t rc)
{
    ngx_http_webhook_sse_presence_query_t  *q = data;

    if (rc != NGX_OK) {
        return ngx_http_webhook_sse_send_error(r,
                                               NGX_HTTP_SERVICE_UNAVAILABLE,
                                               "Redis is not reachable: the "
                                               "streams on other hosts are "
                                               "unknown");
    }

    return ngx_http_webhook_sse_presence_send(r, q);
}


/*
 * {"sessionId":"X","streams":N,"since":<ms>|null}, or for a list
 * {"sessions":[..]} of those in the order asked.
 */

static ngx_int_t
ngx_http_webhook_sse_presence_send(ngx_http_request_t *r,
    ngx_http_webhook_sse_presence_query_t *q)
{
    u_char                                *body, *p;
    size_t                                 len;
    ngx_str_t                             *key, *sessions;
    ngx_uint_t                             i, n;
    ngx_http_webhook_sse_presence_info_t  *info;

    key = &q->conf->session_key;
    sessions = q->sessions;
    info = q->info;
    n = q->n;

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

    p = body;

    if (q->list) {
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

    if (q->list) {
        p = ngx_cpymem(p, "]}", 2);
    }

    *p++ = LF;

    return ngx_http_webhook_sse_send_json(r, NGX_HTTP_OK, body, p - body);
}
