
/*
 * nginx-webhook-sse: the bodies and signed content of outbound deliveries
 * (pure logic, see ngx_http_webhook_sse_payload.h).
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>

#include "ngx_http_webhook_sse_payload.h"


#define NGX_HTTP_WEBHOOK_SSE_PATH_MAX  16


static int ngx_http_webhook_sse_payload_gen(yajl_gen g, yajl_val v,
    int depth);
static int ngx_http_webhook_sse_payload_member(yajl_gen g, yajl_val obj,
    const char *key, const char *fallback);
static int ngx_http_webhook_sse_payload_value(yajl_gen g, yajl_val obj,
    const char *key, const char *fallback);
static int ngx_http_webhook_sse_payload_str(yajl_gen g, const char *s);


size_t
ngx_http_webhook_sse_payload_event(unsigned char *dst,
    const ngx_http_webhook_sse_payload_t *pl)
{
    int    n;
    char   ts[32];
    size_t len;

    static const char  head[] = "{\"type\":\"webhook_message\","
                                "\"messageId\":\"";

    n = snprintf(ts, sizeof(ts), "\",\"timestamp\":%lld",
                 (long long) pl->time);

    len = sizeof(head) - 1 + pl->id_len + (size_t) n
          + (pl->members_len ? 1 + pl->members_len : 0) + 1;

    if (dst == NULL) {
        return len;
    }

    memcpy(dst, head, sizeof(head) - 1);
    dst += sizeof(head) - 1;
    memcpy(dst, pl->id, pl->id_len);
    dst += pl->id_len;
    memcpy(dst, ts, (size_t) n);
    dst += n;

    if (pl->members_len) {
        *dst++ = ',';
        memcpy(dst, pl->members, pl->members_len);
        dst += pl->members_len;
    }

    *dst = '}';

    return len;
}


int
ngx_http_webhook_sse_payload_conversation(
    const ngx_http_webhook_sse_payload_t *pl, unsigned char **out,
    size_t *len)
{
    int                   rc;
    char                 *text, *path_buf, *p, *last;
    char                  iso[NGX_HTTP_WEBHOOK_SSE_ISO_LEN];
    size_t                n, glen;
    yajl_gen              g;
    yajl_val              root, v;
    const char           *path[NGX_HTTP_WEBHOOK_SSE_PATH_MAX + 1];
    const unsigned char  *buf;

    *out = NULL;
    *len = 0;

    text = malloc(pl->members_len + 3);
    if (text == NULL) {
        return -1;
    }

    text[0] = '{';
    memcpy(text + 1, pl->members, pl->members_len);
    text[pl->members_len + 1] = '}';
    text[pl->members_len + 2] = '\0';

    root = yajl_tree_parse(text, NULL, 0);
    free(text);

    if (root == NULL || !YAJL_IS_OBJECT(root)) {
        yajl_tree_free(root);
        return -1;
    }

    g = yajl_gen_alloc(NULL);
    if (g == NULL) {
        yajl_tree_free(root);
        return -1;
    }

    path_buf = NULL;
    v = NULL;

    if (pl->message_path && pl->message_path_len) {
        path_buf = malloc(pl->message_path_len + 1);
        if (path_buf == NULL) {
            goto failed;
        }

        memcpy(path_buf, pl->message_path, pl->message_path_len);
        path_buf[pl->message_path_len] = '\0';

        n = 0;
        p = path_buf;
        last = path_buf + pl->message_path_len;

        while (n < NGX_HTTP_WEBHOOK_SSE_PATH_MAX) {
            path[n++] = p;

            while (p < last && *p != '.') {
                p++;
            }

            if (p == last) {
                break;
            }

            *p++ = '\0';
        }

        path[n] = NULL;

        v = yajl_tree_get(root, path, yajl_t_any);
    }

    ngx_http_webhook_sse_payload_iso8601(iso, pl->time);

    rc = yajl_gen_map_open(g);

    rc |= ngx_http_webhook_sse_payload_str(g, "conversation_id");

    if (pl->session) {
        rc |= yajl_gen_string(g, pl->session, pl->session_len);

    } else {
        rc |= yajl_gen_null(g);
    }

    rc |= ngx_http_webhook_sse_payload_str(g, "data");
    rc |= yajl_gen_map_open(g);

    rc |= ngx_http_webhook_sse_payload_str(g, "id");
    rc |= yajl_gen_string(g, pl->id, pl->id_len);

    rc |= ngx_http_webhook_sse_payload_str(g, "content");

    if (v) {
        rc |= ngx_http_webhook_sse_payload_gen(g, v, 0);

    } else {
        rc |= yajl_gen_null(g);
    }

    rc |= ngx_http_webhook_sse_payload_member(g, root, "content_type",
                                              "TEXT");
    /* "type" is the event's own ("webhook_message"): message_type is ours */
    rc |= ngx_http_webhook_sse_payload_str(g, "type");
    rc |= ngx_http_webhook_sse_payload_value(g, root, "message_type", "BOT");
    rc |= ngx_http_webhook_sse_payload_member(g, root, "channel", "API");
    rc |= ngx_http_webhook_sse_payload_member(g, root, "status",
                                              "RECEIVED");
    rc |= ngx_http_webhook_sse_payload_member(g, root, "metadata", "{}");
    rc |= ngx_http_webhook_sse_payload_member(g, root, "filename", NULL);
    rc |= ngx_http_webhook_sse_payload_member(g, root, "created_by", "null");
    rc |= ngx_http_webhook_sse_payload_member(g, root, "updated_by", "null");
    rc |= ngx_http_webhook_sse_payload_member(g, root, "created_at", iso);
    rc |= ngx_http_webhook_sse_payload_member(g, root, "updated_at", iso);

    rc |= yajl_gen_map_close(g);

    rc |= ngx_http_webhook_sse_payload_str(g, "timestamp");
    rc |= ngx_http_webhook_sse_payload_str(g, iso);

    rc |= yajl_gen_map_close(g);

    if (rc != yajl_gen_status_ok
        || yajl_gen_get_buf(g, &buf, &glen) != yajl_gen_status_ok)
    {
        goto failed;
    }

    *out = malloc(glen);
    if (*out == NULL) {
        goto failed;
    }

    memcpy(*out, buf, glen);
    *len = glen;

    free(path_buf);
    yajl_gen_free(g);
    yajl_tree_free(root);

    return 0;

failed:

    free(path_buf);
    yajl_gen_free(g);
    yajl_tree_free(root);

    return -1;
}


/*
 * "key": the publisher's value under that top-level name, else the
 * fallback: "{}" and "null" stand for those values, NULL leaves the key
 * out, anything else is a string.
 */

static int
ngx_http_webhook_sse_payload_member(yajl_gen g, yajl_val obj, const char *key,
    const char *fallback)
{
    size_t  i;

    if (fallback == NULL) {
        for (i = 0; i < obj->u.object.len; i++) {
            if (strcmp(obj->u.object.keys[i], key) == 0) {
                break;
            }
        }

        if (i == obj->u.object.len) {
            return yajl_gen_status_ok;
        }
    }

    return ngx_http_webhook_sse_payload_str(g, key)
           | ngx_http_webhook_sse_payload_value(g, obj, key, fallback);
}


/* the value of member "key", else the fallback (as above) */

static int
ngx_http_webhook_sse_payload_value(yajl_gen g, yajl_val obj, const char *key,
    const char *fallback)
{
    size_t  i;

    for (i = 0; i < obj->u.object.len; i++) {
        if (strcmp(obj->u.object.keys[i], key) == 0) {
            return ngx_http_webhook_sse_payload_gen(g,
                                                  obj->u.object.values[i], 0);
        }
    }

    if (strcmp(fallback, "{}") == 0) {
        return yajl_gen_map_open(g) | yajl_gen_map_close(g);
    }

    if (strcmp(fallback, "null") == 0) {
        return yajl_gen_null(g);
    }

    return ngx_http_webhook_sse_payload_str(g, fallback);
}


static int
ngx_http_webhook_sse_payload_str(yajl_gen g, const char *s)
{
    return yajl_gen_string(g, (const unsigned char *) s, strlen(s));
}


/* a parsed value written back as it came (numbers keep their text) */

static int
ngx_http_webhook_sse_payload_gen(yajl_gen g, yajl_val v, int depth)
{
    int     rc;
    size_t  i;

    if (depth > 128) {
        return yajl_max_depth_exceeded;
    }

    switch (v->type) {

    case yajl_t_string:
        return ngx_http_webhook_sse_payload_str(g, v->u.string);

    case yajl_t_number:
        return yajl_gen_number(g, v->u.number.r, strlen(v->u.number.r));

    case yajl_t_object:
        rc = yajl_gen_map_open(g);

        for (i = 0; i < v->u.object.len; i++) {
            rc |= ngx_http_webhook_sse_payload_str(g, v->u.object.keys[i]);
            rc |= ngx_http_webhook_sse_payload_gen(g, v->u.object.values[i],
                                                   depth + 1);
        }

        return rc | yajl_gen_map_close(g);

    case yajl_t_array:
        rc = yajl_gen_array_open(g);

        for (i = 0; i < v->u.array.len; i++) {
            rc |= ngx_http_webhook_sse_payload_gen(g, v->u.array.values[i],
                                                   depth + 1);
        }

        return rc | yajl_gen_array_close(g);

    case yajl_t_true:
        return yajl_gen_bool(g, 1);

    case yajl_t_false:
        return yajl_gen_bool(g, 0);

    default:
        return yajl_gen_null(g);
    }
}


void
ngx_http_webhook_sse_payload_iso8601(char *buf, int64_t ms)
{
    char       tmp[96];
    time_t     sec;
    struct tm  tm;

    if (ms < 0) {
        ms = 0;
    }

    sec = (time_t) (ms / 1000);

    if (gmtime_r(&sec, &tm) == NULL || tm.tm_year + 1900 > 9999) {
        memset(&tm, 0, sizeof(struct tm));
        tm.tm_mday = 1;
        tm.tm_year = 70;
    }

    snprintf(tmp, sizeof(tmp), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, (int) (ms % 1000));

    memcpy(buf, tmp, NGX_HTTP_WEBHOOK_SSE_ISO_LEN - 1);
    buf[NGX_HTTP_WEBHOOK_SSE_ISO_LEN - 1] = '\0';
}


size_t
ngx_http_webhook_sse_payload_signed_content(unsigned char *dst,
    const unsigned char *id, size_t id_len, int64_t timestamp,
    const unsigned char *body, size_t body_len)
{
    int   n;
    char  ts[32];

    n = snprintf(ts, sizeof(ts), ".%lld.", (long long) timestamp);

    if (dst) {
        memcpy(dst, id, id_len);
        memcpy(dst + id_len, ts, (size_t) n);
        memcpy(dst + id_len + n, body, body_len);
    }

    return id_len + (size_t) n + body_len;
}


int
ngx_http_webhook_sse_payload_registration(const unsigned char *body,
    size_t len, ngx_http_webhook_sse_registration_t *reg)
{
    char        *text;
    size_t       i;
    yajl_val     root, v;
    const char  *key;

    memset(reg, 0, sizeof(ngx_http_webhook_sse_registration_t));

    text = malloc(len + 1);
    if (text == NULL) {
        snprintf(reg->error, sizeof(reg->error), "out of memory");
        return -1;
    }

    memcpy(text, body, len);
    text[len] = '\0';

    root = yajl_tree_parse(text, NULL, 0);
    free(text);

    reg->tree = root;

    if (root == NULL || !YAJL_IS_OBJECT(root)) {
        snprintf(reg->error, sizeof(reg->error),
                 "the body must be a JSON object");
        return -1;
    }

    for (i = 0; i < root->u.object.len; i++) {
        key = root->u.object.keys[i];
        v = root->u.object.values[i];

        if (strcmp(key, "sessionId") != 0 && strcmp(key, "callback_url") != 0
            && strcmp(key, "secret") != 0)
        {
            continue;
        }

        if (!YAJL_IS_STRING(v)) {
            snprintf(reg->error, sizeof(reg->error), "%s must be a string",
                     key);
            return -1;
        }

        if (key[0] == 's' && key[1] == 'e' && key[2] == 's') {
            reg->session = (const unsigned char *) v->u.string;
            reg->session_len = strlen(v->u.string);

        } else if (key[0] == 'c') {
            reg->url = (const unsigned char *) v->u.string;
            reg->url_len = strlen(v->u.string);

        } else {
            reg->secret = (const unsigned char *) v->u.string;
            reg->secret_len = strlen(v->u.string);
        }
    }

    if (reg->session == NULL) {
        snprintf(reg->error, sizeof(reg->error), "sessionId is required");
        return -1;
    }

    if (reg->url == NULL) {
        snprintf(reg->error, sizeof(reg->error), "callback_url is required");
        return -1;
    }

    return 0;
}


void
ngx_http_webhook_sse_payload_registration_free(
    ngx_http_webhook_sse_registration_t *reg)
{
    yajl_tree_free(reg->tree);
    reg->tree = NULL;
}
