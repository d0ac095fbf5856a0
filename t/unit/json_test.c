
/*
 * Unit tests of src/ngx_http_webhook_sse_json.c (and json_list.c),
 * printing TAP.
 *
 * Built and run by t/00-json-unit.t; by hand:
 *   cc -Wall -Wextra -Isrc t/unit/json_test.c src/ngx_http_webhook_sse_json.c
 *      $(pkg-config --cflags --libs yajl) && ./a.out
 *
 * Every file in t/unit/regress/ (found next to this source, or in
 * $WEBHOOK_SSE_REGRESS_DIR) is a body run through every configuration.
 */


#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <yajl/yajl_parse.h>

#include "ngx_http_webhook_sse_json.h"
#include "oom_alloc.h"


#define OK       NGX_HTTP_WEBHOOK_SSE_JSON_OK
#define INVALID  NGX_HTTP_WEBHOOK_SSE_JSON_INVALID
#define NOMEM    NGX_HTTP_WEBHOOK_SSE_JSON_NOMEM


static int  tests;
static int  failures;


static int
check(int ok, const char *name)
{
    const char  *p;

    tests++;

    if (!ok) {
        failures++;
    }

    printf("%sok %d - ", ok ? "" : "not ", tests);

    /* a test name must stay on its line and must not start a directive */

    for (p = name; *p; p++) {
        putchar(((unsigned char) *p < 0x20 || *p == '#') ? '?' : *p);
    }

    putchar('\n');

    return ok;
}


static void
diag_bytes(const char *what, const unsigned char *s, size_t len)
{
    size_t  i;

    printf("#   %s (%zu bytes): ", what, len);

    if (s == NULL) {
        printf("NULL\n");
        return;
    }

    for (i = 0; i < len; i++) {
        if (s[i] >= 0x20 && s[i] < 0x7f) {
            putchar(s[i]);

        } else {
            printf("\\x%02x", s[i]);
        }
    }

    putchar('\n');
}


static ngx_http_webhook_sse_json_conf_t
conf_of(const char *session, const char *message)
{
    ngx_http_webhook_sse_json_conf_t  conf;

    memset(&conf, 0, sizeof(conf));

    conf.session_path = (const unsigned char *) session;
    conf.session_path_len = session ? strlen(session) : 0;
    conf.message_path = (const unsigned char *) message;
    conf.message_path_len = message ? strlen(message) : 0;

    return conf;
}


/* the module's defaults */

static ngx_http_webhook_sse_json_conf_t
conf_default(void)
{
    return conf_of("sessionId", "message");
}


static int
result_clean(const ngx_http_webhook_sse_json_result_t *res)
{
    return res->members == NULL && res->members_len == 0
           && res->session == NULL && res->session_len == 0;
}


/*
 * Parses body (len bytes) and checks the outcome: with error NULL it must
 * be accepted with exactly these members and session (NULL: none); else
 * rejected with exactly this error and nothing left allocated.
 */

static int
expect_n(const char *name, const ngx_http_webhook_sse_json_conf_t *conf,
    const char *body, size_t len, const char *members, const char *session,
    const char *error)
{
    int                                 rc, ok;
    ngx_http_webhook_sse_json_result_t  res;

    memset(&res, 0x5a, sizeof(res));

    rc = ngx_http_webhook_sse_json_parse(conf, (const unsigned char *) body,
                                         len, &res);

    if (error == NULL) {
        ok = rc == OK
             && res.members != NULL
             && res.members_len == strlen(members)
             && memcmp(res.members, members, res.members_len) == 0
             && res.members[res.members_len] == '\0'
             && res.error[0] == '\0'
             && (session == NULL
                 ? (res.session == NULL && res.session_len == 0)
                 : (res.session != NULL
                    && res.session_len == strlen(session)
                    && memcmp(res.session, session, res.session_len) == 0));

    } else {
        ok = rc == INVALID
             && result_clean(&res)
             && strcmp(res.error, error) == 0;
    }

    if (!check(ok, name)) {
        printf("#   rc %d, error \"%s\"\n", rc, res.error);
        diag_bytes("members", res.members, res.members_len);
        diag_bytes("session", res.session, res.session_len);
        printf("#   expected %s\n", error ? error : members);
    }

    ngx_http_webhook_sse_json_free(&res);

    return ok;
}


static int
expect(const char *name, const ngx_http_webhook_sse_json_conf_t *conf,
    const char *body, const char *members, const char *session,
    const char *error)
{
    return expect_n(name, conf, body, strlen(body), members, session, error);
}


static void
test_members(void)
{
    ngx_http_webhook_sse_json_conf_t  conf, pass;

    conf = conf_default();

    expect("members re-serialized, reserved type dropped, numbers verbatim",
           &conf,
           "{\"message\":\"hi\",\"sessionId\":\"s1\",\"type\":\"x\","
           "\"n\":1.50e3,\"o\":{\"a\":[1,{\"b\":null}]}}",
           "\"message\":\"hi\",\"sessionId\":\"s1\",\"n\":1.50e3,"
           "\"o\":{\"a\":[1,{\"b\":null}]}",
           "s1", NULL);

    expect("whitespace is compacted", &conf,
           " \t\r\n{ \"message\" : \"hi\" ,\n \"a\" : [ 1 , true , false ,"
           " null , { } , [ ] ] }\n ",
           "\"message\":\"hi\",\"a\":[1,true,false,null,{},[]]", NULL, NULL);

    expect("spaces inside strings of a compact body are kept", &conf,
           "{\"message\":\"a b  c\",\"o\":{\"k\":\"x y\",\"l\":[1,\" \"]}}",
           "\"message\":\"a b  c\",\"o\":{\"k\":\"x y\",\"l\":[1,\" \"]}",
           NULL, NULL);

    expect("one space between tokens after spaced strings is compacted",
           &conf,
           "{\"message\":\"a b\",\"o\":[1, \" \"]}",
           "\"message\":\"a b\",\"o\":[1,\" \"]", NULL, NULL);

    expect("vertical tab and form feed between tokens are compacted", &conf,
           "{\"message\":\"m\",\v\"o\":{\f}}",
           "\"message\":\"m\",\"o\":{}", NULL, NULL);

    expect("a key dropped after compact members is still dropped", &conf,
           "{\"message\":\"m\",\"a\":{\"b\":[1]},\"timestamp\":5,\"z\":0}",
           "\"message\":\"m\",\"a\":{\"b\":[1]},\"z\":0", NULL, NULL);

    expect("reserved keys dropped with nested values", &conf,
           "{\"type\":{\"a\":[1,{\"b\":[2,{\"c\":3}]}],\"d\":{}},"
           "\"message\":\"m\",\"messageId\":[[[]],{\"x\":\"y\"}],"
           "\"timestamp\":123,\"x\":true,\"type\":null}",
           "\"message\":\"m\",\"x\":true", NULL, NULL);

    expect("reserved key written with escapes is dropped", &conf,
           "{\"typ\\u0065\":1,\"message\":\"m\",\"time\\u0073tamp\":2}",
           "\"message\":\"m\"", NULL, NULL);

    expect("reserved names below the top level are kept", &conf,
           "{\"message\":\"m\",\"o\":{\"type\":1,\"messageId\":[2],"
           "\"timestamp\":{\"t\":3}},\"a\":[{\"type\":4}]}",
           "\"message\":\"m\",\"o\":{\"type\":1,\"messageId\":[2],"
           "\"timestamp\":{\"t\":3}},\"a\":[{\"type\":4}]", NULL, NULL);

    expect("keys similar to reserved ones are kept", &conf,
           "{\"message\":\"m\",\"Type\":1,\"types\":2,\"typ\":3,"
           "\"messageid\":4}",
           "\"message\":\"m\",\"Type\":1,\"types\":2,\"typ\":3,"
           "\"messageid\":4", NULL, NULL);

    expect("numbers pass through verbatim", &conf,
           "{\"message\":\"m\",\"a\":[-0,0,1E+2,1e-7,-12.50,0.0000010,"
           "123456789012345678901234567890,1.7976931348623157e309]}",
           "\"message\":\"m\",\"a\":[-0,0,1E+2,1e-7,-12.50,0.0000010,"
           "123456789012345678901234567890,1.7976931348623157e309]",
           NULL, NULL);

    expect("newlines and data: lines are escaped in members", &conf,
           "{\"message\":\"line1\\nline2\\r\\ndata: x\\r\\n\\n\","
           "\"k\\ny\":\"\\u0001\\u001f\\t\\b\\f\"}",
           "\"message\":\"line1\\nline2\\r\\ndata: x\\r\\n\\n\","
           "\"k\\ny\":\"\\u0001\\u001F\\t\\b\\f\"", NULL, NULL);

    expect("escaped NUL stays escaped in members", &conf,
           "{\"message\":\"a\\u0000b\"}",
           "\"message\":\"a\\u0000b\"", NULL, NULL);

    expect("quotes and backslashes stay escaped, slash is not escaped",
           &conf,
           "{\"message\":\"say \\\"hi\\\" \\\\ a/b \\/ c\"}",
           "\"message\":\"say \\\"hi\\\" \\\\ a/b / c\"", NULL, NULL);

    expect("unicode escapes become UTF-8, raw UTF-8 is kept", &conf,
           "{\"message\":\"\\u00e9\\u20ac\\ud83d\\ude00 \xc3\xa9\xe2\x82\xac"
           "\xf0\x9f\x98\x80\"}",
           "\"message\":\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80 \xc3\xa9"
           "\xe2\x82\xac\xf0\x9f\x98\x80\"", NULL, NULL);

    expect("empty object without required fields gives empty members",
           (pass = conf_of(NULL, NULL), &pass), "{}", "", NULL, NULL);

    expect("object of reserved keys only gives empty members", &pass,
           "{\"type\":\"x\",\"timestamp\":1}", "", NULL, NULL);

    expect("order and duplicate ordinary keys are kept", &conf,
           "{\"z\":1,\"message\":\"m\",\"a\":2,\"z\":3}",
           "\"z\":1,\"message\":\"m\",\"a\":2,\"z\":3", NULL, NULL);

    expect("empty key is kept", &conf,
           "{\"\":\"\",\"message\":\"m\"}",
           "\"\":\"\",\"message\":\"m\"", NULL, NULL);
}


static void
test_no_raw_newlines(void)
{
    int                                 rc, ok;
    size_t                              i;
    ngx_http_webhook_sse_json_conf_t    conf;
    ngx_http_webhook_sse_json_result_t  res;

    static const char  body[] =
        "{\"message\":\"a\\nb\\rc\\r\\nd\",\"e\\n\":[\"\\n\\n\","
        "{\"\\r\":\"data: x\\n\\nid: 1\\n\"}],\"f\":\"\\u000a\\u000D\"}";

    conf = conf_default();

    rc = ngx_http_webhook_sse_json_parse(&conf, (const unsigned char *) body,
                                         sizeof(body) - 1, &res);

    ok = (rc == OK);

    for (i = 0; ok && i < res.members_len; i++) {
        if (res.members[i] < 0x20) {
            ok = 0;
        }
    }

    check(ok, "no raw control byte in members of escaped line breaks");

    ngx_http_webhook_sse_json_free(&res);
}


static void
test_passthrough(void)
{
    ngx_http_webhook_sse_json_conf_t  conf;

    conf = conf_of("request_id", NULL);

    expect("passthrough without message field", &conf,
           "{\"request_id\":\"r-1\",\"status\":\"done\","
           "\"response\":{\"x\":[1,2],\"y\":\"z\"}}",
           "\"request_id\":\"r-1\",\"status\":\"done\","
           "\"response\":{\"x\":[1,2],\"y\":\"z\"}", "r-1", NULL);

    expect("passthrough allows a non-string message", &conf,
           "{\"message\":{\"a\":1}}", "\"message\":{\"a\":1}", NULL, NULL);

    conf = conf_of(NULL, NULL);

    expect("no fields configured: any object, no session", &conf,
           "{\"sessionId\":5,\"message\":\"\"}",
           "\"sessionId\":5,\"message\":\"\"", NULL, NULL);

    conf = conf_of("sessionId", "message");

    expect("absent session is a broadcast", &conf,
           "{\"message\":\"hello\"}", "\"message\":\"hello\"", NULL, NULL);
}


static void
test_drop_key(void)
{
    ngx_http_webhook_sse_json_conf_t  conf;

    /* webhook_session names the target: the body's field is dropped */
    conf = conf_of(NULL, "message");
    conf.drop_key = (const unsigned char *) "sessionId";
    conf.drop_key_len = sizeof("sessionId") - 1;

    expect("drop key removes the top-level field with its value", &conf,
           "{\"sessionId\":{\"a\":[1]},\"message\":\"m\","
           "\"x\":{\"sessionId\":2}}",
           "\"message\":\"m\",\"x\":{\"sessionId\":2}", NULL, NULL);

    expect("drop key absent from the body changes nothing", &conf,
           "{\"message\":\"m\"}", "\"message\":\"m\"", NULL, NULL);
}


static void
test_dotted_paths(void)
{
    ngx_http_webhook_sse_json_conf_t  conf;

    conf = conf_of("data.conversation_id", "message");

    expect("dotted session path found", &conf,
           "{\"message\":\"m\",\"data\":{\"x\":{\"conversation_id\":\"no\"},"
           "\"conversation_id\":\"c1\",\"y\":1}}",
           "\"message\":\"m\",\"data\":{\"x\":{\"conversation_id\":\"no\"},"
           "\"conversation_id\":\"c1\",\"y\":1}", "c1", NULL);

    expect("dotted path: intermediate value is a string", &conf,
           "{\"message\":\"m\",\"data\":\"conversation_id\"}",
           "\"message\":\"m\",\"data\":\"conversation_id\"", NULL, NULL);

    expect("dotted path: intermediate value is an array", &conf,
           "{\"message\":\"m\",\"data\":[{\"conversation_id\":\"c\"}]}",
           "\"message\":\"m\",\"data\":[{\"conversation_id\":\"c\"}]",
           NULL, NULL);

    expect("dotted path: key at the wrong depth", &conf,
           "{\"message\":\"m\",\"conversation_id\":\"top\","
           "\"x\":{\"data\":{\"conversation_id\":\"deep\"}}}",
           "\"message\":\"m\",\"conversation_id\":\"top\","
           "\"x\":{\"data\":{\"conversation_id\":\"deep\"}}", NULL, NULL);

    expect("dotted path: key named with the dot is not the path", &conf,
           "{\"message\":\"m\",\"data.conversation_id\":\"c\"}",
           "\"message\":\"m\",\"data.conversation_id\":\"c\"", NULL, NULL);

    expect("dotted path: found after an earlier sibling object", &conf,
           "{\"message\":\"m\",\"other\":{\"conversation_id\":\"o\"},"
           "\"data\":{\"a\":{\"b\":[]},\"conversation_id\":\"c2\"}}",
           "\"message\":\"m\",\"other\":{\"conversation_id\":\"o\"},"
           "\"data\":{\"a\":{\"b\":[]},\"conversation_id\":\"c2\"}",
           "c2", NULL);

    expect("dotted path: duplicate through two objects", &conf,
           "{\"message\":\"m\",\"data\":{\"conversation_id\":\"a\"},"
           "\"data\":{\"conversation_id\":\"b\"}}",
           NULL, NULL, "duplicate field \"data.conversation_id\"");

    expect("dotted path: not a string", &conf,
           "{\"message\":\"m\",\"data\":{\"conversation_id\":42}}",
           NULL, NULL, "field \"data.conversation_id\" must be a string");

    conf = conf_of("sessionId", "payload.text.body");

    expect("three-level message path present", &conf,
           "{\"payload\":{\"text\":{\"body\":\"b\"}}}",
           "\"payload\":{\"text\":{\"body\":\"b\"}}", NULL, NULL);

    expect("three-level message path absent", &conf,
           "{\"payload\":{\"text\":\"body\"}}",
           NULL, NULL, "field \"payload.text.body\" is required");

    expect("three-level message path empty", &conf,
           "{\"payload\":{\"text\":{\"body\":\"\"}}}",
           NULL, NULL, "field \"payload.text.body\" must be a non-empty "
           "string");

    conf = conf_of("sessionId", "message");

    expect("path without dots does not match nested keys", &conf,
           "{\"message\":\"m\",\"o\":{\"sessionId\":\"x\"}}",
           "\"message\":\"m\",\"o\":{\"sessionId\":\"x\"}", NULL, NULL);

    expect("path matches the unescaped key", &conf,
           "{\"m\\u0065ssage\":\"m\",\"session\\u0049d\":\"s\"}",
           "\"message\":\"m\",\"sessionId\":\"s\"", "s", NULL);

    conf = conf_of("SessionId", "message");

    expect("path matching is case-sensitive", &conf,
           "{\"message\":\"m\",\"sessionId\":\"s\"}",
           "\"message\":\"m\",\"sessionId\":\"s\"", NULL, NULL);

    conf = conf_of("type", "message");

    expect("a field under a reserved key is read though dropped", &conf,
           "{\"message\":\"m\",\"type\":\"t1\"}",
           "\"message\":\"m\"", "t1", NULL);
}


static void
test_invalid_json(void)
{
    ngx_http_webhook_sse_json_conf_t  conf, pass;

    static const char  *bodies[] = {
        " ",
        "\n\t ",
        "{",
        "}",
        "{\"message\":\"m\"",
        "{\"message\":}",
        "{\"message\":\"m\",}",
        "{\"message\" \"m\"}",
        "{'message':'m'}",
        "{message:\"m\"}",
        "{\"message\":\"m\",\"a\":[1,]}",
        "{\"message\":\"m\",\"a\":01}",
        "{\"message\":\"m\",\"a\":1.}",
        "{\"message\":\"m\",\"a\":+1}",
        "{\"message\":\"m\",\"a\":NaN}",
        "{\"message\":\"m\",\"a\":tru}",
        "{\"message\":\"m\",\"a\":\"\\x\"}",
        "{\"message\":\"m\",\"a\":\"\\u12\"}",
        "{\"message\":\"unterminated}",
        "{\"message\":\"raw\nnewline\"}",
        "{\"message\":\"raw\ttab\"}",
        "{/* comment */\"message\":\"m\"}",
        "{\"message\":\"m\"} // comment",
        "{\"message\":\"m\"} x",
        "{\"message\":\"m\"}{}",
        "{\"message\":\"m\"} {\"message\":\"n\"}",
        "{\"message\":\"m\"}]",
        "{\"message\":\"m\"}}",
        "{\"message\":\"m\",\"a\":[}",
        "{\"message\":\"m\",\"a\":{]}",
        "\xef\xbb\xbf{\"message\":\"m\"}",
        NULL
    };

    const char  **b;
    char          name[200];

    conf = conf_default();

    expect_n("empty body", &conf, "", 0, NULL, NULL, "invalid JSON");
    expect_n("NULL body", &conf, NULL, 0, NULL, NULL, "invalid JSON");

    for (b = bodies; *b; b++) {
        snprintf(name, sizeof(name), "syntax error rejected: %.100s", *b);
        expect(name, &conf, *b, NULL, NULL, "invalid JSON");
    }

    expect_n("NUL byte inside a string", &conf,
             "{\"message\":\"a\0b\"}", 17, NULL, NULL, "invalid JSON");
    expect_n("NUL byte inside a key", &conf,
             "{\"mes\0sage\":\"ab\"}", 17, NULL, NULL, "invalid JSON");
    expect_n("NUL byte between tokens", &conf,
             "{\"message\":\0\"ab\"}", 17, NULL, NULL, "invalid JSON");
    expect_n("NUL byte after the object", &conf,
             "{\"message\":\"ab\"}\0", 17, NULL, NULL, "invalid JSON");
    expect_n("NUL byte before the object", &conf,
             "\0{\"message\":\"ab\"}", 17, NULL, NULL, "invalid JSON");
    expect_n("length counts, not NUL termination", &conf,
             "{\"message\":\"ab\"}garbage", 16, "\"message\":\"ab\"",
             NULL, NULL);

    expect("a field error does not hide a syntax error later", &conf,
           "{\"message\":5,\"a\":", NULL, NULL, "invalid JSON");

    expect("a session error does not hide trailing garbage", &conf,
           "{\"message\":\"m\",\"sessionId\":null} x", NULL, NULL,
           "invalid JSON");

    pass = conf_of(NULL, NULL);

    expect("invalid JSON in passthrough mode", &pass, "{\"a\":1,}",
           NULL, NULL, "invalid JSON");
}


static void
test_invalid_utf8(void)
{
    ngx_http_webhook_sse_json_conf_t  conf;

    static const struct {
        const char  *name;
        const char  *bytes;
    } bad[] = {
        { "lone continuation byte", "\x80" },
        { "byte 0xff", "\xff" },
        { "byte 0xfe", "\xfe" },
        { "overlong slash C0 AF", "\xc0\xaf" },
        { "overlong NUL C0 80", "\xc0\x80" },
        { "overlong C1 BF", "\xc1\xbf" },
        { "overlong 3 bytes E0 80 AF", "\xe0\x80\xaf" },
        { "overlong 4 bytes F0 80 80 AF", "\xf0\x80\x80\xaf" },
        { "surrogate ED A0 80", "\xed\xa0\x80" },
        { "surrogate ED BF BF", "\xed\xbf\xbf" },
        { "above U+10FFFF F4 90 80 80", "\xf4\x90\x80\x80" },
        { "F5 lead byte", "\xf5\x80\x80\x80" },
        { "truncated 2-byte", "\xc3" },
        { "truncated 3-byte", "\xe2\x82" },
        { "truncated 4-byte", "\xf0\x9f\x98" },
        { "bad continuation", "\xe2\x28\xa1" },
        { NULL, NULL }
    };

    int   i;
    char  body[100], name[200];

    conf = conf_default();

    for (i = 0; bad[i].name; i++) {
        snprintf(body, sizeof(body), "{\"message\":\"a%sb\"}", bad[i].bytes);
        snprintf(name, sizeof(name), "invalid UTF-8 in a value: %s",
                 bad[i].name);
        expect(name, &conf, body, NULL, NULL, "invalid JSON");

        snprintf(body, sizeof(body), "{\"message\":\"m\",\"k%s\":1}",
                 bad[i].bytes);
        snprintf(name, sizeof(name), "invalid UTF-8 in a key: %s",
                 bad[i].name);
        expect(name, &conf, body, NULL, NULL, "invalid JSON");
    }

    expect("invalid UTF-8 deep in a dropped value", &conf,
           "{\"message\":\"m\",\"type\":[{\"a\":\"\xed\xa0\x80\"}]}",
           NULL, NULL, "invalid JSON");

    expect("invalid UTF-8 outside strings", &conf,
           "{\"message\":\"m\"\xc3\xa9}", NULL, NULL, "invalid JSON");

    expect("escaped lone low surrogate", &conf,
           "{\"message\":\"\\udc00\"}", NULL, NULL, "invalid JSON");

    expect("boundary code points accepted", &conf,
           "{\"message\":\"\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf"
           "\xee\x80\x80\xef\xbf\xbf\xf0\x90\x80\x80\xf4\x8f\xbf\xbf\"}",
           "\"message\":\"\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf"
           "\xee\x80\x80\xef\xbf\xbf\xf0\x90\x80\x80\xf4\x8f\xbf\xbf\"",
           NULL, NULL);
}


static void
test_not_object(void)
{
    ngx_http_webhook_sse_json_conf_t  conf;

    static const char  *bodies[] = {
        "[]", "[{\"message\":\"m\"}]", "\"message\"", "1", "-2.5", "null",
        "true", "false", " [1,2", NULL
    };

    const char  **b;
    char          name[100];

    conf = conf_default();

    for (b = bodies; *b; b++) {
        snprintf(name, sizeof(name), "not an object: %s", *b);
        expect(name, &conf, *b, NULL, NULL, "body must be a JSON object");
    }
}


static void *
xmalloc(size_t size)
{
    void  *p;

    p = malloc(size);
    if (p == NULL) {
        printf("Bail out! out of memory\n");
        exit(1);
    }

    return p;
}


/* a, b and c in a new string */

static char *
concat(const char *a, const char *b, const char *c)
{
    char    *s;
    size_t   a_len, b_len, c_len;

    a_len = strlen(a);
    b_len = strlen(b);
    c_len = strlen(c);

    s = xmalloc(a_len + b_len + c_len + 1);

    memcpy(s, a, a_len);
    memcpy(s + a_len, b, b_len);
    memcpy(s + a_len + b_len, c, c_len + 1);

    return s;
}


static char *
nested(int levels, const char *open, const char *inner, const char *close)
{
    int     i;
    char   *s, *p;
    size_t  open_len, inner_len, close_len;

    open_len = strlen(open);
    inner_len = strlen(inner);
    close_len = strlen(close);

    s = xmalloc(levels * (open_len + close_len) + inner_len + 1);
    p = s;

    for (i = 0; i < levels; i++) {
        memcpy(p, open, open_len);
        p += open_len;
    }

    memcpy(p, inner, inner_len);
    p += inner_len;

    for (i = 0; i < levels; i++) {
        memcpy(p, close, close_len);
        p += close_len;
    }

    *p = '\0';

    return s;
}


static void
test_depth(void)
{
    char                              *body, *members, *inner;
    clock_t                            start;
    ngx_http_webhook_sse_json_conf_t   conf;

    conf = conf_default();

    /* the top object is level 1, 63 arrays more make 64 */

    inner = nested(63, "[", "", "]");
    body = concat("{\"message\":\"m\",\"a\":", inner, "}");
    members = concat("\"message\":\"m\",\"a\":", inner, "");
    expect("64 levels of arrays accepted", &conf, body, members, NULL, NULL);
    free(inner);
    free(body);
    free(members);

    inner = nested(64, "[", "", "]");
    body = concat("{\"message\":\"m\",\"a\":", inner, "}");
    expect("65 levels of arrays rejected", &conf, body, NULL, NULL,
           "JSON nested too deeply");
    free(inner);
    free(body);

    inner = nested(63, "{\"a\":", "1", "}");
    body = concat("{\"message\":\"m\",\"o\":", inner, "}");
    members = concat("\"message\":\"m\",\"o\":", inner, "");
    expect("64 levels of objects accepted", &conf, body, members, NULL, NULL);
    free(inner);
    free(body);
    free(members);

    inner = nested(64, "{\"a\":", "1", "}");
    body = concat("{\"message\":\"m\",\"o\":", inner, "}");
    expect("65 levels of objects rejected", &conf, body, NULL, NULL,
           "JSON nested too deeply");
    free(inner);
    free(body);

    inner = nested(64, "[", "", "]");
    body = concat("{\"message\":\"m\",\"type\":", inner, "}");
    expect("65 levels inside a dropped value rejected", &conf, body,
           NULL, NULL, "JSON nested too deeply");
    free(inner);
    free(body);

    inner = nested(64, "[", "", "]");
    body = concat("{\"message\":\"m\",\"a\":", inner, "");
    body[strlen(body) - 40] = '\0';
    expect("65 levels unterminated rejected as too deep", &conf, body,
           NULL, NULL, "JSON nested too deeply");
    free(inner);
    free(body);

    start = clock();

    body = nested(100000, "[", "", "");
    expect("100000 [ rejected", &conf, body, NULL, NULL,
           "body must be a JSON object");
    free(body);

    inner = nested(100000, "[", "", "");
    body = concat("{\"message\":\"m\",\"a\":", inner, "");
    expect("object holding 100000 [ rejected", &conf, body, NULL, NULL,
           "JSON nested too deeply");
    free(inner);
    free(body);

    inner = nested(100000, "{\"a\":", "1", "}");
    body = concat("{\"message\":\"m\",\"o\":", inner, "}");
    expect("100000 nested objects rejected", &conf, body, NULL, NULL,
           "JSON nested too deeply");
    free(inner);
    free(body);

    check((double) (clock() - start) / CLOCKS_PER_SEC < 1.0,
          "deep nesting rejected fast");
}


static void
test_message_field(void)
{
    ngx_http_webhook_sse_json_conf_t  conf;

    static const char  *values[] = {
        "\"\"", "1", "0", "null", "true", "false", "{}", "{\"a\":\"b\"}",
        "[]", "[\"m\"]", NULL
    };

    const char  **v;
    char          body[100], name[200];

    conf = conf_default();

    expect("message absent", &conf, "{\"sessionId\":\"s\"}",
           NULL, NULL, "field \"message\" is required");

    expect("message absent from empty object", &conf, "{}",
           NULL, NULL, "field \"message\" is required");

    for (v = values; *v; v++) {
        snprintf(body, sizeof(body), "{\"message\":%s}", *v);
        snprintf(name, sizeof(name), "message rejected: %s", *v);
        expect(name, &conf, body, NULL, NULL,
               "field \"message\" must be a non-empty string");
    }

    expect("message duplicate", &conf,
           "{\"message\":\"a\",\"message\":\"b\"}",
           NULL, NULL, "duplicate field \"message\"");

    expect("message duplicate, second written with an escape", &conf,
           "{\"message\":\"a\",\"messag\\u0065\":\"b\"}",
           NULL, NULL, "duplicate field \"message\"");

    expect("message of one space accepted", &conf,
           "{\"message\":\" \"}", "\"message\":\" \"", NULL, NULL);

    expect("message of an escaped NUL accepted", &conf,
           "{\"message\":\"\\u0000\"}", "\"message\":\"\\u0000\"",
           NULL, NULL);

    conf = conf_of("session_id", "text");

    expect("configured message name in required error", &conf,
           "{\"message\":\"m\"}", NULL, NULL, "field \"text\" is required");

    expect("configured message name in type error", &conf,
           "{\"text\":7}", NULL, NULL,
           "field \"text\" must be a non-empty string");

    expect("configured message name in duplicate error", &conf,
           "{\"text\":\"a\",\"text\":\"b\"}", NULL, NULL,
           "duplicate field \"text\"");

    expect("configured names accepted", &conf,
           "{\"text\":\"t\",\"session_id\":\"abc\"}",
           "\"text\":\"t\",\"session_id\":\"abc\"", "abc", NULL);
}


static void
test_session_field(void)
{
    char                              *body, *members, *s;
    ngx_http_webhook_sse_json_conf_t   conf;

    static const char  *types[] = {
        "1", "0", "null", "true", "false", "{}", "{\"a\":\"b\"}", "[]",
        "[\"s\"]", NULL
    };

    static const char  *invalid[] = {
        "\"\"", "\"a\\nb\"", "\"a\\rb\"", "\"\\t\"", "\"\\u0000\"",
        "\"a\\u001fb\"", "\"a\\u007fb\"", "\"a\x7f" "b\"", NULL
    };

    const char  **v;
    char          buf[100], name[200];

    conf = conf_default();

    for (v = types; *v; v++) {
        snprintf(buf, sizeof(buf), "{\"message\":\"m\",\"sessionId\":%s}",
                 *v);
        snprintf(name, sizeof(name), "session not a string: %s", *v);
        expect(name, &conf, buf, NULL, NULL,
               "field \"sessionId\" must be a string");
    }

    for (v = invalid; *v; v++) {
        snprintf(buf, sizeof(buf), "{\"message\":\"m\",\"sessionId\":%s}",
                 *v);
        snprintf(name, sizeof(name), "session invalid: %s", *v);
        expect(name, &conf, buf, NULL, NULL,
               "field \"sessionId\" must be 1 to 256 bytes without "
               "control characters");
    }

    expect("session duplicate", &conf,
           "{\"message\":\"m\",\"sessionId\":\"a\",\"sessionId\":\"a\"}",
           NULL, NULL, "duplicate field \"sessionId\"");

    expect("session duplicate of another type", &conf,
           "{\"sessionId\":\"a\",\"message\":\"m\",\"sessionId\":1}",
           NULL, NULL, "duplicate field \"sessionId\"");

    expect("first field error stands", &conf,
           "{\"sessionId\":1,\"message\":2}", NULL, NULL,
           "field \"sessionId\" must be a string");

    expect("session before message", &conf,
           "{\"sessionId\":\"x\",\"message\":\"m\"}",
           "\"sessionId\":\"x\",\"message\":\"m\"", "x", NULL);

    expect("session is unescaped", &conf,
           "{\"message\":\"m\",\"sessionId\":\"a\\\"b\\\\c\\/d\\u00e9\"}",
           "\"message\":\"m\",\"sessionId\":\"a\\\"b\\\\c/d\xc3\xa9\"",
           "a\"b\\c/d\xc3\xa9", NULL);

    expect("session with spaces and symbols", &conf,
           "{\"message\":\"m\",\"sessionId\":\" <a&b> : data \"}",
           "\"message\":\"m\",\"sessionId\":\" <a&b> : data \"",
           " <a&b> : data ", NULL);

    s = nested(256, "x", "", "");
    body = concat("{\"message\":\"m\",\"sessionId\":\"", s, "\"}");
    members = concat("\"message\":\"m\",\"sessionId\":\"", s, "\"");
    expect("session of 256 bytes accepted", &conf, body, members, s, NULL);
    free(s);
    free(body);
    free(members);

    s = nested(257, "x", "", "");
    body = concat("{\"message\":\"m\",\"sessionId\":\"", s, "\"}");
    expect("session of 257 bytes rejected", &conf, body, NULL, NULL,
           "field \"sessionId\" must be 1 to 256 bytes without control "
           "characters");
    free(s);
    free(body);

    /* 128 two-byte characters: 256 bytes, and one more */

    s = nested(128, "\xc3\xa9", "", "");
    body = concat("{\"message\":\"m\",\"sessionId\":\"", s, "\"}");
    members = concat("\"message\":\"m\",\"sessionId\":\"", s, "\"");
    expect("session of 256 UTF-8 bytes accepted", &conf, body, members, s,
           NULL);
    free(s);
    free(body);
    free(members);

    s = nested(128, "\xc3\xa9", "a", "");
    body = concat("{\"message\":\"m\",\"sessionId\":\"", s, "\"}");
    expect("session of 257 UTF-8 bytes rejected", &conf, body, NULL, NULL,
           "field \"sessionId\" must be 1 to 256 bytes without control "
           "characters");
    free(s);
    free(body);
}


static void
test_long_path(void)
{
    int                                 rc, ok;
    char                               *path, *body, *members;
    size_t                              len;
    unsigned char                      *e;
    ngx_http_webhook_sse_json_conf_t    conf;
    ngx_http_webhook_sse_json_result_t  res;

    path = nested(300, "a", "", "");

    conf = conf_of("sessionId", path);

    rc = ngx_http_webhook_sse_json_parse(&conf,
                                         (const unsigned char *) "{}", 2,
                                         &res);

    len = strlen(res.error);

    ok = rc == INVALID
         && len < NGX_HTTP_WEBHOOK_SSE_JSON_ERROR_LEN
         && strncmp(res.error, "field \"aaaa", 11) == 0
         && len > 13
         && strcmp(res.error + len - 16, "...\" is required") == 0;

    if (!check(ok, "long path truncated in the error")) {
        printf("#   error \"%s\"\n", res.error);
    }

    ngx_http_webhook_sse_json_free(&res);
    free(path);

    /* a cut must not split a multi-byte character */

    path = nested(150, "\xe2\x82\xac", "", "");

    conf = conf_of(path, "message");

    rc = ngx_http_webhook_sse_json_parse(&conf, (const unsigned char *)
                                         "{\"message\":\"m\",\"x\":1}", 21,
                                         &res);

    ok = (rc == OK && res.session == NULL);

    check(ok, "long multi-byte path absent is fine");
    ngx_http_webhook_sse_json_free(&res);

    conf = conf_of("sessionId", path);

    rc = ngx_http_webhook_sse_json_parse(&conf,
                                         (const unsigned char *) "{}", 2,
                                         &res);

    len = strlen(res.error);
    e = (unsigned char *) res.error;

    ok = rc == INVALID
         && len < NGX_HTTP_WEBHOOK_SSE_JSON_ERROR_LEN
         && ngx_http_webhook_sse_json_session_valid(e, len > 256 ? 256 : len)
         && strcmp(res.error + len - 16, "...\" is required") == 0;

    if (!check(ok, "truncated multi-byte path stays valid UTF-8")) {
        printf("#   error \"%s\"\n", res.error);
    }

    ngx_http_webhook_sse_json_free(&res);
    free(path);

    /* more components than levels: never present */

    path = nested(70, "a.", "a", "");
    conf = conf_of(path, NULL);

    expect("path deeper than the limit is absent", &conf,
           "{\"a\":{\"a\":1}}", "\"a\":{\"a\":1}", NULL, NULL);

    free(path);

    /* 64 components reach a key in the deepest object allowed */

    path = nested(63, "a.", "a", "");
    conf = conf_of(path, NULL);

    body = nested(64, "{\"a\":", "\"deep\"", "}");
    members = xmalloc(strlen(body));
    strcpy(members, body + 1);
    members[strlen(members) - 1] = '\0';

    expect("path of 64 components found", &conf, body, members, "deep",
           NULL);

    free(body);
    free(members);
    free(path);
}


static void
test_free(void)
{
    int                                 rc, ok;
    ngx_http_webhook_sse_json_conf_t    conf;
    ngx_http_webhook_sse_json_result_t  res;

    memset(&res, 0, sizeof(res));
    ngx_http_webhook_sse_json_free(&res);
    ngx_http_webhook_sse_json_free(&res);

    check(result_clean(&res), "free on a zeroed result, twice");

    conf = conf_default();

    rc = ngx_http_webhook_sse_json_parse(&conf, (const unsigned char *)
                                         "{\"message\":\"m\",\"sessionId\":"
                                         "\"s\"}", 31, &res);
    ok = (rc == OK && res.session != NULL && res.members != NULL);

    ngx_http_webhook_sse_json_free(&res);
    ok = ok && result_clean(&res);
    ngx_http_webhook_sse_json_free(&res);

    check(ok, "free after success, twice");

    rc = ngx_http_webhook_sse_json_parse(&conf, (const unsigned char *)
                                         "{\"sessionId\":\"s\",\"message\":1}",
                                         29, &res);
    ok = (rc == INVALID && result_clean(&res));
    ngx_http_webhook_sse_json_free(&res);

    check(ok, "session found before an error is released");

    memset(&res, 0xa5, sizeof(res));

    rc = ngx_http_webhook_sse_json_parse(&conf, (const unsigned char *)
                                         "{\"message\":\"m\"", 14, &res);
    ok = (rc == INVALID && result_clean(&res)
          && strcmp(res.error, "invalid JSON") == 0);

    check(ok, "parse initializes the result fully");
}


static oom_alloc_t  oom;

/* inputs, runs with a failing allocation and NOMEM, for the summary */
static unsigned long  oom_inputs;
static unsigned long  oom_runs;
static unsigned long  oom_nomem;


static yajl_alloc_funcs  oom_funcs = {
    oom_malloc, oom_realloc, oom_free, &oom
};


/* the outcome of a parse, kept to compare others with it */

typedef struct {
    int             rc;
    unsigned char  *members;
    size_t          members_len;
    unsigned char  *session;
    size_t          session_len;
    char            error[NGX_HTTP_WEBHOOK_SSE_JSON_ERROR_LEN];
} outcome_t;


static void
outcome_keep(outcome_t *o, int rc,
    const ngx_http_webhook_sse_json_result_t *res)
{
    o->rc = rc;
    o->members = NULL;
    o->members_len = res->members_len;
    o->session = NULL;
    o->session_len = res->session_len;

    if (res->members != NULL) {
        o->members = xmalloc(res->members_len + 1);
        memcpy(o->members, res->members, res->members_len + 1);
    }

    if (res->session != NULL) {
        o->session = xmalloc(res->session_len + 1);
        memcpy(o->session, res->session, res->session_len + 1);
    }

    memcpy(o->error, res->error, sizeof(o->error));
}


static int
outcome_same(const outcome_t *o, int rc,
    const ngx_http_webhook_sse_json_result_t *res)
{
    return rc == o->rc
           && (res->members == NULL) == (o->members == NULL)
           && res->members_len == o->members_len
           && (o->members == NULL
               || memcmp(res->members, o->members, o->members_len + 1) == 0)
           && (res->session == NULL) == (o->session == NULL)
           && res->session_len == o->session_len
           && (o->session == NULL
               || memcmp(res->session, o->session, o->session_len + 1) == 0)
           && strcmp(res->error, o->error) == 0;
}


static void
outcome_free(outcome_t *o)
{
    free(o->members);
    free(o->session);
}


/*
 * Parses body with allocation number k failing (from k on with persist),
 * k = 1 .. n, n being the allocations of a normal run; then with k = n + 1,
 * which must not fail at all.  Each run must give NOMEM with nothing left
 * in the result or exactly the normal outcome, and leave no block behind
 * once the result is freed (twice).  Returns 0 and sets why on the first
 * broken run.
 */

static int
oom_each(const ngx_http_webhook_sse_json_conf_t *conf,
    const unsigned char *body, size_t len, const outcome_t *normal,
    unsigned long n, int persist, char *why, size_t why_len)
{
    int                                 rc;
    unsigned long                       k;
    ngx_http_webhook_sse_json_result_t  res;

    ngx_http_webhook_sse_json_set_alloc(&oom_funcs);

    for (k = 1; k <= n + 1; k++) {
        memset(&oom, 0, sizeof(oom_alloc_t));
        oom.fail_at = k;
        oom.persist = persist;

        memset(&res, 0x5a, sizeof(res));

        rc = ngx_http_webhook_sse_json_parse(conf, body, len, &res);

        if (k <= n) {
            oom_runs++;
        }

        if (k <= n && oom.failed == 0) {
            snprintf(why, why_len, "allocation %lu never made", k);
            break;
        }

        if (k > n && (oom.failed != 0 || !outcome_same(normal, rc, &res))) {
            snprintf(why, why_len, "run without a failure differs (rc %d, "
                     "%lu allocations)", rc, oom.calls);
            break;
        }

        if (rc == NOMEM) {
            if (!result_clean(&res)
                || strcmp(res.error, "out of memory") != 0)
            {
                snprintf(why, why_len, "allocation %lu failing: NOMEM with "
                         "something in the result, error \"%s\"", k,
                         res.error);
                break;
            }

            oom_nomem += (k <= n);

        } else if (!outcome_same(normal, rc, &res)) {
            snprintf(why, why_len, "allocation %lu failing: rc %d, error "
                     "\"%s\", not the normal outcome", k, rc, res.error);
            break;
        }

        ngx_http_webhook_sse_json_free(&res);
        ngx_http_webhook_sse_json_free(&res);

        if (!result_clean(&res) || oom.live != 0) {
            snprintf(why, why_len, "allocation %lu failing: %ld blocks left",
                     k, oom.live);
            break;
        }
    }

    if (k <= n + 1) {
        ngx_http_webhook_sse_json_free(&res);
    }

    ngx_http_webhook_sse_json_set_alloc(NULL);

    return k > n + 1;
}


/*
 * A normal run of body through the counting allocator: its outcome must be
 * that of malloc and it must give back every block.  Sets *n to the number
 * of allocations it made (0 when the parse's arena held all of yajl's);
 * returns 0 when it broke one of these, with why set.
 */

static int
oom_count(const ngx_http_webhook_sse_json_conf_t *conf,
    const unsigned char *body, size_t len, outcome_t *normal,
    unsigned long *n, char *why, size_t why_len)
{
    int                                 rc, ok;
    ngx_http_webhook_sse_json_result_t  res;

    rc = ngx_http_webhook_sse_json_parse(conf, body, len, &res);
    outcome_keep(normal, rc, &res);
    ngx_http_webhook_sse_json_free(&res);

    memset(&oom, 0, sizeof(oom_alloc_t));
    ngx_http_webhook_sse_json_set_alloc(&oom_funcs);

    rc = ngx_http_webhook_sse_json_parse(conf, body, len, &res);

    ok = outcome_same(normal, rc, &res);
    *n = oom.calls;

    ngx_http_webhook_sse_json_free(&res);
    ngx_http_webhook_sse_json_set_alloc(NULL);

    if (!ok || oom.live != 0) {
        snprintf(why, why_len, "counting allocator: rc %d (with malloc %d), "
                 "%lu allocations, %ld blocks left", rc, normal->rc, *n,
                 oom.live);
        return 0;
    }

    return 1;
}


/*
 * One input through the counting allocator, then through every single
 * and every persistent allocation failure.
 */

static void
oom_check(const char *name, const ngx_http_webhook_sse_json_conf_t *conf,
    const unsigned char *body, size_t len, int expected_rc)
{
    int             ok;
    char            test[300], why[200];
    outcome_t       normal;
    unsigned long   n;

    oom_inputs++;

    ok = oom_count(conf, body, len, &normal, &n, why, sizeof(why));

    snprintf(test, sizeof(test), "OOM %s: counting allocator gives the "
             "outcome of malloc, frees all", name);

    if (!check(ok && normal.rc == expected_rc, test)) {
        printf("#   %s; rc %d, expected %d, error \"%s\"\n",
               ok ? "" : why, normal.rc, expected_rc, normal.error);
        outcome_free(&normal);
        return;
    }

    printf("#   %s: %lu allocations\n", name, n);

    if (n == 0) {
        /* yajl's blocks all fit in the arena: no allocation can fail */
        outcome_free(&normal);
        return;
    }

    snprintf(test, sizeof(test), "OOM %s: each of %lu allocations failing: "
             "NOMEM or the normal outcome, nothing left", name, n);

    if (!check(oom_each(conf, body, len, &normal, n, 0, why, sizeof(why)),
               test))
    {
        printf("#   %s\n", why);
    }

    snprintf(test, sizeof(test), "OOM %s: allocations failing from each "
             "of %lu on: NOMEM or the normal outcome, nothing left", name, n);

    if (!check(oom_each(conf, body, len, &normal, n, 1, why, sizeof(why)),
               test))
    {
        printf("#   %s\n", why);
    }

    outcome_free(&normal);
}


/* the conf's alloc of test_alloc: a bump allocator in a static buffer */

typedef struct {
    unsigned char  buf[1024];
    size_t         used;
    unsigned long  calls;
    int            fail;
} bump_t;

static bump_t  bump;


static void *
bump_alloc(void *data, size_t size)
{
    void    *p;
    bump_t  *b;

    b = data;
    b->calls++;

    if (b->fail || size > sizeof(b->buf) - b->used) {
        return NULL;
    }

    p = b->buf + b->used;
    b->used += size;

    return p;
}


static void
test_alloc(void)
{
    int                                 rc, ok;
    unsigned long                       calls;
    ngx_http_webhook_sse_json_conf_t    conf;
    ngx_http_webhook_sse_json_result_t  res;

    static const char  body[] = "{\"message\":\"m\",\"sessionId\":\"s\"}";

    conf = conf_default();

    /* every allocation goes through the functions set */

    memset(&oom, 0, sizeof(oom_alloc_t));
    ngx_http_webhook_sse_json_set_alloc(&oom_funcs);

    rc = ngx_http_webhook_sse_json_parse(&conf, (const unsigned char *) body,
                                         sizeof(body) - 1, &res);

    ok = (rc == OK && oom.calls > 0 && oom.live == 2);

    ngx_http_webhook_sse_json_free(&res);

    check(ok && oom.live == 0, "set_alloc: yajl's blocks and the result "
          "come from the allocator set, and go back to it");

    /* NULL restores malloc */

    ngx_http_webhook_sse_json_set_alloc(NULL);
    calls = oom.calls;

    rc = ngx_http_webhook_sse_json_parse(&conf, (const unsigned char *) body,
                                         sizeof(body) - 1, &res);
    ok = (rc == OK && res.session != NULL);
    ngx_http_webhook_sse_json_free(&res);

    check(ok && oom.calls == calls, "set_alloc(NULL) restores malloc");

    /* a body too short to allocate anything */

    memset(&oom, 0, sizeof(oom_alloc_t));
    oom.fail_at = 1;
    oom.persist = 1;
    ngx_http_webhook_sse_json_set_alloc(&oom_funcs);

    rc = ngx_http_webhook_sse_json_parse(&conf, (const unsigned char *) "", 0,
                                         &res);
    ok = (rc == INVALID && oom.calls == 0);
    ngx_http_webhook_sse_json_free(&res);
    ngx_http_webhook_sse_json_set_alloc(NULL);

    check(ok, "empty body rejected without allocating");

    /* the result's strings from the conf's alloc, left alone by _free */

    memset(&oom, 0, sizeof(oom_alloc_t));
    ngx_http_webhook_sse_json_set_alloc(&oom_funcs);

    bump.used = 0;
    bump.calls = 0;
    bump.fail = 0;
    conf.alloc = bump_alloc;
    conf.alloc_data = &bump;

    rc = ngx_http_webhook_sse_json_parse(&conf, (const unsigned char *) body,
                                         sizeof(body) - 1, &res);

    ok = (rc == OK && bump.calls == 2 && oom.live == 0
          && res.members >= bump.buf && res.members < bump.buf + bump.used
          && res.session >= bump.buf && res.session < bump.buf + bump.used
          && res.members[res.members_len] == '\0'
          && res.session_len == 1 && memcmp(res.session, "s", 2) == 0);

    ngx_http_webhook_sse_json_free(&res);

    check(ok && oom.live == 0 && res.members == NULL,
          "conf alloc: members and session come from it, NUL-terminated; "
          "yajl's blocks still from the allocator set, all returned; "
          "json_free frees nothing of the result");

    /* a conf alloc that fails: out of memory, nothing left behind */

    bump.used = 0;
    bump.calls = 0;
    bump.fail = 1;

    rc = ngx_http_webhook_sse_json_parse(&conf, (const unsigned char *) body,
                                         sizeof(body) - 1, &res);
    ok = (rc == NOMEM && oom.live == 0);
    ngx_http_webhook_sse_json_free(&res);
    ngx_http_webhook_sse_json_set_alloc(NULL);

    check(ok, "conf alloc failing: out of memory, yajl's blocks returned");
}


static void
test_oom(void)
{
    int                                 i;
    char                               *s, *body;
    size_t                              len;
    ngx_http_webhook_sse_json_conf_t    conf;

    static const struct {
        const char  *name;
        const char  *session;
        const char  *message;
        const char  *drop_key;
        const char  *body;
        int          rc;
    } inputs[] = {

        { "message and session", "sessionId", "message", NULL,
          "{\"message\":\"hi\",\"sessionId\":\"s1\"}", OK },

        { "nested objects and arrays, reserved keys dropped",
          "sessionId", "message", NULL,
          "{\"message\":\"m\",\"type\":{\"a\":[1,{\"b\":[]}]},"
          "\"o\":{\"a\":[1,{\"b\":null}],\"c\":{\"d\":[true,false,-1.5e3]}},"
          "\"sessionId\":\"s\",\"timestamp\":1}", OK },

        { "escapes and unicode", "sessionId", "message", NULL,
          "{\"message\":\"a\\r\\n\\u0000\\u001f\\\"\\\\\\/\\ud83d\\ude00"
          "\xc3\xa9\",\"sessionId\":\"s\\u00e9\\\"\",\"k\\ny\":\"\\t\"}", OK },

        { "dotted session path", "data.conversation_id", "message", NULL,
          "{\"message\":\"m\",\"data\":{\"x\":{\"conversation_id\":\"no\"},"
          "\"conversation_id\":\"c1\"}}", OK },

        { "drop key and passthrough", NULL, NULL, "secret",
          "{\"secret\":{\"a\":[1]},\"request_id\":\"r\",\"status\":\"done\","
          "\"response\":{\"x\":[1,2]}}", OK },

        { "empty object, fields off", NULL, NULL, NULL, "{}", OK },

        { "syntax error at the end", "sessionId", "message", NULL,
          "{\"message\":\"m\",\"sessionId\":\"s\",\"a\":[1,2,}", INVALID },

        { "truncated number at the end", "sessionId", "message", NULL,
          "{\"message\":\"m\",\"a\":12345", INVALID },

        { "truncated string at the end", "sessionId", "message", NULL,
          "{\"message\":\"m\",\"a\":\"abc\\u00e9", INVALID },

        { "top-level number", "sessionId", "message", NULL, "12345",
          INVALID },

        { "not an object", "sessionId", "message", NULL, "[{\"a\":1}]",
          INVALID },

        { "message missing", "sessionId", "message", NULL,
          "{\"sessionId\":\"s\",\"text\":\"t\"}", INVALID },

        { "session not a string, then more", "sessionId", "message", NULL,
          "{\"sessionId\":1,\"message\":\"m\",\"a\":\"\\u00e9\\n\"}",
          INVALID },

        { "duplicate dotted session", "data.conversation_id", NULL, NULL,
          "{\"data\":{\"conversation_id\":\"a\"},"
          "\"data\":{\"conversation_id\":\"b\"}}", INVALID },

        { "invalid UTF-8", "sessionId", "message", NULL,
          "{\"message\":\"a\xed\xa0\x80\"}", INVALID },

        { NULL, NULL, NULL, NULL, NULL, 0 }
    };

    for (i = 0; inputs[i].name; i++) {
        conf = conf_of(inputs[i].session, inputs[i].message);

        if (inputs[i].drop_key != NULL) {
            conf.drop_key = (const unsigned char *) inputs[i].drop_key;
            conf.drop_key_len = strlen(inputs[i].drop_key);
        }

        oom_check(inputs[i].name, &conf,
                  (const unsigned char *) inputs[i].body,
                  strlen(inputs[i].body), inputs[i].rc);
    }

    conf = conf_default();

    /* long strings grow the generator's and the decoder's buffers */

    s = nested(20000, "x", "", "");
    body = concat("{\"message\":\"", s, "\",\"sessionId\":\"s\"}");
    oom_check("20000-byte message", &conf, (const unsigned char *) body,
              strlen(body), OK);
    free(body);
    free(s);

    s = nested(3000, "\\n\\u00e9\\\"\\ud83d\\ude00", "", "");
    body = concat("{\"message\":\"", s, "\"}");
    oom_check("3000 escape groups in a string", &conf,
              (const unsigned char *) body, strlen(body), OK);
    free(body);

    body = concat("{\"message\":\"m\",\"", s, "\":1}");
    oom_check("3000 escape groups in a key", &conf,
              (const unsigned char *) body, strlen(body), OK);
    free(body);
    free(s);

    s = nested(2000, "[1,\"a\",{\"b\":null}],", "0", "");
    body = concat("{\"message\":\"m\",\"a\":[", s, "]}");
    oom_check("array of 6000 values", &conf, (const unsigned char *) body,
              strlen(body), OK);
    free(body);
    free(s);

    s = nested(63, "{\"a\":[", "1", "]}");
    body = concat("{\"message\":\"m\",\"o\":", s, "}");
    len = strlen(body);

    /* 127 levels with the top object, rejected at 65 */
    oom_check("nested past the limit", &conf, (const unsigned char *) body,
              len, INVALID);
    free(body);
    free(s);

    s = nested(31, "{\"a\":[", "1", "]}");
    body = concat("{\"message\":\"m\",\"o\":", s, "}");
    oom_check("63 levels of objects and arrays", &conf,
              (const unsigned char *) body, strlen(body), OK);
    free(body);
    free(s);

    s = nested(256, "\xc3\xa9", "", "");
    s[256] = '\0';
    body = concat("{\"message\":\"m\",\"sessionId\":\"", s, "\"}");
    oom_check("session of 256 bytes", &conf, (const unsigned char *) body,
              strlen(body), OK);
    free(body);
    free(s);
}


static void
test_oom_summary(void)
{
    char  name[200];

    snprintf(name, sizeof(name), "OOM: %lu inputs, %lu runs with a failing "
             "allocation, %lu gave NOMEM", oom_inputs, oom_runs, oom_nomem);
    check(oom_runs > 0, name);
}


static void
test_session_valid(void)
{
    unsigned char  s[300];

    static const struct {
        const char  *name;
        const char  *s;
        int          valid;
    } cases[] = {
        { "ascii", "abc-123_XYZ", 1 },
        { "spaces and punctuation", " a\"b\\c{}:/ ", 1 },
        { "two-byte", "\xc3\xa9", 1 },
        { "three-byte", "\xe2\x82\xac", 1 },
        { "four-byte", "\xf0\x9f\x98\x80", 1 },
        { "U+10FFFF", "\xf4\x8f\xbf\xbf", 1 },
        { "U+D7FF", "\xed\x9f\xbf", 1 },
        { "U+E000", "\xee\x80\x80", 1 },
        { "U+0080 (C1 control is allowed)", "\xc2\x80", 1 },
        { "LF", "a\nb", 0 },
        { "CR", "a\rb", 0 },
        { "tab", "\t", 0 },
        { "0x1f", "\x1f", 0 },
        { "DEL", "a\x7f", 0 },
        { "overlong C0 80", "\xc0\x80", 0 },
        { "overlong E0 9F BF", "\xe0\x9f\xbf", 0 },
        { "overlong F0 8F BF BF", "\xf0\x8f\xbf\xbf", 0 },
        { "surrogate ED A0 80", "\xed\xa0\x80", 0 },
        { "surrogate ED BF BF", "\xed\xbf\xbf", 0 },
        { "U+110000", "\xf4\x90\x80\x80", 0 },
        { "F8 lead", "\xf8\x88\x80\x80\x80", 0 },
        { "lone continuation", "a\x80", 0 },
        { "truncated at the end", "ab\xe2\x82", 0 },
        { "missing continuation", "\xc3" "a", 0 },
        { "0xff", "\xff", 0 },
        { NULL, NULL, 0 }
    };

    int   i;
    char  name[200];

    for (i = 0; cases[i].name; i++) {
        snprintf(name, sizeof(name), "session_valid %s: %s",
                 cases[i].valid ? "accepts" : "rejects", cases[i].name);
        check(ngx_http_webhook_sse_json_session_valid(
                  (const unsigned char *) cases[i].s, strlen(cases[i].s))
              == cases[i].valid, name);
    }

    check(!ngx_http_webhook_sse_json_session_valid(
              (const unsigned char *) "", 0), "session_valid rejects empty");

    check(!ngx_http_webhook_sse_json_session_valid(
              (const unsigned char *) "a\0b", 3),
          "session_valid rejects NUL");

    memset(s, 'x', sizeof(s));

    check(ngx_http_webhook_sse_json_session_valid(s, 256),
          "session_valid accepts 256 bytes");
    check(ngx_http_webhook_sse_json_session_valid(s, 1),
          "session_valid accepts 1 byte");
    check(!ngx_http_webhook_sse_json_session_valid(s, 257),
          "session_valid rejects 257 bytes");

    /* a four-byte character straddling the length must not be read past */

    memcpy(s + 254, "\xf0\x9f\x98\x80", 4);

    check(!ngx_http_webhook_sse_json_session_valid(s, 256),
          "session_valid rejects a character cut by the length");
}


/* decodes a JSON string body written by escape(); -1 when malformed */

static long
unescape(const unsigned char *s, size_t len, unsigned char *out)
{
    int            k;
    size_t         i, n;
    unsigned int   c;

    n = 0;

    for (i = 0; i < len; i++) {
        if (s[i] < 0x20 || s[i] == '"') {
            return -1;
        }

        if (s[i] != '\\') {
            out[n++] = s[i];
            continue;
        }

        if (++i == len) {
            return -1;
        }

        switch (s[i]) {
        case '"':
        case '\\':
        case '/':
            out[n++] = s[i];
            break;
        case 'n':
            out[n++] = '\n';
            break;
        case 'r':
            out[n++] = '\r';
            break;
        case 't':
            out[n++] = '\t';
            break;
        case 'b':
            out[n++] = '\b';
            break;
        case 'f':
            out[n++] = '\f';
            break;
        case 'u':
            if (len - i < 5) {
                return -1;
            }

            c = 0;

            for (k = 1; k <= 4; k++) {
                c <<= 4;

                if (s[i + k] >= '0' && s[i + k] <= '9') {
                    c |= s[i + k] - '0';

                } else if (s[i + k] >= 'a' && s[i + k] <= 'f') {
                    c |= s[i + k] - 'a' + 10;

                } else {
                    return -1;
                }
            }

            if (c > 0x7f) {
                return -1;
            }

            out[n++] = (unsigned char) c;
            i += 4;
            break;
        default:
            return -1;
        }
    }

    return (long) n;
}


typedef struct {
    unsigned char  *s;
    size_t          len;
    int             strings;
} decoded_t;


static int
decoded_string(void *data, const unsigned char *s, size_t len)
{
    decoded_t  *d;

    d = data;

    free(d->s);
    d->s = malloc(len + 1);
    if (d->s == NULL) {
        return 0;
    }

    memcpy(d->s, s, len);
    d->len = len;
    d->strings++;

    return 1;
}


/* yajl's reading of "<escaped>" must be exactly one string equal to src */

static int
yajl_round_trip(const unsigned char *src, size_t len)
{
    int             ok;
    size_t          n;
    decoded_t       d;
    yajl_handle     h;
    yajl_status     st;
    unsigned char  *json;
    yajl_callbacks  cb;

    memset(&cb, 0, sizeof(cb));
    cb.yajl_string = decoded_string;

    memset(&d, 0, sizeof(d));

    n = ngx_http_webhook_sse_json_escape(NULL, src, len);
    json = xmalloc(n + 2);
    json[0] = '"';
    ngx_http_webhook_sse_json_escape(json + 1, src, len);
    json[n + 1] = '"';

    h = yajl_alloc(&cb, NULL, &d);

    st = yajl_parse(h, json, n + 2);
    if (st == yajl_status_ok) {
        st = yajl_complete_parse(h);
    }

    ok = st == yajl_status_ok && d.strings == 1 && d.len == len
         && memcmp(d.s, src, len) == 0;

    yajl_free(h);
    free(d.s);
    free(json);

    return ok;
}


static void
test_escape(void)
{
    int             c, ok, all;
    long            decoded;
    size_t          i, n, m;
    unsigned char   src[256], out[256 * 6], back[256];

    static const unsigned char  breakout[] =
        "\"},\"type\":\"x\",\"a\":\"\\\"\n\ndata: {}\n\n\\";
    static const unsigned char  utf8[] =
        "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80";

    static const char  *forms[] = {
        "\\u0000", "\\u0001", "\\u0002", "\\u0003", "\\u0004", "\\u0005",
        "\\u0006", "\\u0007", "\\b", "\\t", "\\n", "\\u000b", "\\f", "\\r",
        "\\u000e", "\\u000f", "\\u0010", "\\u0011", "\\u0012", "\\u0013",
        "\\u0014", "\\u0015", "\\u0016", "\\u0017", "\\u0018", "\\u0019",
        "\\u001a", "\\u001b", "\\u001c", "\\u001d", "\\u001e", "\\u001f"
    };

    /* every byte alone: the exact form */

    all = 1;

    for (c = 0; c < 256; c++) {
        unsigned char  b, o[8];
        const char    *want;
        char           one[2];

        b = (unsigned char) c;

        if (c < 0x20) {
            want = forms[c];

        } else if (c == '"') {
            want = "\\\"";

        } else if (c == '\\') {
            want = "\\\\";

        } else if (c == 0x7f) {
            want = "\\u007f";

        } else {
            one[0] = (char) c;
            one[1] = '\0';
            want = one;
        }

        n = ngx_http_webhook_sse_json_escape(NULL, &b, 1);
        memset(o, 0, sizeof(o));
        m = ngx_http_webhook_sse_json_escape(o, &b, 1);

        if (n != m || n != strlen(want) || memcmp(o, want, n) != 0) {
            printf("#   byte 0x%02x escaped as \"%.*s\"\n", c, (int) m, o);
            all = 0;
        }
    }

    check(all, "escape: exact form of each of the 256 bytes");

    /* all 256 bytes in one string */

    for (i = 0; i < 256; i++) {
        src[i] = (unsigned char) i;
    }

    n = ngx_http_webhook_sse_json_escape(NULL, src, 256);
    memset(out, 0xee, sizeof(out));
    m = ngx_http_webhook_sse_json_escape(out, src, 256);

    check(n == m && n <= sizeof(out) && out[n] == 0xee,
          "escape: length without dst equals bytes written");

    ok = 1;

    for (i = 0; i < m; i++) {
        if (out[i] < 0x20 || out[i] == 0x7f) {
            ok = 0;
        }
    }

    check(ok, "escape: no raw control byte in the output");

    /* every '"' is preceded by an odd run of backslashes */

    ok = 1;

    for (i = 0; i < m; i++) {
        if (out[i] == '\\') {
            i++;
            continue;
        }

        if (out[i] == '"') {
            ok = 0;
        }
    }

    check(ok, "escape: no unescaped quote in the output");

    decoded = unescape(out, m, back);

    check(decoded == 256 && memcmp(back, src, 256) == 0,
          "escape: all 256 bytes round-trip");

    check(ngx_http_webhook_sse_json_escape(NULL, src, 0) == 0,
          "escape: empty input");

    check(yajl_round_trip(src, 128),
          "escape: yajl reads bytes 0x00-0x7f back as one string");

    check(yajl_round_trip(breakout, sizeof(breakout) - 1),
          "escape: breaking out of the string is impossible");

    check(yajl_round_trip(utf8, sizeof(utf8) - 1),
          "escape: UTF-8 copied and read back");
}


/*
 * Regression bodies, most of them from util/fuzz: each goes through every
 * configuration below and must keep the invariants the fuzzer checks.
 * Names say more: "accept-*" must pass with both fields off, "reject-*"
 * must fail in every configuration.
 */

static const char  *regress_sessions[] = {
    NULL, "sessionId", "data.conversation_id"
};

static const char  *regress_messages[] = { NULL, "message" };
static const char  *regress_drop_keys[] = { NULL, "secret" };


/* the top-level keys of an object, with their lengths */

typedef struct {
    int                   depth;
    int                   dropped;
    const unsigned char  *drop_key;
    size_t                drop_key_len;
} regress_keys_t;


static int
regress_keys_open(void *data)
{
    ((regress_keys_t *) data)->depth++;
    return 1;
}


static int
regress_keys_close(void *data)
{
    ((regress_keys_t *) data)->depth--;
    return 1;
}


static int
regress_keys_key(void *data, const unsigned char *key, size_t len)
{
    regress_keys_t  *keys;

    keys = data;

    if (keys->depth == 1
        && ((len == 4 && memcmp(key, "type", 4) == 0)
            || (len == 9 && memcmp(key, "messageId", 9) == 0)
            || (len == 9 && memcmp(key, "timestamp", 9) == 0)
            || (keys->drop_key != NULL && len == keys->drop_key_len
                && memcmp(key, keys->drop_key, len) == 0)))
    {
        keys->dropped = 1;
    }

    return 1;
}


/*
 * The invariants of one outcome, those util/fuzz checks; why is set when
 * one is broken.
 */

static int
regress_outcome(const ngx_http_webhook_sse_json_conf_t *conf, int rc,
    const ngx_http_webhook_sse_json_result_t *res, const char **why)
{
    int                                 ok;
    size_t                              i;
    yajl_handle                         h;
    yajl_status                         st;
    unsigned char                      *object;
    regress_keys_t                      keys;
    yajl_callbacks                      cb;
    ngx_http_webhook_sse_json_result_t  again;

    if (memchr(res->error, '\0', sizeof(res->error)) == NULL) {
        *why = "error not terminated";
        return 0;
    }

    if (rc != OK) {
        if (rc != INVALID || !result_clean(res) || res->error[0] == '\0') {
            *why = "rejected without an error or with something left";
            return 0;
        }

        return 1;
    }

    if (res->members == NULL || res->members[res->members_len] != '\0') {
        *why = "members missing or not terminated";
        return 0;
    }

    for (i = 0; i < res->members_len; i++) {
        if (res->members[i] < 0x20) {
            *why = "raw control byte in the members";
            return 0;
        }
    }

    if (res->session != NULL
        ? (conf->session_path == NULL
           || !ngx_http_webhook_sse_json_session_valid(res->session,
                                                       res->session_len))
        : res->session_len != 0)
    {
        *why = "session invalid or not asked for";
        return 0;
    }

    object = xmalloc(res->members_len + 2);
    object[0] = '{';
    memcpy(object + 1, res->members, res->members_len);
    object[res->members_len + 1] = '}';

    memset(&cb, 0, sizeof(cb));
    cb.yajl_start_map = regress_keys_open;
    cb.yajl_map_key = regress_keys_key;
    cb.yajl_end_map = regress_keys_close;
    cb.yajl_start_array = regress_keys_open;
    cb.yajl_end_array = regress_keys_close;

    memset(&keys, 0, sizeof(keys));
    keys.drop_key = conf->drop_key;
    keys.drop_key_len = conf->drop_key_len;

    h = yajl_alloc(&cb, NULL, &keys);

    st = yajl_parse(h, object, res->members_len + 2);
    if (st == yajl_status_ok) {
        st = yajl_complete_parse(h);
    }

    yajl_free(h);

    ok = 0;

    if (st != yajl_status_ok || keys.depth != 0) {
        *why = "{members} is not a JSON object";

    } else if (keys.dropped) {
        *why = "a dropped key is left at the top level";

    } else {
        /* parsed again the members and the session must come back as is */

        rc = ngx_http_webhook_sse_json_parse(conf, object,
                                             res->members_len + 2, &again);

        ok = rc == OK
             && again.members_len == res->members_len
             && memcmp(again.members, res->members, res->members_len) == 0
             && again.session_len == res->session_len
             && (res->session == NULL
                 || memcmp(again.session, res->session, res->session_len)
                    == 0);

        if (!ok) {
            *why = "members or session change when parsed again";
        }

        ngx_http_webhook_sse_json_free(&again);
    }

    free(object);

    return ok;
}


/* every allocation failing in turn, in every configuration */

static void
regress_oom(const char *file, const unsigned char *body, size_t size)
{
    int                                ok;
    char                               name[300], why[200];
    size_t                             s, m, d;
    outcome_t                          normal;
    unsigned long                      n, runs;
    ngx_http_webhook_sse_json_conf_t   conf;

    ok = 1;
    runs = oom_runs;

    for (s = 0; ok && s < 3; s++) {
        for (m = 0; ok && m < 2; m++) {
            for (d = 0; ok && d < 2; d++) {
                conf = conf_of(regress_sessions[s], regress_messages[m]);

                if (regress_drop_keys[d] != NULL) {
                    conf.drop_key =
                        (const unsigned char *) regress_drop_keys[d];
                    conf.drop_key_len = strlen(regress_drop_keys[d]);
                }

                ok = oom_count(&conf, body, size, &normal, &n, why,
                               sizeof(why))
                     && oom_each(&conf, body, size, &normal, n, 0, why,
                                 sizeof(why))
                     && oom_each(&conf, body, size, &normal, n, 1, why,
                                 sizeof(why));

                if (!ok) {
                    printf("#   session %s, message %s, drop %s: %s\n",
                           regress_sessions[s] ? regress_sessions[s] : "off",
                           regress_messages[m] ? regress_messages[m] : "off",
                           regress_drop_keys[d] ? regress_drop_keys[d]
                                                : "none",
                           why);
                }

                outcome_free(&normal);
            }
        }
    }

    oom_inputs++;

    snprintf(name, sizeof(name), "regress %s: each allocation failing in "
             "all configurations (%lu runs)", file, oom_runs - runs);
    check(ok, name);
}


static void
regress_file(const char *dir, const char *file)
{
    int                                 rc, ok, accepted, plain_accepted;
    char                               *path, name[300];
    long                                size;
    FILE                               *f;
    size_t                              s, m, d;
    const char                         *why;
    unsigned char                      *body;
    ngx_http_webhook_sse_json_conf_t    conf;
    ngx_http_webhook_sse_json_result_t  res;

    snprintf(name, sizeof(name), "regress %s: invariants in all "
             "configurations", file);

    path = concat(dir, "/", file);

    f = fopen(path, "rb");
    if (f == NULL
        || fseek(f, 0, SEEK_END) != 0
        || (size = ftell(f)) < 0
        || fseek(f, 0, SEEK_SET) != 0)
    {
        check(0, name);
        printf("#   cannot read %s\n", path);

        if (f) {
            fclose(f);
        }

        free(path);
        return;
    }

    /* exactly the size of the body, so that a read past it is caught */

    body = xmalloc(size ? size : 1);

    if (fread(body, 1, size, f) != (size_t) size) {
        size = -1;
    }

    fclose(f);

    ok = (size >= 0);
    why = (size >= 0) ? NULL : "short read";
    accepted = 0;
    plain_accepted = 0;

    for (s = 0; ok && s < 3; s++) {
        for (m = 0; ok && m < 2; m++) {
            for (d = 0; ok && d < 2; d++) {
                conf = conf_of(regress_sessions[s], regress_messages[m]);

                if (regress_drop_keys[d] != NULL) {
                    conf.drop_key =
                        (const unsigned char *) regress_drop_keys[d];
                    conf.drop_key_len = strlen(regress_drop_keys[d]);
                }

                memset(&res, 0x5a, sizeof(res));

                rc = ngx_http_webhook_sse_json_parse(&conf, body, size, &res);

                ok = regress_outcome(&conf, rc, &res, &why);

                if (!ok) {
                    printf("#   session %s, message %s, drop %s: rc %d, "
                           "error \"%s\"\n",
                           regress_sessions[s] ? regress_sessions[s] : "off",
                           regress_messages[m] ? regress_messages[m] : "off",
                           regress_drop_keys[d] ? regress_drop_keys[d]
                                                : "none",
                           rc, res.error);
                    diag_bytes("members", res.members, res.members_len);
                }

                if (rc == OK) {
                    accepted++;
                    plain_accepted |= (s == 0 && m == 0 && d == 0);
                }

                ngx_http_webhook_sse_json_free(&res);
            }
        }
    }

    if (ok && strncmp(file, "accept-", 7) == 0 && !plain_accepted) {
        ok = 0;
        why = "rejected with both fields off";
    }

    if (ok && strncmp(file, "reject-", 7) == 0 && accepted) {
        ok = 0;
        why = "accepted in some configuration";
    }

    if (!check(ok, name)) {
        printf("#   %s\n", why);
    }

    if (size >= 0) {
        regress_oom(file, body, size);
    }

    free(body);
    free(path);
}


static int
regress_compare(const void *a, const void *b)
{
    return strcmp(*(char * const *) a, *(char * const *) b);
}


static void
test_regress(void)
{
    DIR                               *dp;
    char                              *dir, **files, *p;
    size_t                             n, i, slash;
    const char                        *env;
    struct dirent                     *de;
    ngx_http_webhook_sse_json_conf_t   conf;

    /* found by util/fuzz: a reserved name followed by an escaped NUL */

    conf = conf_default();
    conf.drop_key = (const unsigned char *) "secret";
    conf.drop_key_len = sizeof("secret") - 1;

    expect("keys that only start with a reserved name are kept", &conf,
           "{\"message\":\"m\",\"type\\u0000\":1,\"secret\\u0000\":2,"
           "\"timestamp\":3}",
           "\"message\":\"m\",\"type\\u0000\":1,\"secret\\u0000\":2",
           NULL, NULL);

    env = getenv("WEBHOOK_SSE_REGRESS_DIR");

    if (env != NULL && env[0] != '\0') {
        dir = concat(env, "", "");

    } else {
        /* t/unit/regress next to this file, whatever the current directory */

        p = strrchr(__FILE__, '/');
        slash = p ? (size_t) (p - __FILE__) + 1 : 0;

        dir = xmalloc(slash + sizeof("regress"));
        memcpy(dir, __FILE__, slash);
        memcpy(dir + slash, "regress", sizeof("regress"));
    }

    dp = opendir(dir);

    if (!check(dp != NULL, "regress: directory t/unit/regress found")) {
        printf("#   cannot open %s\n", dir);
        free(dir);
        return;
    }

    files = NULL;
    n = 0;

    while ((de = readdir(dp)) != NULL) {
        if (de->d_name[0] == '.') {
            continue;
        }

        files = realloc(files, (n + 1) * sizeof(char *));
        if (files == NULL) {
            printf("Bail out! out of memory\n");
            exit(1);
        }

        files[n++] = concat(de->d_name, "", "");
    }

    closedir(dp);

    check(n > 0, "regress: t/unit/regress holds bodies");

    if (n) {
        qsort(files, n, sizeof(char *), regress_compare);
    }

    for (i = 0; i < n; i++) {
        regress_file(dir, files[i]);
        free(files[i]);
    }

    free(files);
    free(dir);
}


/* ngx_http_webhook_sse_json_list(): the sessions of a presence POST */

typedef struct {
    char    seen[4][300];
    int     n;
    int     fail_at;
} list_collect_t;


static int
list_item(void *data, const unsigned char *s, size_t len)
{
    list_collect_t  *c = data;

    if (c->n == c->fail_at) {
        return -1;
    }

    if (c->n < 4 && len < sizeof(c->seen[0])) {
        memcpy(c->seen[c->n], s, len);
        c->seen[c->n][len] = '\0';
    }

    c->n++;

    return 0;
}


static int
list_run(const char *body, size_t max, list_collect_t *c, char *error)
{
    memset(c, 0, sizeof(list_collect_t));
    c->fail_at = -1;

    return ngx_http_webhook_sse_json_list((const unsigned char *) body,
                                          strlen(body), "sessionIds", max,
                                          list_item, c, error);
}


static void
test_list(void)
{
    int              rc;
    char             error[NGX_HTTP_WEBHOOK_SSE_JSON_ERROR_LEN];
    list_collect_t   c;
    static const unsigned char  nul[] = "{\"sessionIds\":[\"a\"]}\0 ";

    rc = list_run("{\"sessionIds\":[\"a\",\"b\\u00e9\",\"a\"],\"x\":1}", 3,
                  &c, error);
    check(rc == OK && c.n == 3 && strcmp(c.seen[0], "a") == 0
          && strcmp(c.seen[1], "b\xc3\xa9") == 0
          && strcmp(c.seen[2], "a") == 0,
          "list: the strings of the array, unescaped, in order");

    rc = list_run("{\"sessionIds\":[]}", 3, &c, error);
    check(rc == OK && c.n == 0, "list: an empty array");

    rc = list_run("{\"sessionIds\":[\"a\",\"b\",\"c\",\"d\"]}", 3, &c, error);
    check(rc == INVALID && c.n == 0 && strstr(error, "at most 3") != NULL,
          "list: more than max is refused, nothing handed out");

    rc = list_run("{\"sessionIds\":[\"a\",1]}", 3, &c, error);
    check(rc == INVALID && c.n == 0 && strstr(error, "[1]") != NULL,
          "list: a number names which item");

    rc = list_run("{\"sessionIds\":[\"a\",\"\"]}", 3, &c, error);
    check(rc == INVALID && c.n == 0, "list: an empty session is refused");

    rc = list_run("{\"sessionIds\":[\"a\\nb\"]}", 3, &c, error);
    check(rc == INVALID, "list: a control character is refused");

    rc = list_run("{\"sessionIds\":[\"a\\u0000b\"]}", 3, &c, error);
    check(rc == INVALID && c.n == 0,
          "list: an escaped NUL is refused, not cut off");

    rc = list_run("{\"sessionIds\":\"a\"}", 3, &c, error);
    check(rc == INVALID && strstr(error, "array") != NULL,
          "list: not an array");

    rc = list_run("{\"ids\":[\"a\"]}", 3, &c, error);
    check(rc == INVALID, "list: the key missing");

    rc = list_run("[\"a\"]", 3, &c, error);
    check(rc == INVALID && strstr(error, "object") != NULL,
          "list: not an object");

    rc = list_run("{\"sessionIds\":[\"a\"", 3, &c, error);
    check(rc == INVALID && strcmp(error, "invalid JSON") == 0,
          "list: truncated JSON");

    memset(&c, 0, sizeof(list_collect_t));
    c.fail_at = -1;
    rc = ngx_http_webhook_sse_json_list(nul, sizeof(nul) - 1, "sessionIds", 3,
                                        list_item, &c, error);
    check(rc == INVALID && c.n == 0, "list: a NUL byte in the body");

    memset(&c, 0, sizeof(list_collect_t));
    c.fail_at = 1;
    rc = ngx_http_webhook_sse_json_list(
             (const unsigned char *) "{\"sessionIds\":[\"a\",\"b\"]}",
             sizeof("{\"sessionIds\":[\"a\",\"b\"]}") - 1, "sessionIds", 3,
             list_item, &c, error);
    check(rc == NOMEM, "list: a failing item callback is out of memory");
}


int
main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);

    test_members();
    test_no_raw_newlines();
    test_passthrough();
    test_drop_key();
    test_dotted_paths();
    test_invalid_json();
    test_invalid_utf8();
    test_not_object();
    test_depth();
    test_message_field();
    test_session_field();
    test_long_path();
    test_free();
    test_alloc();
    test_oom();
    test_session_valid();
    test_escape();
    test_list();
    test_regress();
    test_oom_summary();

    printf("1..%d\n", tests);

    return failures ? 1 : 0;
}
