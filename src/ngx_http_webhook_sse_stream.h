
/*
 * nginx-webhook-sse: SSE streams and a worker's state for them.
 *
 *   presence_handler.c
 *              the webhook_presence request: sessions' stream counts
 *   stream.c   the stream request: checks, opening, heartbeats, the end
 *   websocket.c, longpoll.c
 *              the other transports of a stream location: a WebSocket
 *              (RFC 6455, libwslay), a long-poll request
 *   detach.c   a stream that has dropped its request: the connection alone
 *   fanout.c   the worker's channels and streams: subscription, replay in
 *              parts, delivery of what the doorbell announced
 *   presence.c what a stream's start and end do to its session's presence:
 *              join/leave events, grace periods
 *   output.c   events shared by streams and each stream's unsent output
 *
 * Calls go down that list only.  Everything here is process-local.
 */


#ifndef _NGX_HTTP_WEBHOOK_SSE_STREAM_H_INCLUDED_
#define _NGX_HTTP_WEBHOOK_SSE_STREAM_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_webhook_sse_module.h"


typedef struct ngx_http_webhook_sse_stream_s  ngx_http_webhook_sse_stream_t;

typedef void (*ngx_http_webhook_sse_close_pt)(
    ngx_http_webhook_sse_stream_t *stream, ngx_int_t rc);

/* a transport's writer of the busy output, in place of the connection's */
typedef ngx_int_t (*ngx_http_webhook_sse_send_pt)(
    ngx_http_webhook_sse_stream_t *stream);


/*
 * One message as an SSE event in worker memory, shared by the streams; it
 * is also framed once as a chunk ("<hex>\r\n" event "\r\n") for the
 * detached streams of chunked responses.
 */
typedef struct {
    ngx_rbtree_node_t                  node;
    uint64_t                           seq;
    uint64_t                           channel;
    ngx_uint_t                         refs;
    size_t                             len;
    u_char                            *chunk;
    size_t                             chunk_len;
    /* the chunk size line ends right before data */
    u_char                             size_line[NGX_OFF_T_LEN + 2];
    u_char                             data[1];
} ngx_http_webhook_sse_event_t;


typedef struct ngx_http_webhook_sse_out_s  ngx_http_webhook_sse_out_t;

/* a stream's view of an event (or of a static text) on its way out */
struct ngx_http_webhook_sse_out_s {
    ngx_buf_t                          buf;
    ngx_chain_t                        cl;
    ngx_http_webhook_sse_event_t      *event;
    ngx_http_webhook_sse_out_t        *next;
    /* a chunk size line of a detached stream */
    u_char                             chunk[NGX_OFF_T_LEN + 2];
};


/* a zone channel this worker has streams on */
typedef struct {
    uint64_t                           id;
    ngx_queue_t                        streams;
    ngx_uint_t                         nstreams;
    ngx_str_t                          session;
} ngx_http_webhook_sse_lchannel_t;


typedef struct {
    uint64_t                           id;
    /* NULL: an empty slot */
    ngx_http_webhook_sse_lchannel_t   *channel;
} ngx_http_webhook_sse_channel_slot_t;


/* a worker's channels by id (channels.c); slots NULL: none yet */
typedef struct {
    ngx_http_webhook_sse_channel_slot_t  *slots;
    ngx_uint_t                           mask;
    ngx_uint_t                           n;
} ngx_http_webhook_sse_channels_t;


#define NGX_HTTP_WEBHOOK_SSE_LANES  4


/*
 * The heartbeats of a worker's streams of one interval: the streams in
 * the order their next heartbeat is due, one timer for all of them, so
 * that nginx's timer tree does not hold a node per stream.
 */
typedef struct {
    ngx_msec_t                         interval;
    ngx_queue_t                        streams;
    ngx_event_t                        timer;
} ngx_http_webhook_sse_lane_t;


/* a worker's streams of one zone */
typedef struct {
    ngx_http_webhook_sse_zone_t       *zone;

    /* channels by the zone channel's id */
    ngx_http_webhook_sse_channels_t    channels;

    /* every stream: all of them get the broadcasts */
    ngx_queue_t                        streams;
    ngx_uint_t                         nstreams;

    /* streams given events by a delivery, written a slice at a time */
    ngx_queue_t                        touched;
    ngx_event_t                        writer;

    /* events alive in this worker, by sequence number */
    ngx_rbtree_t                       events;
    ngx_rbtree_node_t                  events_sentinel;

    /* what the zone copies out (copies.size: what one call may take) */
    ngx_http_webhook_sse_copies_t      copies;
    size_t                             capacity;

    /* the events of one delivery */
    ngx_http_webhook_sse_event_t     **batch;
    ngx_uint_t                         batch_size;

    /* spare output links */
    ngx_http_webhook_sse_out_t        *free;
    ngx_uint_t                         nfree;

    /* looks at the notices now and then: a lost doorbell stalls nothing */
    ngx_event_t                        check;

    /* ends the grace periods of sessions without streams (presence.c) */
    ngx_event_t                        presence;

    /* heartbeat lanes, one per interval in use (the rest: own timers) */
    ngx_http_webhook_sse_lane_t        lanes[NGX_HTTP_WEBHOOK_SSE_LANES];
    ngx_uint_t                         nlanes;

    ngx_http_webhook_sse_close_pt      close;
    ngx_log_t                         *log;
} ngx_http_webhook_sse_worker_t;


/* a stream; once detached it outlives its request */
struct ngx_http_webhook_sse_stream_s {
    /* first: the request's ctx, what logs and variables see */
    ngx_http_webhook_sse_ctx_t         ctx;

    ngx_http_request_t                *request;
    ngx_connection_t                  *connection;
    ngx_http_webhook_sse_loc_conf_t   *conf;
    ngx_http_webhook_sse_worker_t     *worker;
    ngx_msec_t                         send_timeout;

    /*
     * NGX_HTTP_WEBHOOK_SSE_SSE, _WEBSOCKET or _LONGPOLL; the last two
     * write the busy output themselves, with their own state
     */
    ngx_uint_t                         transport;
    ngx_http_webhook_sse_send_pt       send;
    void                              *transport_data;

    /* NULL: the stream has no session and gets broadcasts only */
    ngx_http_webhook_sse_lchannel_t   *channel;
    ngx_queue_t                        channel_link;
    ngx_queue_t                        worker_link;
    ngx_queue_t                        touched_link;

    /* the newest message the stream was given */
    uint64_t                           cursor;
    /* when it was subscribed, Unix milliseconds (presence) */
    int64_t                            opened;
    ngx_event_t                        heartbeat;

    /* in a heartbeat lane: due at beat_at; NULL: on its own timer */
    ngx_http_webhook_sse_lane_t       *lane;
    ngx_queue_t                        lane_link;
    ngx_msec_t                         beat_at;

    /* appended, not yet handed to the output filters */
    ngx_http_webhook_sse_out_t        *queued;
    ngx_http_webhook_sse_out_t       **queued_last;

    /* handed to the output filters, not yet sent */
    ngx_http_webhook_sse_out_t        *busy;
    ngx_http_webhook_sse_out_t       **busy_last;
    size_t                             unsent;

    /* live events that came while the replay was still being read */
    ngx_http_webhook_sse_out_t        *held;
    ngx_http_webhook_sse_out_t       **held_last;
    size_t                             held_bytes;
    uint64_t                           held_seq;

    unsigned                           subscribed:1;
    unsigned                           touched:1;
    /* the replay is still being read from the zone, part by part */
    unsigned                           catching_up:1;
    unsigned                           ending:1;
    unsigned                           failed:1;
    unsigned                           detach:1;
    unsigned                           detach_later:1;
    unsigned                           detached:1;
    unsigned                           chunked:1;
};


/* ngx_http_webhook_sse_stream.c */
void ngx_http_webhook_sse_stream_close(ngx_http_webhook_sse_stream_t *stream,
    ngx_int_t rc);
void ngx_http_webhook_sse_stream_end_all(void *data);

/* ngx_http_webhook_sse_websocket.c */
ngx_int_t ngx_http_webhook_sse_websocket_init(
    ngx_http_webhook_sse_stream_t *stream, const char **error);
ngx_int_t ngx_http_webhook_sse_websocket_open(
    ngx_http_webhook_sse_stream_t *stream);
void ngx_http_webhook_sse_websocket_end(ngx_http_webhook_sse_stream_t *stream);

/* ngx_http_webhook_sse_longpoll.c */
void ngx_http_webhook_sse_longpoll_init(ngx_http_webhook_sse_stream_t *stream);
ngx_int_t ngx_http_webhook_sse_longpoll_open(
    ngx_http_webhook_sse_stream_t *stream);
void ngx_http_webhook_sse_longpoll_end(ngx_http_webhook_sse_stream_t *stream);

/* ngx_http_webhook_sse_detach.c */
ngx_int_t ngx_http_webhook_sse_detach(ngx_http_webhook_sse_stream_t *stream);
void ngx_http_webhook_sse_detached_close(
    ngx_http_webhook_sse_stream_t *stream);

/* ngx_http_webhook_sse_fanout.c */
ngx_http_webhook_sse_lchannel_t *ngx_http_webhook_sse_channels_find(
    ngx_http_webhook_sse_channels_t *table, uint64_t id);
ngx_int_t ngx_http_webhook_sse_channels_reserve(
    ngx_http_webhook_sse_channels_t *table, ngx_log_t *log);
void ngx_http_webhook_sse_channels_add(ngx_http_webhook_sse_channels_t *table,
    ngx_http_webhook_sse_lchannel_t *lc);
void ngx_http_webhook_sse_channels_delete(
    ngx_http_webhook_sse_channels_t *table,
    ngx_http_webhook_sse_lchannel_t *lc);

ngx_http_webhook_sse_worker_t *ngx_http_webhook_sse_fanout_init(
    ngx_cycle_t *cycle, ngx_http_webhook_sse_zone_t *zone,
    ngx_http_webhook_sse_close_pt close_handler);
ngx_http_webhook_sse_worker_t *ngx_http_webhook_sse_fanout_worker(
    ngx_http_webhook_sse_zone_t *zone);
ngx_int_t ngx_http_webhook_sse_fanout_subscribe(
    ngx_http_webhook_sse_stream_t *stream, ngx_str_t *session,
    ngx_http_webhook_sse_replay_t *replay);
ngx_int_t ngx_http_webhook_sse_fanout_catch_up(
    ngx_http_webhook_sse_stream_t *stream);
void ngx_http_webhook_sse_fanout_deliver(void *data);
ngx_int_t ngx_http_webhook_sse_fanout_beat(
    ngx_http_webhook_sse_stream_t *stream);
void ngx_http_webhook_sse_fanout_unbeat(ngx_http_webhook_sse_stream_t *stream);
void ngx_http_webhook_sse_fanout_release(
    ngx_http_webhook_sse_stream_t *stream);

/* ngx_http_webhook_sse_presence.c */
void ngx_http_webhook_sse_presence_init(ngx_http_webhook_sse_worker_t *worker);
void ngx_http_webhook_sse_presence_look(ngx_http_webhook_sse_worker_t *worker);
void ngx_http_webhook_sse_presence_changed(
    ngx_http_webhook_sse_worker_t *worker,
    ngx_http_webhook_sse_stream_t *stream, ngx_str_t *session,
    ngx_http_webhook_sse_presence_change_t *change);

/* ngx_http_webhook_sse_output.c */
ngx_http_webhook_sse_event_t *ngx_http_webhook_sse_event_get(
    ngx_http_webhook_sse_worker_t *worker, ngx_http_webhook_sse_record_t *rec);
void ngx_http_webhook_sse_event_unref(ngx_http_webhook_sse_worker_t *worker,
    ngx_http_webhook_sse_event_t *ev);
ngx_int_t ngx_http_webhook_sse_output_append(
    ngx_http_webhook_sse_stream_t *stream, ngx_http_webhook_sse_event_t *ev,
    u_char *data, size_t len);
ngx_int_t ngx_http_webhook_sse_output_flush(
    ngx_http_webhook_sse_stream_t *stream);
ngx_int_t ngx_http_webhook_sse_output_append_text(
    ngx_http_webhook_sse_stream_t *stream, u_char *data, size_t len);
ngx_int_t ngx_http_webhook_sse_output_flush_detached(
    ngx_http_webhook_sse_stream_t *stream);
ngx_int_t ngx_http_webhook_sse_output_send(
    ngx_http_webhook_sse_stream_t *stream);
void ngx_http_webhook_sse_output_sent(ngx_http_webhook_sse_stream_t *stream);
ngx_int_t ngx_http_webhook_sse_output_hold(
    ngx_http_webhook_sse_stream_t *stream, ngx_http_webhook_sse_event_t *ev);
ngx_http_webhook_sse_event_t *ngx_http_webhook_sse_output_held(
    ngx_http_webhook_sse_stream_t *stream);
void ngx_http_webhook_sse_output_unhold(
    ngx_http_webhook_sse_stream_t *stream);
void ngx_http_webhook_sse_output_free(ngx_http_webhook_sse_stream_t *stream);
ngx_int_t ngx_http_webhook_sse_output_data(ngx_http_webhook_sse_out_t *out,
    ngx_str_t *data);


#endif /* _NGX_HTTP_WEBHOOK_SSE_STREAM_H_INCLUDED_ */
