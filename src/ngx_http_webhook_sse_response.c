
/*
 * nginx-webhook-sse: the answer to a successful publish (local or through
 * Redis): the default one, or the one a sender expects
 * (webhook_publish_response): a JSON object with variables, each value
 * JSON-escaped where it is inserted.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_webhook_sse_module.h"


/* a piece of the template: text as written, or a variable */
typedef struct {
    ngx_str_t                    text;
    /* the variable's index; NGX_ERROR for text */
    ngx_int_t                    index;
    /* inside a JSON string: the value is escaped, else it is a number */
    ngx_uint_t                   quoted;
} ngx_http_webhook_sse_response_part_t;


static ngx_int_t ngx_http_webhook_sse_response_text(ngx_array_t *parts,
    u_char *start, u_char *end);


static ngx_str_t  ngx_http_webhook_sse_response_number =
    ngx_string("webhook_timestamp");


/*
 * webhook_publish_response TEMPLATE | default
 *
 * Variables ($name, ${name}) stand inside JSON strings, where any value
 * is escaped, or, for $webhook_timestamp (always a number), also outside.
 * So a template that is one JSON object without its variables stays one
 * with any values: that is checked here, once.
 */

char *
ngx_http_webhook_sse_response_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_webhook_sse_loc_conf_t *wlcf = conf;

    u_char                                *p, *last, *text, *check, *c;
    ngx_str_t                             *value, name;
    ngx_uint_t                             quoted, escaped, braced;
    ngx_array_t                           *parts;
    ngx_http_webhook_sse_response_part_t  *part;

    if (wlcf->publish_response != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "default") == 0) {
        wlcf->publish_response = NULL;
        return NGX_CONF_OK;
    }

    parts = ngx_array_create(cf->pool, 8,
                             sizeof(ngx_http_webhook_sse_response_part_t));
    if (parts == NULL) {
        return NGX_CONF_ERROR;
    }

    /* the template without its variables, numbers as 0 */
    check = ngx_pnalloc(cf->pool, value[1].len);
    if (check == NULL) {
        return NGX_CONF_ERROR;
    }

    c = check;
    p = value[1].data;
    last = p + value[1].len;
    text = p;
    quoted = 0;
    escaped = 0;

    while (p < last) {

        if (escaped) {
            escaped = 0;
            *c++ = *p++;
            continue;
        }

        if (quoted && *p == '\\') {
            escaped = 1;
            *c++ = *p++;
            continue;
        }

        if (*p == '"') {
            quoted = !quoted;
            *c++ = *p++;
            continue;
        }

        if (*p != '$') {
            *c++ = *p++;
            continue;
        }

        /* $name or ${name} */

        name.data = p + 1;
        braced = (name.data < last && *name.data == '{');
        name.data += braced;

        for (name.len = 0; name.data + name.len < last; name.len++) {
            if (!(isalnum(name.data[name.len]) || name.data[name.len] == '_'))
            {
                break;
            }
        }

        if (braced
            && (name.len == 0 || name.data + name.len == last
                || name.data[name.len] != '}'))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "%V: \"${\" without a name and \"}\"",
                               &cmd->name);
            return NGX_CONF_ERROR;
        }

        if (name.len == 0) {
            /* a plain '$' */
            *c++ = *p++;
            continue;
        }

        if (name.data[0] >= '0' && name.data[0] <= '9') {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "%V: regex captures such as \"$%V\" are not "
                               "available here: use a named variable, e.g. "
                               "$webhook_session", &cmd->name, &name);
            return NGX_CONF_ERROR;
        }

        if (!quoted
            && (name.len != ngx_http_webhook_sse_response_number.len
                || ngx_strncmp(name.data,
                               ngx_http_webhook_sse_response_number.data,
                               name.len) != 0))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "%V: \"$%V\" must stand inside a JSON string "
                               "(\"$%V\"): only $webhook_timestamp may stand "
                               "as a number", &cmd->name, &name, &name);
            return NGX_CONF_ERROR;
        }

        if (ngx_http_webhook_sse_response_text(parts, text, p) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        part = ngx_array_push(parts);
        if (part == NULL) {
            return NGX_CONF_ERROR;
        }

        part->text = name;
        part->quoted = quoted;
        part->index = ngx_http_get_variable_index(cf, &name);

        if (part->index == NGX_ERROR) {
            return NGX_CONF_ERROR;
        }

        if (!quoted) {
            *c++ = '0';
        }

        p = name.data + name.len + braced;
        text = p;
    }

    if (ngx_http_webhook_sse_response_text(parts, text, p) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (!ngx_http_webhook_sse_json_object_valid(check, c - check)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%V: \"%V\" is not a JSON object (strict JSON: "
                           "double quotes, no trailing commas)",
                           &cmd->name, &value[1]);
        return NGX_CONF_ERROR;
    }

    wlcf->publish_response = parts;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_webhook_sse_response_text(ngx_array_t *parts, u_char *start,
    u_char *end)
{
    ngx_http_webhook_sse_response_part_t  *part;

    if (start == end) {
        return NGX_OK;
    }

    part = ngx_array_push(parts);
    if (part == NULL) {
        return NGX_ERROR;
    }

    part->text.data = start;
    part->text.len = end - start;
    part->index = NGX_ERROR;
    part->quoted = 0;

    return NGX_OK;
}


/*
 * The body: the template with its variables' values.  A variable not
 * found is empty in a string and null as a number.
 */

ngx_int_t
ngx_http_webhook_sse_response_render(ngx_http_request_t *r,
    ngx_array_t *parts, ngx_str_t *body)
{
    u_char                                *p;
    size_t                                 len;
    ngx_uint_t                             i;
    ngx_http_variable_value_t            **values;
    ngx_http_webhook_sse_response_part_t  *part;

    part = parts->elts;

    values = ngx_pcalloc(r->pool, parts->nelts * sizeof(void *));
    if (values == NULL) {
        return NGX_ERROR;
    }

    len = 1;        /* the closing LF */

    for (i = 0; i < parts->nelts; i++) {

        if (part[i].index == NGX_ERROR) {
            len += part[i].text.len;
            continue;
        }

        values[i] = ngx_http_get_indexed_variable(r, part[i].index);
        if (values[i] == NULL) {
            return NGX_ERROR;
        }

        if (values[i]->not_found) {
            len += part[i].quoted ? 0 : sizeof("null") - 1;

        } else if (part[i].quoted) {
            len += ngx_http_webhook_sse_json_escape(NULL, values[i]->data,
                                                    values[i]->len);

        } else {
            len += values[i]->len;
        }
    }

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    body->data = p;

    for (i = 0; i < parts->nelts; i++) {

        if (part[i].index == NGX_ERROR) {
            p = ngx_cpymem(p, part[i].text.data, part[i].text.len);

        } else if (values[i]->not_found) {
            if (!part[i].quoted) {
                p = ngx_cpymem(p, "null", sizeof("null") - 1);
            }

        } else if (part[i].quoted) {
            p += ngx_http_webhook_sse_json_escape(p, values[i]->data,
                                                  values[i]->len);

        } else {
            p = ngx_cpymem(p, values[i]->data, values[i]->len);
        }
    }

    *p++ = LF;

    body->len = p - body->data;

    return NGX_OK;
}


/*
 * 200 for a stored message (ctx has its id and time): the location's
 * webhook_publish_response, or {"success":true,"messageId":..,
 * "timestamp":..}.
 */

ngx_int_t
ngx_http_webhook_sse_publish_answer(ngx_http_request_t *r,
    ngx_http_webhook_sse_loc_conf_t *wlcf, ngx_http_webhook_sse_ctx_t *ctx)
{
    u_char     *body, *p;
    ngx_str_t   answer;

    if (wlcf->publish_response) {
        if (ngx_http_webhook_sse_response_render(r, wlcf->publish_response,
                                                 &answer)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_webhook_sse_send_json(r, NGX_HTTP_OK, answer.data,
                                              answer.len);
    }

    body = ngx_pnalloc(r->pool, sizeof("{\"success\":true,\"messageId\":\"\","
                                       "\"timestamp\":}\n")
                                + NGX_HTTP_WEBHOOK_SSE_ID_LEN
                                + NGX_INT64_LEN);
    if (body == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(body, "{\"success\":true,\"messageId\":\"",
                   sizeof("{\"success\":true,\"messageId\":\"") - 1);
    p = ngx_cpymem(p, ctx->message_id, ctx->message_id_len);
    p = ngx_cpymem(p, "\",\"timestamp\":", sizeof("\",\"timestamp\":") - 1);
    p = ngx_http_webhook_sse_format_time(p, ctx->message_time);
    *p++ = '}';
    *p++ = '\n';

    return ngx_http_webhook_sse_send_json(r, NGX_HTTP_OK, body, p - body);
}
