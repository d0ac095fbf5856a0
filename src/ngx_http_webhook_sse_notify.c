
/*
 * nginx-webhook-sse: cross-worker doorbells.
 *
 * Each worker binds a datagram socket in the abstract namespace, named by
 * the zone's nonce and the worker's pid, so no descriptor has to be made
 * before fork and no process slot has to be guessed; a socket disappears
 * with its process.  What to deliver is queued in the zone (the worker's
 * notice ring); the doorbell only wakes the worker, once per batch.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <sys/un.h>

#include "ngx_http_webhook_sse_module.h"


static socklen_t ngx_http_webhook_sse_notify_address(
    ngx_http_webhook_sse_zone_t *zone, ngx_pid_t pid, struct sockaddr_un *sa);
static void ngx_http_webhook_sse_notify_handler(ngx_event_t *rev);


static ngx_socket_t  ngx_http_webhook_sse_sender = (ngx_socket_t) -1;


ngx_int_t
ngx_http_webhook_sse_notify_init(ngx_cycle_t *cycle,
    ngx_http_webhook_sse_zone_t *zone)
{
    socklen_t            len;
    ngx_event_t         *rev;
    ngx_socket_t         fd;
    ngx_connection_t    *c;
    struct sockaddr_un   sa;

    if (ngx_http_webhook_sse_sender == (ngx_socket_t) -1) {
        ngx_http_webhook_sse_sender = socket(AF_UNIX,
                                             SOCK_DGRAM|SOCK_NONBLOCK
                                             |SOCK_CLOEXEC, 0);

        if (ngx_http_webhook_sse_sender == (ngx_socket_t) -1) {
            ngx_log_error(NGX_LOG_ALERT, cycle->log, ngx_socket_errno,
                          "webhook: socket() for doorbells failed");
            return NGX_ERROR;
        }
    }

    fd = socket(AF_UNIX, SOCK_DGRAM|SOCK_NONBLOCK|SOCK_CLOEXEC, 0);

    if (fd == (ngx_socket_t) -1) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, ngx_socket_errno,
                      "webhook: socket() for a doorbell failed");
        return NGX_ERROR;
    }

    len = ngx_http_webhook_sse_notify_address(zone, ngx_pid, &sa);

    if (bind(fd, (struct sockaddr *) &sa, len) == -1) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, ngx_socket_errno,
                      "webhook zone \"%V\": bind() of the doorbell failed",
                      &zone->shm_zone->shm.name);
        ngx_close_socket(fd);
        return NGX_ERROR;
    }

    c = ngx_get_connection(fd, cycle->log);
    if (c == NULL) {
        ngx_close_socket(fd);
        return NGX_ERROR;
    }

    c->data = zone;

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

    zone->doorbell = c;

    return NGX_OK;
}


static socklen_t
ngx_http_webhook_sse_notify_address(ngx_http_webhook_sse_zone_t *zone,
    ngx_pid_t pid, struct sockaddr_un *sa)
{
    u_char  *p;

    ngx_memzero(sa, sizeof(struct sockaddr_un));

    sa->sun_family = AF_UNIX;

    /* sun_path[0] == '\0': the abstract namespace, nothing on disk */
    p = ngx_snprintf((u_char *) sa->sun_path + 1, sizeof(sa->sun_path) - 1,
                     "nginx-webhook-sse/%016uxL/%P", zone->sh->nonce, pid);

    return offsetof(struct sockaddr_un, sun_path)
           + (p - (u_char *) sa->sun_path);
}


void
ngx_http_webhook_sse_notify_ring(ngx_http_webhook_sse_zone_t *zone,
    ngx_pid_t pid)
{
    socklen_t           len;
    ngx_err_t           err;
    struct sockaddr_un  sa;

    if (pid == ngx_pid) {
        if (zone->doorbell) {
            ngx_post_event(zone->doorbell->read, &ngx_posted_events);
        }

        return;
    }

    len = ngx_http_webhook_sse_notify_address(zone, pid, &sa);

    if (sendto(ngx_http_webhook_sse_sender, "", 1, 0,
               (struct sockaddr *) &sa, len)
        != -1)
    {
        return;
    }

    err = ngx_socket_errno;

    /* full: the worker has unread doorbells and will look at its ring */
    if (err == NGX_EAGAIN) {
        return;
    }

    /* the process is gone; its slot is reclaimed by the next worker */
    ngx_log_error(NGX_LOG_INFO, zone->log, err,
                  "webhook zone \"%V\": doorbell of process %P failed",
                  &zone->shm_zone->shm.name, pid);
}


static void
ngx_http_webhook_sse_notify_handler(ngx_event_t *rev)
{
    u_char                        buf[64];
    ngx_connection_t             *c;
    ngx_http_webhook_sse_zone_t  *zone;

    c = rev->data;
    zone = c->data;

    if (c->close) {
        ngx_log_error(NGX_LOG_INFO, zone->log, 0,
                      "webhook zone \"%V\": shutting down, ending %ui streams",
                      &zone->shm_zone->shm.name, zone->nstreams);

        ngx_close_connection(c);
        zone->doorbell = NULL;

        ngx_http_webhook_sse_end_streams(zone);
        return;
    }

    while (recv(c->fd, buf, sizeof(buf), 0) > 0) {
        /* void */
    }

    ngx_http_webhook_sse_deliver(zone);
}


void
ngx_http_webhook_sse_notify_exit(ngx_http_webhook_sse_zone_t *zone)
{
    if (zone->doorbell) {
        ngx_close_connection(zone->doorbell);
        zone->doorbell = NULL;
    }
}
