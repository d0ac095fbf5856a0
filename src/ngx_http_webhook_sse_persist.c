
/*
 * nginx-webhook-sse: webhook_zone ... persist=PATH.
 *
 * When nginx stops (the master's exit, all workers gone) the zone's
 * retained messages, its epoch and its last sequence number are written
 * to PATH: to PATH.tmp first, then renamed, so PATH is always whole.  On
 * the next start the file is loaded into the new zone, so ids stay valid
 * and a stream resumes by Last-Event-ID across the restart.  A file that
 * is not ours, truncated or altered (a CRC32 guards it) is logged once and
 * ignored.  Reading and writing are bounded by the zone's size.
 *
 *     nginx-webhook-sse persist 1
 *     zone NAME
 *     epoch E
 *     last SEQ
 *     count N
 *     SEQ TIME SESSION_LEN FIELDS_LEN\n SESSION FIELDS \n     (N times)
 *     end CRC32\n          (of everything before "end")
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_webhook_sse_module.h"
#include "ngx_http_webhook_sse_persist.h"


#define NGX_HTTP_WEBHOOK_SSE_PERSIST_MAGIC  "nginx-webhook-sse persist 1\n"


static u_char *ngx_http_webhook_sse_persist_fields(
    ngx_http_webhook_sse_msg_t *msg, size_t *len);
static ngx_int_t ngx_http_webhook_sse_persist_parse(
    ngx_http_webhook_sse_zone_t *zone, u_char *p, u_char *last,
    const char **error, ngx_uint_t *loaded);
static u_char *ngx_http_webhook_sse_persist_number(u_char *p, u_char *last,
    char *name, u_char end, uint64_t *n);


/* webhook_zone's persist=PATH */

char *
ngx_http_webhook_sse_persist_conf(ngx_conf_t *cf,
    ngx_http_webhook_sse_zone_t *zone, ngx_str_t *value)
{
    ngx_str_t  path;

    path.data = value->data + sizeof("persist=") - 1;
    path.len = value->len - (sizeof("persist=") - 1);

    if (path.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid persist \"%V\": a file name expected",
                           value);
        return NGX_CONF_ERROR;
    }

    if (ngx_conf_full_name(cf->cycle, &path, 0) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    zone->persist = path;

    return NGX_CONF_OK;
}


/*
 * In the master, all workers gone: copy the zone out under its lock, then
 * write the copy.
 */

void
ngx_http_webhook_sse_persist_save(ngx_cycle_t *cycle,
    ngx_http_webhook_sse_zone_t *zone)
{
    u_char                        *buf, *p, *fields, *tmp;
    u_char                         head[256], tail[32];
    size_t                         size, len, flen, hlen, tlen;
    ssize_t                        n;
    uint32_t                       crc;
    uint64_t                       epoch, last_seq;
    ngx_fd_t                       fd;
    ngx_uint_t                     count;
    ngx_queue_t                   *q;
    ngx_http_webhook_sse_msg_t    *msg;
    ngx_http_webhook_sse_shctx_t  *sh;

    sh = zone->sh;

    if (zone->persist.len == 0 || sh == NULL) {
        return;
    }

    /* the records are smaller than the messages in the zone */
    size = zone->shm_zone->shm.size;

    buf = ngx_alloc(size, cycle->log);
    tmp = ngx_alloc(zone->persist.len + sizeof(".tmp"), cycle->log);

    if (buf == NULL || tmp == NULL) {
        ngx_free(buf);
        ngx_free(tmp);
        return;
    }

    ngx_sprintf(tmp, "%V.tmp%Z", &zone->persist);

    p = buf;
    count = 0;

    ngx_http_webhook_sse_store_lock(zone);

    ngx_http_webhook_sse_store_expire(zone, ngx_http_webhook_sse_now());

    epoch = sh->epoch;
    last_seq = sh->last_seq;

    for (q = ngx_queue_head(&sh->messages);
         q != ngx_queue_sentinel(&sh->messages);
         q = ngx_queue_next(q))
    {
        msg = ngx_queue_data(q, ngx_http_webhook_sse_msg_t, zone_queue);

        fields = ngx_http_webhook_sse_persist_fields(msg, &flen);
        if (fields == NULL) {
            continue;
        }

        len = (msg->channel->id == NGX_HTTP_WEBHOOK_SSE_BROADCAST)
              ? 0 : msg->channel->len;

        if ((size_t) (buf + size - p) < 4 * NGX_INT64_LEN + len + flen + 8) {
            break;
        }

        p = ngx_sprintf(p, "%uL %L %uz %uz\n", msg->seq, msg->time, len,
                        flen);
        p = ngx_cpymem(p, msg->channel->key, len);
        p = ngx_cpymem(p, fields, flen);
        *p++ = '\n';
        count++;
    }

    ngx_http_webhook_sse_store_unlock(zone);

    hlen = ngx_snprintf(head, sizeof(head),
                        NGX_HTTP_WEBHOOK_SSE_PERSIST_MAGIC
                        "zone %V\nepoch %uL\nlast %uL\ncount %ui\n",
                        &zone->shm_zone->shm.name, epoch, last_seq, count)
           - head;

    ngx_crc32_init(crc);
    ngx_crc32_update(&crc, head, hlen);
    ngx_crc32_update(&crc, buf, p - buf);
    ngx_crc32_final(crc);

    tlen = ngx_sprintf(tail, "end %08xD\n", crc) - tail;

    fd = ngx_open_file(tmp, NGX_FILE_WRONLY, NGX_FILE_TRUNCATE, 0600);

    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_ERR, cycle->log, ngx_errno,
                      "webhook zone \"%V\": " ngx_open_file_n " \"%s\" "
                      "failed", &zone->shm_zone->shm.name, tmp);
        goto done;
    }

    n = ngx_write_fd(fd, head, hlen);

    if (n == (ssize_t) hlen) {
        n = ngx_write_fd(fd, buf, p - buf);

        if (n == p - buf) {
            n = ngx_write_fd(fd, tail, tlen);
            n = (n == (ssize_t) tlen) ? 0 : -1;

        } else {
            n = -1;
        }

    } else {
        n = -1;
    }

    if (n != 0 || fsync(fd) == -1) {
        ngx_log_error(NGX_LOG_ERR, cycle->log, ngx_errno,
                      "webhook zone \"%V\": writing \"%s\" failed",
                      &zone->shm_zone->shm.name, tmp);
        (void) ngx_close_file(fd);
        (void) ngx_delete_file(tmp);
        goto done;
    }

    (void) ngx_close_file(fd);

    if (ngx_rename_file(tmp, zone->persist.data) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_ERR, cycle->log, ngx_errno,
                      "webhook zone \"%V\": " ngx_rename_file_n " \"%s\" to "
                      "\"%V\" failed", &zone->shm_zone->shm.name, tmp,
                      &zone->persist);
        (void) ngx_delete_file(tmp);
        goto done;
    }

    ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0,
                  "webhook zone \"%V\": %ui messages saved to \"%V\"",
                  &zone->shm_zone->shm.name, count, &zone->persist);

done:

    ngx_free(buf);
    ngx_free(tmp);
}


/*
 * What follows the timestamp in a stored event: "id: ID\ndata: {..,
 * "timestamp":T,FIELDS}\n\n".
 */

static u_char *
ngx_http_webhook_sse_persist_fields(ngx_http_webhook_sse_msg_t *msg,
    size_t *len)
{
    u_char  *p, *last;

    static u_char  ts[] = "\",\"timestamp\":";

    p = msg->data;
    last = msg->data + msg->len;

    if (msg->len < sizeof(ts) + 3) {
        return NULL;
    }

    p = ngx_strlcasestrn(p, last, ts, sizeof(ts) - 1 - 1);
    if (p == NULL) {
        return NULL;
    }

    p += sizeof(ts) - 1;

    while (p < last && (*p == '-' || (*p >= '0' && *p <= '9'))) {
        p++;
    }

    last -= 3;

    if (p > last) {
        return NULL;
    }

    if (p < last && *p == ',') {
        p++;
    }

    *len = last - p;

    return p;
}


/*
 * At the first start (in the master, before the workers), into a zone
 * that is still empty.
 */

void
ngx_http_webhook_sse_persist_load(ngx_cycle_t *cycle,
    ngx_http_webhook_sse_zone_t *zone)
{
    u_char                        *buf;
    size_t                         max;
    ssize_t                        n;
    ngx_fd_t                       fd;
    ngx_err_t                      err;
    ngx_uint_t                     loaded;
    const char                    *error;
    ngx_file_info_t                fi;
    ngx_http_webhook_sse_shctx_t  *sh;

    sh = zone->sh;

    if (zone->persist.len == 0 || sh == NULL) {
        return;
    }

    if (sh->last_seq || sh->retained) {
        return;
    }

    fd = ngx_open_file(zone->persist.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (fd == NGX_INVALID_FILE) {
        err = ngx_errno;

        if (err != NGX_ENOENT) {
            ngx_log_error(NGX_LOG_ERR, cycle->log, err,
                          "webhook zone \"%V\": ignoring \"%V\": "
                          ngx_open_file_n " failed",
                          &zone->shm_zone->shm.name, &zone->persist);
        }

        return;
    }

    buf = NULL;
    error = NULL;

    max = zone->shm_zone->shm.size * 2 + 4096;

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        error = "cannot stat it";
        goto done;
    }

    if ((size_t) ngx_file_size(&fi) > max) {
        error = "larger than the zone could have written";
        goto done;
    }

    buf = ngx_alloc((size_t) ngx_file_size(&fi) + 1, cycle->log);
    if (buf == NULL) {
        goto done;
    }

    n = ngx_read_fd(fd, buf, (size_t) ngx_file_size(&fi));

    if (n != (ssize_t) ngx_file_size(&fi)) {
        error = "cannot read it";
        goto done;
    }

    loaded = 0;

    if (ngx_http_webhook_sse_persist_parse(zone, buf, buf + n, &error,
                                           &loaded)
        == NGX_OK)
    {
        ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0,
                      "webhook zone \"%V\": %ui messages loaded from "
                      "\"%V\", epoch %uL, last id %uL",
                      &zone->shm_zone->shm.name, loaded, &zone->persist,
                      sh->epoch, sh->last_seq);
    }

done:

    if (error) {
        ngx_log_error(NGX_LOG_ERR, cycle->log, 0,
                      "webhook zone \"%V\": ignoring \"%V\": %s",
                      &zone->shm_zone->shm.name, &zone->persist, error);
    }

    ngx_free(buf);
    (void) ngx_close_file(fd);
}


/* checks the whole file first: nothing goes into the zone from a bad one */

static ngx_int_t
ngx_http_webhook_sse_persist_parse(ngx_http_webhook_sse_zone_t *zone,
    u_char *p, u_char *last, const char **error, ngx_uint_t *loaded)
{
    u_char      *end, *start, *records;
    size_t       len, magic;
    int64_t      time;
    uint32_t     crc;
    uint64_t     epoch, last_seq, count, i, seq, t, slen, flen, prev;
    ngx_str_t    session, fields, *name;
    ngx_pid_t    wake[NGX_HTTP_WEBHOOK_SSE_SLOTS];
    ngx_uint_t   nwake, pass;
    ngx_str_t    empty = ngx_null_string;

    name = &zone->shm_zone->shm.name;
    magic = sizeof(NGX_HTTP_WEBHOOK_SSE_PERSIST_MAGIC) - 1;

    start = p;

    if ((size_t) (last - p) < magic
        || ngx_strncmp(p, NGX_HTTP_WEBHOOK_SSE_PERSIST_MAGIC, magic) != 0)
    {
        *error = "not a webhook zone file";
        return NGX_ERROR;
    }

    p = start + magic;

    len = sizeof("zone ") - 1;

    if ((size_t) (last - p) < len + name->len + 1
        || ngx_strncmp(p, "zone ", len) != 0
        || ngx_strncmp(p + len, name->data, name->len) != 0
        || p[len + name->len] != '\n')
    {
        *error = "written for another zone";
        return NGX_ERROR;
    }

    /* "end CRC\n" */

    if (last - start < 13 || last[-1] != '\n'
        || ngx_strncmp(last - 13, "end ", 4) != 0)
    {
        *error = "truncated";
        return NGX_ERROR;
    }

    end = last - 13;
    crc = 0;

    for (p = end + 4; p < last - 1; p++) {
        if (*p >= '0' && *p <= '9') {
            crc = crc * 16 + (*p - '0');

        } else if (*p >= 'a' && *p <= 'f') {
            crc = crc * 16 + (*p - 'a' + 10);

        } else {
            *error = "truncated";
            return NGX_ERROR;
        }
    }

    if (ngx_crc32_long(start, end - start) != crc) {
        *error = "damaged (checksum mismatch)";
        return NGX_ERROR;
    }

    p = start + magic + len + name->len + 1;

    p = ngx_http_webhook_sse_persist_number(p, end, "epoch ", '\n', &epoch);
    p = ngx_http_webhook_sse_persist_number(p, end, "last ", '\n', &last_seq);
    p = ngx_http_webhook_sse_persist_number(p, end, "count ", '\n', &count);

    if (p == NULL || epoch == 0) {
        *error = "damaged header";
        return NGX_ERROR;
    }

    records = p;

    /* the first pass checks, the second stores */

    for (pass = 0; pass < 2; pass++) {

        p = records;
        prev = 0;

        if (pass == 1) {
            ngx_http_webhook_sse_store_adopt(zone, epoch, 0);
        }

        for (i = 0; i < count; i++) {
            p = ngx_http_webhook_sse_persist_number(p, end, "", ' ', &seq);
            p = ngx_http_webhook_sse_persist_number(p, end, "", ' ', &t);
            p = ngx_http_webhook_sse_persist_number(p, end, "", ' ', &slen);
            p = ngx_http_webhook_sse_persist_number(p, end, "", '\n', &flen);

            if (p == NULL || seq <= prev || seq > last_seq
                || slen > 256 || flen > (uint64_t) (end - p)
                || slen + flen + 1 > (uint64_t) (end - p)
                || p[slen + flen] != '\n')
            {
                *error = "damaged message records";
                return NGX_ERROR;
            }

            prev = seq;

            if (pass == 1) {
                session.data = p;
                session.len = slen;
                fields.data = p + slen;
                fields.len = flen;
                time = (int64_t) t;
                nwake = 0;

                if (ngx_http_webhook_sse_store_ingest(zone, seq, time,
                                                      &session, &fields,
                                                      wake, &nwake)
                    == NGX_OK)
                {
                    (*loaded)++;
                }
            }

            p += slen + flen + 1;
        }

        if (p != end) {
            *error = "damaged message records";
            return NGX_ERROR;
        }
    }

    /*
     * Ids go on after the last one given out, even when that message is
     * gone: an expired message moves the zone's last id and stores nothing.
     */
    if (last_seq > prev) {
        nwake = 0;
        (void) ngx_http_webhook_sse_store_ingest(zone, last_seq, 0, &empty,
                                                 &empty, wake, &nwake);
    }

    return NGX_OK;
}


/* "NAME<digits>END"; NULL (and NULL in, NULL out) when it is not */

static u_char *
ngx_http_webhook_sse_persist_number(u_char *p, u_char *last, char *name,
    u_char end, uint64_t *n)
{
    size_t  len;

    *n = 0;

    if (p == NULL) {
        return NULL;
    }

    len = ngx_strlen(name);

    if ((size_t) (last - p) < len + 2 || ngx_strncmp(p, name, len) != 0) {
        return NULL;
    }

    p += len;

    if (*p < '0' || *p > '9') {
        return NULL;
    }

    while (p < last && *p >= '0' && *p <= '9') {
        if (*n > NGX_MAX_INT_T_VALUE / 10) {
            return NULL;
        }

        *n = *n * 10 + (*p++ - '0');
    }

    if (p == last || *p != end) {
        return NULL;
    }

    return p + 1;
}
