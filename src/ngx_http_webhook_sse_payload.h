
/*
 * nginx-webhook-sse: the bodies and signed content of outbound deliveries.
 *
 * Pure logic like ngx_http_webhook_sse_json.c: no nginx types, no nginx
 * calls, unit-tested on its own (t/unit/payload_test.c).  Built with yajl.
 */


#ifndef _NGX_HTTP_WEBHOOK_SSE_PAYLOAD_H_INCLUDED_
#define _NGX_HTTP_WEBHOOK_SSE_PAYLOAD_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


/* "2026-12-01T15:04:11.123Z" and a NUL */
#define NGX_HTTP_WEBHOOK_SSE_ISO_LEN  25


typedef struct {
    /* the messageId */
    const unsigned char  *id;
    size_t                id_len;

    /* the publish time, milliseconds since the epoch */
    int64_t               time;

    /* the raw session, NULL for a broadcast */
    const unsigned char  *session;
    size_t                session_len;

    /* members of the stored event as JSON ("\"a\":1,...", maybe empty) */
    const unsigned char  *members;
    size_t                members_len;

    /* dotted path of the message field within the members, NULL: none */
    const unsigned char  *message_path;
    size_t                message_path_len;
} ngx_http_webhook_sse_payload_t;


/*
 * The JSON object an SSE stream carries on its data line:
 * {"type":"webhook_message","messageId":..,"timestamp":..,<members>}.
 * With dst == NULL only returns the length.
 */
size_t ngx_http_webhook_sse_payload_event(unsigned char *dst,
    const ngx_http_webhook_sse_payload_t *pl);

/*
 * The conversation shape: {"conversation_id":..,"data":{"id":..,
 * "content":..,"content_type":..,"type":..,"channel":..,"status":..,
 * "metadata":..,["filename":..,]"created_by":..,"updated_by":..,
 * "created_at":..,"updated_at":..},"timestamp":..}: the publisher's
 * members of those names, else defaults ("type" is the event's own, so
 * data.type comes from "message_type").  *out is malloc()ed.
 * Returns 0, or -1 when the members are not JSON or memory runs out.
 */
int ngx_http_webhook_sse_payload_conversation(
    const ngx_http_webhook_sse_payload_t *pl, unsigned char **out,
    size_t *len);

/* ISO 8601, UTC, milliseconds; buf of NGX_HTTP_WEBHOOK_SSE_ISO_LEN */
void ngx_http_webhook_sse_payload_iso8601(char *buf, int64_t ms);

/*
 * What Standard Webhooks sign: "<id>.<timestamp>.<body>".  With dst ==
 * NULL only returns the length.
 */
size_t ngx_http_webhook_sse_payload_signed_content(unsigned char *dst,
    const unsigned char *id, size_t id_len, int64_t timestamp,
    const unsigned char *body, size_t body_len);


/* a webhook_callbacks registration: pointers into a malloc()ed copy */
typedef struct {
    const unsigned char  *session;
    size_t                session_len;
    const unsigned char  *url;
    size_t                url_len;
    /* NULL: unsigned deliveries */
    const unsigned char  *secret;
    size_t                secret_len;

    void                 *tree;
    char                  error[128];
} ngx_http_webhook_sse_registration_t;


/*
 * {"sessionId": "..", "callback_url": "..", "secret": ".."} (secret
 * optional; other members ignored).  Returns 0, or -1 with reg->error
 * set.  ngx_http_webhook_sse_payload_registration_free() in all cases.
 */
int ngx_http_webhook_sse_payload_registration(const unsigned char *body,
    size_t len, ngx_http_webhook_sse_registration_t *reg);
void ngx_http_webhook_sse_payload_registration_free(
    ngx_http_webhook_sse_registration_t *reg);


#endif /* _NGX_HTTP_WEBHOOK_SSE_PAYLOAD_H_INCLUDED_ */
