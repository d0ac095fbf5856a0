/*
 * soak: a long-running load and correctness driver for nginx-webhook-sse.
 *
 * One epoll loop (libc only) that, against one nginx on 127.0.0.1:
 *
 *   - publishes at a fixed rate over keep-alive, pipelined connections;
 *     each body carries the driver's publish number "g", its channel "k"
 *     and the channel's own sequence "c" (a channel is bound to one
 *     connection, so its publishes reach nginx in order);
 *   - keeps a number of streams open, disconnects random ones (FIN or
 *     RST) and brings them back after a pause, either resuming with
 *     Last-Event-ID or as a new stream on a random session;
 *   - checks every event: no duplicate, ids increasing, only its session
 *     and broadcasts, and no gap: a channel sequence number it skipped
 *     must belong to a publish that was refused, never to one answered
 *     200 (or one another stream saw); gaps are told apart by where they
 *     happened (on a live stream, across a resume, at the end);
 *   - at checkpoints stops the churn until every stream is open, then
 *     waits for activeConnections (GET on the publish location) and the
 *     webhook_status "streams" figure to equal the open streams, and
 *     samples the zone figures and the server processes' memory;
 *   - at the end stops publishing, waits until every stream has caught
 *     up, closes them all and waits for both counts to reach 0.
 *
 * Output: one JSON object per line on stdout, {"checkpoint":..} lines and
 * a final {"final":..} line with every counter; progress on stderr.
 * Exit status 0 unless the driver itself failed (usage, resources).
 * Judging the figures is the caller's business (t/soak.t and friends).
 *
 * Build: cc -O2 -o soak soak.c (util/soak/build.sh).  See --help.
 */

#define _GNU_SOURCE

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>


#define MAX_PIPELINE     64
#define MAX_PIDS         16
#define LINE_MAX_LEN     512
#define ID_MAX_LEN       64
#define HEAD_MAX_LEN     4096
#define BODY_KEEP        512

#define TAG_STREAM       1ULL
#define TAG_PUB          2ULL
#define TAG_QUERY        3ULL
#define TAG_SHIFT        56

/* publish outcomes */
#define P_PENDING        0
#define P_ACKED          1
#define P_REJECTED       2
#define P_UNKNOWN        3

/* publish kinds */
#define K_NORMAL         0
#define K_BIG            1               /* large, must be accepted */
#define K_HUGE           2               /* over a quarter zone: 503 */
#define K_MARK           3               /* the last one of a channel */

/* gap categories */
#define GAP_LIVE         0
#define GAP_RESUME       1
#define GAP_TAIL         2

static const char *gap_names[] = { "live", "resume", "tail" };

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
    char     *head;
} http_t;

typedef void (*body_handler_pt)(void *data, const char *p, size_t n);

enum {
    ST_IDLE = 0,          /* waiting for t_reconnect */
    ST_CONNECTING,
    ST_HEADERS,           /* request sent, no connected event yet */
    ST_LIVE
};

typedef struct {
    int       fd;
    int       k;                       /* session channel, -1: none */
    uint8_t   state;
    uint8_t   stable;                  /* never churned by us */
    uint8_t   resuming;                /* this connection sent an id */
    uint8_t   first[2];                /* no event on channel i yet */
    uint8_t   cr;
    uint8_t   have_data;
    uint8_t   have_id;
    uint8_t   pend_type;               /* 1 connected, 2 message */
    uint16_t  llen;
    int       retry_ms;
    int64_t   last_c[2];               /* own channel, broadcast; -1 */
    int64_t   base[2];                 /* last assigned at connected */
    uint64_t  last_z;
    uint64_t  t_reconnect;
    uint64_t  t_connect;
    int64_t   pend_g;
    int64_t   pend_k;
    int64_t   pend_c;
    int64_t   pend_z;
    http_t    http;
    char      last_id[ID_MAX_LEN];
    char      pend_id[ID_MAX_LEN];
    char      line[LINE_MAX_LEN];
} stream_t;

typedef struct {
    int       fd;
    int       connected;
    int       retiring;                /* no more requests: close when done */
    int64_t   requests;
    int       inflight;
    int       head;
    uint64_t  t_retry;
    int64_t   q[MAX_PIPELINE];         /* publish numbers in flight */
    http_t    http;
    char     *out;
    size_t    out_len;
    size_t    out_off;
    size_t    out_cap;
    size_t    body_len;
    char      body[BODY_KEEP];
} pubconn_t;

typedef struct {
    int       fd;
    int       active;
    int       done;
    int       ok;
    const char *path;
    http_t    http;
    size_t    body_len;
    char      body[4096];
} query_t;

typedef struct {
    int64_t    next;                   /* next sequence number to assign */
    int64_t    last_acked;
    uint32_t  *g_of;                   /* sequence -> publish number */
    size_t     cap;
} chan_t;

typedef struct {
    int32_t   k;
    int32_t   stream;
    uint8_t   cat;
    int64_t   from;
    int64_t   to;
    int64_t   next;                    /* the sequence that came instead */
    double    t;
    double    age;                     /* of the stream's connection, s */
    uint8_t   first;                   /* first event after connecting */
} gap_t;


/* options */
static int          opt_port;
static const char  *opt_pub = "/pub";
static const char  *opt_stream = "/stream";
static const char  *opt_health;
static const char  *opt_status;
static const char  *opt_secret;
static double       opt_rate = 10000;
static double       opt_duration = 20;
static long         opt_sessions = 100;
static long         opt_streams = 400;
static long         opt_stable = -1;
static long         opt_nosession_pct = 5;
static long         opt_bcast_every = 1000;
static double       opt_churn = 100;
static long         opt_resume_pct = 70;
static long         opt_pause_max = 500;
static int          opt_close_mode;      /* 0 mixed, 1 FIN, 2 RST */
static long         opt_pub_conns = 8;
static long         opt_pipeline = 8;
static long         opt_conn_requests = 1000;
static long         opt_size_min = 16;
static long         opt_size_max = 64;
static long         opt_big_every;
static long         opt_big_size;
static long         opt_huge_every;
static long         opt_huge_size;
static long         opt_fresh_pct;
static double       opt_checkpoint = 5;
static double       opt_count_timeout = 5;
static double       opt_drain_timeout = 15;
static long         opt_retry_max = 1000;
static int          opt_server_close_ok;
static long         opt_npids;
static int          opt_pids[MAX_PIDS];
static unsigned     opt_seed = 1;
static int          opt_quiet;

static struct sockaddr_in  server;
static int                 ep;
static char                iobuf[262144];
static char               *pad;

static stream_t   *streams;
static pubconn_t  *pconns;
static chan_t     *chans;                /* opt_sessions + 1 (broadcast) */
static long        bchan;                /* broadcast channel index */
static query_t     queries[2];

/* per publish number */
static uint8_t    *p_status;
static uint8_t    *p_seen;
static uint8_t    *p_kind;
static uint32_t   *p_zseq;
static int64_t     p_cap;
static int64_t     p_next;

static gap_t      *gaps;
static size_t      ngaps;
static size_t      gaps_cap;

static uint64_t    t0;
static uint64_t    t_pub0;
static uint64_t    t_pub_end;
static long        nlive;
static int         publishing;
static int64_t     zone_epoch = -1;

/* counters */
static struct {
    int64_t  pub_sent, pub_acked, pub_rejected, pub_unknown, pub_503;
    int64_t  pub_other_status, pub_reconnects, pub_conn_err, pub_retired;
    int64_t  pub_big, pub_big_rejected, pub_huge, pub_huge_503;
    int64_t  pub_huge_other, pub_normal_503, pub_fresh;
    int64_t  pub_bcast;
    int64_t  connects, fresh_connects, resumes, churned, churn_rst;
    int64_t  server_closed, server_closed_retry, unexpected_close;
    int64_t  closed_early;
    int64_t  http_err, http_503, conn_fail, proto_err;
    int64_t  events, connected, heartbeats, dups, order, misrouted;
    int64_t  foreign, id_mismatch, epoch_change, bad_event;
    int64_t  lost[3], missed_unknown, missed_rejected, gap_ranges[3];
    int64_t  rejected_seen, unknown_seen;
    int64_t  checkpoints, count_mismatch;
    int64_t  max_streams_open;
} cnt;


static void
die(const char *fmt, ...)
{
    va_list  ap;

    va_start(ap, fmt);
    fprintf(stderr, "soak: ");
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
    fprintf(stderr, "soak: ");
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


static double
secs(uint64_t t)
{
    return (double) (t - t0) / 1e9;
}


static void *
xrealloc(void *p, size_t n)
{
    p = realloc(p, n);
    if (p == NULL) {
        die("out of memory (%zu bytes)", n);
    }
    return p;
}


/* xorshift: reproducible with --seed */
static uint64_t  rng_state = 88172645463325252ULL;

static uint64_t
rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}


static long
rnd_below(long n)
{
    return n > 0 ? (long) (rnd() % (uint64_t) n) : 0;
}


/* ----- publish log ------------------------------------------------------- */

static int64_t
plog_new(void)
{
    int64_t  g, cap;

    g = p_next++;

    if (g >= p_cap) {
        cap = p_cap ? p_cap * 2 : 1 << 20;
        p_status = xrealloc(p_status, cap);
        p_seen = xrealloc(p_seen, cap);
        p_kind = xrealloc(p_kind, cap);
        p_zseq = xrealloc(p_zseq, cap * sizeof(uint32_t));
        memset(p_status + p_cap, 0, cap - p_cap);
        memset(p_seen + p_cap, 0, cap - p_cap);
        memset(p_kind + p_cap, 0, cap - p_cap);
        memset(p_zseq + p_cap, 0, (cap - p_cap) * sizeof(uint32_t));
        p_cap = cap;
    }

    return g;
}


static int64_t
chan_assign(long k, int64_t g)
{
    int64_t  c;
    chan_t  *ch;

    ch = &chans[k];
    c = ch->next++;

    if ((size_t) c >= ch->cap) {
        ch->cap = ch->cap ? ch->cap * 2 : 4096;
        ch->g_of = xrealloc(ch->g_of, ch->cap * sizeof(uint32_t));
    }

    ch->g_of[c] = (uint32_t) g;
    return c;
}


static void
gap_add(long k, int64_t from, int64_t to, int cat, long stream, int64_t next,
    double age, int first)
{
    if (ngaps == gaps_cap) {
        gaps_cap = gaps_cap ? gaps_cap * 2 : 1024;
        gaps = xrealloc(gaps, gaps_cap * sizeof(gap_t));
    }

    gaps[ngaps].k = (int32_t) k;
    gaps[ngaps].cat = (uint8_t) cat;
    gaps[ngaps].from = from;
    gaps[ngaps].to = to;
    gaps[ngaps].stream = (int32_t) stream;
    gaps[ngaps].next = next;
    gaps[ngaps].t = secs(now_ns());
    gaps[ngaps].age = age;
    gaps[ngaps].first = (uint8_t) first;
    ngaps++;
    cnt.gap_ranges[cat]++;
}


/* ----- sockets and HTTP -------------------------------------------------- */

static int
open_conn(void)
{
    int  fd, one;

    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        return -1;
    }

    one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    if (connect(fd, (struct sockaddr *) &server, sizeof(server)) == -1
        && errno != EINPROGRESS)
    {
        close(fd);
        return -1;
    }

    return fd;
}


static void
ep_set(int fd, uint64_t tag, uint64_t idx, uint32_t events, int op)
{
    struct epoll_event  ev;

    ev.events = events;
    ev.data.u64 = (tag << TAG_SHIFT) | idx;

    if (epoll_ctl(ep, op, fd, &ev) == -1) {
        die("epoll_ctl: %s", strerror(errno));
    }
}


static void
close_rst(int fd)
{
    struct linger  l;

    l.l_onoff = 1;
    l.l_linger = 0;
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    close(fd);
}


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

    for ( ;; ) {
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

    if (h->chunked) {
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
 * Feeds n bytes of a response.  Returns the bytes used (fewer than n only
 * once the response is complete), -1 on a protocol error.
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
                h->head = xrealloc(NULL, HEAD_MAX_LEN);
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


static int64_t
scan_number(const char *s, size_t len, const char *key)
{
    size_t       klen;
    int64_t      v;
    const char  *p, *end;

    klen = strlen(key);
    p = memmem(s, len, key, klen);
    if (p == NULL) {
        return -1;
    }

    end = s + len;
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


/* "<epoch>-<seq>": the seq, -1 if malformed; *epoch set */
static int64_t
parse_id(const char *s, size_t len, int64_t *epoch)
{
    size_t   i;
    int64_t  e, q;

    e = 0;
    i = 0;

    while (i < len && isdigit((unsigned char) s[i])) {
        e = e * 10 + (s[i++] - '0');
    }

    if (i == 0 || i == len || s[i] != '-') {
        return -1;
    }

    i++;
    q = 0;

    if (i == len) {
        return -1;
    }

    while (i < len && isdigit((unsigned char) s[i])) {
        q = q * 10 + (s[i++] - '0');
    }

    if (i != len) {
        return -1;
    }

    *epoch = e;
    return q;
}


static void
check_epoch(int64_t e)
{
    if (zone_epoch == -1) {
        zone_epoch = e;

    } else if (e != zone_epoch) {
        cnt.epoch_change++;
        zone_epoch = e;
    }
}


/* ----- streams ----------------------------------------------------------- */

static void stream_connect(stream_t *s, uint64_t now);


static void
stream_assign(stream_t *s)
{
    if (rnd_below(100) < opt_nosession_pct) {
        s->k = -1;

    } else {
        s->k = (int) rnd_below(opt_sessions);
    }

    s->last_c[0] = -1;
    s->last_c[1] = -1;
    s->last_z = 0;
    s->last_id[0] = '\0';
}


static void
stream_drop(stream_t *s)
{
    if (s->fd != -1) {
        epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
        close(s->fd);
        s->fd = -1;
    }

    if (s->state == ST_LIVE) {
        nlive--;
    }

    s->state = ST_IDLE;
}


/* the server ended the stream or it failed: come back, resuming */
static void
stream_lost(stream_t *s, uint64_t now, int expected)
{
    int  was_live, delay;

    was_live = (s->state == ST_LIVE);
    stream_drop(s);

    if (was_live) {
        if (expected) {
            cnt.server_closed++;
            if (s->retry_ms > 0 && s->retry_ms < 2000) {
                cnt.server_closed_retry++;
            }

        } else {
            cnt.unexpected_close++;
        }

    } else if (!expected) {
        cnt.closed_early++;
    }

    delay = s->retry_ms > 0 ? s->retry_ms : 1000;
    if (delay > opt_retry_max) {
        delay = (int) opt_retry_max;
    }

    s->t_reconnect = now + (uint64_t) rnd_below(delay + 1) * 1000000ULL;
}


static void
stream_event(stream_t *s)
{
    int      i;
    int64_t  g, k, c, from;

    if (s->pend_type == 1) {
        if (s->state != ST_HEADERS) {
            cnt.bad_event++;
            return;
        }

        cnt.connected++;
        s->state = ST_LIVE;
        nlive++;

        if (nlive > cnt.max_streams_open) {
            cnt.max_streams_open = nlive;
        }

        if (!s->resuming) {
            /* every publish assigned from now on reaches nginx after this
             * stream subscribed: the stream must get it */
            s->base[0] = s->k >= 0 ? chans[s->k].next - 1 : -1;
            s->base[1] = chans[bchan].next - 1;
        }
        s->first[0] = 1;
        s->first[1] = 1;
        return;
    }

    if (s->pend_type != 2 || s->state != ST_LIVE) {
        cnt.bad_event++;
        return;
    }

    cnt.events++;

    g = s->pend_g;
    k = s->pend_k;
    c = s->pend_c;

    if (g < 0 || g >= p_next || c < 0) {
        cnt.foreign++;
        return;
    }

    p_seen[g] = 1;

    if (s->pend_z < 0) {
        cnt.bad_event++;

    } else {
        if (p_status[g] == P_ACKED && p_zseq[g] != (uint32_t) s->pend_z) {
            cnt.id_mismatch++;
        }

        if ((uint64_t) s->pend_z <= s->last_z) {
            cnt.order++;

        } else {
            s->last_z = (uint64_t) s->pend_z;
        }

        memcpy(s->last_id, s->pend_id, ID_MAX_LEN);
    }

    if (k == bchan) {
        i = 1;

    } else if (k >= 0 && k == s->k) {
        i = 0;

    } else {
        cnt.misrouted++;
        return;
    }

    if (c >= chans[k].next) {
        cnt.foreign++;
        return;
    }

    from = s->last_c[i] >= 0 ? s->last_c[i] + 1 : s->base[i] + 1;

    if (c < from) {
        if (s->last_c[i] >= 0) {
            cnt.dups++;
        }

        /* else: published before this stream subscribed */

    } else {
        if (c > from) {
            gap_add(k, from, c - 1,
                    s->resuming && s->first[i] ? GAP_RESUME : GAP_LIVE,
                    (long) (s - streams), c,
                    (double) (now_ns() - s->t_connect) / 1e9, s->first[i]);
        }

        s->last_c[i] = c;
    }

    s->first[i] = 0;
}


static void
stream_line(stream_t *s)
{
    size_t       len, n;
    int64_t      e;
    const char  *line, *v;

    line = s->line;
    len = s->llen;

    if (len == 0) {
        if (s->have_data) {
            stream_event(s);
        }

        s->have_data = 0;
        s->have_id = 0;
        s->pend_type = 0;
        s->pend_g = s->pend_k = s->pend_c = s->pend_z = -1;
        return;
    }

    if (line[0] == ':') {
        cnt.heartbeats++;
        return;
    }

    if (len >= 5 && memcmp(line, "data:", 5) == 0) {
        s->have_data = 1;

        if (memmem(line, len, "\"type\":\"connected\"", 18)) {
            s->pend_type = 1;

        } else if (memmem(line, len, "\"type\":\"webhook_message\"", 24)) {
            s->pend_type = 2;
            s->pend_g = scan_number(line, len, "\"g\":");
            s->pend_k = scan_number(line, len, "\"k\":");
            s->pend_c = scan_number(line, len, "\"c\":");
        }

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
        s->pend_z = parse_id(v, n, &e);

        if (s->pend_z >= 0) {
            check_epoch(e);
        }

        return;
    }

    if (len >= 6 && memcmp(line, "retry:", 6) == 0) {
        s->retry_ms = atoi(line + 6);
    }
}


static void
stream_body(void *data, const char *p, size_t n)
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
            stream_line(s);
            s->llen = 0;
            continue;
        }

        /* the numbers come first in the data line; the text is not read */
        if (s->llen < LINE_MAX_LEN - 1) {
            s->line[s->llen++] = c;
        }
    }
}


static void
stream_connect(stream_t *s, uint64_t now)
{
    s->fd = open_conn();

    if (s->fd == -1) {
        cnt.conn_fail++;
        s->t_reconnect = now + 100000000ULL;
        return;
    }

    http_reset(&s->http);
    s->state = ST_CONNECTING;
    s->llen = 0;
    s->cr = 0;
    s->have_data = 0;
    s->have_id = 0;
    s->pend_type = 0;
    s->retry_ms = 0;
    s->t_connect = now;

    ep_set(s->fd, TAG_STREAM, (uint64_t) (s - streams), EPOLLOUT,
           EPOLL_CTL_ADD);
}


static void
stream_send(stream_t *s, uint64_t now)
{
    int        err, n;
    char       req[1024], path[512];
    ssize_t    w;
    socklen_t  len;

    err = 0;
    len = sizeof(err);
    getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len);

    if (err) {
        cnt.conn_fail++;
        stream_drop(s);
        s->t_reconnect = now + 100000000ULL;
        return;
    }

    s->resuming = (s->last_id[0] != '\0');

    if (!s->resuming) {
        s->last_c[0] = -1;
        s->last_c[1] = -1;
        s->last_z = 0;
    }

    if (s->k >= 0) {
        snprintf(path, sizeof(path), "%s%csessionId=s%d", opt_stream,
                 strchr(opt_stream, '?') ? '&' : '?', s->k);

    } else {
        snprintf(path, sizeof(path), "%s", opt_stream);
    }

    n = snprintf(req, sizeof(req),
                 "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 "Accept: text/event-stream\r\n%s%s%s\r\n",
                 path,
                 s->resuming ? "Last-Event-ID: " : "",
                 s->resuming ? s->last_id : "",
                 s->resuming ? "\r\n" : "");

    w = send(s->fd, req, (size_t) n, MSG_NOSIGNAL);

    if (w != n) {
        cnt.conn_fail++;
        stream_drop(s);
        s->t_reconnect = now + 100000000ULL;
        return;
    }

    cnt.connects++;

    if (s->resuming) {
        cnt.resumes++;

    } else {
        cnt.fresh_connects++;
    }

    s->state = ST_HEADERS;
    ep_set(s->fd, TAG_STREAM, (uint64_t) (s - streams), EPOLLIN,
           EPOLL_CTL_MOD);
}


static void
stream_read(stream_t *s, uint64_t now)
{
    int      status;
    ssize_t  n, used;

    for ( ;; ) {
        n = recv(s->fd, iobuf, sizeof(iobuf), 0);

        if (n == -1 && errno == EINTR) {
            continue;
        }

        if (n == -1 && errno == EAGAIN) {
            return;
        }

        if (n <= 0) {
            if (s->http.state == HS_DONE || (n == 0 && opt_server_close_ok)) {
                stream_lost(s, now, 1);

            } else {
                stream_lost(s, now, opt_server_close_ok);
            }
            return;
        }

        used = http_feed(&s->http, iobuf, (size_t) n, stream_body, s);

        if (used < 0) {
            cnt.proto_err++;
            stream_lost(s, now, 0);
            return;
        }

        status = s->http.status;

        if (s->http.state != HS_HEAD && status != 200) {
            cnt.http_err++;

            if (cnt.http_err <= 5) {
                /* always said, --quiet or not: the answer tells why */
                fprintf(stderr, "soak: t=%.3fs stream %ld (%s): HTTP %d: "
                        "%.*s\n", secs(now), (long) (s - streams),
                        s->resuming ? "resuming" : "new", status,
                        (int) (n > 400 ? 400 : n), iobuf);
            }

            if (status == 503) {
                cnt.http_503++;
            }
            stream_drop(s);
            s->t_reconnect = now + 100000000ULL;
            return;
        }

        if (s->http.state == HS_DONE) {
            /* the server finished the response: a reload or a shutdown */
            stream_lost(s, now, opt_server_close_ok);
            return;
        }

        if ((size_t) n < sizeof(iobuf)) {
            return;
        }
    }
}


/* a random stream we may churn, or NULL */
static stream_t *
stream_pick_live(void)
{
    int        tries;
    stream_t  *s;

    for (tries = 0; tries < 20; tries++) {
        s = &streams[rnd_below(opt_streams)];

        if (!s->stable && s->state == ST_LIVE) {
            return s;
        }
    }

    return NULL;
}


static void
stream_churn(stream_t *s, uint64_t now)
{
    int  rst;

    rst = opt_close_mode ? opt_close_mode == 2 : (int) (rnd() & 1);

    epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);

    if (rst) {
        close_rst(s->fd);
        cnt.churn_rst++;

    } else {
        close(s->fd);
    }

    s->fd = -1;
    nlive--;
    s->state = ST_IDLE;
    cnt.churned++;

    if (rnd_below(100) >= opt_resume_pct) {
        /* a new client on a random session instead */
        stream_assign(s);
    }

    s->t_reconnect = now + (uint64_t) rnd_below(opt_pause_max + 1)
                           * 1000000ULL;
}


/* ----- publishing -------------------------------------------------------- */

static void
pub_connect(pubconn_t *pc, uint64_t now)
{
    pc->fd = open_conn();

    if (pc->fd == -1) {
        cnt.pub_conn_err++;
        pc->t_retry = now + 10000000ULL;
        return;
    }

    pc->connected = 0;
    pc->retiring = 0;
    pc->requests = 0;
    pc->inflight = 0;
    pc->head = 0;
    pc->out_len = 0;
    pc->out_off = 0;
    pc->body_len = 0;
    http_reset(&pc->http);

    ep_set(pc->fd, TAG_PUB, (uint64_t) (pc - pconns), EPOLLOUT,
           EPOLL_CTL_ADD);
}


/* the connection is gone: what was in flight may or may not be stored */
static void
pub_fail(pubconn_t *pc, uint64_t now)
{
    int      i;
    int64_t  g;

    if (pc->fd != -1) {
        epoll_ctl(ep, EPOLL_CTL_DEL, pc->fd, NULL);
        close(pc->fd);
        pc->fd = -1;
    }

    for (i = 0; i < pc->inflight; i++) {
        g = pc->q[(pc->head + i) % MAX_PIPELINE];
        p_status[g] = P_UNKNOWN;
        cnt.pub_unknown++;
    }

    pc->inflight = 0;
    pc->connected = 0;
    pc->t_retry = now;
    cnt.pub_reconnects++;
}


static void
pub_write(pubconn_t *pc, uint64_t now)
{
    ssize_t  w;

    while (pc->out_off < pc->out_len) {
        w = send(pc->fd, pc->out + pc->out_off, pc->out_len - pc->out_off,
                 MSG_NOSIGNAL);

        if (w == -1) {
            if (errno == EAGAIN) {
                ep_set(pc->fd, TAG_PUB, (uint64_t) (pc - pconns),
                       EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
                return;
            }

            if (errno == EINTR) {
                continue;
            }

            pub_fail(pc, now);
            return;
        }

        pc->out_off += (size_t) w;
    }

    pc->out_off = 0;
    pc->out_len = 0;

    ep_set(pc->fd, TAG_PUB, (uint64_t) (pc - pconns), EPOLLIN,
           EPOLL_CTL_MOD);
}


static void
pub_body(void *data, const char *p, size_t n)
{
    pubconn_t  *pc;

    pc = data;

    if (n > BODY_KEEP - 1 - pc->body_len) {
        n = BODY_KEEP - 1 - pc->body_len;
    }

    memcpy(pc->body + pc->body_len, p, n);
    pc->body_len += n;
    pc->body[pc->body_len] = '\0';
}


static void
pub_complete(pubconn_t *pc)
{
    int64_t      g, z, e;
    const char  *p, *q;

    g = pc->q[pc->head];
    pc->head = (pc->head + 1) % MAX_PIPELINE;
    pc->inflight--;

    if (pc->http.status == 200) {
        p_status[g] = P_ACKED;
        cnt.pub_acked++;

        p = strstr(pc->body, "\"messageId\":\"");
        if (p) {
            p += 13;
            q = strchr(p, '"');
            z = q ? parse_id(p, (size_t) (q - p), &e) : -1;

            if (z >= 0) {
                p_zseq[g] = (uint32_t) z;
                check_epoch(e);
            }
        }

    } else {
        p_status[g] = P_REJECTED;
        p_zseq[g] = (uint32_t) pc->http.status;   /* no id: keep the code */
        cnt.pub_rejected++;

        if (pc->http.status == 503) {
            cnt.pub_503++;

        } else {
            cnt.pub_other_status++;

            if (cnt.pub_other_status <= 3) {
                note("publish: HTTP %d %s", pc->http.status, pc->body);
            }
        }
    }

    pc->body_len = 0;
}


static void
pub_read(pubconn_t *pc, uint64_t now)
{
    int      closing;
    size_t   off;
    ssize_t  n, used;

    n = recv(pc->fd, iobuf, sizeof(iobuf), 0);

    if (n == -1 && (errno == EAGAIN || errno == EINTR)) {
        return;
    }

    if (n <= 0) {
        pub_fail(pc, now);
        return;
    }

    off = 0;
    closing = 0;

    while (off < (size_t) n) {
        if (pc->inflight == 0) {
            cnt.proto_err++;
            pub_fail(pc, now);
            return;
        }

        used = http_feed(&pc->http, iobuf + off, (size_t) n - off,
                         pub_body, pc);

        if (used < 0) {
            cnt.proto_err++;
            pub_fail(pc, now);
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

    if (closing && !(pc->retiring && pc->inflight == 0)) {
        pub_fail(pc, now);

    } else if (pc->retiring && pc->inflight == 0) {
        /* every answer in (the last one may say "close"): a new
         * connection takes over */
        epoll_ctl(ep, EPOLL_CTL_DEL, pc->fd, NULL);
        close(pc->fd);
        pc->fd = -1;
        pc->connected = 0;
        pc->t_retry = now;
        cnt.pub_retired++;
    }
}


static void
pub_append(pubconn_t *pc, const char *body, size_t blen, int64_t g)
{
    int     hlen;
    char    head[512];
    size_t  need;

    hlen = snprintf(head, sizeof(head),
                    "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    "Content-Type: application/json\r\n"
                    "%s%s%sContent-Length: %zu\r\n\r\n",
                    opt_pub,
                    opt_secret ? "X-Webhook-Secret: " : "",
                    opt_secret ? opt_secret : "",
                    opt_secret ? "\r\n" : "", blen);

    need = pc->out_len + (size_t) hlen + blen;

    if (need > pc->out_cap) {
        pc->out_cap = need * 2;
        pc->out = xrealloc(pc->out, pc->out_cap);
    }

    memcpy(pc->out + pc->out_len, head, (size_t) hlen);
    memcpy(pc->out + pc->out_len + hlen, body, blen);
    pc->out_len = need;

    pc->q[(pc->head + pc->inflight) % MAX_PIPELINE] = g;
    pc->inflight++;
    cnt.pub_sent++;

    /* like a client that knows keepalive_requests: the server would
     * close the connection after that many, dropping pipelined ones */
    if (opt_conn_requests && ++pc->requests >= opt_conn_requests) {
        pc->retiring = 1;
    }
}


static int
pub_room(pubconn_t *pc)
{
    return pc->fd != -1 && pc->connected && !pc->retiring
           && pc->inflight < opt_pipeline;
}


/*
 * One publish: channel k (a session, bchan for a broadcast, -1 for a
 * session of its own nobody listens to), text of tlen bytes.  Returns 0
 * when the connection of channel k has no room.
 */
static int
pub_one(long k, long tlen, int kind, uint64_t now)
{
    int         n;
    long        j;
    char        body[256];
    int64_t     g, c;
    pubconn_t  *pc;
    static char *buf;
    static size_t bufcap;

    j = k >= 0 ? k % opt_pub_conns : rnd_below(opt_pub_conns);
    pc = &pconns[j];

    if (!pub_room(pc)) {
        return 0;
    }

    g = plog_new();
    p_kind[g] = (uint8_t) kind;

    if (kind == K_BIG) {
        cnt.pub_big++;

    } else if (kind == K_HUGE) {
        cnt.pub_huge++;
    }

    if (k == bchan) {
        c = chan_assign(k, g);
        n = snprintf(body, sizeof(body), "{\"g\":%lld,\"k\":%ld,\"c\":%lld,"
                     "\"message\":\"", (long long) g, k, (long long) c);
        cnt.pub_bcast++;

    } else if (k >= 0) {
        c = chan_assign(k, g);
        n = snprintf(body, sizeof(body), "{\"g\":%lld,\"k\":%ld,\"c\":%lld,"
                     "\"sessionId\":\"s%ld\",\"message\":\"",
                     (long long) g, k, (long long) c, k);

    } else {
        n = snprintf(body, sizeof(body), "{\"g\":%lld,\"sessionId\":\"f%lld\","
                     "\"message\":\"", (long long) g, (long long) g);
        cnt.pub_fresh++;
    }

    if ((size_t) (n + tlen + 3) > bufcap) {
        bufcap = (size_t) (n + tlen + 3) * 2;
        buf = xrealloc(buf, bufcap);
    }

    memcpy(buf, body, (size_t) n);
    memcpy(buf + n, pad, (size_t) tlen);
    memcpy(buf + n + tlen, "\"}", 2);

    pub_append(pc, buf, (size_t) (n + tlen + 2), g);
    pub_write(pc, now);

    return 1;
}


static long
text_len(void)
{
    return opt_size_min + rnd_below(opt_size_max - opt_size_min + 1);
}


static void
pub_tick(uint64_t now)
{
    int      kind;
    long     k, tries, tlen;
    int64_t  due, n, i;

    if (!publishing) {
        return;
    }

    due = (int64_t) ((double) (now - t_pub0) / 1e9 * opt_rate);
    n = 0;

    while (cnt.pub_sent < due && n < 4096) {
        n++;
        i = cnt.pub_sent + 1;

        if (opt_huge_every && i % opt_huge_every == 0) {
            /* larger than the zone can ever hold: must be 503 */
            if (!pub_one(-1, opt_huge_size, K_HUGE, now)) {
                return;
            }
            continue;
        }

        if (opt_bcast_every && i % opt_bcast_every == 0) {
            if (!pub_one(bchan, text_len(), K_NORMAL, now)) {
                return;
            }
            continue;
        }

        if (opt_fresh_pct && rnd_below(100) < opt_fresh_pct) {
            if (!pub_one(-1, text_len(), K_NORMAL, now)) {
                return;
            }
            continue;
        }

        tlen = text_len();
        kind = K_NORMAL;

        if (opt_big_every && i % opt_big_every == 0) {
            /* large, but within what the zone must accept */
            tlen = opt_big_size;
            kind = K_BIG;
        }

        k = rnd_below(opt_sessions);

        for (tries = 0; tries < opt_pub_conns; tries++) {
            if (pub_one((k + tries) % opt_sessions, tlen, kind, now)) {
                break;
            }
        }

        if (tries == opt_pub_conns) {
            /* every connection's pipeline is full: behind the rate */
            return;
        }
    }
}


static long
pub_inflight(void)
{
    long  i, n;

    n = 0;

    for (i = 0; i < opt_pub_conns; i++) {
        n += pconns[i].inflight;
    }

    return n;
}


/* ----- queries (health, status) ------------------------------------------ */

static void
query_body(void *data, const char *p, size_t n)
{
    query_t  *q;

    q = data;

    if (n > sizeof(q->body) - 1 - q->body_len) {
        n = sizeof(q->body) - 1 - q->body_len;
    }

    memcpy(q->body + q->body_len, p, n);
    q->body_len += n;
    q->body[q->body_len] = '\0';
}


static void
query_finish(query_t *q, int ok)
{
    if (q->fd != -1) {
        epoll_ctl(ep, EPOLL_CTL_DEL, q->fd, NULL);
        close(q->fd);
        q->fd = -1;
    }

    q->active = 0;
    q->done = 1;
    q->ok = ok && q->http.status == 200;
}


static void
query_start(query_t *q, const char *path)
{
    q->path = path;
    q->done = 0;
    q->ok = 0;
    q->body_len = 0;
    q->body[0] = '\0';
    http_reset(&q->http);

    q->fd = open_conn();

    if (q->fd == -1) {
        q->done = 1;
        return;
    }

    q->active = 1;
    ep_set(q->fd, TAG_QUERY, (uint64_t) (q - queries), EPOLLOUT,
           EPOLL_CTL_ADD);
}


static void
query_event(query_t *q, uint32_t events)
{
    int      n;
    char     req[512];
    ssize_t  r;

    if (!q->active) {
        return;
    }

    if (events & EPOLLOUT) {
        n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1"
                     "\r\nConnection: close\r\n\r\n", q->path);

        if (send(q->fd, req, (size_t) n, MSG_NOSIGNAL) != n) {
            query_finish(q, 0);
            return;
        }

        ep_set(q->fd, TAG_QUERY, (uint64_t) (q - queries), EPOLLIN,
               EPOLL_CTL_MOD);
        return;
    }

    for ( ;; ) {
        r = recv(q->fd, iobuf, sizeof(iobuf), 0);

        if (r == -1 && errno == EAGAIN) {
            return;
        }

        if (r <= 0) {
            query_finish(q, q->http.state == HS_DONE
                            || q->http.state == HS_BODY_EOF);
            return;
        }

        if (http_feed(&q->http, iobuf, (size_t) r, query_body, q) < 0) {
            query_finish(q, 0);
            return;
        }

        if (q->http.state == HS_DONE) {
            query_finish(q, 1);
            return;
        }
    }
}


/* ----- server memory ----------------------------------------------------- */

typedef struct {
    long  rss_kb;
    long  anon_kb;
    long  shmem_kb;
    long  alive;
} mem_t;


static void
sample_mem(mem_t *m)
{
    long   i, v;
    char   path[64], line[256];
    FILE  *f;

    memset(m, 0, sizeof(*m));

    for (i = 0; i < opt_npids; i++) {
        snprintf(path, sizeof(path), "/proc/%d/status", opt_pids[i]);
        f = fopen(path, "r");
        if (f == NULL) {
            continue;
        }

        m->alive++;

        while (fgets(line, sizeof(line), f)) {
            if (sscanf(line, "VmRSS: %ld", &v) == 1) {
                m->rss_kb += v;

            } else if (sscanf(line, "RssAnon: %ld", &v) == 1) {
                m->anon_kb += v;

            } else if (sscanf(line, "RssShmem: %ld", &v) == 1) {
                m->shmem_kb += v;
            }
        }

        fclose(f);
    }
}


static void
print_mem_pids(FILE *out)
{
    long   i, v, rss;
    char   path[64], line[256];
    FILE  *f;

    fprintf(out, "\"pid_anon_kb\":[");

    for (i = 0; i < opt_npids; i++) {
        snprintf(path, sizeof(path), "/proc/%d/status", opt_pids[i]);
        rss = -1;
        f = fopen(path, "r");

        if (f) {
            while (fgets(line, sizeof(line), f)) {
                if (sscanf(line, "RssAnon: %ld", &v) == 1) {
                    rss = v;
                }
            }
            fclose(f);
        }

        fprintf(out, "%s%ld", i ? "," : "", rss);
    }

    fprintf(out, "]");
}


/* ----- the loop ---------------------------------------------------------- */

enum {
    PH_RUN = 0,
    PH_QUIESCE,          /* checkpoint: bring every stream back */
    PH_COUNT,            /* checkpoint: counts must match */
    PH_STOP_PUB,         /* publishing over: answers in, streams back */
    PH_MARK,             /* one last publish per channel */
    PH_DRAIN,            /* every stream catches up */
    PH_FINAL_COUNT,
    PH_CLOSE,            /* all closed: counts must reach 0 */
    PH_DONE
};

static int       phase;
static long      marks;
static int       next_phase_after_count;
static uint64_t  t_phase;
static uint64_t  t_next_cp;
static uint64_t  t_query;
static int64_t   q_active = -1;
static int64_t   q_streams = -1;
static long      q_target;
static int       q_outstanding;
static int       q_matched;
static double    drain_ms = -1;
static int       drained;
static int64_t   final_active = -1, final_streams = -1;
static int64_t   zero_active = -1, zero_streams = -1;
static int       zero_ok;
static int       final_count_ok;
static mem_t     mem_first, mem_last;
static int       have_mem_first;


static void
streams_all_back(uint64_t now)
{
    long       i;
    stream_t  *s;

    for (i = 0; i < opt_streams; i++) {
        s = &streams[i];

        if (s->state == ST_IDLE && s->t_reconnect > now) {
            s->t_reconnect = now;
        }
    }
}


static int
streams_all_live(void)
{
    return nlive == opt_streams;
}


static void
queries_start(void)
{
    query_start(&queries[0], opt_health);
    q_outstanding = 1;

    if (opt_status) {
        query_start(&queries[1], opt_status);
        q_outstanding = 2;
    }
}


/* both answers in: 1 if they match the target */
static int
queries_check(void)
{
    q_active = queries[0].ok
               ? scan_number(queries[0].body, queries[0].body_len,
                             "\"activeConnections\":")
               : -1;

    if (opt_status) {
        q_streams = queries[1].ok
                    ? scan_number(queries[1].body, queries[1].body_len,
                                  "\"streams\":")
                    : -1;

    } else {
        q_streams = q_active;
    }

    return q_active == q_target && q_streams == q_target;
}


static void
print_checkpoint(uint64_t now, int ok, double wait_ms)
{
    mem_t        m;
    const char  *b;
    size_t       bl;

    sample_mem(&m);

    if (!have_mem_first) {
        mem_first = m;
        have_mem_first = 1;
    }

    mem_last = m;

    b = queries[1].body;
    bl = opt_status ? queries[1].body_len : 0;

    printf("{\"checkpoint\":%lld,\"t\":%.3f,\"open\":%ld,\"active\":%lld,"
           "\"streams\":%lld,\"ok\":%d,\"wait_ms\":%.1f,"
           "\"published\":%lld,\"acked\":%lld,\"events\":%lld,"
           "\"churned\":%lld,"
           "\"rss_kb\":%ld,\"anon_kb\":%ld,\"shmem_kb\":%ld,\"alive\":%ld,",
           (long long) cnt.checkpoints, secs(now), q_target,
           (long long) q_active, (long long) q_streams, ok, wait_ms,
           (long long) cnt.pub_sent, (long long) cnt.pub_acked,
           (long long) cnt.events, (long long) cnt.churned,
           m.rss_kb, m.anon_kb, m.shmem_kb, m.alive);
    print_mem_pids(stdout);
    printf(",\"zone_used\":%lld,\"zone_channels\":%lld,"
           "\"zone_retained\":%lld,\"zone_evicted\":%lld,"
           "\"zone_expired\":%lld,\"zone_workers\":%lld}\n",
           (long long) (bl ? scan_number(b, bl, "\"used\":") : -1),
           (long long) (bl ? scan_number(b, bl, "\"channels\":") : -1),
           (long long) (bl ? scan_number(b, bl, "\"retained\":") : -1),
           (long long) (bl ? scan_number(b, bl, "\"evicted\":") : -1),
           (long long) (bl ? scan_number(b, bl, "\"expired\":") : -1),
           (long long) (bl ? scan_number(b, bl, "\"workers\":") : -1));
    fflush(stdout);

    note("t=%.1fs checkpoint %lld: %ld streams, active %lld, status %lld%s;"
         " %lld published, %lld events, %lld churned, anon %ld KB",
         secs(now), (long long) cnt.checkpoints, q_target,
         (long long) q_active, (long long) q_streams,
         ok ? "" : " MISMATCH", (long long) cnt.pub_sent,
         (long long) cnt.events, (long long) cnt.churned, m.anon_kb);
}


/* 1 once every stream has every acknowledged message of its channels */
static int
streams_caught_up(void)
{
    long       i;
    stream_t  *s;

    for (i = 0; i < opt_streams; i++) {
        s = &streams[i];

        if (s->state != ST_LIVE) {
            return 0;
        }

        if (s->k >= 0 && chans[s->k].last_acked > s->base[0]
            && s->last_c[0] < chans[s->k].last_acked)
        {
            return 0;
        }

        if (chans[bchan].last_acked > s->base[1]
            && s->last_c[1] < chans[bchan].last_acked)
        {
            return 0;
        }
    }

    return 1;
}


static void
tail_gaps(void)
{
    int        i;
    long       j, k;
    int64_t    from, to;
    stream_t  *s;

    for (j = 0; j < opt_streams; j++) {
        s = &streams[j];

        for (i = 0; i < 2; i++) {
            k = i ? bchan : s->k;
            if (k < 0) {
                continue;
            }

            from = s->last_c[i] >= 0 ? s->last_c[i] + 1 : s->base[i] + 1;
            to = chans[k].last_acked;

            if (s->state != ST_LIVE && s->last_id[0] == '\0') {
                /* never got anything to resume from: no promise */
                continue;
            }

            if (to >= from) {
                gap_add(k, from, to,
                        s->resuming && s->first[i] ? GAP_RESUME : GAP_TAIL,
                        j, -1, -1, 0);
            }
        }
    }
}


static void
resolve_gaps(void)
{
    int      cat, reported;
    size_t   i;
    int64_t  c, g, lost, g0, z0, big;

    reported = 0;

    for (i = 0; i < ngaps; i++) {
        cat = gaps[i].cat;
        lost = 0;
        g0 = -1;
        z0 = -1;
        big = 0;

        for (c = gaps[i].from; c <= gaps[i].to; c++) {
            g = chans[gaps[i].k].g_of[c];

            switch (p_status[g]) {

            case P_ACKED:
                cnt.lost[cat]++;
                lost++;
                big += p_kind[g] == K_BIG;

                if (g0 < 0) {
                    g0 = g;
                    z0 = p_zseq[g];
                }

                break;

            case P_REJECTED:
                cnt.missed_rejected++;
                break;

            default:
                if (p_seen[g] == 1) {
                    /* stored (another stream got it), missed here */
                    cnt.lost[cat]++;
                    lost++;

                } else {
                    cnt.missed_unknown++;
                }
            }
        }

        /* always said (--quiet or not) for a loss outside a resume:
         * what, where, when */
        if (lost && cat != GAP_RESUME && ++reported <= 50) {
            fprintf(stderr, "soak: lost (%s): %lld acknowledged of channel "
                    "%d seq %lld..%lld (first: publish %lld, id seq %lld; "
                    "%lld big) on stream %d, noticed at t=%.3fs when seq "
                    "%lld came, %.3fs after it connected%s\n",
                    gap_names[cat], (long long) lost, gaps[i].k,
                    (long long) gaps[i].from, (long long) gaps[i].to,
                    (long long) g0, (long long) z0, (long long) big,
                    gaps[i].stream, gaps[i].t, (long long) gaps[i].next,
                    gaps[i].age,
                    gaps[i].first ? " (its first event there)" : "");
        }
    }

    for (g = 0; g < p_next; g++) {
        switch (p_kind[g]) {

        case K_HUGE:
            if (p_status[g] == P_REJECTED && p_zseq[g] == 503) {
                cnt.pub_huge_503++;

            } else {
                cnt.pub_huge_other++;
            }
            break;

        case K_BIG:
            if (p_status[g] != P_ACKED) {
                cnt.pub_big_rejected++;
            }
            /* fall through */

        default:
            if (p_status[g] == P_REJECTED && p_zseq[g] == 503) {
                cnt.pub_normal_503++;
            }
        }

        if (p_seen[g] && p_status[g] == P_REJECTED) {
            cnt.rejected_seen++;
        }

        if (p_seen[g] && p_status[g] == P_UNKNOWN) {
            cnt.unknown_seen++;
        }
    }
}


static void
tick(uint64_t now)
{
    long       i, want;
    stream_t  *s;
    static uint64_t  t_churn_last;
    static double    churn_credit;

    /* reconnections that are due */
    for (i = 0; i < opt_streams; i++) {
        s = &streams[i];

        if (s->state == ST_IDLE && s->t_reconnect <= now
            && phase != PH_CLOSE && phase != PH_DONE)
        {
            stream_connect(s, now);
        }
    }

    /* publish connections */
    for (i = 0; i < opt_pub_conns; i++) {
        if (pconns[i].fd == -1 && pconns[i].t_retry <= now
            && phase < PH_DRAIN)
        {
            pub_connect(&pconns[i], now);
        }
    }

    pub_tick(now);

    /* churn */
    if (t_churn_last == 0) {
        t_churn_last = now;
    }

    if (phase == PH_RUN && opt_churn > 0) {
        churn_credit += (double) (now - t_churn_last) / 1e9 * opt_churn;

        while (churn_credit >= 1) {
            churn_credit -= 1;
            s = stream_pick_live();
            if (s) {
                stream_churn(s, now);
            }
        }

    } else {
        churn_credit = 0;
    }

    t_churn_last = now;

    switch (phase) {

    case PH_RUN:
        if (now - t_pub0 >= (uint64_t) (opt_duration * 1e9)) {
            publishing = 0;
            t_pub_end = now;
            phase = PH_STOP_PUB;
            t_phase = now;
            note("t=%.1fs publishing done: %lld sent", secs(now),
                 (long long) cnt.pub_sent);
            break;
        }

        if (opt_checkpoint > 0 && now >= t_next_cp) {
            phase = PH_QUIESCE;
            next_phase_after_count = PH_RUN;
            t_phase = now;
            streams_all_back(now);
        }

        break;

    case PH_QUIESCE:
    case PH_DRAIN:
        streams_all_back(now);

        want = streams_all_live();

        if (phase == PH_DRAIN) {
            want = want && streams_caught_up();

            if (!want && now - t_phase > (uint64_t) (opt_drain_timeout
                                                     * 1e9))
            {
                note("drain: not every stream caught up in %.0f s",
                     opt_drain_timeout);
                want = 1;
                drained = 0;

            } else if (want) {
                drained = 1;
            }

            if (want) {
                drain_ms = (double) (now - t_phase) / 1e6;
                tail_gaps();
            }

        } else if (!want && now - t_phase > (uint64_t) ((opt_count_timeout
                                                         + 10) * 1e9))
        {
            note("checkpoint: streams did not all come back");
            want = 1;
        }

        if (want) {
            if (phase == PH_DRAIN) {
                next_phase_after_count = PH_CLOSE;
            }

            phase = phase == PH_DRAIN ? PH_FINAL_COUNT : PH_COUNT;
            t_phase = now;
            q_target = nlive;
            q_matched = 0;
            queries_start();
        }

        break;

    case PH_COUNT:
    case PH_FINAL_COUNT:
    case PH_CLOSE:
        if (queries[0].active || (opt_status && queries[1].active)) {
            break;
        }

        q_matched = queries_check();

        if (!q_matched && now - t_phase < (uint64_t) (opt_count_timeout
                                                      * 1e9))
        {
            if (now - t_query > 50000000ULL) {
                t_query = now;
                queries_start();
            }
            break;
        }

        if (phase == PH_CLOSE) {
            zero_active = q_active;
            zero_streams = q_streams;
            zero_ok = q_matched;
            sample_mem(&mem_last);
            note("t=%.1fs all closed: active %lld, status %lld",
                 secs(now), (long long) q_active, (long long) q_streams);
            phase = PH_DONE;
            break;
        }

        cnt.checkpoints++;

        if (!q_matched) {
            cnt.count_mismatch++;
        }

        print_checkpoint(now, q_matched, (double) (now - t_phase) / 1e6);

        if (phase == PH_FINAL_COUNT) {
            final_active = q_active;
            final_streams = q_streams;
            final_count_ok = q_matched;

            /* close everything, half of it with RST */
            for (i = 0; i < opt_streams; i++) {
                s = &streams[i];

                if (s->fd != -1) {
                    epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
                    if (i & 1) {
                        close_rst(s->fd);
                    } else {
                        close(s->fd);
                    }
                    s->fd = -1;
                }

                if (s->state == ST_LIVE) {
                    nlive--;
                }

                s->state = ST_IDLE;
            }

            for (i = 0; i < opt_pub_conns; i++) {
                if (pconns[i].fd != -1) {
                    epoll_ctl(ep, EPOLL_CTL_DEL, pconns[i].fd, NULL);
                    close(pconns[i].fd);
                    pconns[i].fd = -1;
                }
            }

            phase = PH_CLOSE;
            t_phase = now;
            q_target = 0;
            queries_start();
            break;
        }

        phase = next_phase_after_count;
        t_next_cp = now + (uint64_t) (opt_checkpoint * 1e9);
        break;

    case PH_STOP_PUB:
        /* every stream back and every answer in: then a marker per
         * channel, which every stream must get, resumed or not */
        streams_all_back(now);

        if ((pub_inflight() == 0 && streams_all_live())
            || now - t_phase > (uint64_t) (opt_drain_timeout * 1e9))
        {
            phase = PH_MARK;
            t_phase = now;
            marks = 0;
        }
        break;

    case PH_MARK:
        while (marks <= bchan && pub_one(marks, 8, K_MARK, now)) {
            marks++;
        }

        if ((marks > bchan && pub_inflight() == 0)
            || now - t_phase > (uint64_t) (opt_drain_timeout * 1e9))
        {
            phase = PH_DRAIN;
            t_phase = now;
        }
        break;
    }
}


static void
update_last_acked(void)
{
    long     k;
    int64_t  c;

    for (k = 0; k <= bchan; k++) {
        for (c = chans[k].next - 1; c > chans[k].last_acked; c--) {
            if (p_status[chans[k].g_of[c]] == P_ACKED) {
                chans[k].last_acked = c;
                break;
            }
        }
    }
}


static void
usage(void)
{
    fprintf(stderr,
"usage: soak --port P [options]\n"
"  --pub PATH          publish location (default /pub)\n"
"  --stream PATH       stream location (default /stream), sessionId=sK added\n"
"  --health PATH       GET for activeConnections (default: --pub)\n"
"  --status PATH       webhook_status location (optional)\n"
"  --secret S          X-Webhook-Secret\n"
"  --rate R            publishes per second (default 10000)\n"
"  --duration S        seconds of publishing (default 20)\n"
"  --sessions C        session channels s0..s{C-1} (default 100)\n"
"  --streams N         streams kept open (default 400)\n"
"  --stable N          of which never churned (default N/4)\n"
"  --nosession-pct P   streams without a session (default 5)\n"
"  --broadcast-every K every K-th publish a broadcast (default 1000, 0 none)\n"
"  --churn R           disconnects per second (default 100)\n"
"  --resume-pct P      churned streams that resume with Last-Event-ID\n"
"                      (default 70; the others come back as new streams)\n"
"  --pause-max MS      time away before reconnecting (default 500)\n"
"  --close MODE        how clients disconnect: fin, rst, or mixed (default)\n"
"  --pub-conns K       keep-alive publish connections (default 8)\n"
"  --pipeline D        requests in flight per connection (default 8)\n"
"  --conn-requests N   requests per publish connection, then a new one\n"
"                      (default 1000, nginx's keepalive_requests; 0 no limit)\n"
"  --size-min/--size-max B  message text length (default 16..64)\n"
"  --big-every N --big-size B     every N-th a B-byte text (must fit)\n"
"  --huge-every N --huge-size B   every N-th a B-byte text (must be 503)\n"
"  --fresh-pct P       publishes to sessions of their own (default 0)\n"
"  --checkpoint S      seconds between checkpoints (default 5, 0 none)\n"
"  --count-timeout S   for counts to match (default 5)\n"
"  --drain-timeout S   for streams to catch up at the end (default 15)\n"
"  --server-close-ok   streams ended by the server are expected (reload)\n"
"  --retry-max MS      cap on the reconnection delay (default 1000)\n"
"  --server-pids LIST  worker pids for memory figures (comma separated)\n"
"  --seed N, --quiet\n");
    exit(2);
}


int
main(int argc, char **argv)
{
    int                 c, n, i;
    long                j;
    char               *p, *end;
    uint64_t            now, kind, idx;
    struct rlimit       rl;
    struct epoll_event  evs[1024];

    static struct option  longopts[] = {
        { "port", required_argument, NULL, 'p' },
        { "pub", required_argument, NULL, 'P' },
        { "stream", required_argument, NULL, 'S' },
        { "health", required_argument, NULL, 'h' },
        { "status", required_argument, NULL, 's' },
        { "secret", required_argument, NULL, 'x' },
        { "rate", required_argument, NULL, 'r' },
        { "duration", required_argument, NULL, 'd' },
        { "sessions", required_argument, NULL, 'C' },
        { "streams", required_argument, NULL, 'N' },
        { "stable", required_argument, NULL, 'b' },
        { "nosession-pct", required_argument, NULL, 'n' },
        { "broadcast-every", required_argument, NULL, 'B' },
        { "churn", required_argument, NULL, 'c' },
        { "resume-pct", required_argument, NULL, 'R' },
        { "pause-max", required_argument, NULL, 'm' },
        { "close", required_argument, NULL, 'z' },
        { "pub-conns", required_argument, NULL, 'K' },
        { "pipeline", required_argument, NULL, 'D' },
        { "conn-requests", required_argument, NULL, 'Q' },
        { "size-min", required_argument, NULL, '1' },
        { "size-max", required_argument, NULL, '2' },
        { "big-every", required_argument, NULL, '3' },
        { "big-size", required_argument, NULL, '4' },
        { "huge-every", required_argument, NULL, '5' },
        { "huge-size", required_argument, NULL, '6' },
        { "fresh-pct", required_argument, NULL, 'f' },
        { "checkpoint", required_argument, NULL, 'k' },
        { "count-timeout", required_argument, NULL, 't' },
        { "drain-timeout", required_argument, NULL, 'T' },
        { "server-close-ok", no_argument, NULL, 'o' },
        { "retry-max", required_argument, NULL, 'y' },
        { "server-pids", required_argument, NULL, 'X' },
        { "seed", required_argument, NULL, 'e' },
        { "quiet", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, '?' },
        { NULL, 0, NULL, 0 }
    };

    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'p': opt_port = atoi(optarg); break;
        case 'P': opt_pub = optarg; break;
        case 'S': opt_stream = optarg; break;
        case 'h': opt_health = optarg; break;
        case 's': opt_status = optarg; break;
        case 'x': opt_secret = optarg; break;
        case 'r': opt_rate = atof(optarg); break;
        case 'd': opt_duration = atof(optarg); break;
        case 'C': opt_sessions = atol(optarg); break;
        case 'N': opt_streams = atol(optarg); break;
        case 'b': opt_stable = atol(optarg); break;
        case 'n': opt_nosession_pct = atol(optarg); break;
        case 'B': opt_bcast_every = atol(optarg); break;
        case 'c': opt_churn = atof(optarg); break;
        case 'R': opt_resume_pct = atol(optarg); break;
        case 'm': opt_pause_max = atol(optarg); break;
        case 'z':
            opt_close_mode = strcmp(optarg, "fin") == 0 ? 1
                             : strcmp(optarg, "rst") == 0 ? 2 : 0;
            break;
        case 'K': opt_pub_conns = atol(optarg); break;
        case 'D': opt_pipeline = atol(optarg); break;
        case 'Q': opt_conn_requests = atol(optarg); break;
        case '1': opt_size_min = atol(optarg); break;
        case '2': opt_size_max = atol(optarg); break;
        case '3': opt_big_every = atol(optarg); break;
        case '4': opt_big_size = atol(optarg); break;
        case '5': opt_huge_every = atol(optarg); break;
        case '6': opt_huge_size = atol(optarg); break;
        case 'f': opt_fresh_pct = atol(optarg); break;
        case 'k': opt_checkpoint = atof(optarg); break;
        case 't': opt_count_timeout = atof(optarg); break;
        case 'T': opt_drain_timeout = atof(optarg); break;
        case 'o': opt_server_close_ok = 1; break;
        case 'y': opt_retry_max = atol(optarg); break;
        case 'X':
            for (p = optarg; *p; p = end) {
                if (opt_npids == MAX_PIDS) {
                    die("too many --server-pids");
                }
                opt_pids[opt_npids++] = (int) strtol(p, &end, 10);
                if (end == p) {
                    usage();
                }
                if (*end == ',') {
                    end++;
                }
            }
            break;
        case 'e': opt_seed = (unsigned) atol(optarg); break;
        case 'q': opt_quiet = 1; break;
        default: usage();
        }
    }

    if (opt_port <= 0 || opt_sessions < 1 || opt_streams < 0
        || opt_pub_conns < 1 || opt_pipeline < 1
        || opt_pipeline > MAX_PIPELINE || opt_rate < 0
        || opt_size_min < 0 || opt_size_max < opt_size_min)
    {
        usage();
    }

    if (opt_health == NULL) {
        opt_health = opt_pub;
    }

    if (opt_stable < 0) {
        opt_stable = opt_streams / 4;
    }

    rng_state ^= (uint64_t) opt_seed * 0x9E3779B97F4A7C15ULL;
    if (rng_state == 0) {
        rng_state = 1;
    }

    rl.rlim_cur = rl.rlim_max = (rlim_t) (opt_streams + opt_pub_conns + 64);
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0
        && rl.rlim_cur < (rlim_t) (opt_streams + opt_pub_conns + 64))
    {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);

        if (rl.rlim_cur < (rlim_t) (opt_streams + opt_pub_conns + 64)) {
            die("%ld streams need more open files than %ld", opt_streams,
                (long) rl.rlim_cur);
        }
    }

    signal(SIGPIPE, SIG_IGN);

    memset(&server, 0, sizeof(server));
    server.sin_family = AF_INET;
    server.sin_port = htons((uint16_t) opt_port);
    server.sin_addr.s_addr = htonl(0x7f000001);

    j = opt_size_max;
    if (opt_big_size > j) {
        j = opt_big_size;
    }
    if (opt_huge_size > j) {
        j = opt_huge_size;
    }

    pad = xrealloc(NULL, (size_t) j + 1);
    for (i = 0; i < j; i++) {
        pad[i] = "abcdefghijklmnopqrstuvwxyz"[i % 26];
    }

    bchan = opt_sessions;
    chans = calloc((size_t) bchan + 1, sizeof(chan_t));
    streams = calloc((size_t) opt_streams + 1, sizeof(stream_t));
    pconns = calloc((size_t) opt_pub_conns, sizeof(pubconn_t));

    if (chans == NULL || streams == NULL || pconns == NULL) {
        die("out of memory");
    }

    for (j = 0; j <= bchan; j++) {
        chans[j].last_acked = -1;
    }

    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep == -1) {
        die("epoll_create1: %s", strerror(errno));
    }

    queries[0].fd = queries[1].fd = -1;

    t0 = now_ns();

    for (j = 0; j < opt_pub_conns; j++) {
        pconns[j].fd = -1;
        pub_connect(&pconns[j], t0);
    }

    for (j = 0; j < opt_streams; j++) {
        streams[j].fd = -1;
        streams[j].stable = j < opt_stable;
        stream_assign(&streams[j]);
        streams[j].t_reconnect = t0;
    }

    /* open the streams first; the clock starts once they are all live */
    now = t0;

    while (!streams_all_live()) {
        n = epoll_wait(ep, evs, 1024, 5);
        now = now_ns();

        for (i = 0; i < n; i++) {
            kind = evs[i].data.u64 >> TAG_SHIFT;
            idx = evs[i].data.u64 & ((1ULL << TAG_SHIFT) - 1);

            if (kind == TAG_STREAM) {
                if (streams[idx].state == ST_CONNECTING) {
                    stream_send(&streams[idx], now);
                } else if (streams[idx].fd != -1) {
                    stream_read(&streams[idx], now);
                }

            } else if (kind == TAG_PUB) {
                if (!pconns[idx].connected) {
                    pconns[idx].connected = 1;
                    ep_set(pconns[idx].fd, TAG_PUB, idx, EPOLLIN,
                           EPOLL_CTL_MOD);
                } else {
                    pub_read(&pconns[idx], now);
                }
            }
        }

        for (j = 0; j < opt_streams; j++) {
            if (streams[j].state == ST_IDLE && streams[j].t_reconnect <= now)
            {
                stream_connect(&streams[j], now);
            }
        }

        if (now - t0 > 30000000000ULL) {
            die("only %ld of %ld streams connected in 30 s", nlive,
                opt_streams);
        }
    }

    note("%ld streams open in %.0f ms; publishing %.0f/s for %.0f s",
         nlive, (double) (now - t0) / 1e6, opt_rate, opt_duration);

    t_pub0 = now;
    t_next_cp = now + (uint64_t) (opt_checkpoint * 1e9);
    publishing = 1;
    phase = PH_RUN;

    while (phase != PH_DONE) {
        n = epoll_wait(ep, evs, 1024, 1);
        now = now_ns();

        for (i = 0; i < n; i++) {
            kind = evs[i].data.u64 >> TAG_SHIFT;
            idx = evs[i].data.u64 & ((1ULL << TAG_SHIFT) - 1);

            if (kind == TAG_STREAM) {
                stream_t  *s = &streams[idx];

                if (s->fd == -1) {
                    continue;
                }

                if (s->state == ST_CONNECTING) {
                    stream_send(s, now);

                } else {
                    stream_read(s, now);
                }

            } else if (kind == TAG_PUB) {
                pubconn_t  *pc = &pconns[idx];

                if (pc->fd == -1) {
                    continue;
                }

                if (!pc->connected) {
                    int        err = 0;
                    socklen_t  len = sizeof(err);

                    getsockopt(pc->fd, SOL_SOCKET, SO_ERROR, &err, &len);

                    if (err) {
                        cnt.pub_conn_err++;
                        pub_fail(pc, now);
                        pc->t_retry = now + 10000000ULL;
                        continue;
                    }

                    pc->connected = 1;
                    pub_write(pc, now);
                    continue;
                }

                if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                    pub_read(pc, now);
                }

                if (pc->fd != -1 && (evs[i].events & EPOLLOUT)) {
                    pub_write(pc, now);
                }

            } else if (kind == TAG_QUERY) {
                query_event(&queries[idx], evs[i].events);
            }
        }

        update_last_acked();
        tick(now);
    }

    resolve_gaps();

    {
        double  pub_secs;

        pub_secs = (double) (t_pub_end - t_pub0) / 1e9;

        printf("{\"final\":1,\"seconds\":%.3f,\"rate\":%.1f,"
               "\"pub_sent\":%lld,\"pub_acked\":%lld,\"pub_rejected\":%lld,"
               "\"pub_503\":%lld,\"pub_other_status\":%lld,"
               "\"pub_unknown\":%lld,\"pub_reconnects\":%lld,"
               "\"pub_conn_err\":%lld,\"pub_retired\":%lld,"
               "\"pub_per_s\":%.1f,"
               "\"pub_bcast\":%lld,\"pub_fresh\":%lld,"
               "\"pub_big\":%lld,\"pub_big_rejected\":%lld,"
               "\"pub_huge\":%lld,\"pub_huge_503\":%lld,"
               "\"pub_huge_other\":%lld,\"pub_normal_503\":%lld,"
               "\"streams\":%ld,\"stable\":%ld,\"connects\":%lld,"
               "\"fresh_connects\":%lld,\"resumes\":%lld,"
               "\"churned\":%lld,\"churn_rst\":%lld,"
               "\"server_closed\":%lld,\"server_closed_retry\":%lld,"
               "\"unexpected_close\":%lld,\"closed_early\":%lld,"
               "\"http_err\":%lld,"
               "\"http_503\":%lld,\"conn_fail\":%lld,\"proto_err\":%lld,"
               "\"events\":%lld,\"connected\":%lld,\"heartbeats\":%lld,"
               "\"dups\":%lld,\"order\":%lld,\"misrouted\":%lld,"
               "\"foreign\":%lld,\"id_mismatch\":%lld,"
               "\"epoch_change\":%lld,\"bad_event\":%lld,"
               "\"lost_live\":%lld,\"lost_resume\":%lld,\"lost_tail\":%lld,"
               "\"gaps_live\":%lld,\"gaps_resume\":%lld,\"gaps_tail\":%lld,"
               "\"missed_unknown\":%lld,\"missed_rejected\":%lld,"
               "\"rejected_seen\":%lld,\"unknown_seen\":%lld,"
               "\"checkpoints\":%lld,\"count_mismatch\":%lld,"
               "\"drained\":%d,\"drain_ms\":%.1f,"
               "\"final_active\":%lld,\"final_streams\":%lld,"
               "\"final_count_ok\":%d,\"zero_active\":%lld,"
               "\"zero_streams\":%lld,\"zero_ok\":%d,"
               "\"max_streams_open\":%lld,"
               "\"anon_first_kb\":%ld,\"anon_last_kb\":%ld,"
               "\"rss_first_kb\":%ld,\"rss_last_kb\":%ld}\n",
               secs(now_ns()), opt_rate,
               (long long) cnt.pub_sent, (long long) cnt.pub_acked,
               (long long) cnt.pub_rejected, (long long) cnt.pub_503,
               (long long) cnt.pub_other_status,
               (long long) cnt.pub_unknown, (long long) cnt.pub_reconnects,
               (long long) cnt.pub_conn_err, (long long) cnt.pub_retired,
               pub_secs > 0 ? (double) cnt.pub_sent / pub_secs : 0,
               (long long) cnt.pub_bcast, (long long) cnt.pub_fresh,
               (long long) cnt.pub_big, (long long) cnt.pub_big_rejected,
               (long long) cnt.pub_huge, (long long) cnt.pub_huge_503,
               (long long) cnt.pub_huge_other,
               (long long) cnt.pub_normal_503,
               opt_streams, opt_stable, (long long) cnt.connects,
               (long long) cnt.fresh_connects, (long long) cnt.resumes,
               (long long) cnt.churned, (long long) cnt.churn_rst,
               (long long) cnt.server_closed,
               (long long) cnt.server_closed_retry,
               (long long) cnt.unexpected_close,
               (long long) cnt.closed_early, (long long) cnt.http_err,
               (long long) cnt.http_503, (long long) cnt.conn_fail,
               (long long) cnt.proto_err,
               (long long) cnt.events, (long long) cnt.connected,
               (long long) cnt.heartbeats, (long long) cnt.dups,
               (long long) cnt.order, (long long) cnt.misrouted,
               (long long) cnt.foreign, (long long) cnt.id_mismatch,
               (long long) cnt.epoch_change, (long long) cnt.bad_event,
               (long long) cnt.lost[GAP_LIVE],
               (long long) cnt.lost[GAP_RESUME],
               (long long) cnt.lost[GAP_TAIL],
               (long long) cnt.gap_ranges[GAP_LIVE],
               (long long) cnt.gap_ranges[GAP_RESUME],
               (long long) cnt.gap_ranges[GAP_TAIL],
               (long long) cnt.missed_unknown,
               (long long) cnt.missed_rejected,
               (long long) cnt.rejected_seen, (long long) cnt.unknown_seen,
               (long long) cnt.checkpoints, (long long) cnt.count_mismatch,
               drained, drain_ms,
               (long long) final_active, (long long) final_streams,
               final_count_ok, (long long) zero_active,
               (long long) zero_streams, zero_ok,
               (long long) cnt.max_streams_open,
               mem_first.anon_kb, mem_last.anon_kb,
               mem_first.rss_kb, mem_last.rss_kb);
    }

    return 0;
}
