
/*
 * nginx-webhook-sse: cross-worker doorbells.
 *
 * Each worker binds a datagram socket in the abstract namespace, named by
 * the zone's nonce and the worker's pid, so no descriptor has to be made
 * before fork and no process slot has to be guessed; a socket disappears
 * with its process.  What to deliver is noted in the zone (the worker's
 * notices); the doorbell only wakes the worker, once per batch, and calls
 * the handler it was given.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <sys/un.h>

#include "ngx_http_webhook_sse_module.h"


/* doorbells read in one call: fewer came, none is left to read */
#define NGX_HTTP_WEBHOOK_SSE_RINGS  16


typedef struct {
    ngx_http_webhook_sse_zone_t     *zone;
    ngx_connection_t                *connection;
    /* the address of a doorbell of the zone, up to the pid (pid_at) */
    struct sockaddr_un               peer;
    u_char                          *pid_at;
    ngx_http_webhook_sse_notify_pt   ring;
    ngx_http_webhook_sse_notify_pt   close;
    void                            *data;
} ngx_http_webhook_sse_doorbell_t;


/* the doorbells one recvmmsg() reads */
typedef struct {
    u_char                           byte[NGX_HTTP_WEBHOOK_SSE_RINGS];
    struct iovec                     iov[NGX_HTTP_WEBHOOK_SSE_RINGS];
    struct mmsghdr                   msg[NGX_HTTP_WEBHOOK_SSE_RINGS];
} ngx_http_webhook_sse_rings_t;


static ngx_http_webhook_sse_doorbell_t *ngx_http_webhook_sse_notify_doorbell(
    ngx_http_webhook_sse_zone_t *zone);
static u_char *ngx_http_webhook_sse_notify_prefix(
    ngx_http_webhook_sse_zone_t *zone, struct sockaddr_un *sa);
static void ngx_http_webhook_sse_notify_handler(ngx_event_t *rev);


static ngx_socket_t  ngx_http_webhook_sse_sender = (ngx_socket_t) -1;

/* this worker's doorbells, one per zone */
static ngx_array_t  *ngx_http_webhook_sse_doorbells;

/* where any doorbell is read to: a byte each, set up once */
static ngx_http_webhook_sse_rings_t  ngx_http_webhook_sse_rings;


ngx_int_t
ngx_http_webhook_sse_notify_init(ngx_cycle_t *cycle,
    ngx_http_webhook_sse_zone_t *zone, ngx_http_webhook_sse_notify_pt ring_handler,
    ngx_http_webhook_sse_notify_pt close_handler, void *data)
{
    socklen_t                         len;
    ngx_uint_t                        i;
    ngx_event_t                      *rev;
    ngx_socket_t                      fd;
    ngx_connection_t                 *c;
    struct sockaddr_un                sa;
    ngx_http_webhook_sse_rings_t     *rings;
    ngx_http_webhook_sse_doorbell_t  *bell, **slot;

    if (ngx_http_webhook_sse_doorbells == NULL) {
        ngx_http_webhook_sse_doorbells = ngx_array_create(cycle->pool, 2,
                                   sizeof(ngx_http_webhook_sse_doorbell_t *));
        if (ngx_http_webhook_sse_doorbells == NULL) {
            return NGX_ERROR;
        }
    }

    if (ngx_http_webhook_sse_sender == (ngx_socket_t) -1) {
        ngx_http_webhook_sse_sender = socket(AF_UNIX,
                                             SOCK_DGRAM|SOCK_NONBLOCK
                                             |SOCK_CLOEXEC, 0);

        if (ngx_http_webhook_sse_sender == (ngx_socket_t) -1) {
            ngx_log_error(NGX_LOG_ALERT, cycle->log, ngx_socket_errno,
                          "webhook: socket() for doorbells failed");
            return NGX_ERROR;
        }

        rings = &ngx_http_webhook_sse_rings;

        for (i = 0; i < NGX_HTTP_WEBHOOK_SSE_RINGS; i++) {
            rings->iov[i].iov_base = &rings->byte[i];
            rings->iov[i].iov_len = 1;
            rings->msg[i].msg_hdr.msg_iov = &rings->iov[i];
            rings->msg[i].msg_hdr.msg_iovlen = 1;
        }
    }

    fd = socket(AF_UNIX, SOCK_DGRAM|SOCK_NONBLOCK|SOCK_CLOEXEC, 0);

    if (fd == (ngx_socket_t) -1) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, ngx_socket_errno,
                      "webhook: socket() for a doorbell failed");
        return NGX_ERROR;
    }

    len = ngx_http_webhook_sse_format_uint(
              ngx_http_webhook_sse_notify_prefix(zone, &sa), ngx_pid)
          - (u_char *) &sa;

    if (bind(fd, (struct sockaddr *) &sa, len) == -1) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, ngx_socket_errno,
                      "webhook zone \"%V\": bind() of the doorbell failed",
                      &zone->shm_zone->shm.name);
        ngx_close_socket(fd);
        return NGX_ERROR;
    }

    bell = ngx_pcalloc(cycle->pool, sizeof(ngx_http_webhook_sse_doorbell_t));
    slot = ngx_array_push(ngx_http_webhook_sse_doorbells);

    if (bell == NULL || slot == NULL) {
        ngx_close_socket(fd);
        return NGX_ERROR;
    }

    *slot = bell;

    bell->pid_at = ngx_http_webhook_sse_notify_prefix(zone, &bell->peer);

    c = ngx_get_connection(fd, cycle->log);
    if (c == NULL) {
        ngx_close_socket(fd);
        return NGX_ERROR;
    }

    bell->zone = zone;
    bell->connection = NULL;
    bell->ring = ring_handler;
    bell->close = close_handler;
    bell->data = data;

    c->data = bell;

    /*
     * "Idle": on graceful shutdown nginx calls the read handler with
     * c->close set, which is when this worker ends its streams.
     */
    c->idle = 1;

    rev = c->read;
    rev->log = cycle->log;
    c->write->log = cycle->log;
    rev->handler = ngx_http_webhook_sse_notify_handler;

    if (ngx_add_event(rev, NGX_READ_EVENT, 0) != NGX_OK) {
        ngx_close_connection(c);
        return NGX_ERROR;
    }

    bell->connection = c;

    return NGX_OK;
}


static ngx_http_webhook_sse_doorbell_t *
ngx_http_webhook_sse_notify_doorbell(ngx_http_webhook_sse_zone_t *zone)
{
    ngx_uint_t                         i;
    ngx_http_webhook_sse_doorbell_t  **bell;

    if (ngx_http_webhook_sse_doorbells == NULL) {
        return NULL;
    }

    bell = ngx_http_webhook_sse_doorbells->elts;

    for (i = 0; i < ngx_http_webhook_sse_doorbells->nelts; i++) {
        if (bell[i]->zone == zone && bell[i]->connection) {
            return bell[i];
        }
    }

    return NULL;
}


/*
 * "nginx-webhook-sse/<nonce>/", the name of every doorbell of the zone
 * but for the pid that ends it; returns where the pid goes.
 */

static u_char *
ngx_http_webhook_sse_notify_prefix(ngx_http_webhook_sse_zone_t *zone,
    struct sockaddr_un *sa)
{
    ngx_memzero(sa, sizeof(struct sockaddr_un));

    sa->sun_family = AF_UNIX;

    /* sun_path[0] == '\0': the abstract namespace, nothing on disk */
    return ngx_snprintf((u_char *) sa->sun_path + 1,
                        sizeof(sa->sun_path) - 1 - NGX_INT64_LEN,
                        "nginx-webhook-sse/%016uxL/", zone->sh->nonce);
}


void
ngx_http_webhook_sse_notify_wake(ngx_http_webhook_sse_zone_t *zone,
    ngx_pid_t pid)
{
    u_char                           *p;
    ngx_err_t                         err;
    struct sockaddr_un                sa, *to;
    ngx_http_webhook_sse_doorbell_t  *bell;

    bell = ngx_http_webhook_sse_notify_doorbell(zone);

    if (pid == ngx_pid) {
        if (bell) {
            ngx_post_event(bell->connection->read, &ngx_posted_events);
        }

        return;
    }

    /* the other workers' names: this worker's own with their pid */

    if (bell) {
        to = &bell->peer;
        p = bell->pid_at;

    } else {
        to = &sa;
        p = ngx_http_webhook_sse_notify_prefix(zone, &sa);
    }

    p = ngx_http_webhook_sse_format_uint(p, (uint64_t) pid);

    if (sendto(ngx_http_webhook_sse_sender, "", 1, 0,
               (struct sockaddr *) to, p - (u_char *) to)
        != -1)
    {
        return;
    }

    err = ngx_socket_errno;

    /* full: the worker has unread doorbells and will look at its notices */
    if (err == NGX_EAGAIN) {
        return;
    }

    ngx_log_error(NGX_LOG_INFO, zone->log, err,
                  "webhook zone \"%V\": doorbell of process %P failed",
                  &zone->shm_zone->shm.name, pid);

    /* the process is gone; its slot is reclaimed by the next worker */
    if (err == NGX_ECONNREFUSED || err == NGX_ENOENT) {
        return;
    }

    /* the next publish rings again; the worker also looks by itself */
    ngx_http_webhook_sse_store_unwake(zone, pid);
}


static void
ngx_http_webhook_sse_notify_handler(ngx_event_t *rev)
{
    int                               n;
    ngx_connection_t                 *c;
    ngx_http_webhook_sse_doorbell_t  *bell;

    c = rev->data;
    bell = c->data;

    if (c->close) {
        ngx_close_connection(c);
        bell->connection = NULL;

        bell->close(bell->data);
        return;
    }

    /* not ready: posted by this worker's own publish, nothing to read */

    if (rev->ready) {
        do {
            n = recvmmsg(c->fd, ngx_http_webhook_sse_rings.msg,
                         NGX_HTTP_WEBHOOK_SSE_RINGS, 0, NULL);
        } while (n == NGX_HTTP_WEBHOOK_SSE_RINGS);

        rev->ready = 0;
    }

    bell->ring(bell->data);
}


void
ngx_http_webhook_sse_notify_exit(ngx_http_webhook_sse_zone_t *zone)
{
    ngx_http_webhook_sse_doorbell_t  *bell;

    bell = ngx_http_webhook_sse_notify_doorbell(zone);

    if (bell) {
        ngx_close_connection(bell->connection);
        bell->connection = NULL;
    }
}
