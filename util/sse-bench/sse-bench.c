/*
 * sse-bench: an epoll load generator for SSE fan-out servers.
 *
 * It opens many long-lived text/event-stream requests (spread over forked
 * worker processes and source addresses 127.0.0.x), publishes JSON messages
 * carrying a per-channel sequence number and a send timestamp over
 * keep-alive HTTP connections, and measures delivery: throughput, latency,
 * gaps, duplicates, losses, connect times and resume (Last-Event-ID) times.
 *
 * Works against nginx-webhook-sse (POST /api/webhook, GET
 * /api/webhook/stream?sessionId=..) and nchan (POST /pub?id=..,
 * GET /sub?id=.. with nchan_subscriber eventsource): the stream parser only
 * looks for "seq": and "ts": numbers in each event's data.  --websocket
 * opens the streams as WebSockets instead (ours on the same URL, nchan's
 * nchan_subscriber websocket) and reads one event per text frame.
 *
 * The WebSocket frame reader is written here rather than taken from a
 * library, as the HTTP and SSE readers are: a load generator must cost
 * little per event and allocate nothing, and it only has to read the
 * unmasked frames a server sends (RFC 6455, 5.2) and answer pings.
 *
 * Processes: the parent orchestrates phases through a shared memory page;
 * P stream workers each own S/P streams; one publisher process.  Children
 * send their final report to the parent over a pipe.
 *
 * libc only; see --help.
 */

#define _GNU_SOURCE

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif


#define MAX_PROCS        64
#define MAX_PUB_CONNS    256
#define MAX_PIPELINE     64
#define MAX_HEADERS      16
#define MAX_STREAM_URLS  8
#define LINE_MAX_LEN     512
#define ID_MAX_LEN       64
#define HEAD_MAX_LEN     2048
#define FD_BUDGET        19000

/* log-linear histogram: 32 linear buckets per power of two, microseconds */
#define HIST_SUB_BITS    5
#define HIST_SUB         (1 << HIST_SUB_BITS)
#define HIST_BUCKETS     (HIST_SUB + 40 * HIST_SUB)


enum {
    PH_INIT = 0,
    PH_CONNECT,
    PH_PUBLISH,
    PH_DRAIN,
    PH_DISCONNECT,
    PH_RESUME,
    PH_REPORT
};

static const char *phase_names[] = {
    "init", "connect", "publish", "drain", "disconnect", "resume", "report"
};


typedef struct {
    uint64_t  count;
    uint64_t  max;
    uint64_t  bucket[HIST_BUCKETS];
} hist_t;


/* what every child sends to the parent at the end */
typedef struct {
    int       kind;              /* 0 stream worker, 1 publisher */
    int64_t   streams;
    int64_t   connected;         /* 200 responses (all phases) */
    int64_t   conn_fail;         /* connect() or SO_ERROR failures */
    int64_t   http_err;          /* non-200 status on a stream */
    int64_t   closed_eof;        /* server closed a live stream */
    int64_t   closed_reset;      /* ECONNRESET or other read error */
    int64_t   proto_err;         /* unparsable HTTP */
    int64_t   events;            /* events with a seq */
    int64_t   other_events;      /* events without one (connected, ...) */
    int64_t   heartbeats;        /* comment lines */
    int64_t   gaps;
    int64_t   dups;
    int64_t   lost;              /* still missing at the end */
    int64_t   resumed;           /* streams reconnected with Last-Event-ID */
    uint64_t  t_last_event;
    hist_t    lat;               /* publish to delivery, us */
    hist_t    conn;              /* connect() to response headers, us */

    int64_t   pub_sent;
    int64_t   pub_ok;
    int64_t   pub_err;           /* non-2xx */
    int64_t   pub_conn_err;
    hist_t    publat;            /* request to response, us */
} report_t;


/* shared between all processes (MAP_SHARED | MAP_ANONYMOUS before fork) */
typedef struct {
    volatile int       phase;
    volatile int       gen;              /* bumped on every phase change */
    volatile int       ack[MAX_PROCS + 1];
    volatile uint64_t  ack_time[MAX_PROCS + 1];
    volatile int64_t   delivered[MAX_PROCS + 1];
    volatile int       pub_round;        /* round requested */
    volatile int       pub_done;         /* round finished */
    volatile int64_t   pub_count;        /* per channel, 0: by duration */
    volatile uint64_t  pub_t_start;
    volatile uint64_t  pub_t_end;
    uint64_t           epoch;            /* ts base, monotonic ns */
    /* followed by: int64_t seq[C]; int32_t live[C]; */
} shm_t;


typedef struct {
    struct sockaddr_in  addr;
    char                host[128];
    const char         *path;            /* template, {ch} {sid} */
} url_t;


enum {
    HS_HEAD = 0,
    HS_BODY_LEN,
    HS_BODY_EOF,
    HS_CHUNK_SIZE,
    HS_CHUNK_EXT,
    HS_CHUNK_DATA,
    HS_CHUNK_CRLF,
    HS_TRAILER,
    HS_DONE
};

typedef struct {
    uint8_t   state;
    uint8_t   chunked;
    uint8_t   close;
    uint8_t   trailer_nonempty;
    int       status;
    int64_t   clen;
    int64_t   left;
    uint16_t  hlen;
    char     *head;                      /* HEAD_MAX_LEN, NULL until needed */
} http_t;

typedef void (*body_handler_pt)(void *data, const char *p, size_t n);


enum {
    ST_IDLE = 0,
    ST_CONNECTING,
    ST_SENDING,
    ST_HEADERS,
    ST_LIVE,
    ST_CLOSED,                            /* by the server or an error */
    ST_DISCONNECTED                       /* by us (resume test) */
};

typedef struct {
    int       fd;
    int       ch;
    int       gidx;
    uint8_t   state;
    uint8_t   cr;
    uint8_t   have_id;
    uint8_t   have_data;
    uint8_t   resuming;
    uint16_t  llen;
    uint16_t  sent;
    /* WebSocket: the frame header so far, then what is left of the frame */
    uint8_t   ws_hlen;
    uint8_t   ws_op;
    uint8_t   ws_hdr[14];
    uint64_t  ws_left;
    int64_t   last_seq;
    int64_t   pend_seq;
    int64_t   pend_ts;
    uint64_t  t_start;
    http_t    http;
    char      last_id[ID_MAX_LEN];
    char      pend_id[ID_MAX_LEN];
    char      line[LINE_MAX_LEN];
} stream_t;


typedef struct {
    int       ch;
    int64_t   seq;
    int64_t   subs;
    uint64_t  t_sent;
} pubentry_t;


typedef struct {
    int         fd;
    int         state;
    int         inflight;
    int         head;
    uint64_t    t_retry;
    size_t      out_len;
    size_t      out_off;
    http_t      http;
    pubentry_t  q[MAX_PIPELINE];
    char        out[65536];
} pubconn_t;


/* options */
static const char  *opt_stream_url[MAX_STREAM_URLS];
static int          opt_nstream_urls;
static const char  *opt_pub_url;
static const char  *opt_body = "{\"message\":\"m\",\"sessionId\":\"ch{ch}\","
                               "\"seq\":{seq},\"ts\":{ts}}";
static long         opt_streams;
static long         opt_channels = 1;
static long         opt_sources = 1;
static long         opt_procs = 1;
static double       opt_ramp;            /* streams/s in total, 0: no limit */
static double       opt_rate = -1;       /* msgs/s, 0: max, -1: no publish */
static int          opt_pub_one;
static long         opt_pub_conns = 4;
static long         opt_pipeline = 1;  /* requests in flight per conn */
static long         opt_window = 4;      /* msgs not yet fully delivered */
static double       opt_duration = 10;
static long         opt_resume;          /* missed messages per channel */
static double       opt_drain_timeout = 10;
static double       opt_connect_timeout = 60;
static double       opt_hold;
static long         opt_pending = 200;   /* connects in progress per process */
static const char  *opt_server_pids;
static const char  *opt_label = "";
static const char  *opt_headers[MAX_HEADERS];
static int          opt_nheaders;
static int          opt_quiet;
static int          opt_websocket;

/* stream i goes to stream_url[i % opt_nstream_urls] (several hosts) */
static url_t        stream_url[MAX_STREAM_URLS];
static url_t        pub_url;
static shm_t       *shm;
static int64_t     *chan_seq;             /* acked seq per channel */
static int32_t     *chan_live;            /* live streams per channel */
static int          my_slot;
static report_t     rep;
static char         iobuf[65536];


static void
die(const char *fmt, ...)
{
    va_list  ap;

    va_start(ap, fmt);
    fprintf(stderr, "sse-bench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}


static void
note(const char *fmt, ...)
{
    va_list  ap;

    if (opt_quiet) {
        return;
    }

    va_start(ap, fmt);
    fprintf(stderr, "sse-bench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}


static uint64_t
now_ns(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}


/* histogram */

static int
hist_index(uint64_t v)
{
    int  e, shift, idx;

    if (v < HIST_SUB) {
        return (int) v;
    }

    e = 63 - __builtin_clzll(v);
    shift = e - HIST_SUB_BITS;
    idx = HIST_SUB + shift * HIST_SUB + (int) ((v >> shift) & (HIST_SUB - 1));

    return idx < HIST_BUCKETS ? idx : HIST_BUCKETS - 1;
}


static uint64_t
hist_value(int idx)
{
    int       shift, sub;
    uint64_t  lo;

    if (idx < HIST_SUB) {
        return (uint64_t) idx;
    }

    shift = (idx - HIST_SUB) / HIST_SUB;
    sub = (idx - HIST_SUB) % HIST_SUB;
    lo = (uint64_t) (HIST_SUB + sub) << shift;

    return lo + ((1ULL << shift) >> 1);
}


static void
hist_add(hist_t *h, uint64_t v)
{
    h->bucket[hist_index(v)]++;
    h->count++;

    if (v > h->max) {
        h->max = v;
    }
}


static void
hist_merge(hist_t *to, const hist_t *from)
{
    int  i;

    for (i = 0; i < HIST_BUCKETS; i++) {
        to->bucket[i] += from->bucket[i];
    }

    to->count += from->count;

    if (from->max > to->max) {
        to->max = from->max;
    }
}


static uint64_t
hist_pct(const hist_t *h, double p)
{
    int       i;
    uint64_t  want, sum, v;

    if (h->count == 0) {
        return 0;
    }

    want = (uint64_t) ceil(p * (double) h->count);
    if (want == 0) {
        want = 1;
    }

    sum = 0;

    for (i = 0; i < HIST_BUCKETS; i++) {
        sum += h->bucket[i];
        if (sum >= want) {
            v = hist_value(i);
            return v < h->max ? v : h->max;
        }
    }

    return h->max;
}


/* URLs and templates */

static void
parse_url(const char *s, url_t *u)
{
    int          port;
    const char  *p, *slash, *colon;
    char         ip[128];

    if (strncmp(s, "http://", 7) != 0) {
        die("only http:// URLs are supported: %s", s);
    }

    p = s + 7;
    slash = strchr(p, '/');
    if (slash == NULL) {
        die("URL without a path: %s", s);
    }

    if ((size_t) (slash - p) >= sizeof(u->host)) {
        die("URL host too long: %s", s);
    }

    memcpy(u->host, p, slash - p);
    u->host[slash - p] = '\0';

    colon = strchr(u->host, ':');
    port = 80;

    if (colon) {
        port = atoi(colon + 1);
        snprintf(ip, sizeof(ip), "%.*s", (int) (colon - u->host), u->host);

    } else {
        snprintf(ip, sizeof(ip), "%s", u->host);
    }

    if (strcmp(ip, "localhost") == 0) {
        strcpy(ip, "127.0.0.1");
    }

    memset(&u->addr, 0, sizeof(u->addr));
    u->addr.sin_family = AF_INET;
    u->addr.sin_port = htons((uint16_t) port);

    if (inet_pton(AF_INET, ip, &u->addr.sin_addr) != 1) {
        die("URL host must be an IPv4 address: %s", s);
    }

    u->path = slash;
}


/* expands {ch} {sid} {seq} {ts}; returns the length or -1 if too long */
static int
expand(char *out, size_t size, const char *tmpl, long ch, long sid,
    int64_t seq, int64_t ts)
{
    int          n;
    size_t       len;
    const char  *p;

    len = 0;

    for (p = tmpl; *p; p++) {
        if (*p == '{') {
            n = -1;

            if (strncmp(p, "{ch}", 4) == 0) {
                n = snprintf(out + len, size - len, "%ld", ch);
                p += 3;

            } else if (strncmp(p, "{sid}", 5) == 0) {
                n = snprintf(out + len, size - len, "%ld", sid);
                p += 4;

            } else if (strncmp(p, "{seq}", 5) == 0) {
                n = snprintf(out + len, size - len, "%lld", (long long) seq);
                p += 4;

            } else if (strncmp(p, "{ts}", 4) == 0) {
                n = snprintf(out + len, size - len, "%lld", (long long) ts);
                p += 3;
            }

            if (n >= 0) {
                if ((size_t) n >= size - len) {
                    return -1;
                }
                len += n;
                continue;
            }
        }

        if (len + 1 >= size) {
            return -1;
        }

        out[len++] = *p;
    }

    out[len] = '\0';
    return (int) len;
}


/* sockets */

static int
open_conn(const struct sockaddr_in *to, int source)
{
    int                 fd, one;
    struct sockaddr_in  from;

    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        return -1;
    }

    one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    if (opt_sources > 1 || source > 0) {
        /* let connect() pick the port: the 4-tuple, not the port, is unique */
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));

        memset(&from, 0, sizeof(from));
        from.sin_family = AF_INET;
        from.sin_addr.s_addr = htonl(0x7f000001 + (uint32_t) source);

        if (bind(fd, (struct sockaddr *) &from, sizeof(from)) == -1) {
            close(fd);
            return -1;
        }
    }

    if (connect(fd, (const struct sockaddr *) to, sizeof(*to)) == -1
        && errno != EINPROGRESS)
    {
        close(fd);
        return -1;
    }

    return fd;
}


static void
close_reset(int fd)
{
    struct linger  l;

    /* RST: no TIME_WAIT pile-up on the client side between scenarios */
    l.l_onoff = 1;
    l.l_linger = 0;
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    close(fd);
}


/* incremental HTTP/1.1 response parser */

static void
http_reset(http_t *h)
{
    char  *head;

    head = h->head;
    memset(h, 0, sizeof(*h));
    h->head = head;
    h->clen = -1;
}


static int
header_is(const char *line, size_t len, const char *name, const char **value)
{
    size_t  n;

    n = strlen(name);

    if (len <= n || strncasecmp(line, name, n) != 0 || line[n] != ':') {
        return 0;
    }

    line += n + 1;

    while (*line == ' ' || *line == '\t') {
        line++;
    }

    *value = line;
    return 1;
}


static int
http_parse_head(http_t *h)
{
    char        *p, *end, *eol;
    const char  *v;

    p = h->head;
    end = h->head + h->hlen;

    if (h->hlen < 12 || strncmp(p, "HTTP/1.", 7) != 0) {
        return -1;
    }

    h->status = atoi(p + 9);

    for (;;) {
        eol = memchr(p, '\n', end - p);
        if (eol == NULL) {
            break;
        }

        *eol = '\0';

        if (eol > p && eol[-1] == '\r') {
            eol[-1] = '\0';
        }

        if (header_is(p, eol - p, "transfer-encoding", &v)) {
            if (strcasestr(v, "chunked")) {
                h->chunked = 1;
            }

        } else if (header_is(p, eol - p, "content-length", &v)) {
            h->clen = strtoll(v, NULL, 10);

        } else if (header_is(p, eol - p, "connection", &v)) {
            if (strncasecmp(v, "close", 5) == 0) {
                h->close = 1;
            }
        }

        p = eol + 1;
    }

    /* after a 101 the connection is another protocol's (nchan says
     * Content-Length: 0 there) */
    if (h->status == 101) {
        h->state = HS_BODY_EOF;

    } else if (h->chunked) {
        h->state = HS_CHUNK_SIZE;
        h->left = 0;

    } else if (h->clen >= 0) {
        h->state = h->clen ? HS_BODY_LEN : HS_DONE;
        h->left = h->clen;

    } else {
        h->state = HS_BODY_EOF;
    }

    return 0;
}


/*
 * Feeds n bytes.  Returns the number of bytes used (less than n only once
 * the response is complete), -1 on a protocol error.  Body bytes go to the
 * handler.  After the head the caller can look at h->status.
 */
static ssize_t
http_feed(http_t *h, const char *p, size_t n, body_handler_pt handler,
    void *data)
{
    int          c;
    size_t       i, take, start;
    const char  *eoh;

    i = 0;

    while (i < n) {

        switch (h->state) {

        case HS_HEAD:
            if (h->head == NULL) {
                h->head = malloc(HEAD_MAX_LEN);
                if (h->head == NULL) {
                    return -1;
                }
            }

            take = n - i;
            if (take > (size_t) (HEAD_MAX_LEN - 1 - h->hlen)) {
                take = HEAD_MAX_LEN - 1 - h->hlen;
            }

            if (take == 0) {
                return -1;
            }

            start = h->hlen >= 3 ? h->hlen - 3 : 0;
            memcpy(h->head + h->hlen, p + i, take);
            h->hlen += take;
            h->head[h->hlen] = '\0';

            eoh = memmem(h->head + start, h->hlen - start, "\r\n\r\n", 4);
            if (eoh == NULL) {
                i += take;
                break;
            }

            /* give back what follows the head */
            i += take - (h->hlen - (eoh + 4 - h->head));
            h->hlen = (uint16_t) (eoh + 4 - h->head);

            if (http_parse_head(h) != 0) {
                return -1;
            }

            if (h->state == HS_DONE) {
                return (ssize_t) i;
            }

            break;

        case HS_BODY_LEN:
            take = n - i;
            if ((int64_t) take > h->left) {
                take = (size_t) h->left;
            }

            handler(data, p + i, take);
            i += take;
            h->left -= take;

            if (h->left == 0) {
                h->state = HS_DONE;
                return (ssize_t) i;
            }

            break;

        case HS_BODY_EOF:
            handler(data, p + i, n - i);
            i = n;
            break;

        case HS_CHUNK_SIZE:
            c = p[i++];

            if (isxdigit(c)) {
                if (h->left > (1LL << 40)) {
                    return -1;
                }
                h->left = h->left * 16
                          + (isdigit(c) ? c - '0' : (tolower(c) - 'a' + 10));

            } else if (c == ';') {
                h->state = HS_CHUNK_EXT;

            } else if (c == '\n') {
                h->state = h->left ? HS_CHUNK_DATA : HS_TRAILER;
                h->trailer_nonempty = 0;

            } else if (c != '\r' && c != ' ' && c != '\t') {
                return -1;
            }

            break;

        case HS_CHUNK_EXT:
            if (p[i++] == '\n') {
                h->state = h->left ? HS_CHUNK_DATA : HS_TRAILER;
                h->trailer_nonempty = 0;
            }

            break;

        case HS_CHUNK_DATA:
            take = n - i;
            if ((int64_t) take > h->left) {
                take = (size_t) h->left;
            }

            handler(data, p + i, take);
            i += take;
            h->left -= take;

            if (h->left == 0) {
                h->state = HS_CHUNK_CRLF;
            }

            break;

        case HS_CHUNK_CRLF:
            c = p[i++];

            if (c == '\n') {
                h->state = HS_CHUNK_SIZE;
                h->left = 0;

            } else if (c != '\r') {
                return -1;
            }

            break;

        case HS_TRAILER:
            c = p[i++];

            if (c == '\n') {
                if (!h->trailer_nonempty) {
                    h->state = HS_DONE;
                    return (ssize_t) i;
                }
                h->trailer_nonempty = 0;

            } else if (c != '\r') {
                h->trailer_nonempty = 1;
            }

            break;

        case HS_DONE:
            return (ssize_t) i;
        }
    }

    return (ssize_t) i;
}


static void
ignore_body(void *data, const char *p, size_t n)
{
    (void) data;
    (void) p;
    (void) n;
}


/* SSE */

static int64_t
scan_number(const char *line, size_t len, const char *key, size_t klen)
{
    int64_t      v;
    const char  *p, *end;

    p = memmem(line, len, key, klen);
    if (p == NULL) {
        return -1;
    }

    end = line + len;
    p += klen;

    while (p < end && (*p == ' ' || *p == '"')) {
        p++;
    }

    if (p == end || !isdigit((unsigned char) *p)) {
        return -1;
    }

    v = 0;

    while (p < end && isdigit((unsigned char) *p)) {
        v = v * 10 + (*p++ - '0');
    }

    return v;
}


static void
sse_dispatch(stream_t *s)
{
    int64_t   seq, lat;
    uint64_t  now;

    seq = s->pend_seq;

    if (s->have_id) {
        memcpy(s->last_id, s->pend_id, ID_MAX_LEN);
    }

    if (seq < 0) {
        rep.other_events++;
        goto done;
    }

    rep.events++;
    now = now_ns();
    rep.t_last_event = now;

    if (seq == s->last_seq + 1) {
        s->last_seq = seq;

    } else if (seq > s->last_seq + 1) {
        rep.gaps += seq - s->last_seq - 1;
        s->last_seq = seq;

    } else {
        rep.dups++;
    }

    if (s->pend_ts >= 0
        && (shm->phase == PH_PUBLISH || shm->phase == PH_DRAIN))
    {
        lat = (int64_t) ((now - shm->epoch) / 1000) - s->pend_ts;
        hist_add(&rep.lat, lat > 0 ? (uint64_t) lat : 0);
    }

done:

    s->pend_seq = -1;
    s->pend_ts = -1;
    s->have_id = 0;
    s->have_data = 0;
}


static void
sse_line(stream_t *s)
{
    size_t       len, n;
    const char  *line, *v;

    line = s->line;
    len = s->llen;

    if (len == 0) {
        if (s->have_data) {
            sse_dispatch(s);

        } else {
            s->pend_ts = -1;
            s->have_id = 0;
        }

        return;
    }

    if (line[0] == ':') {
        rep.heartbeats++;
        return;
    }

    if (len >= 5 && memcmp(line, "data:", 5) == 0) {
        if (s->pend_seq < 0) {
            s->pend_seq = scan_number(line, len, "\"seq\":", 6);
        }

        if (s->pend_ts < 0) {
            s->pend_ts = scan_number(line, len, "\"ts\":", 5);
        }

        s->have_data = 1;
        return;
    }

    if (len >= 3 && memcmp(line, "id:", 3) == 0) {
        v = line + 3;
        n = len - 3;

        if (n && *v == ' ') {
            v++;
            n--;
        }

        if (n >= ID_MAX_LEN) {
            n = ID_MAX_LEN - 1;
        }

        memcpy(s->pend_id, v, n);
        s->pend_id[n] = '\0';
        s->have_id = 1;
    }
}


static void
sse_body(void *data, const char *p, size_t n)
{
    char       c;
    size_t     i;
    stream_t  *s;

    s = data;

    for (i = 0; i < n; i++) {
        c = p[i];

        if (s->cr) {
            s->cr = 0;
            if (c == '\n') {
                continue;
            }
        }

        if (c == '\n' || c == '\r') {
            s->cr = (c == '\r');
            sse_line(s);
            s->llen = 0;
            continue;
        }

        if (s->llen < LINE_MAX_LEN - 1) {
            s->line[s->llen++] = c;
        }
    }
}


/*
 * WebSocket: server frames are not masked; a text frame's payload goes
 * through the SSE line scanner's buffer as one "data:" line, a ping gets
 * its pong (masked, with a zero key: the mask hides nothing from anyone on
 * loopback), a close frame ends the stream.
 */

static void stream_close(stream_t *s, int state);


static void
ws_frame_done(stream_t *s)
{
    uint8_t  pong[6 + 125];
    size_t   n;

    switch (s->ws_op) {

    case 0x1:
        s->pend_seq = scan_number(s->line, s->llen, "\"seq\":", 6);
        s->pend_ts = scan_number(s->line, s->llen, "\"ts\":", 5);
        s->have_data = 1;
        sse_dispatch(s);
        break;

    case 0x8:
        if (s->state == ST_LIVE) {
            rep.closed_eof++;
        }
        stream_close(s, ST_CLOSED);
        break;

    case 0x9:
        rep.heartbeats++;
        n = s->llen > 125 ? 125 : s->llen;
        pong[0] = 0x8a;
        pong[1] = (uint8_t) (0x80 | n);
        memset(pong + 2, 0, 4);
        memcpy(pong + 6, s->line, n);
        (void) send(s->fd, pong, 6 + n, MSG_NOSIGNAL);
        break;

    default:
        break;
    }

    s->llen = 0;
}


static void
ws_body(void *data, const char *p, size_t n)
{
    size_t     i, take, need;
    uint64_t   len;
    stream_t  *s;

    s = data;
    i = 0;

    while (i < n && s->fd != -1) {

        if (s->ws_left == 0 && s->ws_hlen < 2) {
            s->ws_hdr[s->ws_hlen++] = (uint8_t) p[i++];

            if (s->ws_hlen < 2) {
                continue;
            }
        }

        if (s->ws_hlen >= 2) {
            need = 2;
            len = s->ws_hdr[1] & 0x7f;

            if (len == 126) {
                need = 4;
            } else if (len == 127) {
                need = 10;
            }

            while (s->ws_hlen < need && i < n) {
                s->ws_hdr[s->ws_hlen++] = (uint8_t) p[i++];
            }

            if (s->ws_hlen < need) {
                return;
            }

            if (len == 126) {
                len = ((uint64_t) s->ws_hdr[2] << 8) | s->ws_hdr[3];

            } else if (len == 127) {
                len = 0;
                for (need = 2; need < 10; need++) {
                    len = (len << 8) | s->ws_hdr[need];
                }
            }

            /* continuation frames extend the message being read */
            if ((s->ws_hdr[0] & 0x0f) != 0) {
                s->ws_op = s->ws_hdr[0] & 0x0f;
                s->llen = 0;
            }

            s->ws_left = len;
            s->ws_hlen = 0;

            if (len == 0) {
                if (s->ws_hdr[0] & 0x80) {
                    ws_frame_done(s);
                }
                continue;
            }
        }

        take = n - i;
        if (take > s->ws_left) {
            take = (size_t) s->ws_left;
        }

        /* the scanner needs the start of the message: the rest is cut */
        if (s->llen < LINE_MAX_LEN - 1) {
            need = LINE_MAX_LEN - 1 - s->llen;
            memcpy(s->line + s->llen, p + i, take < need ? take : need);
            s->llen += (uint16_t) (take < need ? take : need);
        }

        i += take;
        s->ws_left -= take;

        if (s->ws_left == 0 && (s->ws_hdr[0] & 0x80)) {
            ws_frame_done(s);
        }
    }
}


/* stream worker */

static stream_t  *streams;
static long       nstreams;
static int        ep;
static long       started;
static long       pending;
static uint64_t   ramp_t0;
static int        worker_gen;


static void
stream_close(stream_t *s, int state)
{
    if (s->fd != -1) {
        epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
        close_reset(s->fd);
        s->fd = -1;
    }

    if (s->state == ST_LIVE) {
        __atomic_sub_fetch(&chan_live[s->ch], 1, __ATOMIC_RELAXED);
    }

    if (s->state == ST_CONNECTING || s->state == ST_SENDING
        || s->state == ST_HEADERS)
    {
        pending--;
    }

    s->state = (uint8_t) state;
}


static void
stream_start(stream_t *s)
{
    struct epoll_event  ev;

    s->t_start = now_ns();
    s->fd = open_conn(&stream_url[s->gidx % opt_nstream_urls].addr,
                      (int) (s->gidx % opt_sources));

    if (s->fd == -1) {
        rep.conn_fail++;
        s->state = ST_CLOSED;
        return;
    }

    http_reset(&s->http);
    s->llen = 0;
    s->cr = 0;
    s->sent = 0;
    s->pend_seq = -1;
    s->pend_ts = -1;
    s->have_id = 0;
    s->have_data = 0;
    s->ws_hlen = 0;
    s->ws_left = 0;
    s->state = ST_CONNECTING;
    pending++;

    ev.events = EPOLLOUT;
    ev.data.u64 = (uint64_t) (s - streams);

    if (epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &ev) == -1) {
        die("epoll_ctl: %s", strerror(errno));
    }
}


static void
stream_send(stream_t *s)
{
    int                 n, err;
    char                req[2048], path[1024];
    ssize_t             w;
    socklen_t           len;
    struct epoll_event  ev;

    if (s->state == ST_CONNECTING) {
        err = 0;
        len = sizeof(err);
        getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len);

        if (err) {
            rep.conn_fail++;
            stream_close(s, ST_CLOSED);
            return;
        }

        s->state = ST_SENDING;
    }

    if (expand(path, sizeof(path),
               stream_url[s->gidx % opt_nstream_urls].path, s->ch, s->gidx,
               0, 0)
        < 0)
    {
        die("stream URL too long");
    }

    n = snprintf(req, sizeof(req),
                 "GET %s HTTP/1.1\r\nHost: %s\r\n"
                 "%s"
                 "%s%s%s\r\n",
                 path, stream_url[s->gidx % opt_nstream_urls].host,
                 opt_websocket
                 ? "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   "Sec-WebSocket-Version: 13\r\n"
                 : "Accept: text/event-stream\r\n"
                   "Cache-Control: no-cache\r\n",
                 s->resuming ? "Last-Event-ID: " : "",
                 s->resuming ? s->last_id : "",
                 s->resuming ? "\r\n" : "");

    w = send(s->fd, req + s->sent, n - s->sent, MSG_NOSIGNAL);

    if (w == -1) {
        if (errno == EAGAIN) {
            return;
        }

        rep.conn_fail++;
        stream_close(s, ST_CLOSED);
        return;
    }

    s->sent += (uint16_t) w;

    if (s->sent < n) {
        return;
    }

    s->state = ST_HEADERS;
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.u64 = (uint64_t) (s - streams);
    epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &ev);
}


static void
stream_read(stream_t *s)
{
    ssize_t  n, used;

    n = recv(s->fd, iobuf, sizeof(iobuf), 0);

    if (n == 0 || (n == -1 && errno != EAGAIN && errno != EINTR)) {
        if (s->state == ST_LIVE) {
            if (n == 0) {
                rep.closed_eof++;
            } else {
                rep.closed_reset++;
            }

        } else {
            rep.conn_fail++;
        }

        stream_close(s, ST_CLOSED);
        return;
    }

    if (n == -1) {
        return;
    }

    used = http_feed(&s->http, iobuf, (size_t) n,
                     opt_websocket ? ws_body : sse_body, s);

    if (used < 0) {
        rep.proto_err++;
        stream_close(s, ST_CLOSED);
        return;
    }

    if (s->state == ST_HEADERS && s->http.state != HS_HEAD) {
        if (s->http.status != (opt_websocket ? 101 : 200)) {
            rep.http_err++;
            stream_close(s, ST_CLOSED);
            return;
        }

        pending--;
        s->state = ST_LIVE;
        rep.connected++;
        hist_add(&rep.conn, (now_ns() - s->t_start) / 1000);
        __atomic_add_fetch(&chan_live[s->ch], 1, __ATOMIC_RELAXED);

        /* body bytes that came with the head were parsed already */
        free(s->http.head);
        s->http.head = NULL;
    }

    if (s->state == ST_LIVE && s->http.state == HS_DONE) {
        rep.closed_eof++;
        stream_close(s, ST_CLOSED);
    }
}


static void
ack(uint64_t t)
{
    shm->ack_time[my_slot] = t;
    __atomic_store_n(&shm->ack[my_slot], worker_gen, __ATOMIC_RELEASE);
}


static int
all_caught_up(void)
{
    long       i;
    stream_t  *s;

    for (i = 0; i < nstreams; i++) {
        s = &streams[i];

        if (s->state == ST_CLOSED) {
            continue;
        }

        if (s->state != ST_LIVE) {
            return 0;
        }

        if (s->last_seq < __atomic_load_n(&chan_seq[s->ch], __ATOMIC_RELAXED))
        {
            return 0;
        }
    }

    return 1;
}


static void
send_report(int fd)
{
    size_t       off;
    ssize_t      w;
    const char  *p;

    p = (const char *) &rep;
    off = 0;

    while (off < sizeof(rep)) {
        w = write(fd, p + off, sizeof(rep) - off);
        if (w <= 0) {
            if (w == -1 && errno == EINTR) {
                continue;
            }
            _exit(3);
        }
        off += (size_t) w;
    }
}


static void
stream_worker(long first, long count, int out)
{
    int                 i, n, phase, done, timeout;
    long                want, j;
    double              rate;
    uint64_t            now, last_check;
    stream_t           *s;
    struct epoll_event  evs[512];

    rep.kind = 0;
    rep.streams = count;
    nstreams = count;

    streams = calloc((size_t) count, sizeof(stream_t));
    if (streams == NULL && count) {
        die("out of memory");
    }

    for (j = 0; j < count; j++) {
        streams[j].fd = -1;
        streams[j].gidx = (int) (first + j);
        streams[j].ch = (int) ((first + j) % opt_channels);
        streams[j].last_seq = 0;
    }

    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep == -1) {
        die("epoll_create1: %s", strerror(errno));
    }

    rate = opt_ramp > 0 ? opt_ramp / opt_procs : 0;
    phase = PH_INIT;
    done = 0;
    last_check = 0;

    for (;;) {
        if (shm->gen != worker_gen) {
            worker_gen = __atomic_load_n(&shm->gen, __ATOMIC_ACQUIRE);
            phase = shm->phase;
            done = 0;

            switch (phase) {

            case PH_CONNECT:
            case PH_RESUME:
                started = 0;
                ramp_t0 = now_ns();

                for (j = 0; j < count; j++) {
                    s = &streams[j];
                    s->resuming = (phase == PH_RESUME && s->state != ST_CLOSED
                                   && s->last_id[0] != '\0');

                    if (phase == PH_CONNECT) {
                        s->last_seq = __atomic_load_n(&chan_seq[s->ch],
                                                      __ATOMIC_RELAXED);
                    }
                }

                break;

            case PH_DISCONNECT:
                for (j = 0; j < count; j++) {
                    if (streams[j].state == ST_LIVE) {
                        stream_close(&streams[j], ST_DISCONNECTED);
                    }
                }

                ack(now_ns());
                done = 1;
                break;

            case PH_REPORT:
                for (j = 0; j < count; j++) {
                    s = &streams[j];

                    if (s->last_seq < chan_seq[s->ch] && s->gidx >= 0
                        && (s->state == ST_LIVE || s->state == ST_CLOSED
                            || s->state == ST_DISCONNECTED))
                    {
                        rep.lost += chan_seq[s->ch] - s->last_seq;
                    }
                }

                shm->delivered[my_slot] = rep.events;
                send_report(out);
                _exit(0);
            }
        }

        now = now_ns();

        if ((phase == PH_CONNECT || phase == PH_RESUME) && started < count) {
            want = count;

            if (rate > 0) {
                want = (long) ((double) (now - ramp_t0) / 1e9 * rate) + 1;
                if (want > count) {
                    want = count;
                }
            }

            while (started < want && pending < opt_pending) {
                s = &streams[started++];

                if (phase == PH_RESUME) {
                    if (s->state != ST_DISCONNECTED) {
                        continue;
                    }
                    rep.resumed += s->resuming;
                }

                stream_start(s);
            }
        }

        if (!done && phase == PH_CONNECT && started == count && pending == 0) {
            ack(now);
            done = 1;
        }

        if (!done && (phase == PH_DRAIN || phase == PH_RESUME)
            && now - last_check > 2000000)
        {
            last_check = now;

            if ((phase == PH_DRAIN || (started == count && pending == 0))
                && all_caught_up())
            {
                ack(rep.t_last_event > ramp_t0 ? rep.t_last_event : now);
                done = 1;
            }
        }

        timeout = ((phase == PH_CONNECT || phase == PH_RESUME)
                   && started < count) ? 1 : 2;

        n = epoll_wait(ep, evs, 512, timeout);

        for (i = 0; i < n; i++) {
            s = &streams[evs[i].data.u64];

            if (s->fd == -1) {
                continue;
            }

            if (s->state == ST_CONNECTING || s->state == ST_SENDING) {
                if (evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
                    stream_send(s);
                }
                continue;
            }

            stream_read(s);
        }

        if (n > 0) {
            __atomic_store_n(&shm->delivered[my_slot], rep.events,
                             __ATOMIC_RELAXED);
        }
    }
}


/* publisher */

static pubconn_t  *pconns;
static long        npconns;
static int64_t    *chan_sent;            /* last seq sent per channel */
static int64_t    *chan_round;           /* acked this round (count mode) */
static int64_t    *chan_rsent;           /* sent this round (count mode) */
static long       *conn_next;            /* round-robin position per conn */
static int64_t     expected;             /* deliveries due for sent msgs */


static void
pub_connect(pubconn_t *pc)
{
    struct epoll_event  ev;

    pc->fd = open_conn(&pub_url.addr, 0);

    if (pc->fd == -1) {
        rep.pub_conn_err++;
        pc->t_retry = now_ns() + 10000000;
        return;
    }

    pc->state = ST_CONNECTING;
    pc->inflight = 0;
    pc->head = 0;
    pc->out_len = 0;
    pc->out_off = 0;
    http_reset(&pc->http);

    ev.events = EPOLLOUT;
    ev.data.u64 = (uint64_t) (pc - pconns);
    epoll_ctl(ep, EPOLL_CTL_ADD, pc->fd, &ev);
}


static void
pub_fail(pubconn_t *pc)
{
    int          i;
    pubentry_t  *e;

    if (pc->fd != -1) {
        epoll_ctl(ep, EPOLL_CTL_DEL, pc->fd, NULL);
        close(pc->fd);
        pc->fd = -1;
    }

    /* requests without a response: not stored as far as we know; later
     * sends on this channel continue after the last acknowledged seq */
    for (i = 0; i < pc->inflight; i++) {
        e = &pc->q[(pc->head + i) % MAX_PIPELINE];
        expected -= e->subs;

        if (chan_sent[e->ch] >= e->seq) {
            chan_sent[e->ch] = e->seq - 1;
        }

        chan_rsent[e->ch]--;
        rep.pub_conn_err++;
    }

    pc->inflight = 0;
    pc->t_retry = now_ns() + 10000000;
    pc->state = ST_CLOSED;
}


static void
pub_write(pubconn_t *pc)
{
    ssize_t             w;
    struct epoll_event  ev;

    while (pc->out_off < pc->out_len) {
        w = send(pc->fd, pc->out + pc->out_off, pc->out_len - pc->out_off,
                 MSG_NOSIGNAL);

        if (w == -1) {
            if (errno == EAGAIN) {
                ev.events = EPOLLIN | EPOLLOUT;
                ev.data.u64 = (uint64_t) (pc - pconns);
                epoll_ctl(ep, EPOLL_CTL_MOD, pc->fd, &ev);
                return;
            }

            pub_fail(pc);
            return;
        }

        pc->out_off += (size_t) w;
    }

    pc->out_off = 0;
    pc->out_len = 0;

    ev.events = EPOLLIN;
    ev.data.u64 = (uint64_t) (pc - pconns);
    epoll_ctl(ep, EPOLL_CTL_MOD, pc->fd, &ev);
}


/* appends one request; the caller flushes with pub_write() */
static void
pub_queue(pubconn_t *pc, int ch)
{
    int          blen, hlen, i;
    char         body[2048], path[1024], extra[2048];
    size_t       elen;
    int64_t      seq, ts;
    pubentry_t  *e;

    seq = chan_sent[ch] + 1;
    ts = (int64_t) ((now_ns() - shm->epoch) / 1000);

    blen = expand(body, sizeof(body), opt_body, ch, 0, seq, ts);
    if (blen < 0 || expand(path, sizeof(path), pub_url.path, ch, 0, seq, ts)
                    < 0)
    {
        die("publish URL or body too long");
    }

    elen = 0;
    extra[0] = '\0';

    for (i = 0; i < opt_nheaders; i++) {
        elen += snprintf(extra + elen, sizeof(extra) - elen, "%s\r\n",
                         opt_headers[i]);
        if (elen >= sizeof(extra)) {
            die("too many headers");
        }
    }

    if (pc->out_len + sizeof(path) + sizeof(extra) + blen + 256
        > sizeof(pc->out))
    {
        die("publish requests too long for the output buffer");
    }

    hlen = snprintf(pc->out + pc->out_len, sizeof(pc->out) - pc->out_len,
                    "POST %s HTTP/1.1\r\nHost: %s\r\n"
                    "Content-Type: application/json\r\n"
                    "Content-Length: %d\r\n%s\r\n",
                    path, pub_url.host, blen, extra);

    memcpy(pc->out + pc->out_len + hlen, body, (size_t) blen);
    pc->out_len += (size_t) (hlen + blen);

    e = &pc->q[(pc->head + pc->inflight) % MAX_PIPELINE];
    e->ch = ch;
    e->seq = seq;
    e->subs = chan_live[ch];
    e->t_sent = now_ns();
    pc->inflight++;

    chan_sent[ch] = seq;
    chan_rsent[ch]++;
    expected += e->subs;
    rep.pub_sent++;
}


static void
pub_complete(pubconn_t *pc)
{
    pubentry_t  *e;

    e = &pc->q[pc->head];
    pc->head = (pc->head + 1) % MAX_PIPELINE;
    pc->inflight--;

    hist_add(&rep.publat, (now_ns() - e->t_sent) / 1000);

    if (pc->http.status >= 200 && pc->http.status < 300) {
        rep.pub_ok++;
        chan_round[e->ch]++;

        if (e->seq > chan_seq[e->ch]) {
            __atomic_store_n(&chan_seq[e->ch], e->seq, __ATOMIC_RELEASE);
        }

    } else {
        rep.pub_err++;
        expected -= e->subs;

        if (chan_sent[e->ch] == e->seq) {
            chan_sent[e->ch] = e->seq - 1;
        }

        chan_rsent[e->ch]--;

        if (rep.pub_err <= 3) {
            note("publish: HTTP %d", pc->http.status);
        }
    }
}


static void
pub_read(pubconn_t *pc)
{
    int      closing;
    size_t   off;
    ssize_t  n, used;

    n = recv(pc->fd, iobuf, sizeof(iobuf), 0);

    if (n == -1 && (errno == EAGAIN || errno == EINTR)) {
        return;
    }

    if (n <= 0) {
        if (pc->inflight && pc->http.state == HS_BODY_EOF) {
            pub_complete(pc);
        }

        /* an idle keep-alive connection closed by the server is no error */
        pub_fail(pc);
        return;
    }

    off = 0;
    closing = 0;

    while (off < (size_t) n && pc->inflight) {
        used = http_feed(&pc->http, iobuf + off, (size_t) n - off,
                         ignore_body, NULL);

        if (used < 0) {
            pub_fail(pc);
            return;
        }

        off += (size_t) used;

        if (pc->http.state != HS_DONE) {
            break;
        }

        closing = pc->http.close;
        pub_complete(pc);
        http_reset(&pc->http);

        if (closing) {
            break;
        }
    }

    if (closing) {
        pub_fail(pc);
    }
}


static int64_t
delivered_total(void)
{
    int      i;
    int64_t  sum;

    sum = 0;

    for (i = 0; i < opt_procs; i++) {
        sum += __atomic_load_n(&shm->delivered[i], __ATOMIC_RELAXED);
    }

    return sum;
}


/*
 * The next channel for connection i: channels are bound to connections
 * (ch % K == i), so that pipelined or successive publishes of one channel
 * reach the server in order.
 */
static long
pub_pick(long i, int64_t count)
{
    long  ch, n, tries;

    if (opt_pub_one) {
        if (i != 0 || (count > 0 && chan_rsent[0] >= count)) {
            return -1;
        }
        return 0;
    }

    n = (opt_channels - i + npconns - 1) / npconns;

    for (tries = 0; tries < n; tries++) {
        ch = i + conn_next[i] * npconns;
        conn_next[i] = (conn_next[i] + 1) % n;

        if (count == 0 || chan_rsent[ch] < count) {
            return ch;
        }
    }

    return -1;
}


static void
publisher(int out)
{
    int                 i, n, round, running, inflight, err, finished;
    long                ch;
    double              subs_per_msg;
    int64_t             count, sent_round, due, limit, behind;
    uint64_t            now, t0, t_end;
    socklen_t           len;
    pubconn_t          *pc;
    struct epoll_event  evs[256];

    rep.kind = 1;
    npconns = opt_pub_conns;

    pconns = calloc((size_t) npconns, sizeof(pubconn_t));
    conn_next = calloc((size_t) npconns, sizeof(long));
    chan_sent = calloc((size_t) opt_channels, sizeof(int64_t));
    chan_round = calloc((size_t) opt_channels, sizeof(int64_t));
    chan_rsent = calloc((size_t) opt_channels, sizeof(int64_t));

    if (pconns == NULL || conn_next == NULL || chan_sent == NULL
        || chan_round == NULL || chan_rsent == NULL)
    {
        die("out of memory");
    }

    ep = epoll_create1(EPOLL_CLOEXEC);

    for (i = 0; i < npconns; i++) {
        pconns[i].fd = -1;
        pub_connect(&pconns[i]);
    }

    subs_per_msg = (double) opt_streams / (opt_pub_one ? 1 : opt_channels);
    if (subs_per_msg < 1) {
        subs_per_msg = 1;
    }

    limit = (int64_t) (opt_window * subs_per_msg);
    round = 0;
    running = 0;
    count = 0;
    sent_round = 0;
    t0 = 0;
    t_end = 0;

    for (;;) {
        if (shm->phase == PH_REPORT) {
            send_report(out);
            _exit(0);
        }

        now = now_ns();

        if (!running && shm->phase == PH_PUBLISH && shm->pub_round != round) {
            round = shm->pub_round;
            running = 1;
            count = shm->pub_count;
            sent_round = 0;
            memset(chan_round, 0, (size_t) opt_channels * sizeof(int64_t));
            memset(chan_rsent, 0, (size_t) opt_channels * sizeof(int64_t));
            t0 = now;
            t_end = now + (uint64_t) (opt_duration * 1e9);
            shm->pub_t_start = t0;
        }

        inflight = 0;

        for (i = 0; i < npconns; i++) {
            pc = &pconns[i];
            inflight += pc->inflight;

            if (pc->fd == -1 && now >= pc->t_retry) {
                pub_connect(pc);
            }
        }

        if (running) {
            if (count > 0) {
                finished = 1;

                for (ch = 0; ch < (opt_pub_one ? 1 : opt_channels); ch++) {
                    if (chan_round[ch] < count) {
                        finished = 0;
                        break;
                    }
                }

            } else {
                finished = (now >= t_end);
            }

            if (finished) {
                if (inflight == 0) {
                    running = 0;
                    shm->pub_t_end = now;
                    __atomic_store_n(&shm->pub_done, round, __ATOMIC_RELEASE);
                }

            } else {
                due = INT64_MAX;

                if (opt_rate > 0 && count == 0) {
                    due = (int64_t) ((double) (now - t0) / 1e9 * opt_rate)
                          - sent_round;
                }

                /* fill the connections' pipelines in turn */
                for (n = 1; n && due > 0; ) {
                    n = 0;

                    for (i = 0; i < npconns && due > 0; i++) {
                        pc = &pconns[i];

                        if (pc->fd == -1 || pc->state != ST_LIVE
                            || pc->inflight >= opt_pipeline)
                        {
                            continue;
                        }

                        if (opt_rate == 0 || count > 0) {
                            behind = expected - delivered_total();
                            if (behind > 0 && behind >= limit) {
                                due = 0;
                                break;
                            }
                        }

                        ch = pub_pick(i, count);
                        if (ch < 0) {
                            continue;
                        }

                        pub_queue(pc, (int) ch);
                        sent_round++;
                        due--;
                        n++;
                    }
                }

                for (i = 0; i < npconns; i++) {
                    pc = &pconns[i];

                    if (pc->fd != -1 && pc->out_len > pc->out_off) {
                        pub_write(pc);
                    }
                }
            }
        }

        n = epoll_wait(ep, evs, 256, 1);

        for (i = 0; i < n; i++) {
            pc = &pconns[evs[i].data.u64];

            if (pc->fd == -1) {
                continue;
            }

            if (pc->state == ST_CONNECTING) {
                err = 0;
                len = sizeof(err);
                getsockopt(pc->fd, SOL_SOCKET, SO_ERROR, &err, &len);

                if (err) {
                    rep.pub_conn_err++;
                    pub_fail(pc);
                    continue;
                }

                pc->state = ST_LIVE;
                evs[i].events = EPOLLIN;
                epoll_ctl(ep, EPOLL_CTL_MOD, pc->fd, &evs[i]);
                continue;
            }

            if (evs[i].events & EPOLLOUT) {
                pub_write(pc);
            }

            if (pc->fd != -1 && (evs[i].events & (EPOLLIN | EPOLLERR
                                                  | EPOLLHUP)))
            {
                pub_read(pc);
            }
        }
    }
}


/* server process figures from /proc */

/* server processes whose CPU is also told one by one */
#define MAX_SERVER_PROCS  8

typedef struct {
    int64_t  rss_kb;
    int64_t  anon_kb;
    int64_t  shmem_kb;
    int64_t  cpu_ticks;
    /* the scheduler's runtime of every thread, ns (not tick sampled) */
    int64_t  cpu_ns;
    /* the same by process, in the order of --server-pids */
    int64_t  proc_ns[MAX_SERVER_PROCS];
    int      nprocs;
} proc_sample_t;


/*
 * The server's CPU seconds from one sample to another, of every process
 * (i < 0) or of the i-th: the scheduler's runtime where the kernel keeps
 * it, else utime + stime.
 */

static double
cpu_seconds(proc_sample_t *a, proc_sample_t *b, int i)
{
    if (i >= 0) {
        return (double) (b->proc_ns[i] - a->proc_ns[i]) / 1e9;
    }

    if (b->cpu_ns > a->cpu_ns) {
        return (double) (b->cpu_ns - a->cpu_ns) / 1e9;
    }

    return (double) (b->cpu_ticks - a->cpu_ticks)
           / (double) sysconf(_SC_CLK_TCK);
}


/*
 * /proc/PID/task/TID/schedstat: the first figure is the time the thread
 * ran, counted by the scheduler in nanoseconds; utime and stime are
 * charged a whole tick to whoever runs when the tick comes, which for
 * short wakeups at a few hundred a second is a sample, not a measure.
 */

static int64_t
sample_runtime(int pid)
{
    long long       ns;
    int64_t         sum;
    char            path[300];
    FILE           *f;
    DIR            *dir;
    struct dirent  *de;

    snprintf(path, sizeof(path), "/proc/%d/task", pid);

    dir = opendir(path);
    if (dir == NULL) {
        return 0;
    }

    sum = 0;

    while ((de = readdir(dir)) != NULL) {
        if (de->d_name[0] == '.') {
            continue;
        }

        snprintf(path, sizeof(path), "/proc/%d/task/%s/schedstat", pid,
                 de->d_name);

        f = fopen(path, "r");
        if (f == NULL) {
            continue;
        }

        if (fscanf(f, "%lld", &ns) == 1) {
            sum += ns;
        }

        fclose(f);
    }

    closedir(dir);

    return sum;
}


static void
sample_server(proc_sample_t *ps)
{
    int          pid, i;
    long         ut, st;
    char         path[64], buf[4096], *p;
    FILE        *f;
    const char  *s;

    memset(ps, 0, sizeof(*ps));

    if (opt_server_pids == NULL) {
        return;
    }

    for (s = opt_server_pids; *s; ) {
        pid = atoi(s);

        snprintf(path, sizeof(path), "/proc/%d/status", pid);
        f = fopen(path, "r");

        if (f) {
            while (fgets(buf, sizeof(buf), f)) {
                if (strncmp(buf, "VmRSS:", 6) == 0) {
                    ps->rss_kb += atoll(buf + 6);
                } else if (strncmp(buf, "RssAnon:", 8) == 0) {
                    ps->anon_kb += atoll(buf + 8);
                } else if (strncmp(buf, "RssShmem:", 9) == 0) {
                    ps->shmem_kb += atoll(buf + 9);
                }
            }
            fclose(f);
        }

        snprintf(path, sizeof(path), "/proc/%d/stat", pid);
        f = fopen(path, "r");

        if (f) {
            if (fgets(buf, sizeof(buf), f)) {
                /* fields after the ")" of comm: state is field 3 */
                p = strrchr(buf, ')');
                if (p) {
                    p += 2;
                    for (i = 3; i < 14 && p; i++) {
                        p = strchr(p, ' ');
                        if (p) {
                            p++;
                        }
                    }
                    if (p && sscanf(p, "%ld %ld", &ut, &st) == 2) {
                        ps->cpu_ticks += ut + st;
                    }
                }
            }
            fclose(f);
        }

        if (ps->nprocs < MAX_SERVER_PROCS) {
            ps->proc_ns[ps->nprocs] = sample_runtime(pid);
            ps->cpu_ns += ps->proc_ns[ps->nprocs++];

        } else {
            ps->cpu_ns += sample_runtime(pid);
        }

        while (*s && *s != ',') {
            s++;
        }

        if (*s == ',') {
            s++;
        }
    }
}


/* parent */

static int
set_phase(int phase)
{
    shm->phase = phase;
    __atomic_add_fetch(&shm->gen, 1, __ATOMIC_RELEASE);
    note("phase %s", phase_names[phase]);
    return shm->gen;
}


/* waits until the stream workers acknowledged this generation */
static int
wait_acks(int gen, double timeout, uint64_t *last)
{
    int       i, ok;
    uint64_t  deadline;

    deadline = now_ns() + (uint64_t) (timeout * 1e9);

    for (;;) {
        ok = 1;
        *last = 0;

        for (i = 0; i < opt_procs; i++) {
            if (__atomic_load_n(&shm->ack[i], __ATOMIC_ACQUIRE) != gen) {
                ok = 0;
                break;
            }

            if (shm->ack_time[i] > *last) {
                *last = shm->ack_time[i];
            }
        }

        if (ok) {
            return 1;
        }

        if (now_ns() > deadline) {
            return 0;
        }

        usleep(1000);
    }
}


static int
publish_round(int64_t count, double timeout)
{
    int       round;
    uint64_t  deadline;

    shm->pub_count = count;
    round = shm->pub_round + 1;
    shm->pub_round = round;
    set_phase(PH_PUBLISH);

    deadline = now_ns() + (uint64_t) (timeout * 1e9);

    while (__atomic_load_n(&shm->pub_done, __ATOMIC_ACQUIRE) != round) {
        if (now_ns() > deadline) {
            note("publisher did not finish in %.0fs", timeout);
            return 0;
        }
        usleep(1000);
    }

    return 1;
}


static void
read_report(int fd, report_t *r)
{
    size_t   off;
    ssize_t  n;

    off = 0;

    while (off < sizeof(*r)) {
        n = read(fd, (char *) r + off, sizeof(*r) - off);

        if (n <= 0) {
            if (n == -1 && errno == EINTR) {
                continue;
            }
            memset(r, 0, sizeof(*r));
            r->kind = -1;
            return;
        }

        off += (size_t) n;
    }
}


static void
usage(void)
{
    fprintf(stderr,
"usage: sse-bench [options]\n"
"  --stream URL       stream URL template, {ch} channel, {sid} stream index;\n"
"                     repeated: stream i goes to the (i %% N)th (several hosts)\n"
"                     e.g. http://127.0.0.1:8080/sub?id=ch{ch}\n"
"  --pub URL          publish URL template ({ch}, {seq}, {ts})\n"
"  --body TEMPLATE    publish body ({ch} {seq} {ts}), default\n"
"                     {\"message\":\"m\",\"sessionId\":\"ch{ch}\",\"seq\":{seq},"
"\"ts\":{ts}}\n"
"  --header 'K: V'    extra publish header (repeatable)\n"
"  --streams S        streams to open (stream i listens on channel i %% C)\n"
"  --channels C       channels (default 1)\n"
"  --sources N        source addresses 127.0.0.1..127.0.0.N (default 1)\n"
"  --procs P          stream worker processes (default 1)\n"
"  --ramp R           stream connects per second, all processes (0: max)\n"
"  --pending N        connects in progress per process (default 200)\n"
"  --rate R           publish msgs/s; 0 = as fast as the window allows\n"
"  --one              publish to channel 0 only (default: round-robin)\n"
"  --pub-conns K      keep-alive publish connections (default 4); channel\n"
"                     c always goes through connection c %% K (order)\n"
"  --pipeline D       pipelined requests per connection (default 1)\n"
"  --window W         max msgs published but not yet delivered to every\n"
"                     stream, for --rate 0 (default 4)\n"
"  --duration SEC     publish duration (default 10)\n"
"  --hold SEC         wait after all streams connected (idle streams)\n"
"  --resume M         resume test: drop all streams, publish M msgs per\n"
"                     channel, reconnect with Last-Event-ID, time catch-up\n"
"  --drain-timeout S  wait for the last deliveries (default 10)\n"
"  --connect-timeout S  (default 60)\n"
"  --server-pids LIST server pids (comma separated) for RSS and CPU\n"
"  --label NAME       label in the JSON line\n"
"  --quiet            no progress lines\n"
"  --websocket        open the streams as WebSockets: one event per text\n"
"                     frame, pings answered (resume: Last-Event-ID header)\n"
"Prints a summary, then one JSON line.\n");
    exit(1);
}


int
main(int argc, char **argv)
{
    int              c, i, gen, pipes[MAX_PROCS + 1][2], ok_connect;
    int              ok_drain, nchild, pub_pid;
    long             per, first, cnt = 0;
    int              nprocs;
    size_t           shm_size;
    double           by_process[MAX_SERVER_PROCS];
    double           secs, pub_secs;
    pid_t            pids[MAX_PROCS + 1];
    int64_t          lost_tail;
    uint64_t         t_conn0, t_conn1, t_last, t_pub0, t_res0, t_res1;
    report_t         total, r;
    struct rlimit    rl;
    proc_sample_t    s_before, s_conn, s_pub0, s_pub1;
    double           kb_per_stream, cpu_us_per_delivery, delivered_per_s;
    double           cpu_us_per_publish;
    double           connect_all_ms, resume_ms;

    static struct option  longopts[] = {
        { "stream", required_argument, NULL, 's' },
        { "pub", required_argument, NULL, 'p' },
        { "body", required_argument, NULL, 'b' },
        { "header", required_argument, NULL, 'H' },
        { "streams", required_argument, NULL, 'S' },
        { "channels", required_argument, NULL, 'C' },
        { "sources", required_argument, NULL, 'N' },
        { "procs", required_argument, NULL, 'P' },
        { "ramp", required_argument, NULL, 'r' },
        { "pending", required_argument, NULL, 'i' },
        { "rate", required_argument, NULL, 'R' },
        { "one", no_argument, NULL, '1' },
        { "pub-conns", required_argument, NULL, 'K' },
        { "pipeline", required_argument, NULL, 'Q' },
        { "window", required_argument, NULL, 'W' },
        { "duration", required_argument, NULL, 'd' },
        { "hold", required_argument, NULL, 'h' },
        { "resume", required_argument, NULL, 'M' },
        { "drain-timeout", required_argument, NULL, 'D' },
        { "connect-timeout", required_argument, NULL, 'T' },
        { "server-pids", required_argument, NULL, 'X' },
        { "label", required_argument, NULL, 'L' },
        { "quiet", no_argument, NULL, 'q' },
        { "websocket", no_argument, NULL, 'w' },
        { "help", no_argument, NULL, '?' },
        { NULL, 0, NULL, 0 }
    };

    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 's':
            if (opt_nstream_urls == MAX_STREAM_URLS) {
                die("at most %d --stream URLs", MAX_STREAM_URLS);
            }
            opt_stream_url[opt_nstream_urls++] = optarg;
            break;
        case 'p': opt_pub_url = optarg; break;
        case 'b': opt_body = optarg; break;
        case 'H':
            if (opt_nheaders == MAX_HEADERS) {
                die("too many --header");
            }
            opt_headers[opt_nheaders++] = optarg;
            break;
        case 'S': opt_streams = atol(optarg); break;
        case 'C': opt_channels = atol(optarg); break;
        case 'N': opt_sources = atol(optarg); break;
        case 'P': opt_procs = atol(optarg); break;
        case 'r': opt_ramp = atof(optarg); break;
        case 'i': opt_pending = atol(optarg); break;
        case 'R': opt_rate = atof(optarg); break;
        case '1': opt_pub_one = 1; break;
        case 'K': opt_pub_conns = atol(optarg); break;
        case 'Q': opt_pipeline = atol(optarg); break;
        case 'W': opt_window = atol(optarg); break;
        case 'd': opt_duration = atof(optarg); break;
        case 'h': opt_hold = atof(optarg); break;
        case 'M': opt_resume = atol(optarg); break;
        case 'D': opt_drain_timeout = atof(optarg); break;
        case 'T': opt_connect_timeout = atof(optarg); break;
        case 'X': opt_server_pids = optarg; break;
        case 'L': opt_label = optarg; break;
        case 'q': opt_quiet = 1; break;
        case 'w': opt_websocket = 1; break;
        default: usage();
        }
    }

    if (opt_channels < 1 || opt_procs < 1 || opt_procs > MAX_PROCS
        || opt_sources < 1 || opt_sources > 254 || opt_streams < 0
        || opt_pub_conns < 1 || opt_pub_conns > MAX_PUB_CONNS
        || opt_pending < 1 || opt_window < 1 || opt_pipeline < 1
        || opt_pipeline > MAX_PIPELINE)
    {
        usage();
    }

    if (opt_streams > 0 && opt_nstream_urls == 0) {
        die("--streams needs --stream");
    }

    if ((opt_rate >= 0 || opt_resume > 0) && opt_pub_url == NULL) {
        die("publishing needs --pub");
    }

    if (opt_resume > 0 && opt_rate < 0) {
        opt_rate = 0;
    }

    if (opt_streams / opt_procs + 100 > FD_BUDGET) {
        die("%ld streams per process is over the fd budget (%d): "
            "use more --procs", opt_streams / opt_procs, FD_BUDGET);
    }

    for (i = 0; i < opt_nstream_urls; i++) {
        parse_url(opt_stream_url[i], &stream_url[i]);
    }

    if (opt_pub_url) {
        parse_url(opt_pub_url, &pub_url);
    }

    rl.rlim_cur = rl.rlim_max = FD_BUDGET + 500;
    if (setrlimit(RLIMIT_NOFILE, &rl) == -1) {
        getrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_max > rl.rlim_cur) {
            rl.rlim_cur = rl.rlim_max;
            setrlimit(RLIMIT_NOFILE, &rl);
        }
    }

    signal(SIGPIPE, SIG_IGN);

    shm_size = sizeof(shm_t) + (size_t) opt_channels
                               * (sizeof(int64_t) + sizeof(int32_t));
    shm = mmap(NULL, shm_size, PROT_READ | PROT_WRITE,
               MAP_SHARED | MAP_ANONYMOUS, -1, 0);

    if (shm == MAP_FAILED) {
        die("mmap: %s", strerror(errno));
    }

    chan_seq = (int64_t *) (shm + 1);
    chan_live = (int32_t *) (chan_seq + opt_channels);
    shm->epoch = now_ns();

    for (i = 0; i <= MAX_PROCS; i++) {
        shm->ack[i] = -1;
    }

    /* fork: stream workers, then the publisher */

    nchild = 0;
    pub_pid = -1;
    per = opt_streams / opt_procs;
    first = 0;

    for (i = 0; i < opt_procs + 1; i++) {
        if (i < opt_procs) {
            cnt = (i == opt_procs - 1) ? opt_streams - first : per;

        } else if (opt_rate < 0) {
            break;
        }

        if (pipe(pipes[i]) == -1) {
            die("pipe: %s", strerror(errno));
        }

        pids[i] = fork();

        if (pids[i] == -1) {
            die("fork: %s", strerror(errno));
        }

        if (pids[i] == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            close(pipes[i][0]);
            my_slot = i;

            if (i < opt_procs) {
                stream_worker(first, cnt, pipes[i][1]);
            } else {
                publisher(pipes[i][1]);
            }

            _exit(0);
        }

        close(pipes[i][1]);
        nchild++;

        if (i < opt_procs) {
            first += cnt;
        } else {
            pub_pid = pids[i];
        }
    }

    (void) pub_pid;

    /* connect */

    sample_server(&s_before);
    t_conn0 = now_ns();
    gen = set_phase(PH_CONNECT);
    ok_connect = wait_acks(gen, opt_connect_timeout, &t_conn1);

    if (!ok_connect) {
        note("not all streams connected within %.0fs", opt_connect_timeout);
        t_conn1 = now_ns();
    }

    connect_all_ms = (double) (t_conn1 - t_conn0) / 1e6;
    note("streams connected in %.0f ms", connect_all_ms);

    if (opt_hold > 0) {
        usleep((useconds_t) (opt_hold * 1e6));
    }

    sample_server(&s_conn);

    t_pub0 = 0;
    t_last = 0;
    t_res0 = 0;
    t_res1 = 0;
    ok_drain = 1;
    memset(&s_pub0, 0, sizeof(s_pub0));
    memset(&s_pub1, 0, sizeof(s_pub1));

    if (opt_resume > 0) {
        /* one message per channel gives every stream a Last-Event-ID */
        publish_round(1, 60);
        gen = set_phase(PH_DRAIN);
        ok_drain = wait_acks(gen, opt_drain_timeout, &t_last);

        gen = set_phase(PH_DISCONNECT);
        wait_acks(gen, 10, &t_last);
        usleep(300000);

        publish_round(opt_resume, 120);

        sample_server(&s_pub0);
        t_res0 = now_ns();
        gen = set_phase(PH_RESUME);
        ok_drain = wait_acks(gen, opt_connect_timeout + opt_drain_timeout,
                             &t_res1) && ok_drain;

        if (t_res1 < t_res0) {
            t_res1 = now_ns();
        }

        sample_server(&s_pub1);

    } else if (opt_rate >= 0) {
        sample_server(&s_pub0);
        t_pub0 = now_ns();
        publish_round(0, opt_duration + 60);
        gen = set_phase(PH_DRAIN);
        ok_drain = wait_acks(gen, opt_drain_timeout, &t_last);
        sample_server(&s_pub1);
    }

    set_phase(PH_REPORT);

    memset(&total, 0, sizeof(total));

    for (i = 0; i < nchild; i++) {
        read_report(pipes[i][0], &r);

        if (r.kind == -1) {
            note("child %d sent no report", i);
            continue;
        }

        total.streams += r.streams;
        total.connected += r.connected;
        total.conn_fail += r.conn_fail;
        total.http_err += r.http_err;
        total.closed_eof += r.closed_eof;
        total.closed_reset += r.closed_reset;
        total.proto_err += r.proto_err;
        total.events += r.events;
        total.other_events += r.other_events;
        total.heartbeats += r.heartbeats;
        total.gaps += r.gaps;
        total.dups += r.dups;
        total.lost += r.lost;
        total.resumed += r.resumed;
        hist_merge(&total.lat, &r.lat);
        hist_merge(&total.conn, &r.conn);
        total.pub_sent += r.pub_sent;
        total.pub_ok += r.pub_ok;
        total.pub_err += r.pub_err;
        total.pub_conn_err += r.pub_conn_err;
        hist_merge(&total.publat, &r.publat);

        if (r.t_last_event > total.t_last_event) {
            total.t_last_event = r.t_last_event;
        }
    }

    for (i = 0; i < nchild; i++) {
        waitpid(pids[i], NULL, 0);
    }

    lost_tail = total.lost;

    /* figures */

    kb_per_stream = total.connected > 0
                    ? (double) (s_conn.rss_kb - s_before.rss_kb)
                      / (double) (opt_resume > 0 ? opt_streams
                                                 : total.connected)
                    : 0;

    pub_secs = shm->pub_t_end > shm->pub_t_start
               ? (double) (shm->pub_t_end - shm->pub_t_start) / 1e9 : 0;

    secs = 0;
    delivered_per_s = 0;

    if (t_pub0 && total.t_last_event > shm->pub_t_start) {
        secs = (double) (total.t_last_event - shm->pub_t_start) / 1e9;
        delivered_per_s = (double) total.events / secs;
    }

    cpu_us_per_delivery = 0;

    if (total.events > 0 && opt_server_pids && t_pub0) {
        cpu_us_per_delivery = cpu_seconds(&s_pub0, &s_pub1, -1) * 1e6
                              / (double) total.events;
    }

    /* with --streams 0: what a publish costs the server on its own */

    cpu_us_per_publish = 0;

    if (total.pub_ok > 0 && opt_server_pids && t_pub0) {
        cpu_us_per_publish = cpu_seconds(&s_pub0, &s_pub1, -1) * 1e6
                             / (double) total.pub_ok;
    }

    resume_ms = t_res0 ? (double) (t_res1 - t_res0) / 1e6 : 0;

    /* each server process's CPU per published message (--server-pids order) */

    nprocs = 0;

    if (total.pub_ok > 0 && t_pub0 && s_pub1.cpu_ns > s_pub0.cpu_ns) {
        for (nprocs = 0; nprocs < s_pub1.nprocs; nprocs++) {
            by_process[nprocs] = cpu_seconds(&s_pub0, &s_pub1, nprocs) * 1e6
                                 / (double) total.pub_ok;
        }
    }

    printf("sse-bench %s\n", opt_label);
    printf("  streams      %ld on %ld channels, %ld procs, %ld sources\n",
           opt_streams, opt_channels, opt_procs, opt_sources);
    printf("  connected    %lld in %.0f ms (connect p50 %.2f ms, p99 %.2f"
           " ms, max %.2f ms)\n",
           (long long) total.connected, connect_all_ms,
           hist_pct(&total.conn, 0.5) / 1e3,
           hist_pct(&total.conn, 0.99) / 1e3, total.conn.max / 1e3);
    printf("  errors       connect %lld, http %lld, closed %lld, reset %lld,"
           " protocol %lld\n",
           (long long) total.conn_fail, (long long) total.http_err,
           (long long) total.closed_eof, (long long) total.closed_reset,
           (long long) total.proto_err);

    if (opt_rate >= 0 || opt_resume > 0) {
        printf("  published    %lld ok, %lld non-2xx, %lld conn errors, "
               "%.0f msgs/s (publish p50 %.2f ms, p99 %.2f ms)\n",
               (long long) total.pub_ok, (long long) total.pub_err,
               (long long) total.pub_conn_err,
               pub_secs > 0 ? total.pub_ok / pub_secs : 0,
               hist_pct(&total.publat, 0.5) / 1e3,
               hist_pct(&total.publat, 0.99) / 1e3);
        printf("  delivered    %lld events, %.0f /s; gaps %lld, dups %lld, "
               "lost %lld%s\n",
               (long long) total.events, delivered_per_s,
               (long long) total.gaps, (long long) total.dups,
               (long long) lost_tail, ok_drain ? "" : " (drain timed out)");
        printf("  latency      p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, "
               "max %.2f ms (%llu samples)\n",
               hist_pct(&total.lat, 0.5) / 1e3,
               hist_pct(&total.lat, 0.99) / 1e3,
               hist_pct(&total.lat, 0.999) / 1e3, total.lat.max / 1e3,
               (unsigned long long) total.lat.count);
    }

    if (opt_resume > 0) {
        printf("  resume       %lld streams with Last-Event-ID, all caught "
               "up in %.0f ms\n", (long long) total.resumed, resume_ms);
    }

    if (opt_server_pids) {
        printf("  server       RSS %lld -> %lld KB (anon %lld -> %lld, shmem "
               "%lld -> %lld), %.2f KB per stream\n",
               (long long) s_before.rss_kb, (long long) s_conn.rss_kb,
               (long long) s_before.anon_kb, (long long) s_conn.anon_kb,
               (long long) s_before.shmem_kb, (long long) s_conn.shmem_kb,
               kb_per_stream);

        if (t_pub0) {
            printf("  server CPU   %.2f s during publish+drain, %.2f us per "
                   "delivery, %.2f us per publish\n",
                   cpu_seconds(&s_pub0, &s_pub1, -1),
                   cpu_us_per_delivery, cpu_us_per_publish);

            if (nprocs) {
                printf("  by process  ");

                for (i = 0; i < nprocs; i++) {
                    printf(" %.2f", by_process[i]);
                }

                printf(" us per publish\n");
            }

        } else if (t_res0) {
            printf("  server CPU   %.2f s during the resume\n",
                   cpu_seconds(&s_pub0, &s_pub1, -1));
        }
    }

    printf("{\"label\":\"%s\",\"streams\":%ld,\"channels\":%ld,"
           "\"connected\":%lld,\"connect_all_ms\":%.1f,"
           "\"connect_p99_ms\":%.2f,\"conn_fail\":%lld,\"http_err\":%lld,"
           "\"closed\":%lld,\"reset\":%lld,\"proto_err\":%lld,"
           "\"rate\":%.1f,\"pub_ok\":%lld,\"pub_err\":%lld,"
           "\"pub_conn_err\":%lld,\"pub_per_s\":%.1f,"
           "\"pub_p50_ms\":%.3f,\"pub_p99_ms\":%.3f,"
           "\"delivered\":%lld,\"delivered_per_s\":%.1f,"
           "\"gaps\":%lld,\"dups\":%lld,\"lost\":%lld,\"drained\":%s,"
           "\"lat_p50_ms\":%.3f,\"lat_p99_ms\":%.3f,\"lat_p999_ms\":%.3f,"
           "\"lat_max_ms\":%.3f,\"resumed\":%lld,\"resume_ms\":%.1f,"
           "\"rss_before_kb\":%lld,\"rss_connected_kb\":%lld,"
           "\"anon_before_kb\":%lld,\"anon_connected_kb\":%lld,"
           "\"shmem_before_kb\":%lld,\"shmem_connected_kb\":%lld,"
           "\"kb_per_stream\":%.3f,\"server_cpu_s\":%.2f,"
           "\"cpu_us_per_delivery\":%.3f,\"cpu_us_per_publish\":%.3f",
           opt_label, opt_streams, opt_channels,
           (long long) total.connected, connect_all_ms,
           hist_pct(&total.conn, 0.99) / 1e3,
           (long long) total.conn_fail, (long long) total.http_err,
           (long long) total.closed_eof, (long long) total.closed_reset,
           (long long) total.proto_err,
           opt_rate, (long long) total.pub_ok, (long long) total.pub_err,
           (long long) total.pub_conn_err,
           pub_secs > 0 ? total.pub_ok / pub_secs : 0,
           hist_pct(&total.publat, 0.5) / 1e3,
           hist_pct(&total.publat, 0.99) / 1e3,
           (long long) total.events, delivered_per_s,
           (long long) total.gaps, (long long) total.dups,
           (long long) lost_tail, ok_drain ? "true" : "false",
           hist_pct(&total.lat, 0.5) / 1e3, hist_pct(&total.lat, 0.99) / 1e3,
           hist_pct(&total.lat, 0.999) / 1e3, total.lat.max / 1e3,
           (long long) total.resumed, resume_ms,
           (long long) s_before.rss_kb, (long long) s_conn.rss_kb,
           (long long) s_before.anon_kb, (long long) s_conn.anon_kb,
           (long long) s_before.shmem_kb, (long long) s_conn.shmem_kb,
           kb_per_stream,
           cpu_seconds(&s_pub0, &s_pub1, -1),
           cpu_us_per_delivery, cpu_us_per_publish);

    /* one figure a process: util/bench takes medians of plain numbers */

    for (i = 0; i < nprocs; i++) {
        printf(",\"cpu_us_process_%d\":%.3f", i, by_process[i]);
    }

    printf("}\n");

    return (total.conn_fail || total.http_err || total.proto_err
            || !ok_connect) ? 1 : 0;
}
