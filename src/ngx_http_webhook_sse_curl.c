
/*
 * nginx-webhook-sse: the HTTP client of outbound delivery: libcurl's multi
 * "socket" interface driven by the worker's own event loop.  Each socket
 * libcurl opens becomes an nginx connection whose read and write events
 * call curl_multi_socket_action(); libcurl's one timer is an nginx timer.
 * No thread of ours, no blocking call (libcurl resolves names in a thread
 * of its own).  One multi handle per worker, so connections to an
 * endpoint are kept alive and reused.
 *
 * It knows nothing of deliveries: it POSTs what it is given and calls the
 * function it is given with the outcome.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_http.h>

#include <curl/curl.h>

#include "ngx_http_webhook_sse_module.h"


/* request headers a transfer may carry */
#define NGX_HTTP_WEBHOOK_SSE_CURL_HEADERS  16


typedef struct {
    ngx_queue_t                          link;
    CURL                                *easy;
    /* the handle's fixed options are those of a configured URL */
    ngx_uint_t                           ready;
    /* the CA file they name (ours), NULL: the system's */
    u_char                              *cainfo;
    size_t                               cainfo_len;
    /* libcurl's list type in our memory: no allocation per header */
    struct curl_slist          headers[NGX_HTTP_WEBHOOK_SSE_CURL_HEADERS];
    ngx_http_webhook_sse_post_done_pt    done;
    void                                *data;
    ngx_http_webhook_sse_allow_t        *allow;
    ngx_uint_t                           plain;
    /* the address the allow list refused, for the error */
    char                                 refused[NGX_INET6_ADDRSTRLEN + 1];
    char                                 error[CURL_ERROR_SIZE];
} ngx_http_webhook_sse_transfer_t;


static int ngx_http_webhook_sse_curl_socket(CURL *easy, curl_socket_t s,
    int what, void *userp, void *socketp);
static int ngx_http_webhook_sse_curl_timer(CURLM *multi, long timeout,
    void *userp);
static void ngx_http_webhook_sse_curl_event(ngx_event_t *ev);
static void ngx_http_webhook_sse_curl_timeout(ngx_event_t *ev);
static void ngx_http_webhook_sse_curl_close(ngx_connection_t *c,
    ngx_uint_t flags);
static void ngx_http_webhook_sse_curl_finished(void);
static void ngx_http_webhook_sse_curl_keep(
    ngx_http_webhook_sse_transfer_t *t);
static size_t ngx_http_webhook_sse_curl_discard(char *ptr, size_t size,
    size_t nmemb, void *userdata);
static curl_socket_t ngx_http_webhook_sse_curl_open(void *clientp,
    curlsocktype purpose, struct curl_sockaddr *address);
static int ngx_http_webhook_sse_curl_prereq(void *clientp,
    char *primary_ip, char *local_ip, int primary_port, int local_port);
static ngx_uint_t ngx_http_webhook_sse_curl_allowed(
    ngx_http_webhook_sse_transfer_t *t, struct sockaddr *sa);


static CURLM        *ngx_http_webhook_sse_multi;
static ngx_event_t   ngx_http_webhook_sse_curl_timer_event;
static ngx_log_t    *ngx_http_webhook_sse_curl_log;
static ngx_uint_t    ngx_http_webhook_sse_curl_active;

/*
 * Easy handles kept for the next transfers, with the options they keep: a
 * handle of the same CA file and without an allow list is used again as it
 * is (only what differs per transfer is set), any other is reset first.
 */
#define NGX_HTTP_WEBHOOK_SSE_EASY_KEEP  256

typedef struct {
    CURL                                *easy;
    /* the CA file the handle was set up with, NULL: the system's */
    u_char                              *cainfo;
    size_t                               cainfo_len;
    ngx_uint_t                           ready;
} ngx_http_webhook_sse_easy_t;

static ngx_http_webhook_sse_easy_t  ngx_http_webhook_sse_curl_easy[
                                        NGX_HTTP_WEBHOOK_SSE_EASY_KEEP];
static ngx_uint_t                   ngx_http_webhook_sse_curl_neasy;

/* transfers in flight; connections made for libcurl's sockets (c->queue) */
static ngx_queue_t   ngx_http_webhook_sse_curl_transfers;
static ngx_queue_t   ngx_http_webhook_sse_curl_connections;


ngx_int_t
ngx_http_webhook_sse_curl_init(ngx_cycle_t *cycle)
{
    ngx_event_t  *ev;

    if (ngx_http_webhook_sse_multi) {
        return NGX_OK;
    }

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                      "webhook_forward: curl_global_init() failed");
        return NGX_ERROR;
    }

    ngx_http_webhook_sse_multi = curl_multi_init();
    if (ngx_http_webhook_sse_multi == NULL) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                      "webhook_forward: curl_multi_init() failed");
        return NGX_ERROR;
    }

    ngx_http_webhook_sse_curl_log = cycle->log;

    ngx_queue_init(&ngx_http_webhook_sse_curl_transfers);
    ngx_queue_init(&ngx_http_webhook_sse_curl_connections);

    ev = &ngx_http_webhook_sse_curl_timer_event;
    ev->handler = ngx_http_webhook_sse_curl_timeout;
    ev->log = cycle->log;
    ev->data = NULL;
    /* an exiting worker does not wait for deliveries: leases bring them back */
    ev->cancelable = 1;

    curl_multi_setopt(ngx_http_webhook_sse_multi, CURLMOPT_SOCKETFUNCTION,
                      ngx_http_webhook_sse_curl_socket);
    curl_multi_setopt(ngx_http_webhook_sse_multi, CURLMOPT_TIMERFUNCTION,
                      ngx_http_webhook_sse_curl_timer);
    curl_multi_setopt(ngx_http_webhook_sse_multi, CURLMOPT_MAXCONNECTS,
                      (long) 256);

    return NGX_OK;
}


/*
 * The worker exits: transfers in flight are dropped without a word to
 * their callers (the caller hands their deliveries to other workers), and
 * every socket is closed, kept-alive ones too: nginx wants no connection
 * left behind.
 */

void
ngx_http_webhook_sse_curl_exit(void)
{
    ngx_queue_t                      *q;
    ngx_connection_t                 *c;
    ngx_http_webhook_sse_easy_t      *e;
    ngx_http_webhook_sse_transfer_t  *t;

    if (ngx_http_webhook_sse_multi == NULL) {
        return;
    }

    while (!ngx_queue_empty(&ngx_http_webhook_sse_curl_transfers)) {
        q = ngx_queue_head(&ngx_http_webhook_sse_curl_transfers);
        t = ngx_queue_data(q, ngx_http_webhook_sse_transfer_t, link);

        ngx_queue_remove(q);

        curl_multi_remove_handle(ngx_http_webhook_sse_multi, t->easy);
        curl_easy_cleanup(t->easy);

        if (t->cainfo) {
            ngx_free(t->cainfo);
        }

        ngx_free(t);
    }

    while (ngx_http_webhook_sse_curl_neasy) {
        e = &ngx_http_webhook_sse_curl_easy[--ngx_http_webhook_sse_curl_neasy];

        curl_easy_cleanup(e->easy);

        if (e->cainfo) {
            ngx_free(e->cainfo);
        }
    }

    /* closes the kept-alive connections, telling us of each socket */
    curl_multi_cleanup(ngx_http_webhook_sse_multi);
    ngx_http_webhook_sse_multi = NULL;

    /* any it did not tell of are closed already: no epoll_ctl() for them */

    while (!ngx_queue_empty(&ngx_http_webhook_sse_curl_connections)) {
        q = ngx_queue_head(&ngx_http_webhook_sse_curl_connections);
        c = ngx_queue_data(q, ngx_connection_t, queue);

        ngx_http_webhook_sse_curl_close(c, NGX_CLOSE_EVENT);
    }

    if (ngx_http_webhook_sse_curl_timer_event.timer_set) {
        ngx_del_timer(&ngx_http_webhook_sse_curl_timer_event);
    }

    if (ngx_http_webhook_sse_curl_timer_event.posted) {
        ngx_delete_posted_event(&ngx_http_webhook_sse_curl_timer_event);
    }
}


ngx_int_t
ngx_http_webhook_sse_curl_post(ngx_http_webhook_sse_post_t *post,
    ngx_http_webhook_sse_post_done_pt done, void *data)
{
    CURL                             *easy;
    size_t                            cainfo_len;
    CURLcode                          rc;
    CURLMcode                         mrc;
    ngx_uint_t                        n, ready;
    ngx_http_webhook_sse_easy_t      *e;
    ngx_http_webhook_sse_transfer_t  *t;

    if (ngx_http_webhook_sse_multi == NULL) {
        return NGX_ERROR;
    }

    t = ngx_calloc(sizeof(ngx_http_webhook_sse_transfer_t),
                   ngx_http_webhook_sse_curl_log);
    if (t == NULL) {
        return NGX_ERROR;
    }

    t->done = done;
    t->data = data;
    t->allow = post->allow;
    t->plain = post->plain;

    for (n = 0; post->headers[n]; n++) {
        if (n == NGX_HTTP_WEBHOOK_SSE_CURL_HEADERS) {
            goto failed;
        }

        t->headers[n].data = post->headers[n];
        t->headers[n].next = post->headers[n + 1] ? &t->headers[n + 1]
                                                  : NULL;
    }

    cainfo_len = post->cainfo ? ngx_strlen(post->cainfo) : 0;
    ready = 0;

    if (ngx_http_webhook_sse_curl_neasy) {
        e = &ngx_http_webhook_sse_curl_easy[--ngx_http_webhook_sse_curl_neasy];
        easy = e->easy;

        if (e->ready && post->allow == NULL
            && e->cainfo_len == cainfo_len
            && (cainfo_len == 0
                || ngx_memcmp(e->cainfo, post->cainfo, cainfo_len) == 0))
        {
            ready = 1;

        } else {
            curl_easy_reset(easy);
        }

        t->cainfo = e->cainfo;
        t->cainfo_len = e->cainfo_len;
        e->cainfo = NULL;

    } else {
        easy = curl_easy_init();
        if (easy == NULL) {
            goto failed;
        }
    }

    t->easy = easy;
    t->ready = (post->allow == NULL);

    if (!ready) {
        /* the CA file the handle is set up with, to know it next time */

        if (t->cainfo) {
            ngx_free(t->cainfo);
            t->cainfo = NULL;
            t->cainfo_len = 0;
        }

        if (cainfo_len) {
            t->cainfo = ngx_alloc(cainfo_len, ngx_http_webhook_sse_curl_log);

            if (t->cainfo) {
                ngx_memcpy(t->cainfo, post->cainfo, cainfo_len);
                t->cainfo_len = cainfo_len;

            } else {
                /* set up afresh next time */
                t->ready = 0;
            }
        }
    }

    /* what differs from one transfer to the next */

    rc = curl_easy_setopt(easy, CURLOPT_URL, post->url);
    rc |= curl_easy_setopt(easy, CURLOPT_POSTFIELDS, post->body.data);
    rc |= curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE,
                           (curl_off_t) post->body.len);
    rc |= curl_easy_setopt(easy, CURLOPT_HTTPHEADER, n ? t->headers : NULL);
    rc |= curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long) post->timeout);
    rc |= curl_easy_setopt(easy, CURLOPT_PRIVATE, t);
    rc |= curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, t->error);

    if (!ready) {
        rc |= curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
        rc |= curl_easy_setopt(easy, CURLOPT_POST, 1L);
        rc |= curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
        rc |= curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);
        rc |= curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);
        rc |= curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
        rc |= curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION,
                               ngx_http_webhook_sse_curl_discard);

        if (post->cainfo) {
            rc |= curl_easy_setopt(easy, CURLOPT_CAINFO, post->cainfo);
        }
    }

    if (post->allow) {
        /* a new connection is checked before it is made, a reused one too */
        rc |= curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION,
                               ngx_http_webhook_sse_curl_open);
        rc |= curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, t);
        rc |= curl_easy_setopt(easy, CURLOPT_PREREQFUNCTION,
                               ngx_http_webhook_sse_curl_prereq);
        rc |= curl_easy_setopt(easy, CURLOPT_PREREQDATA, t);
    }

    if (rc != CURLE_OK) {
        ngx_log_error(NGX_LOG_ALERT, ngx_http_webhook_sse_curl_log, 0,
                      "webhook_forward: curl_easy_setopt() failed");
        goto failed;
    }

    mrc = curl_multi_add_handle(ngx_http_webhook_sse_multi, easy);

    if (mrc != CURLM_OK) {
        ngx_log_error(NGX_LOG_ALERT, ngx_http_webhook_sse_curl_log, 0,
                      "webhook_forward: curl_multi_add_handle() failed: %s",
                      curl_multi_strerror(mrc));
        goto failed;
    }

    ngx_http_webhook_sse_curl_active++;
    ngx_queue_insert_tail(&ngx_http_webhook_sse_curl_transfers, &t->link);

    return NGX_OK;

failed:

    if (t->easy) {
        curl_easy_cleanup(t->easy);
    }

    if (t->cainfo) {
        ngx_free(t->cainfo);
    }

    ngx_free(t);

    return NGX_ERROR;
}


/* libcurl wants a socket watched (or no longer) */

static int
ngx_http_webhook_sse_curl_socket(CURL *easy, curl_socket_t s, int what,
    void *userp, void *socketp)
{
    ngx_connection_t  *c = socketp;

    if (what == CURL_POLL_REMOVE) {
        if (c) {
            ngx_http_webhook_sse_curl_close(c, 0);
            curl_multi_assign(ngx_http_webhook_sse_multi, s, NULL);
        }

        return 0;
    }

    if (c == NULL) {
        c = ngx_get_connection(s, ngx_http_webhook_sse_curl_log);
        if (c == NULL) {
            return -1;
        }

        c->read->handler = ngx_http_webhook_sse_curl_event;
        c->write->handler = ngx_http_webhook_sse_curl_event;
        c->read->log = ngx_http_webhook_sse_curl_log;
        c->write->log = ngx_http_webhook_sse_curl_log;
        c->log = ngx_http_webhook_sse_curl_log;

        ngx_queue_insert_tail(&ngx_http_webhook_sse_curl_connections,
                              &c->queue);

        curl_multi_assign(ngx_http_webhook_sse_multi, s, c);
    }

    /*
     * Level-triggered: libcurl need not read or write until EAGAIN, so an
     * edge could be lost.
     */

    if ((what & CURL_POLL_IN) && !c->read->active) {
        if (ngx_add_event(c->read, NGX_READ_EVENT, NGX_LEVEL_EVENT)
            != NGX_OK)
        {
            return -1;
        }

    } else if (!(what & CURL_POLL_IN) && c->read->active) {
        if (ngx_del_event(c->read, NGX_READ_EVENT, 0) != NGX_OK) {
            return -1;
        }
    }

    if ((what & CURL_POLL_OUT) && !c->write->active) {
        if (ngx_add_event(c->write, NGX_WRITE_EVENT, NGX_LEVEL_EVENT)
            != NGX_OK)
        {
            return -1;
        }

    } else if (!(what & CURL_POLL_OUT) && c->write->active) {
        if (ngx_del_event(c->write, NGX_WRITE_EVENT, 0) != NGX_OK) {
            return -1;
        }
    }

    return 0;
}


/* the socket stays libcurl's: it closes it */

static void
ngx_http_webhook_sse_curl_close(ngx_connection_t *c, ngx_uint_t flags)
{
    ngx_queue_remove(&c->queue);

    if (c->read->active) {
        ngx_del_event(c->read, NGX_READ_EVENT, flags);
    }

    if (c->write->active) {
        ngx_del_event(c->write, NGX_WRITE_EVENT, flags);
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    ngx_free_connection(c);

    c->fd = (ngx_socket_t) -1;
}


static int
ngx_http_webhook_sse_curl_timer(CURLM *multi, long timeout, void *userp)
{
    ngx_event_t  *ev;

    ev = &ngx_http_webhook_sse_curl_timer_event;

    if (ev->timer_set) {
        ngx_del_timer(ev);
    }

    if (timeout < 0) {
        return 0;
    }

    if (timeout == 0) {
        /* not from within libcurl's callback: on the next turn */
        if (!ev->posted) {
            ngx_post_event(ev, &ngx_posted_events);
        }

        return 0;
    }

    ngx_add_timer(ev, (ngx_msec_t) timeout);

    return 0;
}


static void
ngx_http_webhook_sse_curl_event(ngx_event_t *ev)
{
    int                running;
    ngx_connection_t  *c;

    c = ev->data;

    curl_multi_socket_action(ngx_http_webhook_sse_multi, c->fd,
                             ev->write ? CURL_CSELECT_OUT : CURL_CSELECT_IN,
                             &running);

    ngx_http_webhook_sse_curl_finished();
}


static void
ngx_http_webhook_sse_curl_timeout(ngx_event_t *ev)
{
    int  running;

    if (ev->posted) {
        ngx_delete_posted_event(ev);
    }

    curl_multi_socket_action(ngx_http_webhook_sse_multi, CURL_SOCKET_TIMEOUT,
                             0, &running);

    ngx_http_webhook_sse_curl_finished();
}


/* hands every finished transfer to its caller */

static void
ngx_http_webhook_sse_curl_finished(void)
{
    int                                  left;
    long                                 code;
    char                                *p;
    CURLMsg                             *msg;
    CURLcode                             result;
    curl_off_t                           retry_after;
    ngx_http_webhook_sse_transfer_t     *t;
    ngx_http_webhook_sse_post_result_t   res;

    while ((msg = curl_multi_info_read(ngx_http_webhook_sse_multi, &left))) {

        if (msg->msg != CURLMSG_DONE) {
            continue;
        }

        t = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &t);
        result = msg->data.result;

        ngx_memzero(&res, sizeof(ngx_http_webhook_sse_post_result_t));

        if (result == CURLE_OK) {
            code = 0;
            retry_after = 0;

            curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &code);
            curl_easy_getinfo(t->easy, CURLINFO_RETRY_AFTER, &retry_after);

            res.status = (ngx_uint_t) code;
            res.retry_after = (time_t) retry_after;

            ngx_snprintf((u_char *) res.error, sizeof(res.error) - 1,
                         "HTTP %ui%Z", res.status);

        } else {
            res.timed_out = (result == CURLE_OPERATION_TIMEDOUT);

            if (t->refused[0]) {
                p = (char *) ngx_snprintf((u_char *) res.error,
                                          sizeof(res.error) - 1,
                                          "address %s is not allowed by "
                                          "webhook_forward_allow",
                                          t->refused);

            } else {
                p = (char *) ngx_snprintf((u_char *) res.error,
                                          sizeof(res.error) - 1, "%s",
                                          t->error[0]
                                          ? t->error
                                          : curl_easy_strerror(result));
            }

            *p = '\0';
        }

        ngx_queue_remove(&t->link);

        curl_multi_remove_handle(ngx_http_webhook_sse_multi, t->easy);

        /* a kept handle keeps its buffers and caches for the next one */
        if (ngx_http_webhook_sse_curl_neasy < NGX_HTTP_WEBHOOK_SSE_EASY_KEEP)
        {
            ngx_http_webhook_sse_curl_keep(t);

        } else {
            curl_easy_cleanup(t->easy);

            if (t->cainfo) {
                ngx_free(t->cainfo);
            }
        }

        ngx_http_webhook_sse_curl_active--;

        t->done(t->data, &res);

        ngx_free(t);
    }
}


/* a finished transfer's handle goes back to the kept ones, as it is */

static void
ngx_http_webhook_sse_curl_keep(ngx_http_webhook_sse_transfer_t *t)
{
    ngx_http_webhook_sse_easy_t  *e;

    e = &ngx_http_webhook_sse_curl_easy[ngx_http_webhook_sse_curl_neasy++];

    e->easy = t->easy;
    e->ready = t->ready;
    e->cainfo = t->cainfo;
    e->cainfo_len = t->cainfo_len;
}


static size_t
ngx_http_webhook_sse_curl_discard(char *ptr, size_t size, size_t nmemb,
    void *userdata)
{
    return size * nmemb;
}


static curl_socket_t
ngx_http_webhook_sse_curl_open(void *clientp, curlsocktype purpose,
    struct curl_sockaddr *address)
{
    ngx_http_webhook_sse_transfer_t *t = clientp;

    if (purpose != CURLSOCKTYPE_IPCXN
        || !ngx_http_webhook_sse_curl_allowed(t, &address->addr))
    {
        return CURL_SOCKET_BAD;
    }

    return socket(address->family, address->socktype, address->protocol);
}


static int
ngx_http_webhook_sse_curl_prereq(void *clientp, char *primary_ip,
    char *local_ip, int primary_port, int local_port)
{
    ngx_http_webhook_sse_transfer_t *t = clientp;

    ngx_sockaddr_t  sa;

    ngx_memzero(&sa, sizeof(ngx_sockaddr_t));

    if (inet_pton(AF_INET, primary_ip, &sa.sockaddr_in.sin_addr) == 1) {
        sa.sockaddr.sa_family = AF_INET;

#if (NGX_HAVE_INET6)
    } else if (inet_pton(AF_INET6, primary_ip, &sa.sockaddr_in6.sin6_addr)
               == 1)
    {
        sa.sockaddr.sa_family = AF_INET6;
#endif

    } else {
        ngx_cpystrn((u_char *) t->refused, (u_char *) primary_ip,
                    sizeof(t->refused));
        return CURL_PREREQFUNC_ABORT;
    }

    return ngx_http_webhook_sse_curl_allowed(t, &sa.sockaddr)
           ? CURL_PREREQFUNC_OK : CURL_PREREQFUNC_ABORT;
}


static ngx_uint_t
ngx_http_webhook_sse_curl_allowed(ngx_http_webhook_sse_transfer_t *t,
    struct sockaddr *sa)
{
    socklen_t  len;

    if (t->plain ? ngx_http_webhook_sse_allow_names(t->allow, sa)
                 : ngx_http_webhook_sse_allow_check(t->allow, sa))
    {
        return 1;
    }

    len = (sa->sa_family == AF_INET) ? sizeof(struct sockaddr_in)
                                     : sizeof(struct sockaddr_in6);

    len = ngx_sock_ntop(sa, len, (u_char *) t->refused,
                        sizeof(t->refused) - 1, 0);
    t->refused[len] = '\0';

    return 0;
}
