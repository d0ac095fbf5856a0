
/*
 * Unit tests of src/ngx_http_webhook_sse_payload.c, printing TAP.
 *
 * Built and run by t/01-payload-unit.t; by hand:
 *   cc -Wall -Wextra -Isrc t/unit/payload_test.c
 *      src/ngx_http_webhook_sse_payload.c $(pkg-config --cflags --libs yajl)
 *      -lcrypto && ./a.out
 */


#define _GNU_SOURCE

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "ngx_http_webhook_sse_payload.h"


static int  tests;
static int  failures;


static int
check(int ok, const char *name)
{
    tests++;

    if (!ok) {
        failures++;
    }

    printf("%sok %d - %s\n", ok ? "" : "not ", tests, name);

    return ok;
}


static int
check_str(const unsigned char *got, size_t len, const char *want,
    const char *name)
{
    int  ok;

    ok = (len == strlen(want) && memcmp(got, want, len) == 0);

    if (!check(ok, name)) {
        printf("#   got:  %.*s\n#   want: %s\n", (int) len, got, want);
    }

    return ok;
}


static void
payload(ngx_http_webhook_sse_payload_t *pl, const char *members,
    const char *session, const char *message_path)
{
    memset(pl, 0, sizeof(ngx_http_webhook_sse_payload_t));

    pl->id = (const unsigned char *) "1700000000000-7";
    pl->id_len = strlen((const char *) pl->id);
    pl->time = 1700000000123LL;
    pl->members = (const unsigned char *) members;
    pl->members_len = strlen(members);

    if (session) {
        pl->session = (const unsigned char *) session;
        pl->session_len = strlen(session);
    }

    if (message_path) {
        pl->message_path = (const unsigned char *) message_path;
        pl->message_path_len = strlen(message_path);
    }
}


static void
test_event(void)
{
    size_t                          len;
    unsigned char                   buf[512];
    ngx_http_webhook_sse_payload_t  pl;

    payload(&pl, "\"message\":\"hi\",\"sessionId\":\"s\"", "s", "message");

    len = ngx_http_webhook_sse_payload_event(NULL, &pl);
    check(ngx_http_webhook_sse_payload_event(buf, &pl) == len,
          "event: the length asked first is the length written");
    check_str(buf, len, "{\"type\":\"webhook_message\","
              "\"messageId\":\"1700000000000-7\","
              "\"timestamp\":1700000000123,\"message\":\"hi\","
              "\"sessionId\":\"s\"}", "event: the SSE event's JSON");

    payload(&pl, "", NULL, NULL);
    len = ngx_http_webhook_sse_payload_event(buf, &pl);
    check_str(buf, len, "{\"type\":\"webhook_message\","
              "\"messageId\":\"1700000000000-7\","
              "\"timestamp\":1700000000123}", "event: no members");
}


static void
test_conversation(void)
{
    size_t                          len;
    unsigned char                  *out;
    ngx_http_webhook_sse_payload_t  pl;

    payload(&pl, "\"message\":\"hi\",\"sessionId\":\"s\"", "s", "message");

    check(ngx_http_webhook_sse_payload_conversation(&pl, &out, &len) == 0,
          "conversation: built");
    check_str(out, len, "{\"conversation_id\":\"s\",\"data\":{"
              "\"id\":\"1700000000000-7\",\"content\":\"hi\","
              "\"content_type\":\"TEXT\",\"type\":\"BOT\","
              "\"channel\":\"API\",\"status\":\"RECEIVED\","
              "\"metadata\":{},\"created_by\":null,\"updated_by\":null,"
              "\"created_at\":\"2023-11-14T22:13:20.123Z\","
              "\"updated_at\":\"2023-11-14T22:13:20.123Z\"},"
              "\"timestamp\":\"2023-11-14T22:13:20.123Z\"}",
              "conversation: defaults");
    free(out);

    payload(&pl, "\"data\":{\"text\":[1,2.50,true]},\"content_type\":\"HTML\","
            "\"message_type\":\"USER\",\"channel\":\"WIDGET\","
            "\"status\":\"SENT\",\"metadata\":{\"a\":null},"
            "\"filename\":\"f.pdf\",\"created_by\":\"u\","
            "\"updated_by\":7,\"created_at\":\"c\",\"updated_at\":\"u\"",
            NULL, "data.text");

    check(ngx_http_webhook_sse_payload_conversation(&pl, &out, &len) == 0,
          "conversation: built from a publisher's fields");
    check_str(out, len, "{\"conversation_id\":null,\"data\":{"
              "\"id\":\"1700000000000-7\",\"content\":[1,2.50,true],"
              "\"content_type\":\"HTML\",\"type\":\"USER\","
              "\"channel\":\"WIDGET\",\"status\":\"SENT\","
              "\"metadata\":{\"a\":null},\"filename\":\"f.pdf\","
              "\"created_by\":\"u\",\"updated_by\":7,\"created_at\":\"c\","
              "\"updated_at\":\"u\"},"
              "\"timestamp\":\"2023-11-14T22:13:20.123Z\"}",
              "conversation: the publisher's fields, numbers as written, "
              "a dotted message path, a broadcast");
    free(out);

    payload(&pl, "\"message\":\"a\\\"b\\u00e9\\n\"", "s\"1", "message");
    check(ngx_http_webhook_sse_payload_conversation(&pl, &out, &len) == 0,
          "conversation: escapes");
    check(len > 0 && memmem(out, len, "\"content\":\"a\\\"b\xc3\xa9\\n\"",
                            strlen("\"content\":\"a\\\"b\xc3\xa9\\n\""))
          != NULL, "conversation: content re-escaped");
    check(memmem(out, len, "\"conversation_id\":\"s\\\"1\"",
                 strlen("\"conversation_id\":\"s\\\"1\"")) != NULL,
          "conversation: session escaped");
    free(out);

    payload(&pl, "\"message\":", "s", "message");
    check(ngx_http_webhook_sse_payload_conversation(&pl, &out, &len) == -1,
          "conversation: members that are not JSON are refused");
}


/* the Standard Webhooks published test vector */

static void
test_signature(void)
{
    size_t          len, klen;
    unsigned int    maclen;
    unsigned char   content[256], key[64], mac[32];
    unsigned char   b64[64];

    static const char  body[] = "{\"test\": 2432232314}";
    static const char  id[] = "msg_p5jXN8AQM9LWM0D4loKWxJek";

    len = ngx_http_webhook_sse_payload_signed_content(content,
              (const unsigned char *) id, strlen(id), 1614265330,
              (const unsigned char *) body, strlen(body));

    check_str(content, len, "msg_p5jXN8AQM9LWM0D4loKWxJek.1614265330."
              "{\"test\": 2432232314}", "signed content: id.timestamp.body");

    klen = EVP_DecodeBlock(key,
                           (const unsigned char *)
                           "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", 32);

    maclen = sizeof(mac);
    HMAC(EVP_sha256(), key, (int) klen, content, len, mac, &maclen);
    EVP_EncodeBlock(b64, mac, (int) maclen);

    check_str(b64, strlen((char *) b64),
              "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
              "the Standard Webhooks test vector signs as published");
}


static int
registration(const char *body, ngx_http_webhook_sse_registration_t *reg)
{
    return ngx_http_webhook_sse_payload_registration(
               (const unsigned char *) body, strlen(body), reg);
}


static void
test_registration(void)
{
    int                                  rc;
    ngx_http_webhook_sse_registration_t  reg;

    rc = registration("{\"sessionId\":\"s1\",\"other\":[1],"
                      "\"callback_url\":\"https://x.example/h\","
                      "\"secret\":\"whsec_abc\"}", &reg);
    check(rc == 0, "registration: parsed");
    check_str(reg.session, reg.session_len, "s1", "registration: sessionId");
    check_str(reg.url, reg.url_len, "https://x.example/h",
              "registration: callback_url");
    check_str(reg.secret, reg.secret_len, "whsec_abc",
              "registration: secret");
    ngx_http_webhook_sse_payload_registration_free(&reg);

    rc = registration("{\"sessionId\":\"s1\",\"callback_url\":\"u\"}", &reg);
    check(rc == 0 && reg.secret == NULL, "registration: no secret");
    ngx_http_webhook_sse_payload_registration_free(&reg);

    rc = registration("{\"callback_url\":\"u\"}", &reg);
    check(rc == -1 && strcmp(reg.error, "sessionId is required") == 0,
          "registration: sessionId is required");
    ngx_http_webhook_sse_payload_registration_free(&reg);

    rc = registration("{\"sessionId\":\"s\"}", &reg);
    check(rc == -1 && strcmp(reg.error, "callback_url is required") == 0,
          "registration: callback_url is required");
    ngx_http_webhook_sse_payload_registration_free(&reg);

    rc = registration("{\"sessionId\":1,\"callback_url\":\"u\"}", &reg);
    check(rc == -1 && strcmp(reg.error, "sessionId must be a string") == 0,
          "registration: a number is not a session");
    ngx_http_webhook_sse_payload_registration_free(&reg);

    rc = registration("[1]", &reg);
    check(rc == -1, "registration: not an object");
    ngx_http_webhook_sse_payload_registration_free(&reg);

    rc = registration("{\"sessionId\":", &reg);
    check(rc == -1, "registration: not JSON");
    ngx_http_webhook_sse_payload_registration_free(&reg);
}


static void
test_iso8601(void)
{
    char  buf[NGX_HTTP_WEBHOOK_SSE_ISO_LEN];

    ngx_http_webhook_sse_payload_iso8601(buf, 0);
    check_str((unsigned char *) buf, strlen(buf), "1970-01-01T00:00:00.000Z",
              "iso8601: the epoch");

    ngx_http_webhook_sse_payload_iso8601(buf, 951782400999LL);
    check_str((unsigned char *) buf, strlen(buf), "2000-02-29T00:00:00.999Z",
              "iso8601: a leap day, milliseconds");
}


int
main(void)
{
    test_event();
    test_conversation();
    test_signature();
    test_registration();
    test_iso8601();

    printf("1..%d\n", tests);

    return failures ? 1 : 0;
}
