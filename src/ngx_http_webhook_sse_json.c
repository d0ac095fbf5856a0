
/*
 * nginx-webhook-sse: validation of posted JSON and event building.
 *
 * One pass of yajl's event parser validates the body, follows the dotted
 * paths of the session and message fields and re-emits the object's
 * members through yajl_gen, minus the keys the server sets itself.
 * Nothing here recurses: nesting costs no C stack, and the depth limit
 * stops the parser as soon as it is crossed.
 *
 * yajl's first allocations of a parse (its handles and the start of the
 * members' buffer, a few kilobytes for a chat message) come from an arena
 * inside the parse's context, on the stack: a publish costs no malloc()
 * and free() pair per yajl object.  Every other allocation goes through
 * the functions set with ngx_http_webhook_sse_json_set_alloc(), malloc()
 * and free() by default.  yajl uses its allocations unchecked, so one that fails inside yajl never
 * returns to it: it jumps back to the parse, which frees every block yajl
 * had taken and reports NGX_HTTP_WEBHOOK_SSE_JSON_NOMEM.
 *
 * Pure logic: no nginx types and no nginx calls.
 */


#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_parse.h>
#include <yajl/yajl_gen.h>

#include "ngx_http_webhook_sse_json.h"


#define NGX_HTTP_WEBHOOK_SSE_JSON_NULL       0
#define NGX_HTTP_WEBHOOK_SSE_JSON_BOOLEAN    1
#define NGX_HTTP_WEBHOOK_SSE_JSON_NUMBER     2
#define NGX_HTTP_WEBHOOK_SSE_JSON_STRING     3
#define NGX_HTTP_WEBHOOK_SSE_JSON_OBJECT     4
#define NGX_HTTP_WEBHOOK_SSE_JSON_ARRAY      5

/* what the value after the last key is to a path */
#define NGX_HTTP_WEBHOOK_SSE_JSON_OFF_PATH   0
#define NGX_HTTP_WEBHOOK_SSE_JSON_ON_PATH    1
#define NGX_HTTP_WEBHOOK_SSE_JSON_AT_PATH    2

/* the longest part of a configured path quoted in an error */
#define NGX_HTTP_WEBHOOK_SSE_JSON_ERROR_PATH 64

/* the bytes of yajl's allocations taken from the parse's context */
#define NGX_HTTP_WEBHOOK_SSE_JSON_ARENA      8192


typedef struct {
    /* the configured text, NULL when the field is off */
    const unsigned char  *text;
    size_t                text_len;

    /* component i of the path is the key name[i], name_len[i] bytes */
    const unsigned char  *name[NGX_HTTP_WEBHOOK_SSE_JSON_MAX_DEPTH];
    size_t                name_len[NGX_HTTP_WEBHOOK_SSE_JSON_MAX_DEPTH];
    int                   ncomponents;

    /* reached[d]: the object open at depth d lies on the path */
    unsigned char         reached[NGX_HTTP_WEBHOOK_SSE_JSON_MAX_DEPTH + 2];

    int                   next;
    int                   found;
} ngx_http_webhook_sse_json_path_t;


/*
 * The header of a block yajl allocated: the blocks of one parse are
 * linked, so that they can all be freed when an allocation fails.
 */

typedef union ngx_http_webhook_sse_json_block_u
    ngx_http_webhook_sse_json_block_t;

union ngx_http_webhook_sse_json_block_u {
    struct {
        ngx_http_webhook_sse_json_block_t  *prev;
        ngx_http_webhook_sse_json_block_t  *next;
    } link;

    /* the memory after the header keeps malloc()'s alignment */
    max_align_t                             align;
};


/* the header of a block taken from the arena: its size, for realloc */

typedef union {
    size_t                                  size;
    max_align_t                             align;
} ngx_http_webhook_sse_json_piece_t;


typedef struct {
    ngx_http_webhook_sse_json_result_t  *res;
    yajl_handle                          parser;
    yajl_gen                             gen;

    /* yajl's allocations, and where a failing one goes */
    yajl_alloc_funcs                     yajl_funcs;
    ngx_http_webhook_sse_json_block_t   *blocks;
    jmp_buf                              nomem_jump;

    /* the arena: used bytes, and the last piece (it can grow in place) */
    size_t                               arena_used;
    ngx_http_webhook_sse_json_piece_t   *arena_last;

    /* containers open, the top object included */
    int                                  depth;
    int                                  started;

    /* dropping the value of a reserved top-level key */
    int                                  skipping;

    int                                  rejected;
    int                                  nomem;

    /* without a generator: a top-level key is dropped, generate after all */
    int                                  regenerate;

    const unsigned char                 *drop_key;
    size_t                               drop_key_len;

    /* the result's strings: the conf's alloc, NULL: malloc() */
    void                              *(*alloc)(void *data, size_t size);
    void                                *alloc_data;

    ngx_http_webhook_sse_json_path_t     session;
    ngx_http_webhook_sse_json_path_t     message;

    /* last: the context is zeroed up to the paths */
    max_align_t                          arena[NGX_HTTP_WEBHOOK_SSE_JSON_ARENA
                                               / sizeof(max_align_t)];
} ngx_http_webhook_sse_json_ctx_t;


static int ngx_http_webhook_sse_json_run(
    ngx_http_webhook_sse_json_ctx_t *ctx, const unsigned char *body,
    size_t len, int generate);
static void ngx_http_webhook_sse_json_init(
    ngx_http_webhook_sse_json_ctx_t *ctx,
    const ngx_http_webhook_sse_json_conf_t *conf,
    ngx_http_webhook_sse_json_result_t *res);
static int ngx_http_webhook_sse_json_compact(const unsigned char *body,
    size_t len, const unsigned char **inner, size_t *inner_len);
static void *ngx_http_webhook_sse_json_mem_alloc(size_t size);
static unsigned char *ngx_http_webhook_sse_json_result_alloc(
    ngx_http_webhook_sse_json_ctx_t *ctx, size_t size);
static void *ngx_http_webhook_sse_json_mem_realloc(void *p, size_t size);
static void ngx_http_webhook_sse_json_mem_free(void *p);
static void *ngx_http_webhook_sse_json_yajl_malloc(void *data, size_t size);
static void *ngx_http_webhook_sse_json_yajl_realloc(void *data, void *p,
    size_t size);
static void ngx_http_webhook_sse_json_yajl_free(void *data, void *p);
static void *ngx_http_webhook_sse_json_arena_alloc(
    ngx_http_webhook_sse_json_ctx_t *ctx, size_t size);
static void *ngx_http_webhook_sse_json_arena_realloc(
    ngx_http_webhook_sse_json_ctx_t *ctx, void *p, size_t size);
static int ngx_http_webhook_sse_json_in_arena(
    ngx_http_webhook_sse_json_ctx_t *ctx, void *p);
static void ngx_http_webhook_sse_json_link(
    ngx_http_webhook_sse_json_ctx_t *ctx,
    ngx_http_webhook_sse_json_block_t *block);
static void ngx_http_webhook_sse_json_unlink(
    ngx_http_webhook_sse_json_ctx_t *ctx,
    ngx_http_webhook_sse_json_block_t *block);
static void ngx_http_webhook_sse_json_free_blocks(
    ngx_http_webhook_sse_json_ctx_t *ctx);
static void ngx_http_webhook_sse_json_path_init(
    ngx_http_webhook_sse_json_path_t *path, const unsigned char *text,
    size_t len);
static void ngx_http_webhook_sse_json_path_key(
    ngx_http_webhook_sse_json_path_t *path, int depth,
    const unsigned char *key, size_t len);
static void ngx_http_webhook_sse_json_path_value(
    ngx_http_webhook_sse_json_path_t *path, int depth, int type);
static int ngx_http_webhook_sse_json_value(
    ngx_http_webhook_sse_json_ctx_t *ctx, int type, const unsigned char *s,
    size_t len);
static int ngx_http_webhook_sse_json_message(
    ngx_http_webhook_sse_json_ctx_t *ctx, int type, size_t len);
static int ngx_http_webhook_sse_json_session(
    ngx_http_webhook_sse_json_ctx_t *ctx, int type, const unsigned char *s,
    size_t len);
static int ngx_http_webhook_sse_json_emit(
    ngx_http_webhook_sse_json_ctx_t *ctx);
static int ngx_http_webhook_sse_json_generated(
    ngx_http_webhook_sse_json_ctx_t *ctx, yajl_gen_status status);
static void ngx_http_webhook_sse_json_value_done(
    ngx_http_webhook_sse_json_ctx_t *ctx);
static int ngx_http_webhook_sse_json_reserved(const unsigned char *key,
    size_t len);
static void ngx_http_webhook_sse_json_reject(
    ngx_http_webhook_sse_json_ctx_t *ctx, const char *error);
static void ngx_http_webhook_sse_json_field_error(
    ngx_http_webhook_sse_json_ctx_t *ctx, const char *prefix,
    const ngx_http_webhook_sse_json_path_t *path, const char *suffix);
static size_t ngx_http_webhook_sse_json_append(char *buf, size_t n,
    const void *s, size_t len);
static size_t ngx_http_webhook_sse_json_utf8_length(const unsigned char *s,
    size_t len);

static int ngx_http_webhook_sse_json_null(void *data);
static int ngx_http_webhook_sse_json_boolean(void *data, int b);
static int ngx_http_webhook_sse_json_number(void *data, const char *s,
    size_t len);
static int ngx_http_webhook_sse_json_string(void *data,
    const unsigned char *s, size_t len);
static int ngx_http_webhook_sse_json_open(
    ngx_http_webhook_sse_json_ctx_t *ctx, int type);
static int ngx_http_webhook_sse_json_close(
    ngx_http_webhook_sse_json_ctx_t *ctx, int type);
static int ngx_http_webhook_sse_json_start_map(void *data);
static int ngx_http_webhook_sse_json_map_key(void *data,
    const unsigned char *key, size_t len);
static int ngx_http_webhook_sse_json_end_map(void *data);
static int ngx_http_webhook_sse_json_start_array(void *data);
static int ngx_http_webhook_sse_json_end_array(void *data);


/* the allocator of tests; NULL: malloc(), realloc() and free() */
static yajl_alloc_funcs  *ngx_http_webhook_sse_json_alloc_funcs;


static const yajl_callbacks  ngx_http_webhook_sse_json_callbacks = {
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

typedef struct {
    const char  *name;
    size_t       len;
} ngx_http_webhook_sse_json_key_t;


static const ngx_http_webhook_sse_json_key_t
    ngx_http_webhook_sse_json_reserved_keys[] =
{
    { "type", sizeof("type") - 1 },
    { "messageId", sizeof("messageId") - 1 },
    { "timestamp", sizeof("timestamp") - 1 },
    { NULL, 0 }
};


int
ngx_http_webhook_sse_json_parse(const ngx_http_webhook_sse_json_conf_t *conf,
    const unsigned char *body, size_t len,
    ngx_http_webhook_sse_json_result_t *res)
{
    int                               rc;
    ngx_http_webhook_sse_json_ctx_t   ctx;

    memset(res, 0, sizeof(ngx_http_webhook_sse_json_result_t));

    if (body == NULL || len == 0) {
        ngx_http_webhook_sse_json_append(res->error, 0, "invalid JSON",
                                         sizeof("invalid JSON") - 1);
        return NGX_HTTP_WEBHOOK_SSE_JSON_INVALID;
    }

    /*
     * A body without a backslash has no escapes: where it also has no
     * whitespace between its tokens and no key to drop, the generator
     * would write its members back byte for byte, and they are copied
     * instead.  Any other body is parsed once more, with the generator.
     */

    ngx_http_webhook_sse_json_init(&ctx, conf, res);

    rc = NGX_HTTP_WEBHOOK_SSE_JSON_INVALID;

    if (memchr(body, '\\', len) == NULL) {
        rc = ngx_http_webhook_sse_json_run(&ctx, body, len, 0);

        if (rc == NGX_HTTP_WEBHOOK_SSE_JSON_OK || !ctx.regenerate) {
            goto done;
        }

        ngx_http_webhook_sse_json_free_blocks(&ctx);
        ngx_http_webhook_sse_json_free(res);
        memset(res, 0, sizeof(ngx_http_webhook_sse_json_result_t));

        ngx_http_webhook_sse_json_init(&ctx, conf, res);
    }

    rc = ngx_http_webhook_sse_json_run(&ctx, body, len, 1);

done:

    /* after a failed allocation yajl's blocks are left here */

    ngx_http_webhook_sse_json_free_blocks(&ctx);

    if (rc != NGX_HTTP_WEBHOOK_SSE_JSON_OK) {
        ngx_http_webhook_sse_json_free(res);
    }

    if (rc == NGX_HTTP_WEBHOOK_SSE_JSON_NOMEM) {
        res->error[0] = '\0';
        ngx_http_webhook_sse_json_append(res->error, 0, "out of memory",
                                         sizeof("out of memory") - 1);
    }

    return rc;
}


static void
ngx_http_webhook_sse_json_init(ngx_http_webhook_sse_json_ctx_t *ctx,
    const ngx_http_webhook_sse_json_conf_t *conf,
    ngx_http_webhook_sse_json_result_t *res)
{
    /* the paths set themselves up; the arena needs no zeroing */
    memset(ctx, 0, offsetof(ngx_http_webhook_sse_json_ctx_t, session));

    ctx->res = res;
    ctx->drop_key = conf->drop_key;
    ctx->drop_key_len = conf->drop_key_len;
    ctx->alloc = conf->alloc;
    ctx->alloc_data = conf->alloc_data;

    res->borrowed = (conf->alloc != NULL);

    ctx->yajl_funcs.malloc = ngx_http_webhook_sse_json_yajl_malloc;
    ctx->yajl_funcs.realloc = ngx_http_webhook_sse_json_yajl_realloc;
    ctx->yajl_funcs.free = ngx_http_webhook_sse_json_yajl_free;
    ctx->yajl_funcs.ctx = ctx;

    ngx_http_webhook_sse_json_path_init(&ctx->session, conf->session_path,
                                        conf->session_path_len);
    ngx_http_webhook_sse_json_path_init(&ctx->message, conf->message_path,
                                        conf->message_path_len);
}


/*
 * The parse proper, with the generator or without it (then the members
 * are the body's own bytes, or ctx->regenerate asks for a parse with it).
 * Nothing that changes after setjmp() is kept in a local variable: a
 * failed allocation returns here through longjmp(), with yajl's handles
 * left as they were, and all of yajl's blocks are freed by the caller.
 */

static int
ngx_http_webhook_sse_json_run(ngx_http_webhook_sse_json_ctx_t *ctx,
    const unsigned char *body, size_t len, int generate)
{
    int                                  rc;
    size_t                               out_len;
    yajl_status                          status;
    const unsigned char                 *out;
    ngx_http_webhook_sse_json_result_t  *res;

    if (setjmp(ctx->nomem_jump) != 0) {
        return NGX_HTTP_WEBHOOK_SSE_JSON_NOMEM;
    }

    res = ctx->res;

    if (generate) {
        ctx->gen = yajl_gen_alloc(&ctx->yajl_funcs);
        if (ctx->gen == NULL) {
            return NGX_HTTP_WEBHOOK_SSE_JSON_NOMEM;
        }

        /* strings are checked for strict UTF-8 before they are emitted */

        if (!yajl_gen_config(ctx->gen, yajl_gen_beautify, 0)
            || !yajl_gen_config(ctx->gen, yajl_gen_validate_utf8, 0)
            || !yajl_gen_config(ctx->gen, yajl_gen_escape_solidus, 0))
        {
            yajl_gen_free(ctx->gen);
            return NGX_HTTP_WEBHOOK_SSE_JSON_NOMEM;
        }
    }

    ctx->parser = yajl_alloc(&ngx_http_webhook_sse_json_callbacks,
                             &ctx->yajl_funcs, ctx);
    if (ctx->parser == NULL) {
        if (ctx->gen) {
            yajl_gen_free(ctx->gen);
        }

        return NGX_HTTP_WEBHOOK_SSE_JSON_NOMEM;
    }

    /*
     * yajl's defaults are what is wanted, strict JSON and one complete
     * value (yajl_allow_comments, yajl_dont_validate_strings,
     * yajl_allow_trailing_garbage, yajl_allow_multiple_values and
     * yajl_allow_partial_values all 0): nothing to configure.
     */

    status = yajl_parse(ctx->parser, body, len);

    if (status == yajl_status_ok) {
        status = yajl_complete_parse(ctx->parser);
    }

    if (ctx->nomem) {
        rc = NGX_HTTP_WEBHOOK_SSE_JSON_NOMEM;
        goto done;
    }

    if (ctx->regenerate) {
        rc = NGX_HTTP_WEBHOOK_SSE_JSON_INVALID;
        goto done;
    }

    /*
     * A broken body is reported as such even when a field error was
     * noted before the parser reached the break.
     */

    if (status == yajl_status_error
        || (status == yajl_status_client_canceled && !ctx->rejected))
    {
        ngx_http_webhook_sse_json_reject(ctx, "invalid JSON");
        rc = NGX_HTTP_WEBHOOK_SSE_JSON_INVALID;
        goto done;
    }

    if (ctx->rejected) {
        rc = NGX_HTTP_WEBHOOK_SSE_JSON_INVALID;
        goto done;
    }

    if (ctx->message.text != NULL && !ctx->message.found) {
        ngx_http_webhook_sse_json_field_error(ctx, "field \"", &ctx->message,
                                              "\" is required");
        rc = NGX_HTTP_WEBHOOK_SSE_JSON_INVALID;
        goto done;
    }

    if (generate) {
        if (yajl_gen_get_buf(ctx->gen, &out, &out_len) != yajl_gen_status_ok
            || out_len < 2)
        {
            rc = NGX_HTTP_WEBHOOK_SSE_JSON_NOMEM;
            goto done;
        }

        /* the members without the braces */

        out++;
        out_len -= 2;

    } else if (!ngx_http_webhook_sse_json_compact(body, len, &out, &out_len))
    {
        ctx->regenerate = 1;
        rc = NGX_HTTP_WEBHOOK_SSE_JSON_INVALID;
        goto done;
    }

    res->members = ngx_http_webhook_sse_json_result_alloc(ctx, out_len + 1);
    if (res->members == NULL) {
        rc = NGX_HTTP_WEBHOOK_SSE_JSON_NOMEM;
        goto done;
    }

    res->members_len = out_len;
    memcpy(res->members, out, out_len);
    res->members[out_len] = '\0';

    rc = NGX_HTTP_WEBHOOK_SSE_JSON_OK;

done:

    yajl_free(ctx->parser);

    if (ctx->gen) {
        yajl_gen_free(ctx->gen);
    }

    return rc;
}


/*
 * The members of a valid object written without escapes, as the
 * generator would write them: no whitespace outside its strings.  The
 * body has no backslash, so each quote opens or closes a string.
 */

static int
ngx_http_webhook_sse_json_compact(const unsigned char *body, size_t len,
    const unsigned char **inner, size_t *inner_len)
{
    const unsigned char  *p, *last;

    p = body;
    last = body + len;

    while (p < last && *p != '{') {
        p++;
    }

    while (last > p && last[-1] != '}') {
        last--;
    }

    if (last - p < 2) {
        return 0;
    }

    p++;
    last--;

    *inner = p;
    *inner_len = last - p;

    while (p < last) {

        if (*p == '"') {
            /* a string: no escapes, so the next quote closes it */
            p = memchr(p + 1, '"', last - p - 1);

            if (p == NULL) {
                return 0;
            }

            p++;
            continue;
        }

        /* whitespace, yajl's \v and \f included */

        if (*p <= ' ') {
            return 0;
        }

        p++;
    }

    return 1;
}


void
ngx_http_webhook_sse_json_free(ngx_http_webhook_sse_json_result_t *res)
{
    if (!res->borrowed) {
        ngx_http_webhook_sse_json_mem_free(res->members);
        ngx_http_webhook_sse_json_mem_free(res->session);
    }

    res->members = NULL;
    res->members_len = 0;
    res->session = NULL;
    res->session_len = 0;
}


void
ngx_http_webhook_sse_json_set_alloc(yajl_alloc_funcs *funcs)
{
    ngx_http_webhook_sse_json_alloc_funcs = funcs;
}


static void *
ngx_http_webhook_sse_json_mem_alloc(size_t size)
{
    yajl_alloc_funcs  *funcs;

    funcs = ngx_http_webhook_sse_json_alloc_funcs;

    if (funcs == NULL) {
        return malloc(size);
    }

    return funcs->malloc(funcs->ctx, size);
}


/* a string of the result: where the conf said, else malloc() */

static unsigned char *
ngx_http_webhook_sse_json_result_alloc(ngx_http_webhook_sse_json_ctx_t *ctx,
    size_t size)
{
    if (ctx->alloc) {
        return ctx->alloc(ctx->alloc_data, size);
    }

    return ngx_http_webhook_sse_json_mem_alloc(size);
}


static void *
ngx_http_webhook_sse_json_mem_realloc(void *p, size_t size)
{
    yajl_alloc_funcs  *funcs;

    funcs = ngx_http_webhook_sse_json_alloc_funcs;

    if (funcs == NULL) {
        return realloc(p, size);
    }

    return funcs->realloc(funcs->ctx, p, size);
}


static void
ngx_http_webhook_sse_json_mem_free(void *p)
{
    yajl_alloc_funcs  *funcs;

    if (p == NULL) {
        return;
    }

    funcs = ngx_http_webhook_sse_json_alloc_funcs;

    if (funcs == NULL) {
        free(p);
        return;
    }

    funcs->free(funcs->ctx, p);
}


/*
 * yajl's allocator: each block carries a header linking it to the parse.
 * A failure does not return to yajl, which would use the NULL pointer.
 */

static void *
ngx_http_webhook_sse_json_yajl_malloc(void *data, size_t size)
{
    void                               *p;
    ngx_http_webhook_sse_json_ctx_t    *ctx;
    ngx_http_webhook_sse_json_block_t  *block;

    ctx = data;

    p = ngx_http_webhook_sse_json_arena_alloc(ctx, size);
    if (p != NULL) {
        return p;
    }

    if (size > SIZE_MAX - sizeof(ngx_http_webhook_sse_json_block_t)) {
        longjmp(ctx->nomem_jump, 1);
    }

    block = ngx_http_webhook_sse_json_mem_alloc(
                           sizeof(ngx_http_webhook_sse_json_block_t) + size);
    if (block == NULL) {
        longjmp(ctx->nomem_jump, 1);
    }

    ngx_http_webhook_sse_json_link(ctx, block);

    return block + 1;
}


static void *
ngx_http_webhook_sse_json_yajl_realloc(void *data, void *p, size_t size)
{
    ngx_http_webhook_sse_json_ctx_t    *ctx;
    ngx_http_webhook_sse_json_block_t  *block, *moved;

    if (p == NULL) {
        return ngx_http_webhook_sse_json_yajl_malloc(data, size);
    }

    ctx = data;

    if (ngx_http_webhook_sse_json_in_arena(ctx, p)) {
        return ngx_http_webhook_sse_json_arena_realloc(ctx, p, size);
    }

    block = (ngx_http_webhook_sse_json_block_t *) p - 1;

    if (size > SIZE_MAX - sizeof(ngx_http_webhook_sse_json_block_t)) {
        longjmp(ctx->nomem_jump, 1);
    }

    ngx_http_webhook_sse_json_unlink(ctx, block);

    moved = ngx_http_webhook_sse_json_mem_realloc(block,
                           sizeof(ngx_http_webhook_sse_json_block_t) + size);
    if (moved == NULL) {
        /* the block is still there, to be freed with the others */
        ngx_http_webhook_sse_json_link(ctx, block);
        longjmp(ctx->nomem_jump, 1);
    }

    ngx_http_webhook_sse_json_link(ctx, moved);

    return moved + 1;
}


static void
ngx_http_webhook_sse_json_yajl_free(void *data, void *p)
{
    ngx_http_webhook_sse_json_ctx_t    *ctx;
    ngx_http_webhook_sse_json_block_t  *block;
    ngx_http_webhook_sse_json_piece_t  *piece;

    if (p == NULL) {
        return;
    }

    ctx = data;

    if (ngx_http_webhook_sse_json_in_arena(ctx, p)) {

        /* only the last piece gives its bytes back */

        piece = (ngx_http_webhook_sse_json_piece_t *) p - 1;

        if (piece == ctx->arena_last) {
            ctx->arena_used = (unsigned char *) piece
                              - (unsigned char *) ctx->arena;
            ctx->arena_last = NULL;
        }

        return;
    }

    block = (ngx_http_webhook_sse_json_block_t *) p - 1;

    ngx_http_webhook_sse_json_unlink(ctx, block);
    ngx_http_webhook_sse_json_mem_free(block);
}


/* NULL: the arena has no room for size bytes */

static void *
ngx_http_webhook_sse_json_arena_alloc(ngx_http_webhook_sse_json_ctx_t *ctx,
    size_t size)
{
    size_t                              need;
    ngx_http_webhook_sse_json_piece_t  *piece;

    if (size > sizeof(ctx->arena)) {
        return NULL;
    }

    need = sizeof(ngx_http_webhook_sse_json_piece_t)
           + (size + sizeof(max_align_t) - 1) / sizeof(max_align_t)
             * sizeof(max_align_t);

    if (need > sizeof(ctx->arena) - ctx->arena_used) {
        return NULL;
    }

    piece = (ngx_http_webhook_sse_json_piece_t *)
                ((unsigned char *) ctx->arena + ctx->arena_used);
    piece->size = size;

    ctx->arena_used += need;
    ctx->arena_last = piece;

    return piece + 1;
}


static void *
ngx_http_webhook_sse_json_arena_realloc(ngx_http_webhook_sse_json_ctx_t *ctx,
    void *p, size_t size)
{
    void                               *moved;
    size_t                              from;
    ngx_http_webhook_sse_json_piece_t  *piece;

    piece = (ngx_http_webhook_sse_json_piece_t *) p - 1;

    if (piece == ctx->arena_last) {

        /* the last piece grows or shrinks in place when there is room */

        from = (unsigned char *) piece - (unsigned char *) ctx->arena;
        ctx->arena_used = from;
        ctx->arena_last = NULL;

        moved = ngx_http_webhook_sse_json_arena_alloc(ctx, size);
        if (moved != NULL) {
            return moved;
        }

        /* no room: the piece stays taken while its bytes are copied */

        ctx->arena_used = from + sizeof(ngx_http_webhook_sse_json_piece_t)
                          + (piece->size + sizeof(max_align_t) - 1)
                            / sizeof(max_align_t) * sizeof(max_align_t);
        ctx->arena_last = piece;
    }

    moved = ngx_http_webhook_sse_json_yajl_malloc(ctx, size);

    memcpy(moved, p, piece->size < size ? piece->size : size);

    return moved;
}


static int
ngx_http_webhook_sse_json_in_arena(ngx_http_webhook_sse_json_ctx_t *ctx,
    void *p)
{
    return (unsigned char *) p >= (unsigned char *) ctx->arena
           && (unsigned char *) p < (unsigned char *) ctx->arena
                                    + sizeof(ctx->arena);
}


static void
ngx_http_webhook_sse_json_link(ngx_http_webhook_sse_json_ctx_t *ctx,
    ngx_http_webhook_sse_json_block_t *block)
{
    block->link.prev = NULL;
    block->link.next = ctx->blocks;

    if (ctx->blocks != NULL) {
        ctx->blocks->link.prev = block;
    }

    ctx->blocks = block;
}


static void
ngx_http_webhook_sse_json_unlink(ngx_http_webhook_sse_json_ctx_t *ctx,
    ngx_http_webhook_sse_json_block_t *block)
{
    if (block->link.prev != NULL) {
        block->link.prev->link.next = block->link.next;

    } else {
        ctx->blocks = block->link.next;
    }

    if (block->link.next != NULL) {
        block->link.next->link.prev = block->link.prev;
    }
}


static void
ngx_http_webhook_sse_json_free_blocks(ngx_http_webhook_sse_json_ctx_t *ctx)
{
    ngx_http_webhook_sse_json_block_t  *block;

    while (ctx->blocks != NULL) {
        block = ctx->blocks;
        ctx->blocks = block->link.next;

        ngx_http_webhook_sse_json_mem_free(block);
    }
}


/*
 * "a.b.c" names key "c" in the object under key "b" in the object under
 * key "a" of the top object; an empty component names the empty key.
 * A path longer than the nesting limit can never be present: it keeps no
 * components and so matches no key.
 */

static void
ngx_http_webhook_sse_json_path_init(ngx_http_webhook_sse_json_path_t *path,
    const unsigned char *text, size_t len)
{
    int     n;
    size_t  i, from;

    /* what a lookup reads: the components and reached[] up to them */

    path->text = NULL;
    path->text_len = 0;
    path->ncomponents = 0;
    path->next = NGX_HTTP_WEBHOOK_SSE_JSON_OFF_PATH;
    path->found = 0;

    if (text == NULL) {
        return;
    }

    path->text = text;
    path->text_len = len;

    n = 0;
    from = 0;

    for (i = 0; i <= len; i++) {
        if (i < len && text[i] != '.') {
            continue;
        }

        if (n == NGX_HTTP_WEBHOOK_SSE_JSON_MAX_DEPTH) {
            return;
        }

        path->name[n] = text + from;
        path->name_len[n] = i - from;
        n++;

        from = i + 1;
    }

    path->ncomponents = n;

    memset(path->reached, 0, n + 2);
    path->reached[1] = 1;
}


/* a key in the object open at depth: does its value lie on the path? */

static void
ngx_http_webhook_sse_json_path_key(ngx_http_webhook_sse_json_path_t *path,
    int depth, const unsigned char *key, size_t len)
{
    int  i;

    path->next = NGX_HTTP_WEBHOOK_SSE_JSON_OFF_PATH;

    if (depth > path->ncomponents || !path->reached[depth]) {
        return;
    }

    i = depth - 1;

    if (path->name_len[i] != len
        || (len && memcmp(path->name[i], key, len) != 0))
    {
        return;
    }

    path->next = (depth == path->ncomponents)
                 ? NGX_HTTP_WEBHOOK_SSE_JSON_AT_PATH
                 : NGX_HTTP_WEBHOOK_SSE_JSON_ON_PATH;
}


/* a value begins at depth; a container it opens is at depth + 1 */

static void
ngx_http_webhook_sse_json_path_value(ngx_http_webhook_sse_json_path_t *path,
    int depth, int type)
{
    if (type == NGX_HTTP_WEBHOOK_SSE_JSON_OBJECT) {
        path->reached[depth + 1] =
                             (path->next == NGX_HTTP_WEBHOOK_SSE_JSON_ON_PATH);

    } else if (type == NGX_HTTP_WEBHOOK_SSE_JSON_ARRAY) {
        path->reached[depth + 1] = 0;
    }

    path->next = NGX_HTTP_WEBHOOK_SSE_JSON_OFF_PATH;
}


/*
 * Every value passes here before it is re-emitted: the top-level type,
 * the depth limit, strict UTF-8 and the checks of the session and message
 * fields.  Returns 0 to stop the parser.
 */

static int
ngx_http_webhook_sse_json_value(ngx_http_webhook_sse_json_ctx_t *ctx,
    int type, const unsigned char *s, size_t len)
{
    if (!ctx->started) {
        ctx->started = 1;

        if (type != NGX_HTTP_WEBHOOK_SSE_JSON_OBJECT) {
            ngx_http_webhook_sse_json_reject(ctx,
                                             "body must be a JSON object");
            return 0;
        }

        return 1;
    }

    if ((type == NGX_HTTP_WEBHOOK_SSE_JSON_OBJECT
         || type == NGX_HTTP_WEBHOOK_SSE_JSON_ARRAY)
        && ctx->depth >= NGX_HTTP_WEBHOOK_SSE_JSON_MAX_DEPTH)
    {
        if (!ctx->rejected) {
            ngx_http_webhook_sse_json_reject(ctx, "JSON nested too deeply");
        }

        return 0;
    }

    /* yajl lets overlong forms, surrogates and code points > U+10FFFF by */

    if (type == NGX_HTTP_WEBHOOK_SSE_JSON_STRING
        && ngx_http_webhook_sse_json_utf8_length(s, len) != len)
    {
        ngx_http_webhook_sse_json_reject(ctx, "invalid JSON");
        return 0;
    }

    if (ctx->message.next == NGX_HTTP_WEBHOOK_SSE_JSON_AT_PATH
        && !ngx_http_webhook_sse_json_message(ctx, type, len))
    {
        return 0;
    }

    if (ctx->session.next == NGX_HTTP_WEBHOOK_SSE_JSON_AT_PATH
        && !ngx_http_webhook_sse_json_session(ctx, type, s, len))
    {
        return 0;
    }

    ngx_http_webhook_sse_json_path_value(&ctx->message, ctx->depth, type);
    ngx_http_webhook_sse_json_path_value(&ctx->session, ctx->depth, type);

    return 1;
}


/*
 * A field error is noted and the parser goes on, so that a body broken
 * further on is still reported as invalid JSON; the first error stands.
 */

static int
ngx_http_webhook_sse_json_message(ngx_http_webhook_sse_json_ctx_t *ctx,
    int type, size_t len)
{
    if (ctx->rejected) {
        return 1;
    }

    if (ctx->message.found) {
        ngx_http_webhook_sse_json_field_error(ctx, "duplicate field \"",
                                              &ctx->message, "\"");
        return 1;
    }

    ctx->message.found = 1;

    if (type != NGX_HTTP_WEBHOOK_SSE_JSON_STRING || len == 0) {
        ngx_http_webhook_sse_json_field_error(ctx, "field \"", &ctx->message,
                                              "\" must be a non-empty string");
    }

    return 1;
}


static int
ngx_http_webhook_sse_json_session(ngx_http_webhook_sse_json_ctx_t *ctx,
    int type, const unsigned char *s, size_t len)
{
    ngx_http_webhook_sse_json_result_t  *res;

    if (ctx->rejected) {
        return 1;
    }

    if (ctx->session.found) {
        ngx_http_webhook_sse_json_field_error(ctx, "duplicate field \"",
                                              &ctx->session, "\"");
        return 1;
    }

    ctx->session.found = 1;

    if (type != NGX_HTTP_WEBHOOK_SSE_JSON_STRING) {
        ngx_http_webhook_sse_json_field_error(ctx, "field \"", &ctx->session,
                                              "\" must be a string");
        return 1;
    }

    if (!ngx_http_webhook_sse_json_session_valid(s, len)) {
        ngx_http_webhook_sse_json_field_error(ctx, "field \"", &ctx->session,
                                              "\" must be 1 to 256 bytes "
                                              "without control characters");
        return 1;
    }

    res = ctx->res;

    res->session = ngx_http_webhook_sse_json_result_alloc(ctx, len + 1);
    if (res->session == NULL) {
        ctx->nomem = 1;
        return 0;
    }

    memcpy(res->session, s, len);
    res->session[len] = '\0';
    res->session_len = len;

    return 1;
}


/* whether the current token goes to the output */

static int
ngx_http_webhook_sse_json_emit(ngx_http_webhook_sse_json_ctx_t *ctx)
{
    return ctx->gen != NULL && !ctx->skipping && !ctx->rejected;
}


static int
ngx_http_webhook_sse_json_generated(ngx_http_webhook_sse_json_ctx_t *ctx,
    yajl_gen_status status)
{
    if (status == yajl_gen_status_ok) {
        return 1;
    }

    if (status == yajl_gen_invalid_string) {
        ngx_http_webhook_sse_json_reject(ctx, "invalid JSON");
        return 0;
    }

    ctx->nomem = 1;

    return 0;
}


/* a value ended: a dropped top-level value may be over */

static void
ngx_http_webhook_sse_json_value_done(ngx_http_webhook_sse_json_ctx_t *ctx)
{
    if (ctx->depth == 1) {
        ctx->skipping = 0;
    }
}


static int
ngx_http_webhook_sse_json_reserved(const unsigned char *key, size_t len)
{
    const ngx_http_webhook_sse_json_key_t  *k;

    for (k = ngx_http_webhook_sse_json_reserved_keys; k->name; k++) {
        if (k->len == len && memcmp(k->name, key, len) == 0) {
            return 1;
        }
    }

    return 0;
}


static void
ngx_http_webhook_sse_json_reject(ngx_http_webhook_sse_json_ctx_t *ctx,
    const char *error)
{
    ctx->rejected = 1;
    ctx->res->error[0] = '\0';

    ngx_http_webhook_sse_json_append(ctx->res->error, 0, error,
                                     strlen(error));
}


/*
 * prefix, the configured path and suffix; a long path is cut on a UTF-8
 * character boundary and marked with "...".
 */

static void
ngx_http_webhook_sse_json_field_error(ngx_http_webhook_sse_json_ctx_t *ctx,
    const char *prefix, const ngx_http_webhook_sse_json_path_t *path,
    const char *suffix)
{
    char    *error;
    size_t   n, len;

    ctx->rejected = 1;
    error = ctx->res->error;

    len = path->text_len;

    if (len > NGX_HTTP_WEBHOOK_SSE_JSON_ERROR_PATH) {
        len = NGX_HTTP_WEBHOOK_SSE_JSON_ERROR_PATH;

        while (len && (path->text[len] & 0xc0) == 0x80) {
            len--;
        }
    }

    n = ngx_http_webhook_sse_json_append(error, 0, prefix, strlen(prefix));
    n = ngx_http_webhook_sse_json_append(error, n, path->text, len);

    if (len < path->text_len) {
        n = ngx_http_webhook_sse_json_append(error, n, "...", 3);
    }

    ngx_http_webhook_sse_json_append(error, n, suffix, strlen(suffix));
}


/* appends to the error text at offset n, keeping it NUL-terminated */

static size_t
ngx_http_webhook_sse_json_append(char *buf, size_t n, const void *s,
    size_t len)
{
    if (len > NGX_HTTP_WEBHOOK_SSE_JSON_ERROR_LEN - 1 - n) {
        len = NGX_HTTP_WEBHOOK_SSE_JSON_ERROR_LEN - 1 - n;
    }

    memcpy(buf + n, s, len);
    buf[n + len] = '\0';

    return n + len;
}


static int
ngx_http_webhook_sse_json_null(void *data)
{
    ngx_http_webhook_sse_json_ctx_t  *ctx;

    ctx = data;

    if (!ngx_http_webhook_sse_json_value(ctx, NGX_HTTP_WEBHOOK_SSE_JSON_NULL,
                                         NULL, 0))
    {
        return 0;
    }

    if (ngx_http_webhook_sse_json_emit(ctx)
        && !ngx_http_webhook_sse_json_generated(ctx, yajl_gen_null(ctx->gen)))
    {
        return 0;
    }

    ngx_http_webhook_sse_json_value_done(ctx);

    return 1;
}


static int
ngx_http_webhook_sse_json_boolean(void *data, int b)
{
    ngx_http_webhook_sse_json_ctx_t  *ctx;

    ctx = data;

    if (!ngx_http_webhook_sse_json_value(ctx,
                                         NGX_HTTP_WEBHOOK_SSE_JSON_BOOLEAN,
                                         NULL, 0))
    {
        return 0;
    }

    if (ngx_http_webhook_sse_json_emit(ctx)
        && !ngx_http_webhook_sse_json_generated(ctx,
                                                yajl_gen_bool(ctx->gen, b)))
    {
        return 0;
    }

    ngx_http_webhook_sse_json_value_done(ctx);

    return 1;
}


/* numbers keep the exact text they were posted with */

static int
ngx_http_webhook_sse_json_number(void *data, const char *s, size_t len)
{
    ngx_http_webhook_sse_json_ctx_t  *ctx;

    ctx = data;

    if (!ngx_http_webhook_sse_json_value(ctx,
                                         NGX_HTTP_WEBHOOK_SSE_JSON_NUMBER,
                                         NULL, 0))
    {
        return 0;
    }

    if (ngx_http_webhook_sse_json_emit(ctx)
        && !ngx_http_webhook_sse_json_generated(ctx,
                                        yajl_gen_number(ctx->gen, s, len)))
    {
        return 0;
    }

    ngx_http_webhook_sse_json_value_done(ctx);

    return 1;
}


static int
ngx_http_webhook_sse_json_string(void *data, const unsigned char *s,
    size_t len)
{
    ngx_http_webhook_sse_json_ctx_t  *ctx;

    ctx = data;

    if (!ngx_http_webhook_sse_json_value(ctx,
                                         NGX_HTTP_WEBHOOK_SSE_JSON_STRING,
                                         s, len))
    {
        return 0;
    }

    if (ngx_http_webhook_sse_json_emit(ctx)
        && !ngx_http_webhook_sse_json_generated(ctx,
                                        yajl_gen_string(ctx->gen, s, len)))
    {
        return 0;
    }

    ngx_http_webhook_sse_json_value_done(ctx);

    return 1;
}


/* a container starts or ends: objects and arrays alike */

static int
ngx_http_webhook_sse_json_open(ngx_http_webhook_sse_json_ctx_t *ctx, int type)
{
    if (!ngx_http_webhook_sse_json_value(ctx, type, NULL, 0)) {
        return 0;
    }

    ctx->depth++;

    if (ngx_http_webhook_sse_json_emit(ctx)
        && !ngx_http_webhook_sse_json_generated(ctx,
               (type == NGX_HTTP_WEBHOOK_SSE_JSON_OBJECT)
               ? yajl_gen_map_open(ctx->gen)
               : yajl_gen_array_open(ctx->gen)))
    {
        return 0;
    }

    return 1;
}


static int
ngx_http_webhook_sse_json_close(ngx_http_webhook_sse_json_ctx_t *ctx,
    int type)
{
    if (ngx_http_webhook_sse_json_emit(ctx)
        && !ngx_http_webhook_sse_json_generated(ctx,
               (type == NGX_HTTP_WEBHOOK_SSE_JSON_OBJECT)
               ? yajl_gen_map_close(ctx->gen)
               : yajl_gen_array_close(ctx->gen)))
    {
        return 0;
    }

    ctx->depth--;

    ngx_http_webhook_sse_json_value_done(ctx);

    return 1;
}


static int
ngx_http_webhook_sse_json_start_map(void *data)
{
    return ngx_http_webhook_sse_json_open(data,
                                          NGX_HTTP_WEBHOOK_SSE_JSON_OBJECT);
}


static int
ngx_http_webhook_sse_json_map_key(void *data, const unsigned char *key,
    size_t len)
{
    ngx_http_webhook_sse_json_ctx_t  *ctx;

    ctx = data;

    if (ngx_http_webhook_sse_json_utf8_length(key, len) != len) {
        ngx_http_webhook_sse_json_reject(ctx, "invalid JSON");
        return 0;
    }

    /* the fields are looked for in dropped values too */

    ngx_http_webhook_sse_json_path_key(&ctx->session, ctx->depth, key, len);
    ngx_http_webhook_sse_json_path_key(&ctx->message, ctx->depth, key, len);

    if (ctx->depth == 1
        && (ngx_http_webhook_sse_json_reserved(key, len)
            || (ctx->drop_key && ctx->drop_key_len == len
                && memcmp(ctx->drop_key, key, len) == 0)))
    {
        if (ctx->gen == NULL) {
            /* the members are not the body's own: parse with a generator */
            ctx->regenerate = 1;
            return 0;
        }

        ctx->skipping = 1;
        return 1;
    }

    if (ngx_http_webhook_sse_json_emit(ctx)
        && !ngx_http_webhook_sse_json_generated(ctx,
                                        yajl_gen_string(ctx->gen, key, len)))
    {
        return 0;
    }

    return 1;
}


static int
ngx_http_webhook_sse_json_end_map(void *data)
{
    return ngx_http_webhook_sse_json_close(data,
                                           NGX_HTTP_WEBHOOK_SSE_JSON_OBJECT);
}


static int
ngx_http_webhook_sse_json_start_array(void *data)
{
    return ngx_http_webhook_sse_json_open(data,
                                          NGX_HTTP_WEBHOOK_SSE_JSON_ARRAY);
}


static int
ngx_http_webhook_sse_json_end_array(void *data)
{
    return ngx_http_webhook_sse_json_close(data,
                                           NGX_HTTP_WEBHOOK_SSE_JSON_ARRAY);
}


int
ngx_http_webhook_sse_json_session_valid(const unsigned char *s, size_t len)
{
    size_t  i;

    if (len == 0 || len > NGX_HTTP_WEBHOOK_SSE_SESSION_MAX) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (s[i] < 0x20 || s[i] == 0x7f) {
            return 0;
        }
    }

    return ngx_http_webhook_sse_json_utf8_length(s, len) == len;
}


/*
 * The length of the longest prefix of s that is valid UTF-8: shortest
 * forms only, no surrogates, nothing past U+10FFFF.
 */

static size_t
ngx_http_webhook_sse_json_utf8_length(const unsigned char *s, size_t len)
{
    size_t        i, n, k;
    uint64_t      word;
    unsigned int  c, min;

    i = 0;

    while (i < len) {

        /* ASCII eight bytes at a time */

        while (len - i >= 8) {
            memcpy(&word, s + i, 8);

            if (word & 0x8080808080808080ULL) {
                break;
            }

            i += 8;
        }

        if (i == len) {
            break;
        }

        c = s[i];

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
            return i;
        }

        if (len - i <= n) {
            return i;
        }

        for (k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80) {
                return i;
            }

            c = (c << 6) | (s[i + k] & 0x3f);
        }

        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) {
            return i;
        }

        i += n + 1;
    }

    return i;
}


size_t
ngx_http_webhook_sse_json_escape(unsigned char *dst, const unsigned char *src,
    size_t len)
{
    size_t          i, n;
    unsigned char   c, e;

    static const unsigned char  hex[] = "0123456789abcdef";

    n = 0;

    for (i = 0; i < len; i++) {
        c = src[i];

        if (c >= 0x20 && c != '"' && c != '\\' && c != 0x7f) {
            if (dst) {
                dst[n] = c;
            }

            n++;
            continue;
        }

        switch (c) {
        case '"':
        case '\\':
            e = c;
            break;
        case '\n':
            e = 'n';
            break;
        case '\r':
            e = 'r';
            break;
        case '\t':
            e = 't';
            break;
        case '\b':
            e = 'b';
            break;
        case '\f':
            e = 'f';
            break;
        default:
            e = 0;
        }

        if (e) {
            if (dst) {
                dst[n] = '\\';
                dst[n + 1] = e;
            }

            n += 2;
            continue;
        }

        if (dst) {
            dst[n] = '\\';
            dst[n + 1] = 'u';
            dst[n + 2] = '0';
            dst[n + 3] = '0';
            dst[n + 4] = hex[c >> 4];
            dst[n + 5] = hex[c & 0xf];
        }

        n += 6;
    }

    return n;
}


int
ngx_http_webhook_sse_json_utf8_valid(const unsigned char *s, size_t len)
{
    return ngx_http_webhook_sse_json_utf8_length(s, len) == len;
}


int
ngx_http_webhook_sse_json_object_valid(const unsigned char *s, size_t len)
{
    int          ok;
    size_t       i;
    yajl_handle  parser;

    for (i = 0; i < len; i++) {
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r') {
            break;
        }
    }

    if (i == len || s[i] != '{') {
        return 0;
    }

    parser = yajl_alloc(NULL, ngx_http_webhook_sse_json_alloc_funcs, NULL);
    if (parser == NULL) {
        return 0;
    }

    ok = yajl_parse(parser, s, len) == yajl_status_ok
         && yajl_complete_parse(parser) == yajl_status_ok;

    yajl_free(parser);

    return ok;
}
