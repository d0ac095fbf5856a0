
/*
 * nginx-webhook-sse: the Redis link of a zone (webhook_redis).
 *
 * Redis holds the cluster's order: one counter gives every message its
 * sequence number, one key the cluster's epoch, so ids "<epoch>-<seq>"
 * are the same on every host.  A publish is one script: the counter, the
 * message appended to the cluster log (a stream trimmed to log= entries),
 * the idempotency key, and the message published on the cluster's pub/sub
 * channel; the request is answered when the script's reply comes.
 *
 * Every worker has a command connection (publishes).  Worker 0 of each
 * host also holds the subscription and copies every message into the
 * host's zone under its cluster sequence number; the zone and its
 * doorbells then fan out to the streams of all workers as for a local
 * publish.  After a (re)connection it first reads the log from the last
 * sequence number the zone has, holding live messages until it has
 * caught up, so the zone gets each message once and in order.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <hiredis/hiredis.h>
#include <hiredis/async.h>

#include "ngx_http_webhook_sse_module.h"
#include "ngx_http_webhook_sse_redis.h"
#include "ngx_http_webhook_sse_forward.h"


#define NGX_HTTP_WEBHOOK_SSE_REDIS_PUBLISH   0
#define NGX_HTTP_WEBHOOK_SSE_REDIS_SYNC      1
#define NGX_HTTP_WEBHOOK_SSE_REDIS_HOSTS     2
#define NGX_HTTP_WEBHOOK_SSE_REDIS_COUNT     3
#define NGX_HTTP_WEBHOOK_SSE_REDIS_ALIVE     4
#define NGX_HTTP_WEBHOOK_SSE_REDIS_PRESENCE  5
#define NGX_HTTP_WEBHOOK_SSE_REDIS_SCRIPTS   6

/* live messages held while catching up; past it the log is read again */
#define NGX_HTTP_WEBHOOK_SSE_REDIS_HELD_MAX  100000

/* log entries read at once while catching up */
#define NGX_HTTP_WEBHOOK_SSE_REDIS_BATCH     1000
#define NGX_HTTP_WEBHOOK_SSE_REDIS_BATCH_TEXT  "1000"

#define NGX_HTTP_WEBHOOK_SSE_REDIS_BACKOFF_MIN   100
#define NGX_HTTP_WEBHOOK_SSE_REDIS_BACKOFF_MAX   3000

/*
 * How often a host reports its streams (and a worker its presence
 * counts), and how long a report lives: a host or worker gone without a
 * word leaves the cluster's figures within REPORT_TTL.
 */
#define NGX_HTTP_WEBHOOK_SSE_REDIS_REPORT    2000
#define NGX_HTTP_WEBHOOK_SSE_REDIS_REPORT_TTL  "7000"

/* how far ahead of this host a stream's Last-Event-ID may be */
#define NGX_HTTP_WEBHOOK_SSE_REDIS_AHEAD     10000

/* ids a restarted, emptied Redis skips past what a host had seen */
#define NGX_HTTP_WEBHOOK_SSE_REDIS_SEQ_MARGIN  "100000"


/* what the workers of one host share about the link */
typedef struct {
    ngx_atomic_t                         synced_epoch;
    ngx_atomic_t                         up;
    ngx_atomic_t                         cluster_streams;
    ngx_atomic_t                         cluster_hosts;
} ngx_http_webhook_sse_redis_shared_t;


typedef struct ngx_http_webhook_sse_redis_s  ngx_http_webhook_sse_redis_t;


typedef struct {
    redisAsyncContext                   *ac;
    ngx_http_webhook_sse_redis_t        *link;
    /* connect timeout, then the wait before the next attempt */
    ngx_event_t                          timer;
    ngx_msec_t                           backoff;
    const char                          *role;
    unsigned                             ready:1;
    unsigned                             failing:1;
    unsigned                             subscriber:1;
} ngx_http_webhook_sse_redis_conn_t;


/* a live message held while the zone catches up */
typedef struct {
    ngx_queue_t                          queue;
    size_t                               len;
    u_char                               data[1];
} ngx_http_webhook_sse_redis_held_t;


struct ngx_http_webhook_sse_redis_s {
    ngx_str_t                            url;
    u_char                               host[NGX_SOCKADDR_STRLEN + 1];
    int                                  port;
    ngx_uint_t                           db;
    ngx_str_t                            password;
    ngx_str_t                            prefix;
    ngx_msec_t                           timeout;
    ngx_uint_t                           log_size;

    ngx_http_webhook_sse_zone_t         *zone;
    ngx_shm_zone_t                      *shm_zone;
    ngx_http_webhook_sse_redis_shared_t *shared;

    ngx_str_t                            key_seq;
    ngx_str_t                            key_epoch;
    ngx_str_t                            key_log;
    ngx_str_t                            key_events;
    ngx_str_t                            key_hosts;
    ngx_str_t                            key_streams;
    ngx_str_t                            key_idempotency;
    ngx_str_t                            key_workers;
    ngx_str_t                            key_presence;

    /* worker state */
    ngx_log_t                           *log;
    ngx_http_webhook_sse_redis_conn_t    cmd;
    ngx_http_webhook_sse_redis_conn_t    sub;
    char                     sha[NGX_HTTP_WEBHOOK_SSE_REDIS_SCRIPTS][41];
    ngx_event_t                          report;
    ngx_queue_t                          held;
    ngx_uint_t                           nheld;
    uint64_t                             sync_epoch;
    u_char                               host_id[NGX_MAXHOSTNAMELEN
                                                 + NGX_INT64_LEN + 2];
    size_t                               host_id_len;

    /*
     * presence across hosts: this worker's streams by session (counts),
     * mirrored in the hash "<prefix>presence:<host>/<pid>" (worker_key),
     * which lives while the worker says it is alive in "presence:workers"
     */
    ngx_rbtree_t                         counts;
    ngx_rbtree_node_t                    counts_sentinel;
    ngx_event_t                          alive;
    ngx_str_t                            worker_key;
    ngx_str_t                            worker_id;
    /* bumped when the hash is written again: older replies are moot */
    ngx_uint_t                           counts_generation;
    /* a count did not get in: the hash is written again at the next report */
    unsigned                             counts_lost:1;

    unsigned                             subscriber:1;
    unsigned                             subscribed:1;
    unsigned                             syncing:1;
    unsigned                             synced:1;
    unsigned                             exiting:1;
    unsigned                             down:1;
    /* a live message could not be held: the log has it */
    unsigned                             dropped:1;
    /* publishes refused or unanswered: said once, until one succeeds */
    unsigned                             troubled:1;
};


/* a session's streams in this worker, for presence across hosts */
typedef struct {
    ngx_str_node_t                       sn;
    ngx_uint_t                           streams;
    int64_t                              since;
    u_char                               data[1];
} ngx_http_webhook_sse_redis_count_t;


/* a presence request waiting for the other hosts' counts */
typedef struct {
    ngx_http_request_t                  *request;
    ngx_http_webhook_sse_redis_t        *link;
    ngx_event_t                          timer;
    ngx_http_webhook_sse_presence_info_t  *info;
    ngx_uint_t                           n;
    ngx_http_webhook_sse_redis_presence_pt  answer;
    void                                *data;
    int                                  argc;
    const char                         **argv;
    size_t                              *argvlen;
    unsigned                             retried:1;
} ngx_http_webhook_sse_redis_query_t;


/* one publish waiting for its script's reply */
typedef struct {
    ngx_http_request_t                  *request;
    ngx_http_webhook_sse_redis_t        *link;
    ngx_event_t                          timer;
    ngx_str_t                            key;
    int                                  argc;
    const char                          *argv[16];
    size_t                               argvlen[16];
    unsigned                             retried:1;
} ngx_http_webhook_sse_redis_pub_t;


static ngx_int_t ngx_http_webhook_sse_redis_init_shm(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_int_t ngx_http_webhook_sse_redis_parse_url(ngx_conf_t *cf,
    ngx_http_webhook_sse_redis_t *link, ngx_str_t *url);
static ngx_int_t ngx_http_webhook_sse_redis_key(ngx_conf_t *cf,
    ngx_http_webhook_sse_redis_t *link, ngx_str_t *key, char *name);
static void ngx_http_webhook_sse_redis_connect(
    ngx_http_webhook_sse_redis_conn_t *conn);
static void ngx_http_webhook_sse_redis_connected(const redisAsyncContext *ac,
    int status);
static void ngx_http_webhook_sse_redis_disconnected(
    const redisAsyncContext *ac, int status);
static void ngx_http_webhook_sse_redis_handshake(redisAsyncContext *ac,
    void *r, void *privdata);
static void ngx_http_webhook_sse_redis_script_loaded(redisAsyncContext *ac,
    void *r, void *privdata);
static void ngx_http_webhook_sse_redis_conn_ready(
    ngx_http_webhook_sse_redis_conn_t *conn);
static void ngx_http_webhook_sse_redis_fail(
    ngx_http_webhook_sse_redis_conn_t *conn, const char *what,
    const char *error);
static void ngx_http_webhook_sse_redis_retry(
    ngx_http_webhook_sse_redis_conn_t *conn);
static void ngx_http_webhook_sse_redis_timer_handler(ngx_event_t *ev);
static void ngx_http_webhook_sse_redis_message(redisAsyncContext *ac,
    void *r, void *privdata);
static void ngx_http_webhook_sse_redis_sync(ngx_http_webhook_sse_redis_t *link);
static void ngx_http_webhook_sse_redis_sync_reply(redisAsyncContext *ac,
    void *r, void *privdata);
static void ngx_http_webhook_sse_redis_read_log(
    ngx_http_webhook_sse_redis_t *link, uint64_t from);
static void ngx_http_webhook_sse_redis_log_reply(redisAsyncContext *ac,
    void *r, void *privdata);
static void ngx_http_webhook_sse_redis_synced(
    ngx_http_webhook_sse_redis_t *link);
static void ngx_http_webhook_sse_redis_drop_held(
    ngx_http_webhook_sse_redis_t *link);
static void ngx_http_webhook_sse_redis_update(
    ngx_http_webhook_sse_redis_t *link);
static ngx_int_t ngx_http_webhook_sse_redis_ingest(
    ngx_http_webhook_sse_redis_t *link, u_char *data, size_t len,
    uint64_t *seq);
static void ngx_http_webhook_sse_redis_report_handler(ngx_event_t *ev);
static void ngx_http_webhook_sse_redis_report_reply(redisAsyncContext *ac,
    void *r, void *privdata);
static void ngx_http_webhook_sse_redis_publish_reply(redisAsyncContext *ac,
    void *r, void *privdata);
static void ngx_http_webhook_sse_redis_publish_timeout(ngx_event_t *ev);
static ngx_int_t ngx_http_webhook_sse_redis_answer(ngx_http_request_t *r,
    ngx_http_webhook_sse_redis_pub_t *pub, redisReply *reply);
static void ngx_http_webhook_sse_redis_finish(
    ngx_http_webhook_sse_redis_pub_t *pub, ngx_int_t rc);
static void ngx_http_webhook_sse_redis_reload(
    ngx_http_webhook_sse_redis_conn_t *conn);
static void ngx_http_webhook_sse_redis_evalsha(
    ngx_http_webhook_sse_redis_t *link, ngx_uint_t script, const char *nkeys,
    const char **argv, size_t *argvlen);
static void ngx_http_webhook_sse_redis_count_send(
    ngx_http_webhook_sse_redis_t *link, ngx_str_t *session,
    ngx_http_webhook_sse_redis_count_t *count);
static void ngx_http_webhook_sse_redis_count_reply(redisAsyncContext *ac,
    void *r, void *privdata);
static void ngx_http_webhook_sse_redis_counts_resync(
    ngx_http_webhook_sse_redis_t *link);
static void ngx_http_webhook_sse_redis_alive_handler(ngx_event_t *ev);
static void ngx_http_webhook_sse_redis_alive_send(
    ngx_http_webhook_sse_redis_t *link);
static void ngx_http_webhook_sse_redis_leave(
    ngx_http_webhook_sse_redis_t *link);
static void ngx_http_webhook_sse_redis_presence_reply(redisAsyncContext *ac,
    void *r, void *privdata);
static void ngx_http_webhook_sse_redis_presence_timeout(ngx_event_t *ev);
static uint64_t ngx_http_webhook_sse_redis_number(redisReply *reply);
static ngx_uint_t ngx_http_webhook_sse_redis_level(
    ngx_http_webhook_sse_redis_t *link, ngx_uint_t level);


static ngx_uint_t  ngx_http_webhook_sse_redis_shm_tag;


/*
 * The scripts (KEYS: seq, epoch, log, ...).  "#!lua" makes Redis 7 refuse
 * a writing script as a whole when it is out of memory, instead of failing
 * half way.  When Redis has lost its data (no epoch), the first host to
 * call re-seeds it with the epoch it knew; a lost counter (lost data, or
 * evicted by an allkeys-* maxmemory policy) starts again past the last id
 * this host or the log knew, by a margin for what other hosts may have
 * seen.
 */

static char  ngx_http_webhook_sse_redis_seed[] =
    "local e = redis.call('GET', KEYS[2])\n"
    "if not e then\n"
    "  e = ARGV[1]\n"
    "  redis.call('SET', KEYS[2], e)\n"
    "end\n"
    "if not redis.call('GET', KEYS[1]) then\n"
    "  local h = 0\n"
    "  if e == ARGV[1] then h = tonumber(ARGV[2]) end\n"
    "  local l = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)\n"
    "  if l[1] then\n"
    "    local n = tonumber(string.match(l[1][1], '^(%d+)'))\n"
    "    if n > h then h = n end\n"
    "  end\n"
    "  if h > 0 then h = h + " NGX_HTTP_WEBHOOK_SSE_REDIS_SEQ_MARGIN " end\n"
    "  redis.call('SET', KEYS[1], string.format('%d', h))\n"
    "end\n";

static char  ngx_http_webhook_sse_redis_publish_body[] =
    "if KEYS[4] ~= '' then\n"
    "  local k = redis.call('GET', KEYS[4])\n"
    "  if k then\n"
    "    local s, t, d = string.match(k, '^(%d+) (%d+) (%x+)$')\n"
    "    if d == ARGV[6] then return {1, e, s, t} end\n"
    "    return {2, e, '0', '0'}\n"
    "  end\n"
    "end\n"
    "local seq = redis.call('INCR', KEYS[1])\n"
    "local m = seq .. '\\n' .. ARGV[3] .. '\\n' .. ARGV[4] .. '\\n'"
    " .. ARGV[5]\n"
    "redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[8], seq .. '-0',"
    " 'm', m)\n"
    "if KEYS[4] ~= '' then\n"
    "  redis.call('SET', KEYS[4], seq .. ' ' .. ARGV[3] .. ' ' .. ARGV[6],"
    " 'PX', ARGV[7])\n"
    "end\n"
    "redis.call('PUBLISH', ARGV[9], m)\n"
    "return {0, e, tostring(seq), ARGV[3]}\n";

static char  ngx_http_webhook_sse_redis_sync_body[] =
    "return {e, redis.call('GET', KEYS[1]) or '0'}\n";

static char  ngx_http_webhook_sse_redis_hosts_script[] =
    "#!lua flags=allow-oom\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])\n"
    "redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])\n"
    "for _, h in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now))"
    " do\n"
    "  redis.call('HDEL', KEYS[2], h)\n"
    "  redis.call('ZREM', KEYS[1], h)\n"
    "end\n"
    "local n, hosts = 0, 0\n"
    "for _, v in ipairs(redis.call('HVALS', KEYS[2])) do\n"
    "  n = n + tonumber(v)\n"
    "  hosts = hosts + 1\n"
    "end\n"
    "return {n, hosts}\n";

/*
 * Presence across hosts.  Each worker keeps its streams per session in
 * its own hash (field: session, value: "<streams> <since>"), written in
 * the order its streams open and close, and says every REPORT ms that it
 * is alive: a sorted set of workers scored by when that news runs out.
 * The hash expires with it; a worker that dies without a word leaves the
 * counts within REPORT_TTL.
 *
 * count (KEYS: the worker's hash; ARGV: session, value or "" to remove,
 * TTL ms)
 */

static char  ngx_http_webhook_sse_redis_count_script[] =
    "#!lua flags=allow-oom\n"
    "if ARGV[2] == '' then\n"
    "  redis.call('HDEL', KEYS[1], ARGV[1])\n"
    "else\n"
    "  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])\n"
    "end\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[3])\n"
    "return 0\n";

/* alive (KEYS: the workers' set, the worker's hash; ARGV: worker, TTL ms) */

static char  ngx_http_webhook_sse_redis_alive_script[] =
    "#!lua flags=allow-oom\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)\n"
    "redis.call('PEXPIRE', KEYS[2], ARGV[2])\n"
    "return 0\n";

/*
 * presence (KEYS: the workers' set; ARGV: this host's "<host>/" whose
 * workers are left out (the asking host counts its own from its zone),
 * the hashes' prefix, then the sessions): {streams, since} per session,
 * summed over the live workers of the other hosts.
 */

static char  ngx_http_webhook_sse_redis_presence_script[] =
    "#!lua flags=no-writes\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local n = #ARGV - 2\n"
    "local out = {}\n"
    "for i = 1, 2 * n do out[i] = 0 end\n"
    "for _, w in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf'))"
    " do\n"
    "  if string.sub(w, 1, #ARGV[1]) ~= ARGV[1] then\n"
    "    local v = redis.call('HMGET', ARGV[2] .. w, unpack(ARGV, 3))\n"
    "    for i = 1, n do\n"
    "      if v[i] then\n"
    "        local c, s = string.match(v[i], '^(%d+) (%d+)$')\n"
    "        c = tonumber(c)\n"
    "        s = tonumber(s)\n"
    "        if c and c > 0 then\n"
    "          out[2 * i - 1] = out[2 * i - 1] + c\n"
    "          if out[2 * i] == 0 or s < out[2 * i] then out[2 * i] = s end\n"
    "        end\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return out\n";

static ngx_str_t  ngx_http_webhook_sse_redis_scripts[
                                         NGX_HTTP_WEBHOOK_SSE_REDIS_SCRIPTS];


/*
 * webhook_redis ZONE redis://HOST[:PORT][/DB] [password=TEXT|env=NAME|
 *     file=PATH] [prefix=STR] [timeout=TIME] [log=N]
 */

char *
ngx_http_webhook_sse_redis_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    char                          *rv;
    u_char                        *p;
    ngx_int_t                      n;
    ngx_str_t                     *value, s, name;
    ngx_uint_t                     i;
    ngx_http_webhook_sse_zone_t   *zone;
    ngx_http_webhook_sse_redis_t  *link;

    value = cf->args->elts;

    zone = ngx_http_webhook_sse_conf_zone(cf, &value[1]);

    if (zone == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "webhook_redis: no webhook_zone \"%V\" defined "
                           "before it", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (zone->redis) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "webhook_redis: zone \"%V\" already has a Redis "
                           "link", &value[1]);
        return NGX_CONF_ERROR;
    }

    link = ngx_pcalloc(cf->pool, sizeof(ngx_http_webhook_sse_redis_t));
    if (link == NULL) {
        return NGX_CONF_ERROR;
    }

    link->zone = zone;
    link->timeout = 1000;
    link->log_size = 100000;

    if (ngx_http_webhook_sse_redis_parse_url(cf, link, &value[2]) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    link->prefix.len = sizeof("webhook::") - 1 + value[1].len;
    link->prefix.data = ngx_pnalloc(cf->pool, link->prefix.len);
    if (link->prefix.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_sprintf(link->prefix.data, "webhook:%V:", &value[1]);

    for (i = 3; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "password=", 9) == 0) {
            s.data = value[i].data + 9;
            s.len = value[i].len - 9;

            rv = ngx_http_webhook_sse_conf_secret(cf, &cmd->name, &s,
                                                  &link->password);
            if (rv != NGX_CONF_OK) {
                return rv;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "prefix=", 7) == 0) {
            link->prefix.data = value[i].data + 7;
            link->prefix.len = value[i].len - 7;

            for (p = link->prefix.data;
                 p < link->prefix.data + link->prefix.len;
                 p++)
            {
                if (*p <= 0x20 || *p == 0x7f) {
                    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                       "webhook_redis: invalid prefix "
                                       "\"%V\"", &value[i]);
                    return NGX_CONF_ERROR;
                }
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "timeout=", 8) == 0) {
            s.data = value[i].data + 8;
            s.len = value[i].len - 8;

            link->timeout = ngx_parse_time(&s, 0);

            if (link->timeout == (ngx_msec_t) NGX_ERROR
                || link->timeout == 0)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "webhook_redis: invalid timeout \"%V\"",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "log=", 4) == 0) {
            n = ngx_atoi(value[i].data + 4, value[i].len - 4);

            if (n < 100) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "webhook_redis: invalid log \"%V\": at "
                                   "least 100 messages", &value[i]);
                return NGX_CONF_ERROR;
            }

            link->log_size = n;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "webhook_redis: invalid parameter \"%V\"",
                           &value[i]);
        return NGX_CONF_ERROR;
    }

    if (ngx_http_webhook_sse_redis_key(cf, link, &link->key_seq, "seq")
        != NGX_OK
        || ngx_http_webhook_sse_redis_key(cf, link, &link->key_epoch, "epoch")
           != NGX_OK
        || ngx_http_webhook_sse_redis_key(cf, link, &link->key_log, "log")
           != NGX_OK
        || ngx_http_webhook_sse_redis_key(cf, link, &link->key_events,
                                          "events")
           != NGX_OK
        || ngx_http_webhook_sse_redis_key(cf, link, &link->key_hosts, "hosts")
           != NGX_OK
        || ngx_http_webhook_sse_redis_key(cf, link, &link->key_streams,
                                          "streams")
           != NGX_OK
        || ngx_http_webhook_sse_redis_key(cf, link, &link->key_idempotency,
                                          "key:")
           != NGX_OK
        || ngx_http_webhook_sse_redis_key(cf, link, &link->key_workers,
                                          "presence:workers")
           != NGX_OK
        || ngx_http_webhook_sse_redis_key(cf, link, &link->key_presence,
                                          "presence:")
           != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    name.len = sizeof("webhook_redis:") - 1 + value[1].len;
    name.data = ngx_pnalloc(cf->pool, name.len);
    if (name.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_sprintf(name.data, "webhook_redis:%V", &value[1]);

    link->shm_zone = ngx_shared_memory_add(cf, &name, 8 * ngx_pagesize,
                                           &ngx_http_webhook_sse_redis_shm_tag);
    if (link->shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    link->shm_zone->init = ngx_http_webhook_sse_redis_init_shm;
    link->shm_zone->data = link;

    zone->redis = link;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_webhook_sse_redis_init_shm(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_webhook_sse_redis_t *olink = data;

    ngx_slab_pool_t               *shpool;
    ngx_http_webhook_sse_redis_t  *link;

    link = shm_zone->data;

    if (olink) {
        link->shared = olink->shared;
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        link->shared = shpool->data;
        return NGX_OK;
    }

    link->shared = ngx_slab_alloc(shpool,
                                  sizeof(ngx_http_webhook_sse_redis_shared_t));
    if (link->shared == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(link->shared, sizeof(ngx_http_webhook_sse_redis_shared_t));
    shpool->data = link->shared;

    return NGX_OK;
}


static ngx_int_t
ngx_http_webhook_sse_redis_parse_url(ngx_conf_t *cf,
    ngx_http_webhook_sse_redis_t *link, ngx_str_t *url)
{
    u_char     *p, *last, *slash;
    size_t      len;
    ngx_int_t   db;
    ngx_url_t   u;

    link->url = *url;

    if (url->len > 9 && ngx_strncasecmp(url->data, (u_char *) "rediss://", 9)
                        == 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "webhook_redis: \"%V\": rediss:// (TLS) is not "
                           "supported, Debian's hiredis 0.14 has no TLS; "
                           "reach Redis over a private network or a TLS "
                           "tunnel (stunnel) on loopback", url);
        return NGX_ERROR;
    }

    if (url->len <= 8 || ngx_strncasecmp(url->data, (u_char *) "redis://", 8)
                         != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "webhook_redis: invalid URL \"%V\": "
                           "redis://HOST[:PORT][/DB] expected", url);
        return NGX_ERROR;
    }

    p = url->data + 8;
    last = url->data + url->len;

    if (ngx_strlchr(p, last, '@')) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "webhook_redis: \"%V\": give the password with "
                           "password=, not in the URL", url);
        return NGX_ERROR;
    }

    slash = ngx_strlchr(p, last, '/');

    if (slash) {
        db = 0;

        if (slash + 1 < last) {
            db = ngx_atoi(slash + 1, last - slash - 1);

            if (db == NGX_ERROR) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "webhook_redis: invalid database number "
                                   "in \"%V\"", url);
                return NGX_ERROR;
            }
        }

        link->db = db;
        last = slash;
    }

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url.data = p;
    u.url.len = last - p;
    u.default_port = 6379;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.naddrs == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "webhook_redis: %s in \"%V\"",
                           u.err ? u.err : "host not found", url);
        return NGX_ERROR;
    }

    /* hiredis resolves names with a blocking call: give it an address */
    len = ngx_sock_ntop(u.addrs[0].sockaddr, u.addrs[0].socklen, link->host,
                        NGX_SOCKADDR_STRLEN, 0);

    link->host[len] = '\0';
    link->port = ngx_inet_get_port(u.addrs[0].sockaddr);

    return NGX_OK;
}


static ngx_int_t
ngx_http_webhook_sse_redis_key(ngx_conf_t *cf,
    ngx_http_webhook_sse_redis_t *link, ngx_str_t *key, char *name)
{
    size_t  len;

    len = ngx_strlen(name);

    key->len = link->prefix.len + len;
    key->data = ngx_pnalloc(cf->pool, key->len + 1);
    if (key->data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(key->data, "%V%s%Z", &link->prefix, name);

    return NGX_OK;
}


void
ngx_http_webhook_sse_redis_init_process(ngx_cycle_t *cycle,
    ngx_http_webhook_sse_zone_t *zone)
{
    ngx_uint_t                     i;
    ngx_http_webhook_sse_redis_t  *link;

    link = zone->redis;

    if (ngx_http_webhook_sse_redis_scripts[0].len == 0) {
        for (i = 0; i < NGX_HTTP_WEBHOOK_SSE_REDIS_SCRIPTS; i++) {
            ngx_http_webhook_sse_redis_scripts[i].data = ngx_alloc(4096,
                                                               cycle->log);
            if (ngx_http_webhook_sse_redis_scripts[i].data == NULL) {
                return;
            }
        }

        ngx_http_webhook_sse_redis_scripts[0].len =
            ngx_sprintf(ngx_http_webhook_sse_redis_scripts[0].data,
                        "#!lua\n%s%s", ngx_http_webhook_sse_redis_seed,
                        ngx_http_webhook_sse_redis_publish_body)
            - ngx_http_webhook_sse_redis_scripts[0].data;

        ngx_http_webhook_sse_redis_scripts[1].len =
            ngx_sprintf(ngx_http_webhook_sse_redis_scripts[1].data,
                        "#!lua flags=allow-oom\n%s%s",
                        ngx_http_webhook_sse_redis_seed,
                        ngx_http_webhook_sse_redis_sync_body)
            - ngx_http_webhook_sse_redis_scripts[1].data;

        ngx_http_webhook_sse_redis_scripts[2].len =
            ngx_sprintf(ngx_http_webhook_sse_redis_scripts[2].data, "%s",
                        ngx_http_webhook_sse_redis_hosts_script)
            - ngx_http_webhook_sse_redis_scripts[2].data;

        ngx_http_webhook_sse_redis_scripts[3].len =
            ngx_sprintf(ngx_http_webhook_sse_redis_scripts[3].data, "%s",
                        ngx_http_webhook_sse_redis_count_script)
            - ngx_http_webhook_sse_redis_scripts[3].data;

        ngx_http_webhook_sse_redis_scripts[4].len =
            ngx_sprintf(ngx_http_webhook_sse_redis_scripts[4].data, "%s",
                        ngx_http_webhook_sse_redis_alive_script)
            - ngx_http_webhook_sse_redis_scripts[4].data;

        ngx_http_webhook_sse_redis_scripts[5].len =
            ngx_sprintf(ngx_http_webhook_sse_redis_scripts[5].data, "%s",
                        ngx_http_webhook_sse_redis_presence_script)
            - ngx_http_webhook_sse_redis_scripts[5].data;
    }

    link->log = cycle->log;
    link->subscriber = (ngx_process == NGX_PROCESS_SINGLE || ngx_worker == 0);

    ngx_queue_init(&link->held);

    link->host_id_len = ngx_snprintf(link->host_id, sizeof(link->host_id),
                                     "%V/%P", &cycle->hostname,
                                     ngx_process == NGX_PROCESS_SINGLE
                                     ? ngx_pid : getppid())
                        - link->host_id;

    /* "<prefix>presence:" "<host>/<pid>", the second part the worker's id */

    link->worker_key.data = ngx_alloc(link->key_presence.len
                                      + link->host_id_len + 1 + NGX_INT64_LEN,
                                      cycle->log);
    if (link->worker_key.data == NULL) {
        return;
    }

    link->worker_key.len = ngx_sprintf(link->worker_key.data, "%V%*s/%P",
                                       &link->key_presence,
                                       link->host_id_len, link->host_id,
                                       ngx_pid)
                           - link->worker_key.data;

    link->worker_id.data = link->worker_key.data + link->key_presence.len;
    link->worker_id.len = link->worker_key.len - link->key_presence.len;

    ngx_rbtree_init(&link->counts, &link->counts_sentinel,
                    ngx_str_rbtree_insert_value);

    link->alive.handler = ngx_http_webhook_sse_redis_alive_handler;
    link->alive.data = link;
    link->alive.log = cycle->log;
    link->alive.cancelable = 1;

    link->cmd.link = link;
    link->cmd.role = "commands";
    link->cmd.timer.handler = ngx_http_webhook_sse_redis_timer_handler;
    link->cmd.timer.data = &link->cmd;
    link->cmd.timer.log = cycle->log;
    link->cmd.timer.cancelable = 1;

    ngx_http_webhook_sse_redis_connect(&link->cmd);

    if (!link->subscriber) {
        return;
    }

    link->sub.link = link;
    link->sub.role = "subscription";
    link->sub.subscriber = 1;
    link->sub.timer.handler = ngx_http_webhook_sse_redis_timer_handler;
    link->sub.timer.data = &link->sub;
    link->sub.timer.log = cycle->log;
    link->sub.timer.cancelable = 1;

    link->report.handler = ngx_http_webhook_sse_redis_report_handler;
    link->report.data = link;
    link->report.log = cycle->log;
    link->report.cancelable = 1;

    ngx_http_webhook_sse_redis_connect(&link->sub);
}


void
ngx_http_webhook_sse_redis_exit_process(ngx_http_webhook_sse_zone_t *zone)
{
    redisAsyncContext             *ac;
    ngx_http_webhook_sse_redis_t  *link;

    link = zone->redis;

    if (link == NULL || link->log == NULL) {
        return;
    }

    link->exiting = 1;

    if (link->cmd.timer.timer_set) {
        ngx_del_timer(&link->cmd.timer);
    }

    if (link->sub.timer.timer_set) {
        ngx_del_timer(&link->sub.timer);
    }

    if (link->report.timer_set) {
        ngx_del_timer(&link->report);
    }

    if (link->alive.timer_set) {
        ngx_del_timer(&link->alive);
    }

    ngx_http_webhook_sse_redis_leave(link);

    if (link->cmd.ac) {
        ac = link->cmd.ac;
        link->cmd.ac = NULL;
        redisAsyncFree(ac);
    }

    if (link->sub.ac) {
        ac = link->sub.ac;
        link->sub.ac = NULL;
        redisAsyncFree(ac);
    }

    ngx_http_webhook_sse_redis_drop_held(link);
}


static void
ngx_http_webhook_sse_redis_connect(ngx_http_webhook_sse_redis_conn_t *conn)
{
    int                            argc;
    char                           db[NGX_INT_T_LEN + 1];
    const char                    *argv[3];
    size_t                         argvlen[3];
    ngx_uint_t                     i;
    redisAsyncContext             *ac;
    ngx_http_webhook_sse_redis_t  *link;

    link = conn->link;

    ac = redisAsyncConnect((char *) link->host, link->port);

    if (ac == NULL) {
        ngx_http_webhook_sse_redis_fail(conn, "connect", "out of memory");
        ngx_http_webhook_sse_redis_retry(conn);
        return;
    }

    if (ac->err) {
        ngx_http_webhook_sse_redis_fail(conn, "connect", ac->errstr);
        redisAsyncFree(ac);
        ngx_http_webhook_sse_redis_retry(conn);
        return;
    }

    if (ngx_http_webhook_sse_redis_attach(ac, link->log) != NGX_OK) {
        ngx_http_webhook_sse_redis_fail(conn, "connect",
                                        "no free nginx connection");
        redisAsyncFree(ac);
        ngx_http_webhook_sse_redis_retry(conn);
        return;
    }

    conn->ac = ac;
    ac->data = conn;

    redisAsyncSetConnectCallback(ac, ngx_http_webhook_sse_redis_connected);
    redisAsyncSetDisconnectCallback(ac,
                                    ngx_http_webhook_sse_redis_disconnected);

    /* commands wait in hiredis's buffer until the connection is made */

    if (link->password.len) {
        argv[0] = "AUTH";
        argvlen[0] = 4;
        argv[1] = (char *) link->password.data;
        argvlen[1] = link->password.len;

        (void) redisAsyncCommandArgv(ac, ngx_http_webhook_sse_redis_handshake,
                                     (void *) "AUTH", 2, argv, argvlen);
    }

    if (conn->subscriber) {
        argv[0] = "SUBSCRIBE";
        argvlen[0] = sizeof("SUBSCRIBE") - 1;
        argv[1] = (char *) link->key_events.data;
        argvlen[1] = link->key_events.len;

        (void) redisAsyncCommandArgv(ac, ngx_http_webhook_sse_redis_message,
                                     NULL, 2, argv, argvlen);

    } else {
        if (link->db) {
            argv[0] = "SELECT";
            argvlen[0] = 6;
            argv[1] = db;
            argvlen[1] = ngx_sprintf((u_char *) db, "%ui", link->db)
                         - (u_char *) db;

            (void) redisAsyncCommandArgv(ac,
                                         ngx_http_webhook_sse_redis_handshake,
                                         (void *) "SELECT", 2, argv,
                                         argvlen);
        }

        argc = 3;
        argv[0] = "SCRIPT";
        argvlen[0] = 6;
        argv[1] = "LOAD";
        argvlen[1] = 4;

        for (i = 0; i < NGX_HTTP_WEBHOOK_SSE_REDIS_SCRIPTS; i++) {
            argv[2] = (char *) ngx_http_webhook_sse_redis_scripts[i].data;
            argvlen[2] = ngx_http_webhook_sse_redis_scripts[i].len;

            (void) redisAsyncCommandArgv(ac,
                                    ngx_http_webhook_sse_redis_script_loaded,
                                    (void *) i, argc, argv, argvlen);
        }
    }

    /* the connection and its handshake must be done in time */
    ngx_add_timer(&conn->timer, ngx_max(link->timeout, 1000));
}


static void
ngx_http_webhook_sse_redis_connected(const redisAsyncContext *ac, int status)
{
    ngx_http_webhook_sse_redis_conn_t  *conn;

    conn = ac->data;

    if (status == REDIS_OK) {
        return;
    }

    /* hiredis frees the context after this */

    if (conn->ac == ac) {
        conn->ac = NULL;
        ngx_http_webhook_sse_redis_fail(conn, "connect", ac->errstr);
        ngx_http_webhook_sse_redis_retry(conn);
    }
}


static void
ngx_http_webhook_sse_redis_disconnected(const redisAsyncContext *ac,
    int status)
{
    ngx_http_webhook_sse_redis_conn_t  *conn;

    conn = ac->data;

    if (conn->ac != ac) {
        return;
    }

    conn->ac = NULL;

    ngx_http_webhook_sse_redis_fail(conn, "connection",
                                    (status == REDIS_OK || ac->errstr == NULL
                                     || ac->errstr[0] == '\0')
                                    ? "closed" : ac->errstr);
    ngx_http_webhook_sse_redis_retry(conn);
}


/* AUTH and SELECT: anything but OK ends the connection */

static void
ngx_http_webhook_sse_redis_handshake(redisAsyncContext *ac, void *r,
    void *privdata)
{
    redisReply                         *reply = r;
    ngx_http_webhook_sse_redis_conn_t  *conn;

    conn = ac->data;

    if (reply == NULL || conn->ac != ac) {
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_http_webhook_sse_redis_fail(conn, privdata, reply->str);
        redisAsyncDisconnect(ac);
    }
}


static void
ngx_http_webhook_sse_redis_script_loaded(redisAsyncContext *ac, void *r,
    void *privdata)
{
    redisReply                         *reply = r;
    ngx_uint_t                          i;
    ngx_http_webhook_sse_redis_conn_t  *conn;

    conn = ac->data;
    i = (ngx_uint_t) privdata;

    if (reply == NULL || conn->ac != ac) {
        return;
    }

    if (reply->type != REDIS_REPLY_STRING || reply->len != 40) {
        /* the AUTH failure already said it */
        if (!conn->failing) {
            ngx_http_webhook_sse_redis_fail(conn, "SCRIPT LOAD",
                                            reply->type == REDIS_REPLY_ERROR
                                            ? reply->str : "unexpected reply");
        }

        redisAsyncDisconnect(ac);
        return;
    }

    ngx_memcpy(conn->link->sha[i], reply->str, 40);
    conn->link->sha[i][40] = '\0';

    if (i == NGX_HTTP_WEBHOOK_SSE_REDIS_SCRIPTS - 1) {
        ngx_http_webhook_sse_redis_conn_ready(conn);
    }
}


static void
ngx_http_webhook_sse_redis_conn_ready(ngx_http_webhook_sse_redis_conn_t *conn)
{
    ngx_http_webhook_sse_redis_t  *link;

    link = conn->link;

    if (conn->timer.timer_set) {
        ngx_del_timer(&conn->timer);
    }

    conn->ready = 1;
    conn->backoff = 0;

    if (conn->failing) {
        conn->failing = 0;

        ngx_log_error(NGX_LOG_INFO, link->log, 0,
                      "webhook redis \"%V\": %s connection to %V is back",
                      &link->zone->shm_zone->shm.name, conn->role,
                      &link->url);
    }

    if (conn == &link->cmd) {
        ngx_http_webhook_sse_redis_counts_resync(link);
    }

    if (!link->subscriber) {
        return;
    }

    ngx_http_webhook_sse_redis_update(link);

    if (conn == &link->cmd && !link->report.timer_set) {
        ngx_add_timer(&link->report, 10);
    }

    ngx_http_webhook_sse_redis_sync(link);
}


/*
 * For the host, the worker holding the subscription says it: one error
 * line when the link goes down (or cannot be made at start), one notice
 * when it is back in sync, nothing for each retry; each connection's own
 * ups and downs are logged at info.
 */

static void
ngx_http_webhook_sse_redis_fail(ngx_http_webhook_sse_redis_conn_t *conn,
    const char *what, const char *error)
{
    ngx_uint_t                     level;
    ngx_http_webhook_sse_redis_t  *link;

    link = conn->link;

    conn->ready = 0;

    if (conn->subscriber) {
        link->subscribed = 0;
        link->synced = 0;
        link->syncing = 0;
    }

    if (conn == &link->cmd) {
        link->syncing = 0;
    }

    ngx_http_webhook_sse_redis_update(link);

    if (conn->failing || link->exiting) {
        return;
    }

    conn->failing = 1;

    level = NGX_LOG_INFO;

    if (link->subscriber && !link->down) {
        link->down = 1;
        level = NGX_LOG_ERR;
    }

    ngx_log_error(level, link->log, 0,
                  "webhook redis \"%V\": %s connection to %V down: "
                  "%s: %s; publishes are answered 503, streams stay open, "
                  "retrying", &link->zone->shm_zone->shm.name, conn->role,
                  &link->url, what, error ? error : "unknown error");
}


/* backoff doubling up to a bound, with up to half of it again at random */

static void
ngx_http_webhook_sse_redis_retry(ngx_http_webhook_sse_redis_conn_t *conn)
{
    ngx_msec_t  delay;

    if (conn->link->exiting) {
        return;
    }

    if (conn->backoff == 0) {
        conn->backoff = NGX_HTTP_WEBHOOK_SSE_REDIS_BACKOFF_MIN;

    } else {
        conn->backoff = ngx_min(conn->backoff * 2,
                                NGX_HTTP_WEBHOOK_SSE_REDIS_BACKOFF_MAX);
    }

    delay = conn->backoff + (ngx_msec_t) ngx_random() % (conn->backoff / 2);

    if (conn->timer.timer_set) {
        ngx_del_timer(&conn->timer);
    }

    ngx_add_timer(&conn->timer, delay);
}


/* a connection that is not ready in time, or the wait before the next */

static void
ngx_http_webhook_sse_redis_timer_handler(ngx_event_t *ev)
{
    redisAsyncContext                  *ac;
    ngx_http_webhook_sse_redis_conn_t  *conn;

    conn = ev->data;

    if (conn->link->exiting || ngx_terminate) {
        return;
    }

    if (conn->ac) {
        ac = conn->ac;
        conn->ac = NULL;

        ngx_http_webhook_sse_redis_fail(conn, "connect", "timed out");
        redisAsyncFree(ac);
        ngx_http_webhook_sse_redis_retry(conn);
        return;
    }

    if (ngx_exiting) {
        return;
    }

    ngx_http_webhook_sse_redis_connect(conn);
}


/* the subscription: its confirmation, then every message */

static void
ngx_http_webhook_sse_redis_message(redisAsyncContext *ac, void *r,
    void *privdata)
{
    redisReply                         *reply = r;
    uint64_t                            seq;
    redisReply                         *kind, *payload;
    ngx_http_webhook_sse_redis_t       *link;
    ngx_http_webhook_sse_redis_conn_t  *conn;
    ngx_http_webhook_sse_redis_held_t  *h;

    conn = ac->data;
    link = conn->link;

    if (reply == NULL || conn->ac != ac || link->exiting) {
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_http_webhook_sse_redis_fail(conn, "SUBSCRIBE", reply->str);
        redisAsyncDisconnect(ac);
        return;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3) {
        return;
    }

    kind = reply->element[0];
    payload = reply->element[2];

    if (kind->type != REDIS_REPLY_STRING) {
        return;
    }

    if (kind->len == 9 && ngx_strncmp(kind->str, "subscribe", 9) == 0) {
        link->subscribed = 1;
        ngx_http_webhook_sse_redis_conn_ready(conn);
        return;
    }

    if (kind->len != 7 || ngx_strncmp(kind->str, "message", 7) != 0
        || payload->type != REDIS_REPLY_STRING)
    {
        return;
    }

    if (link->synced) {
        (void) ngx_http_webhook_sse_redis_ingest(link, (u_char *) payload->str,
                                                 payload->len, &seq);
        return;
    }

    /* caught up later, in order, duplicates dropped by the zone */

    h = NULL;

    if (link->nheld < NGX_HTTP_WEBHOOK_SSE_REDIS_HELD_MAX) {
        h = ngx_alloc(sizeof(ngx_http_webhook_sse_redis_held_t)
                      + payload->len, link->log);
    }

    if (h == NULL) {
        link->dropped = 1;
        return;
    }

    h->len = payload->len;
    ngx_memcpy(h->data, payload->str, payload->len);
    ngx_queue_insert_tail(&link->held, &h->queue);
    link->nheld++;
}


/*
 * The head of every script's command: EVALSHA, the script's sha and the
 * number of keys (one digit) that follow.
 */

static void
ngx_http_webhook_sse_redis_evalsha(ngx_http_webhook_sse_redis_t *link,
    ngx_uint_t script, const char *nkeys, const char **argv, size_t *argvlen)
{
    argv[0] = "EVALSHA";
    argvlen[0] = sizeof("EVALSHA") - 1;
    argv[1] = link->sha[script];
    argvlen[1] = 40;
    argv[2] = nkeys;
    argvlen[2] = 1;
}


/*
 * Catching up, once the subscription and the command connection are both
 * there: the cluster's epoch (the zone takes it if it has another), then
 * the log from the zone's last sequence number on.
 */

static void
ngx_http_webhook_sse_redis_sync(ngx_http_webhook_sse_redis_t *link)
{
    u_char                         hint[2][NGX_INT64_LEN];
    const char                    *argv[8];
    size_t                         argvlen[8];
    ngx_http_webhook_sse_shctx_t  *sh;

    if (!link->subscribed || !link->cmd.ready || link->syncing
        || link->synced)
    {
        return;
    }

    sh = link->zone->sh;

    ngx_http_webhook_sse_store_lock(link->zone);

    argvlen[6] = ngx_sprintf(hint[0], "%uL", sh->epoch) - hint[0];
    argvlen[7] = ngx_sprintf(hint[1], "%uL", sh->last_seq) - hint[1];

    ngx_http_webhook_sse_store_unlock(link->zone);

    ngx_http_webhook_sse_redis_evalsha(link, NGX_HTTP_WEBHOOK_SSE_REDIS_SYNC,
                                       "3", argv, argvlen);
    argv[3] = (char *) link->key_seq.data;
    argvlen[3] = link->key_seq.len;
    argv[4] = (char *) link->key_epoch.data;
    argvlen[4] = link->key_epoch.len;
    argv[5] = (char *) link->key_log.data;
    argvlen[5] = link->key_log.len;
    argv[6] = (char *) hint[0];
    argv[7] = (char *) hint[1];

    if (redisAsyncCommandArgv(link->cmd.ac,
                              ngx_http_webhook_sse_redis_sync_reply, NULL,
                              8, argv, argvlen)
        != REDIS_OK)
    {
        return;
    }

    link->syncing = 1;
}


static void
ngx_http_webhook_sse_redis_sync_reply(redisAsyncContext *ac, void *r,
    void *privdata)
{
    redisReply                         *reply = r;
    uint64_t                            epoch, from;
    ngx_http_webhook_sse_redis_t       *link;
    ngx_http_webhook_sse_redis_conn_t  *conn;

    conn = ac->data;
    link = conn->link;

    if (reply == NULL || link->exiting || !link->syncing) {
        return;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
        ngx_log_error(NGX_LOG_ERR, link->log, 0,
                      "webhook redis \"%V\": cannot read the cluster's "
                      "epoch: %s", &link->zone->shm_zone->shm.name,
                      reply->type == REDIS_REPLY_ERROR ? reply->str
                                                       : "unexpected reply");
        link->syncing = 0;
        redisAsyncDisconnect(ac);
        return;
    }

    epoch = ngx_http_webhook_sse_redis_number(reply->element[0]);

    if (epoch == 0) {
        link->syncing = 0;
        redisAsyncDisconnect(ac);
        return;
    }

    link->sync_epoch = epoch;

    if (link->zone->sh->epoch != epoch) {
        ngx_log_error(NGX_LOG_NOTICE, link->log, 0,
                      "webhook redis \"%V\": the zone takes the cluster's "
                      "epoch %uL and its log",
                      &link->zone->shm_zone->shm.name, epoch);

        link->shared->synced_epoch = 0;
        ngx_http_webhook_sse_store_adopt(link->zone, epoch, 0);
    }

    from = link->zone->sh->last_seq + 1;

    ngx_http_webhook_sse_redis_read_log(link, from);
}


static void
ngx_http_webhook_sse_redis_read_log(ngx_http_webhook_sse_redis_t *link,
    uint64_t from)
{
    u_char       start[NGX_INT64_LEN + 3];
    const char  *argv[6];
    size_t       argvlen[6];

    argv[0] = "XRANGE";
    argvlen[0] = 6;
    argv[1] = (char *) link->key_log.data;
    argvlen[1] = link->key_log.len;
    argv[2] = (char *) start;
    argvlen[2] = ngx_sprintf(start, "%uL-0", from) - start;
    argv[3] = "+";
    argvlen[3] = 1;
    argv[4] = "COUNT";
    argvlen[4] = 5;
    argv[5] = NGX_HTTP_WEBHOOK_SSE_REDIS_BATCH_TEXT;
    argvlen[5] = ngx_strlen(argv[5]);

    if (redisAsyncCommandArgv(link->cmd.ac,
                              ngx_http_webhook_sse_redis_log_reply, NULL,
                              6, argv, argvlen)
        != REDIS_OK)
    {
        link->syncing = 0;
    }
}


static void
ngx_http_webhook_sse_redis_log_reply(redisAsyncContext *ac, void *r,
    void *privdata)
{
    redisReply                         *reply = r;
    size_t                              i;
    uint64_t                            seq, last;
    redisReply                         *entry, *fields;
    ngx_http_webhook_sse_redis_t       *link;
    ngx_http_webhook_sse_redis_conn_t  *conn;

    conn = ac->data;
    link = conn->link;

    if (reply == NULL || link->exiting || !link->syncing) {
        return;
    }

    if (reply->type != REDIS_REPLY_ARRAY) {
        ngx_log_error(NGX_LOG_ERR, link->log, 0,
                      "webhook redis \"%V\": cannot read the cluster log: "
                      "%s", &link->zone->shm_zone->shm.name,
                      reply->type == REDIS_REPLY_ERROR ? reply->str
                                                       : "unexpected reply");
        link->syncing = 0;
        redisAsyncDisconnect(ac);
        return;
    }

    last = 0;

    for (i = 0; i < reply->elements; i++) {
        entry = reply->element[i];

        if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2) {
            continue;
        }

        fields = entry->element[1];

        if (fields->type != REDIS_REPLY_ARRAY || fields->elements != 2
            || fields->element[1]->type != REDIS_REPLY_STRING)
        {
            continue;
        }

        if (i == 0 && link->zone->sh->last_seq
            && ngx_http_webhook_sse_redis_number(entry->element[0])
               > link->zone->sh->last_seq + 1)
        {
            ngx_log_error(NGX_LOG_WARN, link->log, 0,
                          "webhook redis \"%V\": the cluster log starts at "
                          "%uL, this host had %uL: messages in between may "
                          "be missing here (log= too small for the outage)",
                          &link->zone->shm_zone->shm.name,
                          ngx_http_webhook_sse_redis_number(entry->element[0]),
                          link->zone->sh->last_seq);
        }

        seq = 0;

        (void) ngx_http_webhook_sse_redis_ingest(link,
                                       (u_char *) fields->element[1]->str,
                                       fields->element[1]->len, &seq);
        if (seq > last) {
            last = seq;
        }
    }

    if (reply->elements == NGX_HTTP_WEBHOOK_SSE_REDIS_BATCH && last) {
        ngx_http_webhook_sse_redis_read_log(link, last + 1);
        return;
    }

    if (link->dropped) {
        /* what could not be held is in the log by now: once more */
        link->dropped = 0;
        ngx_http_webhook_sse_redis_drop_held(link);
        ngx_http_webhook_sse_redis_read_log(link, link->zone->sh->last_seq + 1);
        return;
    }

    ngx_http_webhook_sse_redis_synced(link);
}


static void
ngx_http_webhook_sse_redis_drop_held(ngx_http_webhook_sse_redis_t *link)
{
    ngx_queue_t                        *q;
    ngx_http_webhook_sse_redis_held_t  *h;

    while (!ngx_queue_empty(&link->held)) {
        q = ngx_queue_head(&link->held);
        ngx_queue_remove(q);
        h = ngx_queue_data(q, ngx_http_webhook_sse_redis_held_t, queue);
        ngx_free(h);
    }

    link->nheld = 0;
}


static void
ngx_http_webhook_sse_redis_synced(ngx_http_webhook_sse_redis_t *link)
{
    uint64_t                            seq;
    ngx_queue_t                        *q;
    ngx_http_webhook_sse_redis_held_t  *h;

    while (!ngx_queue_empty(&link->held)) {
        q = ngx_queue_head(&link->held);
        ngx_queue_remove(q);
        h = ngx_queue_data(q, ngx_http_webhook_sse_redis_held_t, queue);

        (void) ngx_http_webhook_sse_redis_ingest(link, h->data, h->len, &seq);

        ngx_free(h);
    }

    link->nheld = 0;
    link->syncing = 0;
    link->synced = 1;

    link->shared->synced_epoch = link->sync_epoch;

    ngx_log_error(NGX_LOG_INFO, link->log, 0,
                  "webhook redis \"%V\": in sync with the cluster at "
                  "%uL-%uL", &link->zone->shm_zone->shm.name,
                  link->sync_epoch, link->zone->sh->last_seq);

    ngx_http_webhook_sse_redis_update(link);
}


/* the host's link is up when its subscriber can publish and is in sync */

static void
ngx_http_webhook_sse_redis_update(ngx_http_webhook_sse_redis_t *link)
{
    if (!link->subscriber) {
        return;
    }

    link->shared->up = (link->cmd.ready && link->sub.ready && link->synced);

    if (link->shared->up && link->down) {
        link->down = 0;

        ngx_log_error(NGX_LOG_NOTICE, link->log, 0,
                      "webhook redis \"%V\": link to %V is back, in sync "
                      "with the cluster at %uL-%uL",
                      &link->zone->shm_zone->shm.name, &link->url,
                      link->sync_epoch, link->zone->sh->last_seq);
    }
}


/* "<seq>\n<time>\n<session>\n<fields>" into the zone */

static ngx_int_t
ngx_http_webhook_sse_redis_ingest(ngx_http_webhook_sse_redis_t *link,
    u_char *data, size_t len, uint64_t *seq)
{
    u_char      *p, *last, *nl;
    int64_t      time;
    ngx_int_t    rc;
    ngx_str_t    session, fields;
    ngx_pid_t    wake[NGX_HTTP_WEBHOOK_SSE_SLOTS];
    ngx_uint_t   i, nwake, part;
    uint64_t     n[2];

    p = data;
    last = data + len;

    for (part = 0; part < 2; part++) {
        nl = ngx_strlchr(p, last, '\n');

        if (nl == NULL || nl == p) {
            goto invalid;
        }

        n[part] = 0;

        for ( /* void */ ; p < nl; p++) {
            if (*p < '0' || *p > '9' || n[part] > NGX_MAX_INT_T_VALUE / 10) {
                goto invalid;
            }

            n[part] = n[part] * 10 + (*p - '0');
        }

        p++;
    }

    nl = ngx_strlchr(p, last, '\n');

    if (nl == NULL || n[0] == 0) {
        goto invalid;
    }

    session.data = p;
    session.len = nl - p;

    fields.data = nl + 1;
    fields.len = last - fields.data;

    *seq = n[0];
    time = (int64_t) n[1];

    nwake = 0;

    rc = ngx_http_webhook_sse_store_ingest(link->zone, n[0], time, &session,
                                           &fields, wake, &nwake);

    if (rc == NGX_ERROR) {
        ngx_log_error(NGX_LOG_WARN, link->log, 0,
                      "webhook zone \"%V\" cannot store message %uL from "
                      "Redis", &link->zone->shm_zone->shm.name, n[0]);
    }

    for (i = 0; i < nwake; i++) {
        ngx_http_webhook_sse_notify_wake(link->zone, wake[i]);
    }

    return rc;

invalid:

    ngx_log_error(NGX_LOG_WARN, link->log, 0,
                  "webhook redis \"%V\": ignoring a message that is not "
                  "ours on \"%V\"", &link->zone->shm_zone->shm.name,
                  &link->key_events);

    return NGX_ERROR;
}


/* this host's streams into Redis, the cluster's sum out of it */

static void
ngx_http_webhook_sse_redis_report_handler(ngx_event_t *ev)
{
    u_char                         count[NGX_INT_T_LEN];
    const char                    *argv[8];
    size_t                         argvlen[8];
    ngx_http_webhook_sse_redis_t  *link;

    link = ev->data;

    if (link->exiting || ngx_exiting || ngx_terminate) {
        return;
    }

    ngx_add_timer(ev, NGX_HTTP_WEBHOOK_SSE_REDIS_REPORT);

    if (!link->cmd.ready) {
        return;
    }

    ngx_http_webhook_sse_redis_evalsha(link, NGX_HTTP_WEBHOOK_SSE_REDIS_HOSTS,
                                       "2", argv, argvlen);
    argv[3] = (char *) link->key_hosts.data;
    argvlen[3] = link->key_hosts.len;
    argv[4] = (char *) link->key_streams.data;
    argvlen[4] = link->key_streams.len;
    argv[5] = (char *) link->host_id;
    argvlen[5] = link->host_id_len;
    argv[6] = (char *) count;
    argvlen[6] = ngx_sprintf(count, "%ui",
                             ngx_http_webhook_sse_store_streams(link->zone))
                 - count;
    argv[7] = NGX_HTTP_WEBHOOK_SSE_REDIS_REPORT_TTL;
    argvlen[7] = ngx_strlen(argv[7]);

    (void) redisAsyncCommandArgv(link->cmd.ac,
                                 ngx_http_webhook_sse_redis_report_reply,
                                 NULL, 8, argv, argvlen);
}


static void
ngx_http_webhook_sse_redis_report_reply(redisAsyncContext *ac, void *r,
    void *privdata)
{
    redisReply                         *reply = r;
    ngx_http_webhook_sse_redis_conn_t  *conn;

    conn = ac->data;

    if (reply && reply->type == REDIS_REPLY_ERROR
        && ngx_strncmp(reply->str, "NOSCRIPT", 8) == 0 && conn->ac == ac)
    {
        /* the scripts were flushed (SCRIPT FLUSH): load them again */
        ngx_http_webhook_sse_redis_reload(conn);
        return;
    }

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != 2)
    {
        return;
    }

    conn->link->shared->cluster_streams =
        ngx_http_webhook_sse_redis_number(reply->element[0]);
    conn->link->shared->cluster_hosts =
        ngx_http_webhook_sse_redis_number(reply->element[1]);
}


/* the same scripts, the same digests: the replies are of no interest */

static void
ngx_http_webhook_sse_redis_reload(ngx_http_webhook_sse_redis_conn_t *conn)
{
    const char  *argv[3];
    size_t       argvlen[3];
    ngx_uint_t   i;

    argv[0] = "SCRIPT";
    argvlen[0] = 6;
    argv[1] = "LOAD";
    argvlen[1] = 4;

    for (i = 0; i < NGX_HTTP_WEBHOOK_SSE_REDIS_SCRIPTS; i++) {
        argv[2] = (char *) ngx_http_webhook_sse_redis_scripts[i].data;
        argvlen[2] = ngx_http_webhook_sse_redis_scripts[i].len;

        (void) redisAsyncCommandArgv(conn->ac, NULL, NULL, 3, argv, argvlen);
    }
}


/*
 * A publish: the script's arguments are copied, the request waits for
 * the reply (at most timeout=), answered 503 when Redis cannot take it.
 */

ngx_int_t
ngx_http_webhook_sse_redis_publish(ngx_http_request_t *r,
    ngx_http_webhook_sse_zone_t *zone, ngx_str_t *session, ngx_str_t *extra,
    ngx_str_t *members, ngx_http_webhook_sse_idempotency_t *idem)
{
    u_char                            *p, *buf;
    size_t                             len;
    ngx_http_webhook_sse_ctx_t        *ctx;
    ngx_http_webhook_sse_redis_t      *link;
    ngx_http_webhook_sse_shctx_t      *sh;
    ngx_http_webhook_sse_redis_pub_t  *pub;

    link = zone->redis;
    sh = zone->sh;

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_webhook_sse_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->session = *session;

    ngx_http_set_ctx(r, ctx, ngx_http_webhook_sse_module);

    if (ngx_http_webhook_sse_outbox_admit(r) != NGX_OK) {
        return ngx_http_webhook_sse_send_error(r,
                                               NGX_HTTP_SERVICE_UNAVAILABLE,
                                               "the outbound delivery queue "
                                               "is full");
    }

    /* what the zones of the hosts could not keep is refused, as locally */

    len = offsetof(ngx_http_webhook_sse_msg_t, data)
          + 2 * NGX_HTTP_WEBHOOK_SSE_ID_LEN + NGX_INT64_LEN + 128
          + extra->len + members->len;

    if (len > zone->shm_zone->shm.size / 4) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "webhook zone \"%V\" cannot store a message of %uz "
                      "bytes", &zone->shm_zone->shm.name, members->len);

        return ngx_http_webhook_sse_send_error(r,
                                               NGX_HTTP_SERVICE_UNAVAILABLE,
                                               "the webhook zone cannot "
                                               "store the message");
    }

    if (!link->cmd.ready || link->cmd.ac == NULL) {
        return ngx_http_webhook_sse_send_error(r,
                                               NGX_HTTP_SERVICE_UNAVAILABLE,
                                               "Redis is not reachable: the "
                                               "message was not stored");
    }

    len = sizeof(ngx_http_webhook_sse_redis_pub_t)
          + link->key_idempotency.len + idem->key.len
          + 3 * NGX_INT64_LEN + NGX_HTTP_WEBHOOK_SSE_DIGEST_LEN * 2
          + NGX_INT_T_LEN * 2 + session->len + extra->len + 1 + members->len;

    /* not in r->pool: a late reply may come after the request is gone */
    buf = ngx_alloc(len, r->connection->log);
    if (buf == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    pub = (ngx_http_webhook_sse_redis_pub_t *) buf;
    ngx_memzero(pub, sizeof(ngx_http_webhook_sse_redis_pub_t));

    p = buf + sizeof(ngx_http_webhook_sse_redis_pub_t);

    pub->request = r;
    pub->link = link;
    pub->argc = 16;

#define ngx_http_webhook_sse_redis_arg(n, s, l)                              \
    pub->argv[n] = (const char *) (s); pub->argvlen[n] = (l)

    ngx_http_webhook_sse_redis_evalsha(link,
                                       NGX_HTTP_WEBHOOK_SSE_REDIS_PUBLISH,
                                       "4", pub->argv, pub->argvlen);
    ngx_http_webhook_sse_redis_arg(3, link->key_seq.data, link->key_seq.len);
    ngx_http_webhook_sse_redis_arg(4, link->key_epoch.data,
                                   link->key_epoch.len);
    ngx_http_webhook_sse_redis_arg(5, link->key_log.data, link->key_log.len);

    if (idem->key.len) {
        pub->key.data = p;
        p = ngx_cpymem(p, link->key_idempotency.data,
                       link->key_idempotency.len);
        p = ngx_cpymem(p, idem->key.data, idem->key.len);
        pub->key.len = p - pub->key.data;
    }

    ngx_http_webhook_sse_redis_arg(6, pub->key.data ? (char *) pub->key.data
                                                    : "",
                                   pub->key.len);

    ngx_http_webhook_sse_store_lock(zone);

    ngx_http_webhook_sse_redis_arg(7, p,
                                   ngx_sprintf(p, "%uL", sh->epoch) - p);
    p += pub->argvlen[7];
    ngx_http_webhook_sse_redis_arg(8, p,
                                   ngx_sprintf(p, "%uL", sh->last_seq) - p);
    p += pub->argvlen[8];

    ngx_http_webhook_sse_store_unlock(zone);

    ngx_http_webhook_sse_redis_arg(9, p,
                                   ngx_sprintf(p, "%L",
                                               ngx_http_webhook_sse_now())
                                   - p);
    p += pub->argvlen[9];

    ngx_http_webhook_sse_redis_arg(10, session->len ? (char *) session->data
                                                    : "",
                                   session->len);

    ngx_http_webhook_sse_redis_arg(11, p, 0);
    p = ngx_cpymem(p, extra->data, extra->len);

    if (extra->len && members->len) {
        *p++ = ',';
    }

    p = ngx_cpymem(p, members->data, members->len);
    pub->argvlen[11] = p - (u_char *) pub->argv[11];

    ngx_http_webhook_sse_redis_arg(12, p, 0);

    if (idem->key.len) {
        p = ngx_hex_dump(p, idem->digest, NGX_HTTP_WEBHOOK_SSE_DIGEST_LEN);
    }

    pub->argvlen[12] = p - (u_char *) pub->argv[12];

    ngx_http_webhook_sse_redis_arg(13, p,
                                   ngx_sprintf(p, "%M",
                                               idem->window ? idem->window
                                                            : 1)
                                   - p);
    p += pub->argvlen[13];

    ngx_http_webhook_sse_redis_arg(14, p,
                                   ngx_sprintf(p, "%ui", link->log_size) - p);
    p += pub->argvlen[14];

    ngx_http_webhook_sse_redis_arg(15, link->key_events.data,
                                   link->key_events.len);

#undef ngx_http_webhook_sse_redis_arg

    /* the session lives in r->pool: the reply may come later */
    if (session->len) {
        pub->argv[10] = (char *) p;
        p = ngx_cpymem(p, session->data, session->len);
    }

    if (redisAsyncCommandArgv(link->cmd.ac,
                              ngx_http_webhook_sse_redis_publish_reply, pub,
                              pub->argc, pub->argv, pub->argvlen)
        != REDIS_OK)
    {
        ngx_free(pub);
        return ngx_http_webhook_sse_send_error(r,
                                               NGX_HTTP_SERVICE_UNAVAILABLE,
                                               "Redis is not reachable: the "
                                               "message was not stored");
    }

    pub->timer.handler = ngx_http_webhook_sse_redis_publish_timeout;
    pub->timer.data = pub;
    pub->timer.log = r->connection->log;

    ngx_add_timer(&pub->timer, link->timeout);

    r->main->count++;

    return NGX_DONE;
}


static void
ngx_http_webhook_sse_redis_publish_reply(redisAsyncContext *ac, void *r,
    void *privdata)
{
    redisReply                        *reply = r;
    ngx_int_t                          rc;
    ngx_http_request_t                *req;
    ngx_http_webhook_sse_redis_pub_t  *pub;

    pub = privdata;
    req = pub->request;

    if (pub->timer.timer_set) {
        ngx_del_timer(&pub->timer);
    }

    if (req == NULL || pub->link->exiting) {
        /* answered already (timed out), or the worker is leaving */
        ngx_free(pub);
        return;
    }

    if (reply && reply->type == REDIS_REPLY_ERROR
        && ngx_strncmp(reply->str, "NOSCRIPT", 8) == 0 && !pub->retried
        && pub->link->cmd.ac)
    {
        /* the scripts were flushed: send it whole this time */

        pub->retried = 1;
        pub->argv[0] = "EVAL";
        pub->argvlen[0] = 4;
        pub->argv[1] = (char *) ngx_http_webhook_sse_redis_scripts[
                                  NGX_HTTP_WEBHOOK_SSE_REDIS_PUBLISH].data;
        pub->argvlen[1] = ngx_http_webhook_sse_redis_scripts[
                                  NGX_HTTP_WEBHOOK_SSE_REDIS_PUBLISH].len;

        if (redisAsyncCommandArgv(pub->link->cmd.ac,
                                  ngx_http_webhook_sse_redis_publish_reply,
                                  pub, pub->argc, pub->argv, pub->argvlen)
            == REDIS_OK)
        {
            ngx_add_timer(&pub->timer, pub->link->timeout);
            return;
        }
    }

    rc = ngx_http_webhook_sse_redis_answer(req, pub, reply);

    ngx_http_webhook_sse_redis_finish(pub, rc);
}


static void
ngx_http_webhook_sse_redis_publish_timeout(ngx_event_t *ev)
{
    ngx_int_t                          rc;
    ngx_uint_t                         level;
    ngx_http_request_t                *r;
    ngx_http_webhook_sse_redis_pub_t  *pub;

    pub = ev->data;
    r = pub->request;

    /* ngx_log_error() evaluates its level twice */
    level = ngx_http_webhook_sse_redis_level(pub->link, NGX_LOG_WARN);

    ngx_log_error(level, r->connection->log, 0,
                  "webhook redis \"%V\": no reply to a publish in %M ms",
                  &pub->link->zone->shm_zone->shm.name, pub->link->timeout);

    rc = ngx_http_webhook_sse_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                         "Redis did not answer in time: "
                                         "the message may or may not be "
                                         "stored; retry with the same "
                                         "Idempotency-Key");

    /* the reply, when it comes, finds no request and frees the rest */
    pub->request = NULL;

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(r->connection);
}


static void
ngx_http_webhook_sse_redis_finish(ngx_http_webhook_sse_redis_pub_t *pub,
    ngx_int_t rc)
{
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = pub->request;
    c = r->connection;

    ngx_free(pub);

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


/* the script's reply {outcome, epoch, seq, time} as the publish's answer */

static ngx_int_t
ngx_http_webhook_sse_redis_answer(ngx_http_request_t *r,
    ngx_http_webhook_sse_redis_pub_t *pub, redisReply *reply)
{
    uint64_t                       outcome, epoch, seq;
    int64_t                        time;
    ngx_str_t                     *name, session, fields, id, none;
    ngx_uint_t                     level;
    ngx_http_webhook_sse_ctx_t    *ctx;

    name = &pub->link->zone->shm_zone->shm.name;

    if (reply == NULL) {
        return ngx_http_webhook_sse_send_error(r,
                                               NGX_HTTP_SERVICE_UNAVAILABLE,
                                               "the connection to Redis was "
                                               "lost: the message may or may "
                                               "not be stored; retry with the "
                                               "same Idempotency-Key");
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        if (ngx_strncmp(reply->str, "OOM", 3) == 0) {
            level = ngx_http_webhook_sse_redis_level(pub->link,
                                                     NGX_LOG_WARN);

            ngx_log_error(level, r->connection->log, 0,
                          "webhook redis \"%V\": Redis is out of memory "
                          "(maxmemory): %s", name, reply->str);

            return ngx_http_webhook_sse_send_error(r,
                                                NGX_HTTP_SERVICE_UNAVAILABLE,
                                                "Redis is out of memory: the "
                                                "message was not stored");
        }

        level = ngx_http_webhook_sse_redis_level(pub->link, NGX_LOG_ERR);

        ngx_log_error(level, r->connection->log, 0,
                      "webhook redis \"%V\": a publish failed: %s", name,
                      reply->str);

        return ngx_http_webhook_sse_send_error(r,
                                               NGX_HTTP_SERVICE_UNAVAILABLE,
                                               "Redis refused the message: "
                                               "it was not stored");
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 4) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "webhook redis \"%V\": unexpected reply to a publish",
                      name);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (pub->link->troubled) {
        pub->link->troubled = 0;

        ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                      "webhook redis \"%V\": publishes are acknowledged "
                      "again", name);
    }

    outcome = ngx_http_webhook_sse_redis_number(reply->element[0]);
    epoch = ngx_http_webhook_sse_redis_number(reply->element[1]);
    seq = ngx_http_webhook_sse_redis_number(reply->element[2]);
    time = (int64_t) ngx_http_webhook_sse_redis_number(reply->element[3]);

    if (outcome == NGX_HTTP_WEBHOOK_SSE_KEY_CONFLICT) {
        ngx_str_set(&r->headers_out.status_line, "422 Unprocessable Entity");

        return ngx_http_webhook_sse_send_error(r, 422,
                                               "this Idempotency-Key was used "
                                               "for a different request");
    }

    if (outcome == NGX_HTTP_WEBHOOK_SSE_KEY_REPLAYED) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "webhook publish repeated with idempotency key \"%*s\":"
                      " answered with the first one's message",
                      pub->key.len - pub->link->key_idempotency.len,
                      pub->key.data + pub->link->key_idempotency.len);

        if (ngx_http_webhook_sse_add_header(r, "Idempotent-Replayed", "true")
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_webhook_sse_module);

    ctx->message_id_len = ngx_http_webhook_sse_format_id(ctx->message_id,
                                                         epoch, seq);
    ctx->message_time = time;

    /* webhook_forward: the host that took the publish delivers it */
    if (outcome == NGX_HTTP_WEBHOOK_SSE_KEY_NEW) {
        session.data = (u_char *) pub->argv[10];
        session.len = pub->argvlen[10];
        fields.data = (u_char *) pub->argv[11];
        fields.len = pub->argvlen[11];
        id.data = ctx->message_id;
        id.len = ctx->message_id_len;
        ngx_str_null(&none);

        ngx_http_webhook_sse_outbox_enqueue(r, &session, &id, time, &fields,
                                            &none);
    }

    return ngx_http_webhook_sse_publish_answer(r,
                   ngx_http_get_module_loc_conf(r, ngx_http_webhook_sse_module),
                   ctx);
}


static uint64_t
ngx_http_webhook_sse_redis_number(redisReply *reply)
{
    size_t    i;
    uint64_t  n;

    if (reply->type == REDIS_REPLY_INTEGER) {
        return reply->integer > 0 ? (uint64_t) reply->integer : 0;
    }

    if (reply->type != REDIS_REPLY_STRING) {
        return 0;
    }

    n = 0;

    /* "<seq>-0" stream ids too: the number before the dash */
    for (i = 0; i < reply->len && reply->str[i] != '-'; i++) {
        if (reply->str[i] < '0' || reply->str[i] > '9'
            || n > NGX_MAX_INT_T_VALUE / 10)
        {
            return 0;
        }

        n = n * 10 + (reply->str[i] - '0');
    }

    return n;
}


/*
 * The level of a line about a refused or unanswered publish: the first
 * since publishes last worked is said at "level", the others at info.
 */

static ngx_uint_t
ngx_http_webhook_sse_redis_level(ngx_http_webhook_sse_redis_t *link,
    ngx_uint_t level)
{
    if (link->troubled) {
        return NGX_LOG_INFO;
    }

    link->troubled = 1;

    return level;
}


/* streams wait (a short retry) until the zone holds the cluster's ids */

ngx_uint_t
ngx_http_webhook_sse_redis_ready(ngx_http_webhook_sse_zone_t *zone)
{
    ngx_http_webhook_sse_redis_t  *link;

    link = zone->redis;

    if (link == NULL) {
        return 1;
    }

    return link->shared->synced_epoch != 0
           && link->shared->synced_epoch == zone->sh->epoch;
}


/*
 * How far past this host's newest message a sequence number of the cluster
 * may be that the host has not received yet: no more than a host may lag
 * behind (not a made-up one far ahead).
 */

uint64_t
ngx_http_webhook_sse_redis_ahead(ngx_http_webhook_sse_zone_t *zone)
{
    return zone->redis ? NGX_HTTP_WEBHOOK_SSE_REDIS_AHEAD : 0;
}


u_char *
ngx_http_webhook_sse_redis_status(ngx_http_webhook_sse_zone_t *zone,
    u_char *p, u_char *last)
{
    ngx_http_webhook_sse_redis_t  *link;

    link = zone->redis;

    if (link == NULL) {
        return p;
    }

    return ngx_slprintf(p, last,
                        ",\"cluster\":{\"redis\":\"%s\",\"hosts\":%uA,"
                        "\"streams\":%uA}",
                        link->shared->up ? "up" : "down",
                        link->shared->cluster_hosts,
                        link->shared->cluster_streams);
}


u_char *
ngx_http_webhook_sse_redis_prometheus(ngx_http_webhook_sse_zone_t *zone,
    u_char *p, u_char *last)
{
    ngx_str_t                     *name;
    ngx_http_webhook_sse_redis_t  *link;

    link = zone->redis;

    if (link == NULL) {
        return p;
    }

    name = &zone->shm_zone->shm.name;

    return ngx_slprintf(p, last,
                        "# TYPE webhook_redis_up gauge\n"
                        "webhook_redis_up{zone=\"%V\"} %d\n"
                        "# TYPE webhook_cluster_hosts gauge\n"
                        "webhook_cluster_hosts{zone=\"%V\"} %uA\n"
                        "# TYPE webhook_cluster_streams gauge\n"
                        "webhook_cluster_streams{zone=\"%V\"} %uA\n",
                        name, link->shared->up ? 1 : 0,
                        name, link->shared->cluster_hosts,
                        name, link->shared->cluster_streams);
}


/*
 * Presence across hosts: this worker's streams of a session changed
 * (presence.c, for every stream start and end of a session).  The count
 * in worker memory is the truth; the worker's hash in Redis follows it in
 * order on the command connection, and is written whole again when that
 * connection is (re)made.
 */

void
ngx_http_webhook_sse_redis_stream_opened(ngx_http_webhook_sse_zone_t *zone,
    ngx_str_t *session, ngx_uint_t streams, int64_t since)
{
    uint32_t                             hash;
    ngx_http_webhook_sse_redis_t        *link;
    ngx_http_webhook_sse_redis_count_t  *count;

    link = zone->redis;

    if (link->worker_key.data == NULL || link->exiting) {
        return;
    }

    hash = ngx_crc32_short(session->data, session->len);

    count = (ngx_http_webhook_sse_redis_count_t *)
                ngx_str_rbtree_lookup(&link->counts, session, hash);

    if (count == NULL) {
        count = ngx_alloc(sizeof(ngx_http_webhook_sse_redis_count_t)
                          + session->len, link->log);
        if (count == NULL) {
            return;
        }

        count->sn.node.key = hash;
        count->sn.str.len = session->len;
        count->sn.str.data = count->data;
        ngx_memcpy(count->data, session->data, session->len);

        ngx_rbtree_insert(&link->counts, &count->sn.node);
    }

    count->streams = streams;
    count->since = since;

    ngx_http_webhook_sse_redis_count_send(link, session, count);
}


/* "since": when the oldest stream left opened, 0 when none is left */

void
ngx_http_webhook_sse_redis_stream_closed(ngx_http_webhook_sse_zone_t *zone,
    ngx_str_t *session, int64_t since)
{
    ngx_http_webhook_sse_redis_t        *link;
    ngx_http_webhook_sse_redis_count_t  *count;

    link = zone->redis;

    if (link->worker_key.data == NULL || link->exiting) {
        return;
    }

    count = (ngx_http_webhook_sse_redis_count_t *)
                ngx_str_rbtree_lookup(&link->counts, session,
                                      ngx_crc32_short(session->data,
                                                      session->len));
    if (count == NULL) {
        return;
    }

    if (since == 0) {
        ngx_rbtree_delete(&link->counts, &count->sn.node);
        ngx_free(count);

        ngx_http_webhook_sse_redis_count_send(link, session, NULL);
        return;
    }

    if (count->streams > 1) {
        count->streams--;
    }

    count->since = since;

    ngx_http_webhook_sse_redis_count_send(link, session, count);
}


/* one session's count into the worker's hash; NULL: none left */

static void
ngx_http_webhook_sse_redis_count_send(ngx_http_webhook_sse_redis_t *link,
    ngx_str_t *session, ngx_http_webhook_sse_redis_count_t *count)
{
    u_char       value[NGX_INT_T_LEN + NGX_INT64_LEN + 1];
    const char  *argv[7];
    size_t       argvlen[7];

    if (!link->cmd.ready || link->cmd.ac == NULL) {
        /* written whole when the connection is back */
        return;
    }

    ngx_http_webhook_sse_redis_evalsha(link, NGX_HTTP_WEBHOOK_SSE_REDIS_COUNT,
                                       "1", argv, argvlen);
    argv[3] = (char *) link->worker_key.data;
    argvlen[3] = link->worker_key.len;
    argv[4] = (char *) session->data;
    argvlen[4] = session->len;
    argv[5] = (char *) value;
    argvlen[5] = count ? (size_t) (ngx_sprintf(value, "%ui %L", count->streams,
                                               count->since)
                                   - value)
                       : 0;
    argv[6] = NGX_HTTP_WEBHOOK_SSE_REDIS_REPORT_TTL;
    argvlen[6] = ngx_strlen(argv[6]);

    (void) redisAsyncCommandArgv(link->cmd.ac,
                                 ngx_http_webhook_sse_redis_count_reply,
                                 (void *) link->counts_generation, 7, argv,
                                 argvlen);
}


/*
 * A count that did not get into Redis: the scripts were flushed (load
 * them again), or Redis refused it; either way the hash is written whole
 * again at the next report (not at once: a refusal that lasts would make
 * that a loop), once for all the replies of the same generation.
 */

static void
ngx_http_webhook_sse_redis_count_reply(redisAsyncContext *ac, void *r,
    void *privdata)
{
    redisReply                         *reply = r;
    ngx_http_webhook_sse_redis_t       *link;
    ngx_http_webhook_sse_redis_conn_t  *conn;

    conn = ac->data;
    link = conn->link;

    if (reply == NULL || reply->type != REDIS_REPLY_ERROR || conn->ac != ac
        || link->exiting
        || (ngx_uint_t) privdata != link->counts_generation)
    {
        return;
    }

    /* the replies still to come of this generation change nothing */
    link->counts_generation++;
    link->counts_lost = 1;

    if (ngx_strncmp(reply->str, "NOSCRIPT", 8) == 0) {
        ngx_http_webhook_sse_redis_reload(conn);
        return;
    }

    ngx_log_error(NGX_LOG_WARN, link->log, 0,
                  "webhook redis \"%V\": a presence count was refused: %s",
                  &link->zone->shm_zone->shm.name, reply->str);
}


/* the worker's hash written whole: after a (re)connection, or a refusal */

static void
ngx_http_webhook_sse_redis_counts_resync(ngx_http_webhook_sse_redis_t *link)
{
    const char                          *argv[2];
    size_t                               argvlen[2];
    ngx_rbtree_node_t                   *node, *root, *sentinel;
    ngx_http_webhook_sse_redis_count_t  *count;

    if (link->worker_key.data == NULL || link->cmd.ac == NULL
        || !link->cmd.ready)
    {
        return;
    }

    link->counts_generation++;
    link->counts_lost = 0;

    argv[0] = "DEL";
    argvlen[0] = 3;
    argv[1] = (char *) link->worker_key.data;
    argvlen[1] = link->worker_key.len;

    (void) redisAsyncCommandArgv(link->cmd.ac, NULL, NULL, 2, argv, argvlen);

    sentinel = link->counts.sentinel;
    root = link->counts.root;

    if (root != sentinel) {
        for (node = ngx_rbtree_min(root, sentinel);
             node;
             node = ngx_rbtree_next(&link->counts, node))
        {
            count = (ngx_http_webhook_sse_redis_count_t *) node;
            ngx_http_webhook_sse_redis_count_send(link, &count->sn.str, count);
        }
    }

    ngx_http_webhook_sse_redis_alive_send(link);

    if (!link->alive.timer_set) {
        ngx_add_timer(&link->alive, NGX_HTTP_WEBHOOK_SSE_REDIS_REPORT);
    }
}


static void
ngx_http_webhook_sse_redis_alive_handler(ngx_event_t *ev)
{
    ngx_http_webhook_sse_redis_t  *link;

    link = ev->data;

    if (link->exiting || ngx_terminate) {
        return;
    }

    if (link->counts_lost) {
        /* it says it is alive too, and sets the timer again */
        ngx_http_webhook_sse_redis_counts_resync(link);
        return;
    }

    ngx_add_timer(ev, NGX_HTTP_WEBHOOK_SSE_REDIS_REPORT);

    ngx_http_webhook_sse_redis_alive_send(link);
}


static void
ngx_http_webhook_sse_redis_alive_send(ngx_http_webhook_sse_redis_t *link)
{
    const char  *argv[7];
    size_t       argvlen[7];

    if (!link->cmd.ready || link->cmd.ac == NULL) {
        return;
    }

    ngx_http_webhook_sse_redis_evalsha(link, NGX_HTTP_WEBHOOK_SSE_REDIS_ALIVE,
                                       "2", argv, argvlen);
    argv[3] = (char *) link->key_workers.data;
    argvlen[3] = link->key_workers.len;
    argv[4] = (char *) link->worker_key.data;
    argvlen[4] = link->worker_key.len;
    argv[5] = (char *) link->worker_id.data;
    argvlen[5] = link->worker_id.len;
    argv[6] = NGX_HTTP_WEBHOOK_SSE_REDIS_REPORT_TTL;
    argvlen[6] = ngx_strlen(argv[6]);

    /* a NOSCRIPT reply is the count's business: it writes the hash again */
    (void) redisAsyncCommandArgv(link->cmd.ac,
                                 ngx_http_webhook_sse_redis_count_reply,
                                 (void *) link->counts_generation, 7, argv,
                                 argvlen);
}


/*
 * A worker leaving (reload, stop) takes its counts out of Redis at once,
 * as far as one write without waiting allows; otherwise they go when its
 * last report runs out.
 */

static void
ngx_http_webhook_sse_redis_leave(ngx_http_webhook_sse_redis_t *link)
{
    const char  *argv[3];
    size_t       argvlen[3];

    if (link->worker_key.data == NULL || link->cmd.ac == NULL
        || !link->cmd.ready)
    {
        return;
    }

    argv[0] = "ZREM";
    argvlen[0] = 4;
    argv[1] = (char *) link->key_workers.data;
    argvlen[1] = link->key_workers.len;
    argv[2] = (char *) link->worker_id.data;
    argvlen[2] = link->worker_id.len;

    (void) redisAsyncCommandArgv(link->cmd.ac, NULL, NULL, 3, argv, argvlen);

    argv[0] = "DEL";
    argvlen[0] = 3;
    argv[1] = (char *) link->worker_key.data;
    argvlen[1] = link->worker_key.len;

    (void) redisAsyncCommandArgv(link->cmd.ac, NULL, NULL, 2, argv, argvlen);

    /* a non-blocking write; on an error hiredis frees the context */
    redisAsyncHandleWrite(link->cmd.ac);
}


/*
 * A presence request in Redis mode: the sessions' streams on the other
 * hosts' live workers are added to "info" (this host's, from its zone,
 * are there already).  NGX_DONE: "answer" is called with the outcome when
 * the reply comes or in timeout=, and the request finalized with what it
 * returns; NGX_DECLINED: the link is down now.
 */

ngx_int_t
ngx_http_webhook_sse_redis_presence(ngx_http_request_t *r,
    ngx_http_webhook_sse_zone_t *zone, ngx_str_t *sessions,
    ngx_http_webhook_sse_presence_info_t *info, ngx_uint_t n,
    ngx_http_webhook_sse_redis_presence_pt answer, void *data)
{
    u_char                              *p;
    size_t                               len;
    ngx_uint_t                           i, argc;
    ngx_http_webhook_sse_redis_t        *link;
    ngx_http_webhook_sse_redis_query_t  *q;

    link = zone->redis;

    if (!link->cmd.ready || link->cmd.ac == NULL
        || link->worker_key.data == NULL)
    {
        return NGX_DECLINED;
    }

    argc = 6 + n;

    len = sizeof(ngx_http_webhook_sse_redis_query_t)
          + argc * (sizeof(char *) + sizeof(size_t));

    for (i = 0; i < n; i++) {
        len += sessions[i].len;
    }

    /* not in r->pool: the reply may come after a timeout ended it */
    q = ngx_alloc(len, r->connection->log);
    if (q == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(q, sizeof(ngx_http_webhook_sse_redis_query_t));

    q->request = r;
    q->link = link;
    q->info = info;
    q->n = n;
    q->answer = answer;
    q->data = data;
    q->argc = argc;
    q->argv = (const char **) &q[1];
    q->argvlen = (size_t *) (q->argv + argc);

    ngx_http_webhook_sse_redis_evalsha(link,
                                       NGX_HTTP_WEBHOOK_SSE_REDIS_PRESENCE,
                                       "1", q->argv, q->argvlen);
    q->argv[3] = (char *) link->key_workers.data;
    q->argvlen[3] = link->key_workers.len;
    /* "<host>/" */
    q->argv[4] = (char *) link->worker_id.data;
    q->argvlen[4] = link->host_id_len + 1;
    q->argv[5] = (char *) link->key_presence.data;
    q->argvlen[5] = link->key_presence.len;

    p = (u_char *) (q->argvlen + argc);

    for (i = 0; i < n; i++) {
        q->argv[6 + i] = (char *) p;
        q->argvlen[6 + i] = sessions[i].len;
        p = ngx_cpymem(p, sessions[i].data, sessions[i].len);
    }

    if (redisAsyncCommandArgv(link->cmd.ac,
                              ngx_http_webhook_sse_redis_presence_reply, q,
                              q->argc, q->argv, q->argvlen)
        != REDIS_OK)
    {
        ngx_free(q);
        return NGX_DECLINED;
    }

    q->timer.handler = ngx_http_webhook_sse_redis_presence_timeout;
    q->timer.data = q;
    q->timer.log = r->connection->log;

    ngx_add_timer(&q->timer, link->timeout);

    r->main->count++;

    return NGX_DONE;
}


static void
ngx_http_webhook_sse_redis_presence_reply(redisAsyncContext *ac, void *r,
    void *privdata)
{
    redisReply                          *reply = r;
    int64_t                              since;
    uint64_t                             streams;
    ngx_int_t                            rc;
    ngx_uint_t                           i;
    ngx_connection_t                    *c;
    ngx_http_request_t                  *req;
    ngx_http_webhook_sse_redis_t        *link;
    ngx_http_webhook_sse_redis_query_t  *q;

    q = privdata;
    req = q->request;
    link = q->link;

    if (q->timer.timer_set) {
        ngx_del_timer(&q->timer);
    }

    if (req == NULL || link->exiting) {
        /* answered already (timed out), or the worker is leaving */
        ngx_free(q);
        return;
    }

    if (reply && reply->type == REDIS_REPLY_ERROR
        && ngx_strncmp(reply->str, "NOSCRIPT", 8) == 0 && !q->retried
        && link->cmd.ac)
    {
        /* the scripts were flushed: load them again, then ask again */

        q->retried = 1;

        ngx_http_webhook_sse_redis_reload(&link->cmd);

        if (redisAsyncCommandArgv(link->cmd.ac,
                                  ngx_http_webhook_sse_redis_presence_reply,
                                  q, q->argc, q->argv, q->argvlen)
            == REDIS_OK)
        {
            ngx_add_timer(&q->timer, link->timeout);
            return;
        }
    }

    rc = NGX_ERROR;

    if (reply && reply->type == REDIS_REPLY_ARRAY
        && reply->elements == 2 * q->n)
    {
        for (i = 0; i < q->n; i++) {
            streams = ngx_http_webhook_sse_redis_number(
                                                     reply->element[2 * i]);
            since = (int64_t) ngx_http_webhook_sse_redis_number(
                                                 reply->element[2 * i + 1]);
            if (streams == 0) {
                continue;
            }

            q->info[i].streams += streams;

            if (q->info[i].since == 0 || since < q->info[i].since) {
                q->info[i].since = since;
            }
        }

        rc = NGX_OK;

    } else if (reply) {
        ngx_log_error(NGX_LOG_ERR, req->connection->log, 0,
                      "webhook redis \"%V\": presence query failed: %s",
                      &link->zone->shm_zone->shm.name,
                      reply->type == REDIS_REPLY_ERROR ? reply->str
                                                       : "unexpected reply");
    }

    c = req->connection;

    rc = q->answer(req, q->data, rc);

    ngx_free(q);

    ngx_http_finalize_request(req, rc);
    ngx_http_run_posted_requests(c);
}


static void
ngx_http_webhook_sse_redis_presence_timeout(ngx_event_t *ev)
{
    ngx_int_t                            rc;
    ngx_uint_t                           level;
    ngx_connection_t                    *c;
    ngx_http_request_t                  *r;
    ngx_http_webhook_sse_redis_query_t  *q;

    q = ev->data;
    r = q->request;
    c = r->connection;

    /* ngx_log_error() evaluates its level twice */
    level = ngx_http_webhook_sse_redis_level(q->link, NGX_LOG_WARN);

    ngx_log_error(level, c->log, 0,
                  "webhook redis \"%V\": no reply to a presence query in "
                  "%M ms", &q->link->zone->shm_zone->shm.name,
                  q->link->timeout);

    rc = q->answer(r, q->data, NGX_ERROR);

    /* the reply, when it comes, finds no request and frees the rest */
    q->request = NULL;

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}
