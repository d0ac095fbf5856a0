/*
 * floor: the smallest honest SSE fan-out server we could write, as the
 * reference "what this kernel can do at all" for util/bench.
 *
 * Two forked processes, each with its own SO_REUSEPORT listen socket (as
 * nginx's "listen ... reuseport"), one epoll loop each, no HTTP framework
 * and no shared memory:
 *
 *   GET <path>?sessionId=X  (or ?id=X)   an SSE stream on channel X:
 *       "200", Content-Type: text/event-stream, chunked; every event of X
 *       is written as "id: N\ndata: <body line>\n...\n\n" in one chunk,
 *       one write() per stream per event.
 *   POST <any path>, JSON body with a top-level "sessionId" string:
 *       the body is parsed with yajl (the same library as the module), the
 *       event is built once, written to every stream of that channel in
 *       this process, and forwarded once to the other process over a
 *       socketpair (length-prefixed frames, one write per loop iteration
 *       for all publishes of that iteration), which writes it to its own
 *       streams of the channel.  Answer: 200 {"success":true,"id":"N"}.
 *
 * Event ids are counter * 2 + process index: unique without sharing.  No
 * history, no Last-Event-ID, no heartbeats, no limits beyond memory: a
 * floor, not a product.  Unsent bytes of a slow stream are kept (at most
 * 4 MB, then the stream is closed) and written on EPOLLOUT, so no event is
 * dropped.
 *
 * HTTP requests are scanned by hand (request line, Content-Length, end of
 * head): the clients are util/sse-bench and wrk, which send plain
 * HTTP/1.1 with Content-Length; a full parser (e.g. llhttp, not in Debian
 * 12 as a library) would cost more per request, never less, so the scan
 * keeps the floor a floor.  Chunked request bodies are refused (411).
 *
 *   floor -l 127.0.0.1 -p PORT [-w 2] [-P pidfile]
 *
 * SIGTERM to the parent stops both processes.
 */

#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <yajl/yajl_parse.h>


#define HEAD_MAX      8192
#define BODY_MAX      65536
#define OUT_MAX       (4 * 1024 * 1024)
#define CHAN_MAX      256
#define BUCKETS       65536
#define EVENTS        512
#define PEER_BUF      (256 * 1024)


enum {
    C_LISTEN = 0,
    C_REQUEST,
    C_STREAM,
    C_PEER
};


typedef struct chan_s  chan_t;
typedef struct conn_s  conn_t;

struct conn_s {
    int        fd;
    int        kind;
    char      *in;
    size_t     in_len;
    size_t     in_size;
    char      *out;
    size_t     out_pos;
    size_t     out_len;
    size_t     out_size;
    chan_t    *chan;
    conn_t    *prev;
    conn_t    *next;
};

struct chan_s {
    chan_t    *hnext;
    conn_t    *streams;
    uint32_t   hash;
    size_t     len;
    char       name[];
};


static int        ep;
static int        me;
static uint64_t   counter;
static chan_t    *buckets[BUCKETS];
static conn_t    *peer;
static char      *ev_buf;
static size_t     ev_size;


static void
die(const char *what)
{
    fprintf(stderr, "floor[%d]: %s: %s\n", me, what, strerror(errno));
    exit(1);
}


static void *
xrealloc(void *p, size_t n)
{
    p = realloc(p, n);
    if (p == NULL) {
        die("realloc");
    }

    return p;
}


static uint32_t
hash(const char *p, size_t n)
{
    uint32_t  h = 2166136261u;

    while (n--) {
        h = (h ^ (unsigned char) *p++) * 16777619u;
    }

    return h;
}


static chan_t *
chan_find(const char *name, size_t len, int create)
{
    uint32_t   h;
    chan_t    *c;

    h = hash(name, len);

    for (c = buckets[h % BUCKETS]; c; c = c->hnext) {
        if (c->hash == h && c->len == len && memcmp(c->name, name, len) == 0)
        {
            return c;
        }
    }

    if (!create) {
        return NULL;
    }

    c = calloc(1, sizeof(chan_t) + len);
    if (c == NULL) {
        die("calloc");
    }

    c->hash = h;
    c->len = len;
    memcpy(c->name, name, len);
    c->hnext = buckets[h % BUCKETS];
    buckets[h % BUCKETS] = c;

    return c;
}


static void
chan_drop(chan_t *c)
{
    chan_t  **pp;

    for (pp = &buckets[c->hash % BUCKETS]; *pp; pp = &(*pp)->hnext) {
        if (*pp == c) {
            *pp = c->hnext;
            free(c);
            return;
        }
    }
}


static conn_t *
conn_new(int fd, int kind)
{
    conn_t              *c;
    struct epoll_event   ee;

    c = calloc(1, sizeof(conn_t));
    if (c == NULL) {
        die("calloc");
    }

    c->fd = fd;
    c->kind = kind;

    /* as nginx: both directions, edge-triggered, registered once */
    ee.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ee.data.ptr = c;

    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ee) == -1) {
        die("epoll_ctl");
    }

    return c;
}


static void
conn_close(conn_t *c)
{
    if (c->kind == C_STREAM && c->chan) {
        if (c->prev) {
            c->prev->next = c->next;
        } else {
            c->chan->streams = c->next;
        }

        if (c->next) {
            c->next->prev = c->prev;
        }

        if (c->chan->streams == NULL) {
            chan_drop(c->chan);
        }
    }

    close(c->fd);
    free(c->in);
    free(c->out);
    free(c);
}


static void
out_append(conn_t *c, const char *p, size_t n)
{
    if (c->out_pos == c->out_len) {
        c->out_pos = c->out_len = 0;
    }

    if (c->out_len + n > c->out_size) {
        if (c->out_pos > 0) {
            memmove(c->out, c->out + c->out_pos, c->out_len - c->out_pos);
            c->out_len -= c->out_pos;
            c->out_pos = 0;
        }

        if (c->out_len + n > c->out_size) {
            c->out_size = (c->out_len + n) * 2;
            c->out = xrealloc(c->out, c->out_size);
        }
    }

    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
}


/* writes what is pending; -1 if the connection is dead */
static int
out_flush(conn_t *c)
{
    ssize_t  n;

    while (c->out_pos < c->out_len) {
        n = write(c->fd, c->out + c->out_pos, c->out_len - c->out_pos);

        if (n > 0) {
            c->out_pos += n;
            continue;
        }

        if (n == -1 && errno == EAGAIN) {
            return 0;
        }

        if (n == -1 && errno == EINTR) {
            continue;
        }

        return -1;
    }

    c->out_pos = c->out_len = 0;

    if (c->out_size > 65536) {
        free(c->out);
        c->out = NULL;
        c->out_size = 0;
    }

    return 0;
}


/*
 * One write of the event to a stream, or queue it behind what is pending.
 * A failed write leaves the stream to epoll (EPOLLERR/HUP closes it), so
 * the stream list is not changed while it is walked.
 */
static void
stream_send(conn_t *c, const char *p, size_t n)
{
    ssize_t  w;

    if (c->out_pos < c->out_len) {
        if (c->out_len - c->out_pos + n > OUT_MAX) {
            shutdown(c->fd, SHUT_RDWR);
            return;
        }

        out_append(c, p, n);
        return;
    }

    w = write(c->fd, p, n);

    if (w == (ssize_t) n) {
        return;
    }

    if (w == -1) {
        if (errno != EAGAIN && errno != EINTR) {
            return;
        }

        w = 0;
    }

    out_append(c, p + w, n - w);
}


static void
deliver(const char *name, size_t len, const char *ev, size_t n)
{
    chan_t  *ch;
    conn_t  *s;

    ch = chan_find(name, len, 0);
    if (ch == NULL) {
        return;
    }

    for (s = ch->streams; s; s = s->next) {
        stream_send(s, ev, n);
    }
}


/* the event as one chunk: "<hex>\r\nid: N\ndata: line\n...\n\n\r\n" */
static size_t
event_build(uint64_t id, const char *body, size_t blen)
{
    size_t       need, n, hlen;
    char        *p;
    const char  *b, *end, *eol;
    char         head[64];

    /* at worst every body byte is a line of its own: "data: \n" each */
    need = blen * 7 + 128;
    if (need > ev_size) {
        ev_size = need;
        ev_buf = xrealloc(ev_buf, ev_size);
    }

    /* leave room for the chunk size, written once the length is known */
    p = ev_buf + 16;
    p += sprintf(p, "id: %llu\n", (unsigned long long) id);

    b = body;
    end = body + blen;

    do {
        eol = memchr(b, '\n', end - b);
        if (eol == NULL) {
            eol = end;
        }

        n = eol - b;
        if (n && b[n - 1] == '\r') {
            n--;
        }

        memcpy(p, "data: ", 6);
        memcpy(p + 6, b, n);
        p[6 + n] = '\n';
        p += 7 + n;
        b = eol + 1;

    } while (b < end);

    *p++ = '\n';
    *p++ = '\r';
    *p++ = '\n';

    n = p - (ev_buf + 16) - 2;
    hlen = sprintf(head, "%zx\r\n", n);
    memcpy(ev_buf + 16 - hlen, head, hlen);

    /* the event starts at ev_buf + 16 - hlen */
    memmove(ev_buf, ev_buf + 16 - hlen, hlen + n + 2);

    return hlen + n + 2;
}


/* yajl callbacks: the top-level "sessionId" string */

typedef struct {
    int          depth;
    int          want;
    const char  *sid;
    size_t       sid_len;
} scan_t;


static int
j_start_map(void *ctx)
{
    ((scan_t *) ctx)->depth++;
    ((scan_t *) ctx)->want = 0;
    return 1;
}


static int
j_end_map(void *ctx)
{
    ((scan_t *) ctx)->depth--;
    return 1;
}


static int
j_key(void *ctx, const unsigned char *k, size_t n)
{
    scan_t  *s = ctx;

    s->want = (s->depth == 1 && n == 9 && memcmp(k, "sessionId", 9) == 0);
    return 1;
}


static int
j_string(void *ctx, const unsigned char *v, size_t n)
{
    scan_t  *s = ctx;

    if (s->want) {
        s->sid = (const char *) v;
        s->sid_len = n;
    }

    s->want = 0;
    return 1;
}


static int
j_scalar(void *ctx)
{
    ((scan_t *) ctx)->want = 0;
    return 1;
}


static int
j_number(void *ctx, const char *v, size_t n)
{
    return j_scalar(ctx);
}


static int
j_bool(void *ctx, int v)
{
    return j_scalar(ctx);
}


static const yajl_callbacks  j_callbacks = {
    j_scalar, j_bool, NULL, NULL, j_number, j_string,
    j_start_map, j_key, j_end_map, j_start_map, j_end_map
};


static void
answer(conn_t *c, int status, const char *json)
{
    char  buf[512];
    int   n;

    n = snprintf(buf, sizeof(buf),
                 "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                 "Content-Length: %zu\r\n\r\n%s",
                 status, status == 200 ? "OK" : "Error", strlen(json), json);

    out_append(c, buf, n);
}


static void
publish(conn_t *c, const char *body, size_t blen)
{
    scan_t       scan;
    uint32_t     frame[2];
    size_t       n;
    yajl_handle  y;
    char         sid[CHAN_MAX], json[128];

    memset(&scan, 0, sizeof(scan));

    /* the sessionId points into yajl's buffer: copy it before yajl_free */
    y = yajl_alloc(&j_callbacks, NULL, &scan);
    if (y == NULL) {
        die("yajl_alloc");
    }

    if (yajl_parse(y, (const unsigned char *) body, blen) != yajl_status_ok
        || yajl_complete_parse(y) != yajl_status_ok)
    {
        yajl_free(y);
        answer(c, 400, "{\"success\":false,\"error\":\"invalid JSON\"}");
        return;
    }

    if (scan.sid == NULL || scan.sid_len == 0 || scan.sid_len > CHAN_MAX) {
        yajl_free(y);
        answer(c, 400, "{\"success\":false,\"error\":\"sessionId missing\"}");
        return;
    }

    memcpy(sid, scan.sid, scan.sid_len);
    yajl_free(y);

    counter++;
    n = event_build(counter * 2 + me, body, blen);

    deliver(sid, scan.sid_len, ev_buf, n);

    if (peer == NULL) {
        goto done;
    }

    /* forward once: [channel length][event length][channel][event] */
    frame[0] = (uint32_t) scan.sid_len;
    frame[1] = (uint32_t) n;
    out_append(peer, (char *) frame, sizeof(frame));
    out_append(peer, sid, scan.sid_len);
    out_append(peer, ev_buf, n);

done:

    snprintf(json, sizeof(json), "{\"success\":true,\"id\":\"%llu\"}",
             (unsigned long long) (counter * 2 + me));
    answer(c, 200, json);
}


static int
query_param(const char *q, size_t qlen, const char *name, const char **v,
    size_t *vlen)
{
    size_t       n;
    const char  *p, *end, *amp;

    n = strlen(name);
    p = q;
    end = q + qlen;

    while (p < end) {
        amp = memchr(p, '&', end - p);
        if (amp == NULL) {
            amp = end;
        }

        if ((size_t) (amp - p) > n && memcmp(p, name, n) == 0 && p[n] == '=')
        {
            *v = p + n + 1;
            *vlen = amp - *v;
            return 1;
        }

        p = amp + 1;
    }

    return 0;
}


static const char  stream_head[] =
    "HTTP/1.1 200 OK\r\n"
    "Content-Type: text/event-stream\r\n"
    "Cache-Control: no-cache\r\n"
    "Transfer-Encoding: chunked\r\n\r\n";


/*
 * Handles every complete request in c->in; returns 1 if c became a stream.
 */
static int
requests(conn_t *c)
{
    char        *p, *end, *eoh, *line, *sp, *q, *h, *eol;
    size_t       used, qlen, vlen;
    long long    clen;
    const char  *v;
    chan_t      *ch;

    p = c->in;
    end = c->in + c->in_len;

    for (;;) {
        eoh = memmem(p, end - p, "\r\n\r\n", 4);
        if (eoh == NULL) {
            if (end - p > HEAD_MAX) {
                answer(c, 431, "{\"success\":false,\"error\":\"head\"}");
                return -1;
            }
            break;
        }

        line = p;
        sp = memchr(line, ' ', eoh - line);
        if (sp == NULL) {
            answer(c, 400, "{\"success\":false,\"error\":\"request\"}");
            return -1;
        }

        clen = 0;

        for (h = memchr(line, '\n', eoh + 2 - line) + 1; h < eoh + 2;
             h = eol + 1)
        {
            eol = memchr(h, '\n', eoh + 2 - h);

            if (eol - h > 15 && strncasecmp(h, "content-length:", 15) == 0)
            {
                clen = strtoll(h + 15, NULL, 10);

            } else if (eol - h > 18
                       && strncasecmp(h, "transfer-encoding:", 18) == 0)
            {
                answer(c, 411, "{\"success\":false,\"error\":\"length\"}");
                return -1;
            }
        }

        if (clen < 0 || clen > BODY_MAX) {
            answer(c, 413, "{\"success\":false,\"error\":\"too large\"}");
            return -1;
        }

        if (end - (eoh + 4) < clen) {
            break;
        }

        if (sp - line == 4 && memcmp(line, "POST", 4) == 0) {
            publish(c, eoh + 4, (size_t) clen);
            p = eoh + 4 + clen;
            continue;
        }

        if (sp - line == 3 && memcmp(line, "GET", 3) == 0) {
            q = memchr(sp + 1, '?', eoh - sp);
            eol = memchr(sp + 1, ' ', eoh - sp);

            if (q && eol && q < eol) {
                qlen = eol - (q + 1);

                if (query_param(q + 1, qlen, "sessionId", &v, &vlen)
                    || query_param(q + 1, qlen, "id", &v, &vlen))
                {
                    if (vlen == 0 || vlen > CHAN_MAX) {
                        answer(c, 400, "{\"success\":false,"
                                       "\"error\":\"sessionId\"}");
                        return -1;
                    }

                    ch = chan_find(v, vlen, 1);

                    c->kind = C_STREAM;
                    c->chan = ch;
                    c->next = ch->streams;
                    if (ch->streams) {
                        ch->streams->prev = c;
                    }
                    ch->streams = c;

                    out_append(c, stream_head, sizeof(stream_head) - 1);

                    free(c->in);
                    c->in = NULL;
                    c->in_len = c->in_size = 0;
                    return 1;
                }
            }
        }

        answer(c, 404, "{\"success\":false,\"error\":\"not found\"}");
        p = eoh + 4 + clen;
    }

    used = p - c->in;

    if (used == c->in_len) {
        /* an idle keep-alive connection keeps no buffer */
        free(c->in);
        c->in = NULL;
        c->in_len = c->in_size = 0;

    } else if (used) {
        memmove(c->in, p, c->in_len - used);
        c->in_len -= used;
    }

    return 0;
}


/*
 * Reads what there is, up to max bytes buffered: 0 when the socket has no
 * more (EAGAIN), 1 when the buffer reached max, -1 on EOF or error.
 */
static int
fill(conn_t *c, size_t max)
{
    ssize_t  n;

    for (;;) {
        if (c->in_size - c->in_len < 2048) {
            if (c->in_size >= max) {
                return 1;
            }

            c->in_size = c->in_size ? c->in_size * 2 : 4096;
            c->in = xrealloc(c->in, c->in_size);
        }

        n = read(c->fd, c->in + c->in_len, c->in_size - c->in_len);

        if (n > 0) {
            c->in_len += n;
            continue;
        }

        if (n == 0) {
            return -1;
        }

        if (errno == EAGAIN) {
            return 0;
        }

        if (errno != EINTR) {
            return -1;
        }
    }
}


static void
on_request(conn_t *c, uint32_t events)
{
    int  rc;

    if (events & EPOLLIN) {
        rc = fill(c, HEAD_MAX + BODY_MAX + 4096);
        rc = rc == 1 ? -1 : rc;

        if (c->in_len) {
            rc |= requests(c) == -1 ? -1 : 0;
        }

        if (out_flush(c) == -1 || rc == -1) {
            conn_close(c);
            return;
        }

    } else if (events & EPOLLOUT) {
        if (out_flush(c) == -1) {
            conn_close(c);
            return;
        }
    }

    if (events & (EPOLLERR | EPOLLHUP)) {
        conn_close(c);
    }
}


static void
on_stream(conn_t *c, uint32_t events)
{
    char     buf[512];
    ssize_t  n;

    if (events & (EPOLLERR | EPOLLHUP | EPOLLRDHUP)) {
        conn_close(c);
        return;
    }

    if (events & EPOLLIN) {
        for (;;) {
            n = read(c->fd, buf, sizeof(buf));
            if (n > 0) {
                continue;
            }
            if (n == 0 || errno != EAGAIN) {
                conn_close(c);
                return;
            }
            break;
        }
    }

    if ((events & EPOLLOUT) && out_flush(c) == -1) {
        conn_close(c);
    }
}


static void
on_peer(conn_t *c, uint32_t events)
{
    int       rc;
    uint32_t  frame[2];
    size_t    pos;

    if (events & EPOLLOUT) {
        if (out_flush(c) == -1) {
            die("peer write");
        }
    }

    if (!(events & EPOLLIN)) {
        return;
    }

    /* frames arrive in bursts: take them a buffer at a time */
    do {
        rc = fill(c, PEER_BUF);

        if (rc == -1) {
            /* the other process is gone */
            exit(0);
        }

        pos = 0;

        while (c->in_len - pos >= sizeof(frame)) {
            memcpy(frame, c->in + pos, sizeof(frame));

            if (c->in_len - pos < sizeof(frame) + frame[0] + frame[1]) {
                break;
            }

            deliver(c->in + pos + sizeof(frame), frame[0],
                    c->in + pos + sizeof(frame) + frame[0], frame[1]);

            pos += sizeof(frame) + frame[0] + frame[1];
        }

        memmove(c->in, c->in + pos, c->in_len - pos);
        c->in_len -= pos;

    } while (rc == 1);
}


static int
listen_on(const char *addr, int port)
{
    int                 fd, on;
    struct sockaddr_in  sin;

    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd == -1) {
        die("socket");
    }

    on = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on));

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port);

    if (inet_pton(AF_INET, addr, &sin.sin_addr) != 1) {
        errno = EINVAL;
        die(addr);
    }

    if (bind(fd, (struct sockaddr *) &sin, sizeof(sin)) == -1) {
        die("bind");
    }

    if (listen(fd, 4096) == -1) {
        die("listen");
    }

    return fd;
}


static void
worker(int index, int peer_fd, const char *addr, int port)
{
    int                  i, n, fd, lfd;
    conn_t              *c, *lc;
    struct epoll_event   events[EVENTS];

    me = index;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    signal(SIGPIPE, SIG_IGN);

    ep = epoll_create1(0);
    if (ep == -1) {
        die("epoll_create1");
    }

    lfd = listen_on(addr, port);
    lc = conn_new(lfd, C_LISTEN);
    peer = peer_fd == -1 ? NULL : conn_new(peer_fd, C_PEER);

    for (;;) {
        n = epoll_wait(ep, events, EVENTS, -1);

        if (n == -1) {
            if (errno == EINTR) {
                continue;
            }
            die("epoll_wait");
        }

        for (i = 0; i < n; i++) {
            c = events[i].data.ptr;

            switch (c->kind) {

            case C_LISTEN:
                for (;;) {
                    fd = accept4(lc->fd, NULL, NULL, SOCK_NONBLOCK);
                    if (fd == -1) {
                        break;
                    }
                    conn_new(fd, C_REQUEST);
                }
                break;

            case C_REQUEST:
                on_request(c, events[i].events);
                break;

            case C_STREAM:
                on_stream(c, events[i].events);
                break;

            case C_PEER:
                on_peer(c, events[i].events);
                break;
            }
        }

        /* all publishes of this iteration go to the other process at once */
        if (peer && peer->out_pos < peer->out_len && out_flush(peer) == -1) {
            die("peer write");
        }
    }
}


int
main(int argc, char **argv)
{
    int          opt, port, workers, sv[2], i, sig;
    pid_t        pid[2];
    FILE        *f;
    sigset_t     set;
    const char  *addr, *pidfile;

    addr = "127.0.0.1";
    port = 0;
    workers = 2;
    pidfile = NULL;

    while ((opt = getopt(argc, argv, "l:p:w:P:")) != -1) {
        switch (opt) {
        case 'l': addr = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'w': workers = atoi(optarg); break;
        case 'P': pidfile = optarg; break;
        default:
            fprintf(stderr, "usage: floor -l ADDR -p PORT [-w 1|2] "
                            "[-P pidfile]\n");
            return 2;
        }
    }

    if (port <= 0 || workers < 1 || workers > 2) {
        fprintf(stderr, "floor: -p PORT required, -w 1 or 2\n");
        return 2;
    }

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == -1) {
        die("socketpair");
    }

    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, NULL);

    for (i = 0; i < workers; i++) {
        pid[i] = fork();

        if (pid[i] == -1) {
            die("fork");
        }

        if (pid[i] == 0) {
            sigprocmask(SIG_UNBLOCK, &set, NULL);
            close(sv[1 - i]);
            worker(i, workers == 2 ? sv[i] : -1, addr, port);
            return 0;
        }
    }

    close(sv[0]);
    close(sv[1]);

    if (pidfile) {
        f = fopen(pidfile, "w");
        if (f == NULL) {
            die(pidfile);
        }
        fprintf(f, "%d\n", (int) getpid());
        fclose(f);
    }

    sigwait(&set, &sig);

    for (i = 0; i < workers; i++) {
        kill(pid[i], SIGTERM);
    }

    for (i = 0; i < workers; i++) {
        waitpid(pid[i], NULL, 0);
    }

    if (pidfile) {
        unlink(pidfile);
    }

    return sig == SIGCHLD;
}
