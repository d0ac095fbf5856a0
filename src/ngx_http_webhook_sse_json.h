
/*
 * nginx-webhook-sse: validation of posted JSON and event building.
 *
 * Pure logic: no nginx types, no nginx calls, so that it can be unit-tested
 * and fuzzed on its own.  Built with yajl.
 */


#ifndef _NGX_HTTP_WEBHOOK_SSE_JSON_H_INCLUDED_
#define _NGX_HTTP_WEBHOOK_SSE_JSON_H_INCLUDED_


#include <stddef.h>

#include <yajl/yajl_common.h>


#define NGX_HTTP_WEBHOOK_SSE_JSON_OK           0
#define NGX_HTTP_WEBHOOK_SSE_JSON_INVALID     -1
#define NGX_HTTP_WEBHOOK_SSE_JSON_NOMEM       -2

#define NGX_HTTP_WEBHOOK_SSE_JSON_MAX_DEPTH    64
#define NGX_HTTP_WEBHOOK_SSE_SESSION_MAX       256
#define NGX_HTTP_WEBHOOK_SSE_JSON_ERROR_LEN    160


typedef struct {
    /* dotted path of the field naming the session; NULL: off */
    const unsigned char  *session_path;
    size_t                session_path_len;

    /* dotted path of the required non-empty string; NULL: off */
    const unsigned char  *message_path;
    size_t                message_path_len;

    /* one more top-level key to drop, like the reserved ones; NULL: none */
    const unsigned char  *drop_key;
    size_t                drop_key_len;

    /*
     * Where the result's members and session go: alloc(alloc_data, size),
     * memory the caller releases itself (a request's pool, say), which
     * ngx_http_webhook_sse_json_free() leaves alone.  NULL: malloc().
     */
    void               *(*alloc)(void *data, size_t size);
    void                 *alloc_data;
} ngx_http_webhook_sse_json_conf_t;


typedef struct {
    /*
     * The members of the posted object, re-serialized as compact JSON
     * without the enclosing braces ("\"a\":1,\"b\":[true]"), minus the
     * reserved top-level keys "type", "messageId" and "timestamp".
     * NUL-terminated, malloc()ed or from the conf's alloc; may be empty
     * (members_len == 0).
     */
    unsigned char        *members;
    size_t                members_len;

    /* raw (unescaped) session string, NUL-terminated, malloc()ed or from
     * the conf's alloc; NULL when absent */
    unsigned char        *session;
    size_t                session_len;

    /* NUL-terminated reason when rejected, e.g. "invalid JSON" */
    char                  error[NGX_HTTP_WEBHOOK_SSE_JSON_ERROR_LEN];

    /* members and session came from the conf's alloc: not freed here */
    int                   borrowed;
} ngx_http_webhook_sse_json_result_t;


/*
 * Validates body as one JSON object and fills res.  Returns
 * NGX_HTTP_WEBHOOK_SSE_JSON_OK, _INVALID (res->error says why) or _NOMEM.
 * res must be released with ngx_http_webhook_sse_json_free() in all cases.
 */
int ngx_http_webhook_sse_json_parse(
    const ngx_http_webhook_sse_json_conf_t *conf,
    const unsigned char *body, size_t len,
    ngx_http_webhook_sse_json_result_t *res);

void ngx_http_webhook_sse_json_free(ngx_http_webhook_sse_json_result_t *res);

/*
 * Every allocation of the functions here, yajl's included, goes through
 * funcs (all three set); NULL, the default, restores malloc(), realloc()
 * and free().  For tests: a result is freed with the functions set when
 * ngx_http_webhook_sse_json_free() is called.
 */
void ngx_http_webhook_sse_json_set_alloc(yajl_alloc_funcs *funcs);

/* 1 when s is one JSON object, nothing else but white space around it */
int ngx_http_webhook_sse_json_object_valid(const unsigned char *s,
    size_t len);

/* 1 when s is valid UTF-8 */
int ngx_http_webhook_sse_json_utf8_valid(const unsigned char *s, size_t len);

/* 1 when s is 1..256 bytes of valid UTF-8 without control characters */
int ngx_http_webhook_sse_json_session_valid(const unsigned char *s,
    size_t len);

/*
 * Writes src as the inside of a JSON string (no quotes) to dst and returns
 * the number of bytes written; with dst == NULL only returns that number.
 * Escapes '"', '\\', all bytes below 0x20 and 0x7f; other bytes are copied.
 */
size_t ngx_http_webhook_sse_json_escape(unsigned char *dst,
    const unsigned char *src, size_t len);


/*
 * The strings of the array "key" of the JSON object in body
 * (ngx_http_webhook_sse_json_list.c): all of them valid sessions, at most
 * max; item is called with each (non-zero from it: _NOMEM).  Returns
 * _OK, _INVALID (error says why) or _NOMEM.
 */
typedef int (*ngx_http_webhook_sse_json_item_pt)(void *data,
    const unsigned char *s, size_t len);

int ngx_http_webhook_sse_json_list(const unsigned char *body, size_t len,
    const char *key, size_t max, ngx_http_webhook_sse_json_item_pt item,
    void *data, char *error);


#endif /* _NGX_HTTP_WEBHOOK_SSE_JSON_H_INCLUDED_ */
