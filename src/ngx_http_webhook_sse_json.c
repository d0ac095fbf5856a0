
/*
 * nginx-webhook-sse: validation of posted JSON and event building.
 *
 * One pass of yajl's event parser: it validates (UTF-8 included), tracks
 * the dotted paths of the session and message fields, and re-emits the
 * object's members through yajl_gen, minus the keys the server sets.
 * Nothing here recurses, so nesting costs no C stack.
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_parse.h>
#include <yajl/yajl_gen.h>

#include "ngx_http_webhook_sse_json.h"


#define WEBHOOK_PATH_MAX  (NGX_HTTP_WEBHOOK_SSE_JSON_MAX_DEPTH + 1)


typedef struct {
    const unsigned char                 *path;
    size_t                               path_len;

    /* component i starts at start[i] and is len[i] long */
    const unsigned char                 *start[WEBHOOK_PATH_MAX];
    size_t                               len[WEBHOOK_PATH_MAX];
    int                                  ncomponents;

    /* on[d]: the object at depth d is reached along the path */
    unsigned char                        on[WEBHOOK_PATH_MAX + 1];

    /* what the next value is: 0 nothing, 1 a step on the path, 2 it */
    int                                  next;
    int                                  found;
} ngx_http_webhook_sse_json_path_t;


typedef struct {
    ngx_http_webhook_sse_json_result_t  *res;
    yajl_gen                             gen;

    int                                  depth;
    int                                  started;

    /* skipping a reserved member's value: depth where it started */
    int                                  skipping;
    int                                  skip_depth;

    ngx_http_webhook_sse_json_path_t     session;
    ngx_http_webhook_sse_json_path_t     message;

    int                                  failed;
} ngx_http_webhook_sse_json_ctx_t;


static int ngx_http_webhook_sse_json_path_init(
    ngx_http_webhook_sse_json_path_t *p, const unsigned char *path,
    size_t len);
static void ngx_http_webhook_sse_json_error(ngx_http_webhook_sse_json_ctx_t *ctx,
    const char *fmt, const ngx_http_webhook_sse_json_path_t *p);
static int ngx_http_webhook_sse_json_value(ngx_http_webhook_sse_json_ctx_t *ctx,
    int type, const unsigned char *s, size_t len);
static int ngx_http_webhook_sse_json_null(void *data);
static int ngx_http_webhook_sse_json_boolean(void *data, int b);
static int ngx_http_webhook_sse_json_number(void *data, const char *s,
    size_t len);
static int ngx_http_webhook_sse_json_string(void *data,
    const unsigned char *s, size_t len);
static int ngx_http_webhook_sse_json_start_map(void *data);
static int ngx_http_webhook_sse_json_map_key(void *data,
    const unsigned char *key, size_t len);
static int ngx_http_webhook_sse_json_end_map(void *data);
static int ngx_http_webhook_sse_json_start_array(void *data);
static int ngx_http_webhook_sse_json_end_array(void *data);


#define WEBHOOK_VALUE_NULL    0
#define WEBHOOK_VALUE_BOOL    1
#define WEBHOOK_VALUE_NUMBER  2
#define WEBHOOK_VALUE_STRING  3
#define WEBHOOK_VALUE_MAP     4
#define WEBHOOK_VALUE_ARRAY   5


static yajl_callbacks  ngx_http_webhook_sse_json_callbacks = {
    ngx_http_webhook_sse_json_null,
    ngx_http_webhook_sse_json_boolean,
    NULL,
    NULL,
    ngx_http_webhook_sse_json_number,
    ngx_http_webhook_sse_json_string,
    ngx_http_webhook_sse_json_start_map,
    ngx_http_webhook_sse_json_map_key,
    ngx_http_webhook_sse_json_end_map,
    ngx_http_webhook_sse_json_start_array,
    ngx_http_webhook_sse_json_end_array
};


/* top-level keys the server sets itself */
static const char  *ngx_http_webhook_sse_json_reserved[] = {
    "type", "messageId", "timestamp", NULL
};


int
ngx_http_webhook_sse_json_parse(const ngx_http_webhook_sse_json_conf_t *conf,
    const unsigned char *body, size_t len,
    ngx_http_webhook_sse_json_result_t *res)
{
    int                               rc;
    size_t                            out_len;
    yajl_handle                       h;
    yajl_status                       st;
    const unsigned char              *out;
    ngx_http_webhook_sse_json_ctx_t   ctx;

    memset(res, 0, sizeof(ngx_http_webhook_sse_json_result_t));
    memset(&ctx, 0, sizeof(ngx_http_webhook_sse_json_ctx_t));

    ctx.res = res;

    if (!ngx_http_webhook_sse_json_path_init(&ctx.session, conf->session_path,
                                             conf->session_path_len)
        || !ngx_http_webhook_sse_json_path_init(&ctx.message,
                                                conf->message_path,
                                                conf->message_path_len))
    {
        snprintf(res->error, sizeof(res->error),
                 "invalid field path in the configuration");
        return NGX_HTTP_WEBHOOK_SSE_JSON_INVALID;
    }

    ctx.gen = yajl_gen_alloc(NULL);
    if (ctx.gen == NULL) {
        return NGX_HTTP_WEBHOOK_SSE_JSON_NOMEM;
    }

    yajl_gen_config(ctx.gen, yajl_gen_validate_utf8, 1);

    h = yajl_alloc(&ngx_http_webhook_sse_json_callbacks, NULL, &ctx);
    if (h == NULL) {
        yajl_gen_free(ctx.gen);
        return NGX_HTTP_WEBHOOK_SSE_JSON_NOMEM;
    }

    st = yajl_parse(h, body, len);

    if (st == yajl_status_ok) {
        st = yajl_complete_parse(h);
    }

    rc = NGX_HTTP_WEBHOOK_SSE_JSON_OK;

    if (st != yajl_status_ok) {
        if (!ctx.failed) {
            snprintf(res->error, sizeof(res->error), "invalid JSON");
        }

        rc = (ctx.failed == 2) ? NGX_HTTP_WEBHOOK_SSE_JSON_NOMEM
                               : NGX_HTTP_WEBHOOK_SSE_JSON_INVALID;
        goto done;
    }

    if (ctx.message.path && !ctx.message.found) {
        ngx_http_webhook_sse_json_error(&ctx, "field \"%.*s\" is required",
                                        &ctx.message);
        rc = NGX_HTTP_WEBHOOK_SSE_JSON_INVALID;
        goto done;
    }

    if (yajl_gen_get_buf(ctx.gen, &out, &out_len) != yajl_gen_status_ok
        || out_len < 2)
    {
        rc = NGX_HTTP_WEBHOOK_SSE_JSON_NOMEM;
        goto done;
    }

    /* the members without the braces */
    res->members_len = out_len - 2;
    res->members = malloc(res->members_len + 1);

    if (res->members == NULL) {
        rc = NGX_HTTP_WEBHOOK_SSE_JSON_NOMEM;
        goto done;
    }

    memcpy(res->members, out + 1, res->members_len);
    res->members[res->members_len] = '\0';

done:

    yajl_free(h);
    yajl_gen_free(ctx.gen);

    if (rc != NGX_HTTP_WEBHOOK_SSE_JSON_OK) {
        free(res->members);
        free(res->session);
        res->members = NULL;
        res->members_len = 0;
        res->session = NULL;
        res->session_len = 0;
    }

    return rc;
}


void
ngx_http_webhook_sse_json_free(ngx_http_webhook_sse_json_result_t *res)
{
    free(res->members);
    free(res->session);

    res->members = NULL;
    res->members_len = 0;
    res->session = NULL;
    res->session_len = 0;
}


static int
ngx_http_webhook_sse_json_path_init(ngx_http_webhook_sse_json_path_t *p,
    const unsigned char *path, size_t len)
{
    size_t  i, from;

    memset(p, 0, sizeof(ngx_http_webhook_sse_json_path_t));

    if (path == NULL || len == 0) {
        return 1;
    }

    p->path = path;
    p->path_len = len;
    p->on[1] = 1;

    from = 0;

    for (i = 0; i <= len; i++) {
        if (i < len && path[i] != '.') {
            continue;
        }

        if (i == from || p->ncomponents == WEBHOOK_PATH_MAX - 1) {
            return 0;
        }

        p->start[p->ncomponents] = path + from;
        p->len[p->ncomponents] = i - from;
        p->ncomponents++;

        from = i + 1;
    }

    return 1;
}


static void
ngx_http_webhook_sse_json_error(ngx_http_webhook_sse_json_ctx_t *ctx,
    const char *fmt, const ngx_http_webhook_sse_json_path_t *p)
{
    int  len;

    len = (p->path_len > 100) ? 100 : (int) p->path_len;

    snprintf(ctx->res->error, sizeof(ctx->res->error), fmt, len,
             (const char *) p->path);

    ctx->failed = 1;
}


/* a key at depth ctx->depth: is the value after it on a path? */

static void
ngx_http_webhook_sse_json_path_key(ngx_http_webhook_sse_json_path_t *p,
    int depth, const unsigned char *key, size_t len)
{
    int  i;

    p->next = 0;

    if (p->path == NULL || depth > p->ncomponents || !p->on[depth]) {
        return;
    }

    i = depth - 1;

    if (p->len[i] == len && memcmp(p->start[i], key, len) == 0) {
        p->next = (depth == p->ncomponents) ? 2 : 1;
    }
}


/*
 * Every value goes through here before it is re-emitted: the checks of
 * the session and message fields, the depth limit and reserved keys.
 * Returns 0 to stop the parser.
 */

static int
ngx_http_webhook_sse_json_value(ngx_http_webhook_sse_json_ctx_t *ctx,
    int type, const unsigned char *s, size_t len)
{
    int                                  container;
    ngx_http_webhook_sse_json_result_t  *res;

    res = ctx->res;
    container = (type == WEBHOOK_VALUE_MAP || type == WEBHOOK_VALUE_ARRAY);

    if (!ctx->started) {
        ctx->started = 1;

        if (type != WEBHOOK_VALUE_MAP) {
            snprintf(res->error, sizeof(res->error),
                     "body must be a JSON object");
            ctx->failed = 1;
            return 0;
        }

        return 1;
    }

    if (container && ctx->depth >= NGX_HTTP_WEBHOOK_SSE_JSON_MAX_DEPTH) {
        snprintf(res->error, sizeof(res->error), "JSON nested too deeply");
        ctx->failed = 1;
        return 0;
    }

    /* the message field */

    if (ctx->message.next == 2) {
        if (ctx->message.found) {
            ngx_http_webhook_sse_json_error(ctx, "duplicate field \"%.*s\"",
                                            &ctx->message);
            return 0;
        }

        if (type != WEBHOOK_VALUE_STRING || len == 0) {
            ngx_http_webhook_sse_json_error(ctx, "field \"%.*s\" must be a "
                                            "non-empty string",
                                            &ctx->message);
            return 0;
        }

        ctx->message.found = 1;
    }

    /* the session field */

    if (ctx->session.next == 2) {
        if (ctx->session.found) {
            ngx_http_webhook_sse_json_error(ctx, "duplicate field \"%.*s\"",
                                            &ctx->session);
            return 0;
        }

        if (type != WEBHOOK_VALUE_STRING) {
            ngx_http_webhook_sse_json_error(ctx, "field \"%.*s\" must be a "
                                            "string", &ctx->session);
            return 0;
        }

        if (!ngx_http_webhook_sse_json_session_valid(s, len)) {
            ngx_http_webhook_sse_json_error(ctx, "field \"%.*s\" must be 1 "
                                            "to 256 bytes without control "
                                            "characters", &ctx->session);
            return 0;
        }

        res->session = malloc(len + 1);
        if (res->session == NULL) {
            ctx->failed = 2;
            return 0;
        }

        memcpy(res->session, s, len);
        res->session[len] = '\0';
        res->session_len = len;
        ctx->session.found = 1;
    }

    if (type == WEBHOOK_VALUE_MAP) {
        ctx->session.on[ctx->depth + 1] = (ctx->session.next == 1);
        ctx->message.on[ctx->depth + 1] = (ctx->message.next == 1);

    } else if (type == WEBHOOK_VALUE_ARRAY) {
        ctx->session.on[ctx->depth + 1] = 0;
        ctx->message.on[ctx->depth + 1] = 0;
    }

    ctx->session.next = 0;
    ctx->message.next = 0;

    return 1;
}


#define webhook_gen(ctx, call)                                                \
    if ((call) != yajl_gen_status_ok) {                                       \
        (ctx)->failed = 2;                                                    \
        return 0;                                                             \
    }


static int
ngx_http_webhook_sse_json_null(void *data)
{
    ngx_http_webhook_sse_json_ctx_t  *ctx = data;

    if (!ngx_http_webhook_sse_json_value(ctx, WEBHOOK_VALUE_NULL, NULL, 0)) {
        return 0;
    }

    if (ctx->skipping) {
        ctx->skipping = (ctx->depth > ctx->skip_depth);
        return 1;
    }

    webhook_gen(ctx, yajl_gen_null(ctx->gen));

    return 1;
}


static int
ngx_http_webhook_sse_json_boolean(void *data, int b)
{
    ngx_http_webhook_sse_json_ctx_t  *ctx = data;

    if (!ngx_http_webhook_sse_json_value(ctx, WEBHOOK_VALUE_BOOL, NULL, 0)) {
        return 0;
    }

    if (ctx->skipping) {
        ctx->skipping = (ctx->depth > ctx->skip_depth);
        return 1;
    }

    webhook_gen(ctx, yajl_gen_bool(ctx->gen, b));

    return 1;
}


static int
ngx_http_webhook_sse_json_number(void *data, const char *s, size_t len)
{
    ngx_http_webhook_sse_json_ctx_t  *ctx = data;

    if (!ngx_http_webhook_sse_json_value(ctx, WEBHOOK_VALUE_NUMBER, NULL, 0))
    {
        return 0;
    }

    if (ctx->skipping) {
        ctx->skipping = (ctx->depth > ctx->skip_depth);
        return 1;
    }

    webhook_gen(ctx, yajl_gen_number(ctx->gen, s, len));

    return 1;
}


static int
ngx_http_webhook_sse_json_string(void *data, const unsigned char *s,
    size_t len)
{
    ngx_http_webhook_sse_json_ctx_t  *ctx = data;

    if (!ngx_http_webhook_sse_json_value(ctx, WEBHOOK_VALUE_STRING, s, len))
    {
        return 0;
    }

    if (ctx->skipping) {
        ctx->skipping = (ctx->depth > ctx->skip_depth);
        return 1;
    }

    webhook_gen(ctx, yajl_gen_string(ctx->gen, s, len));

    return 1;
}


static int
ngx_http_webhook_sse_json_start_map(void *data)
{
    ngx_http_webhook_sse_json_ctx_t  *ctx = data;

    if (!ngx_http_webhook_sse_json_value(ctx, WEBHOOK_VALUE_MAP, NULL, 0)) {
        return 0;
    }

    ctx->depth++;

    if (ctx->skipping) {
        return 1;
    }

    webhook_gen(ctx, yajl_gen_map_open(ctx->gen));

    return 1;
}


static int
ngx_http_webhook_sse_json_map_key(void *data, const unsigned char *key,
    size_t len)
{
    ngx_http_webhook_sse_json_ctx_t  *ctx = data;

    const char  **r;

    if (ctx->skipping) {
        return 1;
    }

    ngx_http_webhook_sse_json_path_key(&ctx->session, ctx->depth, key, len);
    ngx_http_webhook_sse_json_path_key(&ctx->message, ctx->depth, key, len);

    if (ctx->depth == 1) {
        for (r = ngx_http_webhook_sse_json_reserved; *r; r++) {
            if (strlen(*r) == len && memcmp(*r, key, len) == 0) {
                ctx->skipping = 1;
                ctx->skip_depth = ctx->depth;
                ctx->session.next = 0;
                ctx->message.next = 0;
                return 1;
            }
        }
    }

    webhook_gen(ctx, yajl_gen_string(ctx->gen, key, len));

    return 1;
}


static int
ngx_http_webhook_sse_json_end_map(void *data)
{
    ngx_http_webhook_sse_json_ctx_t  *ctx = data;

    ctx->depth--;

    if (ctx->skipping) {
        ctx->skipping = (ctx->depth > ctx->skip_depth);
        return 1;
    }

    webhook_gen(ctx, yajl_gen_map_close(ctx->gen));

    return 1;
}


static int
ngx_http_webhook_sse_json_start_array(void *data)
{
    ngx_http_webhook_sse_json_ctx_t  *ctx = data;

    if (!ngx_http_webhook_sse_json_value(ctx, WEBHOOK_VALUE_ARRAY, NULL, 0)) {
        return 0;
    }

    ctx->depth++;

    if (ctx->skipping) {
        return 1;
    }

    webhook_gen(ctx, yajl_gen_array_open(ctx->gen));

    return 1;
}


static int
ngx_http_webhook_sse_json_end_array(void *data)
{
    ngx_http_webhook_sse_json_ctx_t  *ctx = data;

    ctx->depth--;

    if (ctx->skipping) {
        ctx->skipping = (ctx->depth > ctx->skip_depth);
        return 1;
    }

    webhook_gen(ctx, yajl_gen_array_close(ctx->gen));

    return 1;
}


int
ngx_http_webhook_sse_json_session_valid(const unsigned char *s, size_t len)
{
    size_t         i, n;
    unsigned int   c, min;

    if (len == 0 || len > NGX_HTTP_WEBHOOK_SSE_SESSION_MAX) {
        return 0;
    }

    for (i = 0; i < len; /* void */) {
        c = s[i];

        if (c < 0x20 || c == 0x7f) {
            return 0;
        }

        if (c < 0x80) {
            i++;
            continue;
        }

        if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
            c &= 0x1f;
            min = 0x80;

        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            c &= 0x0f;
            min = 0x800;

        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            c &= 0x07;
            min = 0x10000;

        } else {
            return 0;
        }

        if (i + n >= len) {
            return 0;
        }

        for (i++; n; n--, i++) {
            if ((s[i] & 0xc0) != 0x80) {
                return 0;
            }

            c = (c << 6) | (s[i] & 0x3f);
        }

        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) {
            return 0;
        }
    }

    return 1;
}


size_t
ngx_http_webhook_sse_json_escape(unsigned char *dst, const unsigned char *src,
    size_t len)
{
    size_t          i, n;
    unsigned char   c, *p;

    static const char  hex[] = "0123456789abcdef";

    n = 0;
    p = dst;

    for (i = 0; i < len; i++) {
        c = src[i];

        if (c >= 0x20 && c != '"' && c != '\\' && c != 0x7f) {
            if (dst) {
                *p++ = c;
            }

            n++;
            continue;
        }

        if (c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t'
            || c == '\b' || c == '\f')
        {
            if (dst) {
                *p++ = '\\';

                switch (c) {
                case '\n': *p++ = 'n'; break;
                case '\r': *p++ = 'r'; break;
                case '\t': *p++ = 't'; break;
                case '\b': *p++ = 'b'; break;
                case '\f': *p++ = 'f'; break;
                default:   *p++ = c;
                }
            }

            n += 2;
            continue;
        }

        if (dst) {
            *p++ = '\\';
            *p++ = 'u';
            *p++ = '0';
            *p++ = '0';
            *p++ = hex[c >> 4];
            *p++ = hex[c & 0xf];
        }

        n += 6;
    }

    return n;
}
