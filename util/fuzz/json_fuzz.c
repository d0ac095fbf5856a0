
/*
 * libFuzzer harness of the pure JSON logic (src/ngx_http_webhook_sse_json.c).
 *
 * Input: one configuration byte, then the body.
 *   bits 0-1  session path: off, "sessionId", "data.conversation_id", custom
 *   bits 2-3  message path: off, "message", "data.text", custom
 *   bit  4    drop_key "secret"
 *   bit  6    allocation failures: the next byte chooses one allocation of
 *             the parse, which is made to fail (number 1 + byte % n of
 *             the n a normal run makes)
 *   bit  7    with bit 6: every allocation from that one on fails
 * With a custom path the next byte is its length L and the L bytes after
 * it are its text (shared by both custom paths); the rest is the body.
 * (Bit 5 means nothing: it keeps the seeds' first byte printable.)
 *
 * With allocation failures the parse runs twice through a counting
 * allocator: normally, then with the chosen allocation failing; the second
 * run must give NOMEM with nothing in the result, or the outcome of the
 * first, and no block may be left after either.
 *
 * Every input also goes whole through ngx_http_webhook_sse_json_escape()
 * and ngx_http_webhook_sse_json_session_valid().  A broken invariant
 * traps; util/fuzz/run.sh builds and runs it.
 */


#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_parse.h>

#include "ngx_http_webhook_sse_json.h"
#include "oom_alloc.h"


#define FUZZ_SESSION_OFF      0
#define FUZZ_SESSION_PLAIN    1
#define FUZZ_SESSION_DOTTED   2
#define FUZZ_CUSTOM           3

#define FUZZ_OOM              0x40
#define FUZZ_OOM_PERSIST      0x80


#define fuzz_assert(cond)                                                    \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "invariant broken at %s:%d: %s\n",               \
                    __FILE__, __LINE__, #cond);                              \
            __builtin_trap();                                                \
        }                                                                    \
    } while (0)


typedef struct {
    unsigned char  *buf;
    size_t          len;
    size_t          calls;
} fuzz_string_t;


static oom_alloc_t  fuzz_alloc;


static yajl_alloc_funcs  fuzz_alloc_funcs = {
    oom_malloc, oom_realloc, oom_free, &fuzz_alloc
};


/* strict UTF-8: shortest forms, no surrogates, nothing past U+10FFFF */

static int
fuzz_utf8_valid(const unsigned char *s, size_t len)
{
    size_t        i, n, k;
    unsigned int  c, min;

    for (i = 0; i < len; i += n + 1) {
        c = s[i];

        if (c < 0x80) {
            n = 0;
            continue;
        }

        if ((c & 0xe0) == 0xc0) {
            n = 1;
            c &= 0x1f;
            min = 0x80;

        } else if ((c & 0xf0) == 0xe0) {
            n = 2;
            c &= 0x0f;
            min = 0x800;

        } else if ((c & 0xf8) == 0xf0) {
            n = 3;
            c &= 0x07;
            min = 0x10000;

        } else {
            return 0;
        }

        if (len - i <= n) {
            return 0;
        }

        for (k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80) {
                return 0;
            }

            c = (c << 6) | (s[i + k] & 0x3f);
        }

        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) {
            return 0;
        }
    }

    return 1;
}


static int
fuzz_decoded_string(void *data, const unsigned char *s, size_t len)
{
    fuzz_string_t  *str;

    str = data;

    str->calls++;
    str->buf = malloc(len + 1);
    fuzz_assert(str->buf != NULL);

    memcpy(str->buf, s, len);
    str->len = len;

    return 1;
}


static void
fuzz_escape(const unsigned char *data, size_t size)
{
    size_t          n, m, i;
    yajl_handle     h;
    yajl_status     status;
    unsigned char  *out;
    fuzz_string_t   str;

    static const yajl_callbacks  callbacks = {
        NULL, NULL, NULL, NULL, NULL, fuzz_decoded_string,
        NULL, NULL, NULL, NULL, NULL
    };

    n = ngx_http_webhook_sse_json_escape(NULL, data, size);
    fuzz_assert(n >= size && n <= 6 * size);

    /* room for the quotes around it, and one guard byte */

    out = malloc(n + 3);
    fuzz_assert(out != NULL);

    out[0] = '"';
    out[n + 2] = 0xee;

    m = ngx_http_webhook_sse_json_escape(out + 1, data, size);
    fuzz_assert(m == n);
    fuzz_assert(out[n + 2] == 0xee);

    out[n + 1] = '"';

    for (i = 1; i <= n; i++) {
        fuzz_assert(out[i] >= 0x20 && out[i] != 0x7f);

        if (out[i] == '\\') {
            fuzz_assert(i < n);
            i++;
            continue;
        }

        fuzz_assert(out[i] != '"');
    }

    if (fuzz_utf8_valid(data, size)) {
        memset(&str, 0, sizeof(fuzz_string_t));

        h = yajl_alloc(&callbacks, NULL, &str);
        fuzz_assert(h != NULL);

        status = yajl_parse(h, out, n + 2);
        if (status == yajl_status_ok) {
            status = yajl_complete_parse(h);
        }

        fuzz_assert(status == yajl_status_ok);
        fuzz_assert(str.calls == 1);
        fuzz_assert(str.len == size && memcmp(str.buf, data, size) == 0);

        yajl_free(h);
        free(str.buf);
    }

    free(out);
}


/* session_valid() against its definition */

static void
fuzz_session_valid(const unsigned char *data, size_t size)
{
    int     expected;
    size_t  i;

    expected = (size >= 1 && size <= NGX_HTTP_WEBHOOK_SSE_SESSION_MAX
                && fuzz_utf8_valid(data, size));

    for (i = 0; expected && i < size; i++) {
        if (data[i] < 0x20 || data[i] == 0x7f) {
            expected = 0;
        }
    }

    fuzz_assert(ngx_http_webhook_sse_json_session_valid(data, size)
                == expected);
}


static void
fuzz_result_clean(const ngx_http_webhook_sse_json_result_t *res)
{
    fuzz_assert(res->members == NULL && res->members_len == 0);
    fuzz_assert(res->session == NULL && res->session_len == 0);
}


static void
fuzz_error_terminated(const ngx_http_webhook_sse_json_result_t *res)
{
    fuzz_assert(memchr(res->error, '\0', NGX_HTTP_WEBHOOK_SSE_JSON_ERROR_LEN)
                != NULL);
}


/*
 * The top-level keys of a re-parsed object, with their lengths: yajl_tree
 * keeps keys as C strings, and "type\u0000x" is not "type".
 */

typedef struct {
    int                   depth;
    int                   dropped;
    const unsigned char  *drop_key;
    size_t                drop_key_len;
} fuzz_keys_t;


static int
fuzz_keys_open(void *data)
{
    ((fuzz_keys_t *) data)->depth++;
    return 1;
}


static int
fuzz_keys_close(void *data)
{
    ((fuzz_keys_t *) data)->depth--;
    return 1;
}


static int
fuzz_keys_key(void *data, const unsigned char *key, size_t len)
{
    fuzz_keys_t  *keys;

    keys = data;

    if (keys->depth != 1) {
        return 1;
    }

    if ((len == 4 && memcmp(key, "type", 4) == 0)
        || (len == 9 && memcmp(key, "messageId", 9) == 0)
        || (len == 9 && memcmp(key, "timestamp", 9) == 0)
        || (keys->drop_key != NULL && len == keys->drop_key_len
            && memcmp(key, keys->drop_key, len) == 0))
    {
        keys->dropped = 1;
    }

    return 1;
}


/*
 * The checks of an accepted body: "{" members "}" is one JSON object
 * without the dropped keys at its top, and parsed again with the same
 * fields it gives the same members and session.
 */

static void
fuzz_accepted(const ngx_http_webhook_sse_json_conf_t *conf, int custom,
    const ngx_http_webhook_sse_json_result_t *res)
{
    int                                 rc;
    size_t                              i;
    yajl_handle                         h;
    yajl_status                         status;
    fuzz_keys_t                         keys;
    unsigned char                      *object;
    ngx_http_webhook_sse_json_conf_t    again_conf;
    ngx_http_webhook_sse_json_result_t  again;

    static const yajl_callbacks  callbacks = {
        NULL, NULL, NULL, NULL, NULL, NULL,
        fuzz_keys_open, fuzz_keys_key, fuzz_keys_close,
        fuzz_keys_open, fuzz_keys_close
    };

    fuzz_assert(res->members != NULL);
    fuzz_assert(res->members[res->members_len] == '\0');

    for (i = 0; i < res->members_len; i++) {
        fuzz_assert(res->members[i] >= 0x20);
    }

    if (conf->session_path == NULL) {
        fuzz_assert(res->session == NULL && res->session_len == 0);
    }

    if (res->session != NULL) {
        fuzz_assert(ngx_http_webhook_sse_json_session_valid(res->session,
                                                            res->session_len));
        fuzz_assert(res->session[res->session_len] == '\0');

    } else {
        fuzz_assert(res->session_len == 0);
    }

    object = malloc(res->members_len + 2);
    fuzz_assert(object != NULL);

    object[0] = '{';
    memcpy(object + 1, res->members, res->members_len);
    object[res->members_len + 1] = '}';

    memset(&keys, 0, sizeof(fuzz_keys_t));
    keys.drop_key = conf->drop_key;
    keys.drop_key_len = conf->drop_key_len;

    h = yajl_alloc(&callbacks, NULL, &keys);
    fuzz_assert(h != NULL);

    status = yajl_parse(h, object, res->members_len + 2);
    if (status == yajl_status_ok) {
        status = yajl_complete_parse(h);
    }

    fuzz_assert(status == yajl_status_ok);
    fuzz_assert(keys.depth == 0);
    fuzz_assert(!keys.dropped);

    yajl_free(h);

    /*
     * A custom path may lead into a dropped value, so its fields are not
     * looked for again; the members are a fixed point all the same.
     */

    if (custom) {
        memset(&again_conf, 0, sizeof(ngx_http_webhook_sse_json_conf_t));

    } else {
        again_conf = *conf;
    }

    rc = ngx_http_webhook_sse_json_parse(&again_conf, object,
                                         res->members_len + 2, &again);
    if (rc != NGX_HTTP_WEBHOOK_SSE_JSON_OK) {
        fprintf(stderr, "parsed again: %s\n", again.error);
    }

    fuzz_assert(rc == NGX_HTTP_WEBHOOK_SSE_JSON_OK);
    fuzz_assert(again.members_len == res->members_len);
    fuzz_assert(memcmp(again.members, res->members, res->members_len) == 0);

    if (custom) {
        fuzz_assert(again.session == NULL);

    } else {
        fuzz_assert(again.session_len == res->session_len);
        fuzz_assert(res->session == NULL
                    || memcmp(again.session, res->session, res->session_len)
                       == 0);
    }

    ngx_http_webhook_sse_json_free(&again);
    free(object);
}


/*
 * The parse again with allocation 1 + select % n failing (n: those of the
 * normal run, rc and res): NOMEM with a clean result, or the same outcome.
 */

static void
fuzz_oom(const ngx_http_webhook_sse_json_conf_t *conf,
    const unsigned char *body, size_t size, unsigned long n,
    unsigned char select, int persist, int rc,
    const ngx_http_webhook_sse_json_result_t *res)
{
    int                                 oom_rc;
    long                                live;
    ngx_http_webhook_sse_json_result_t  oom_res;

    live = fuzz_alloc.live;

    fuzz_alloc.calls = 0;
    fuzz_alloc.fail_at = 1 + select % n;
    fuzz_alloc.persist = persist;
    fuzz_alloc.failed = 0;

    oom_rc = ngx_http_webhook_sse_json_parse(conf, body, size, &oom_res);

    fuzz_assert(fuzz_alloc.failed > 0);

    fuzz_alloc.fail_at = 0;
    fuzz_error_terminated(&oom_res);

    if (oom_rc == NGX_HTTP_WEBHOOK_SSE_JSON_NOMEM) {
        fuzz_result_clean(&oom_res);
        fuzz_assert(strcmp(oom_res.error, "out of memory") == 0);

    } else {
        fuzz_assert(oom_rc == rc);
        fuzz_assert(strcmp(oom_res.error, res->error) == 0);
        fuzz_assert(oom_res.members_len == res->members_len);
        fuzz_assert((oom_res.members == NULL) == (res->members == NULL));
        fuzz_assert(res->members == NULL
                    || memcmp(oom_res.members, res->members,
                              res->members_len) == 0);
        fuzz_assert(oom_res.session_len == res->session_len);
        fuzz_assert((oom_res.session == NULL) == (res->session == NULL));
        fuzz_assert(res->session == NULL
                    || memcmp(oom_res.session, res->session,
                              res->session_len) == 0);
    }

    ngx_http_webhook_sse_json_free(&oom_res);
    fuzz_result_clean(&oom_res);

    fuzz_assert(fuzz_alloc.live == live);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                                 rc, session, message;
    size_t                              custom_len;
    unsigned char                       config, select;
    const unsigned char                *custom, *body;
    ngx_http_webhook_sse_json_conf_t    conf;
    ngx_http_webhook_sse_json_result_t  res;

    fuzz_escape(data, size);
    fuzz_session_valid(data, size);

    if (size == 0) {
        return 0;
    }

    config = data[0];
    body = data + 1;
    size--;

    session = config & 3;
    message = (config >> 2) & 3;

    select = 0;

    if (config & FUZZ_OOM) {
        if (size == 0) {
            return 0;
        }

        select = body[0];
        body++;
        size--;
    }

    custom = NULL;
    custom_len = 0;

    if (session == FUZZ_CUSTOM || message == FUZZ_CUSTOM) {
        if (size == 0) {
            return 0;
        }

        custom_len = body[0];
        body++;
        size--;

        if (custom_len > size) {
            return 0;
        }

        /* a copy of its own, so that reads past the path are caught */

        custom = malloc(custom_len ? custom_len : 1);
        fuzz_assert(custom != NULL);
        memcpy((unsigned char *) custom, body, custom_len);

        body += custom_len;
        size -= custom_len;
    }

    memset(&conf, 0, sizeof(ngx_http_webhook_sse_json_conf_t));

    switch (session) {
    case FUZZ_SESSION_PLAIN:
        conf.session_path = (const unsigned char *) "sessionId";
        break;
    case FUZZ_SESSION_DOTTED:
        conf.session_path = (const unsigned char *) "data.conversation_id";
        break;
    case FUZZ_CUSTOM:
        conf.session_path = custom;
        conf.session_path_len = custom_len;
        break;
    }

    if (session == FUZZ_SESSION_PLAIN || session == FUZZ_SESSION_DOTTED) {
        conf.session_path_len = strlen((const char *) conf.session_path);
    }

    switch (message) {
    case 1:
        conf.message_path = (const unsigned char *) "message";
        conf.message_path_len = sizeof("message") - 1;
        break;
    case 2:
        conf.message_path = (const unsigned char *) "data.text";
        conf.message_path_len = sizeof("data.text") - 1;
        break;
    case FUZZ_CUSTOM:
        conf.message_path = custom;
        conf.message_path_len = custom_len;
        break;
    }

    if (config & 0x10) {
        conf.drop_key = (const unsigned char *) "secret";
        conf.drop_key_len = sizeof("secret") - 1;
    }

    if (config & FUZZ_OOM) {
        memset(&fuzz_alloc, 0, sizeof(oom_alloc_t));
        ngx_http_webhook_sse_json_set_alloc(&fuzz_alloc_funcs);
    }

    rc = ngx_http_webhook_sse_json_parse(&conf, body, size, &res);

    if ((config & FUZZ_OOM) && fuzz_alloc.calls > 0) {
        fuzz_oom(&conf, body, size, fuzz_alloc.calls, select,
                 config & FUZZ_OOM_PERSIST, rc, &res);
    }

    fuzz_error_terminated(&res);

    if (rc == NGX_HTTP_WEBHOOK_SSE_JSON_OK) {
        fuzz_assert(res.error[0] == '\0');
        fuzz_accepted(&conf, custom != NULL, &res);

    } else {
        fuzz_assert(rc == NGX_HTTP_WEBHOOK_SSE_JSON_INVALID);
        fuzz_assert(res.error[0] != '\0');
        fuzz_result_clean(&res);
    }

    ngx_http_webhook_sse_json_free(&res);
    fuzz_result_clean(&res);

    if (config & FUZZ_OOM) {
        fuzz_assert(fuzz_alloc.live == 0);
        ngx_http_webhook_sse_json_set_alloc(NULL);
    }

    free((unsigned char *) custom);

    return 0;
}
