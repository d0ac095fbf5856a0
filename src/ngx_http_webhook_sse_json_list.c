
/*
 * nginx-webhook-sse: the list of sessions a presence POST asks about,
 * {"sessionIds":["a","b",..]}.
 *
 * Pure logic like ngx_http_webhook_sse_json.c: no nginx types, no nginx
 * calls.  yajl's tree API: the body is small and bounded by the caller.
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_tree.h>

#include "ngx_http_webhook_sse_json.h"


int
ngx_http_webhook_sse_json_list(const unsigned char *body, size_t len,
    const char *key, size_t max, ngx_http_webhook_sse_json_item_pt item,
    void *data, char *error)
{
    int          rc;
    char        *text;
    size_t       i;
    yajl_val     tree, list, v;
    const char  *path[2];

    error[0] = '\0';

    text = malloc(len + 1);
    if (text == NULL) {
        return NGX_HTTP_WEBHOOK_SSE_JSON_NOMEM;
    }

    memcpy(text, body, len);
    text[len] = '\0';

    if (memchr(body, '\0', len) != NULL) {
        free(text);
        strcpy(error, "invalid JSON");
        return NGX_HTTP_WEBHOOK_SSE_JSON_INVALID;
    }

    /*
     * yajl's tree hands strings out NUL-terminated: one with an escaped
     * NUL in it would pass for its beginning.  No session has one.
     */

    for (i = 0; i + 6 <= len; i++) {
        if (text[i] == '\\' && text[i + 1] == 'u' && text[i + 2] == '0'
            && text[i + 3] == '0' && text[i + 4] == '0' && text[i + 5] == '0')
        {
            free(text);
            strcpy(error, "a session must not contain control characters");
            return NGX_HTTP_WEBHOOK_SSE_JSON_INVALID;
        }
    }

    tree = yajl_tree_parse(text, NULL, 0);
    free(text);

    if (tree == NULL) {
        strcpy(error, "invalid JSON");
        return NGX_HTTP_WEBHOOK_SSE_JSON_INVALID;
    }

    rc = NGX_HTTP_WEBHOOK_SSE_JSON_INVALID;

    if (!YAJL_IS_OBJECT(tree)) {
        strcpy(error, "the body must be a JSON object");
        goto done;
    }

    path[0] = key;
    path[1] = NULL;

    list = yajl_tree_get(tree, path, yajl_t_array);

    if (list == NULL) {
        snprintf(error, NGX_HTTP_WEBHOOK_SSE_JSON_ERROR_LEN,
                 "\"%.64s\" must be an array of strings", key);
        goto done;
    }

    if (list->u.array.len > max) {
        snprintf(error, NGX_HTTP_WEBHOOK_SSE_JSON_ERROR_LEN,
                 "\"%.64s\" may name at most %zu sessions", key, max);
        goto done;
    }

    for (i = 0; i < list->u.array.len; i++) {
        v = list->u.array.values[i];

        if (!YAJL_IS_STRING(v)
            || !ngx_http_webhook_sse_json_session_valid(
                    (const unsigned char *) v->u.string, strlen(v->u.string)))
        {
            snprintf(error, NGX_HTTP_WEBHOOK_SSE_JSON_ERROR_LEN,
                     "\"%.64s\"[%zu] must be a session: 1 to 256 bytes "
                     "without control characters", key, i);
            goto done;
        }
    }

    for (i = 0; i < list->u.array.len; i++) {
        v = list->u.array.values[i];

        if (item(data, (const unsigned char *) v->u.string,
                 strlen(v->u.string))
            != 0)
        {
            rc = NGX_HTTP_WEBHOOK_SSE_JSON_NOMEM;
            goto done;
        }
    }

    rc = NGX_HTTP_WEBHOOK_SSE_JSON_OK;

done:

    yajl_tree_free(tree);

    return rc;
}
