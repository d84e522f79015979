/*
 * wafka.c: the C SDK over the bindings that `wit-bindgen c` generates from wit/ (plugin.h and
 * plugin.c, generated at build time by guest-sdk/c/build.sh).
 *
 * It implements the world's exports (exports_plugin_init, exports_plugin_handle,
 * exports_plugin_finish: the `plugin-lifecycle` world) on top of the plugin's plugin_init,
 * plugin_handle and optional plugin_finish, and the wafka_* functions on top of the producer
 * imports. Records go to the host without copying: the generated import passes the pointers of
 * the topic, key, value and header array straight to the host, which reads them in place.
 */
#include "wafka.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

typedef wafka_producer_types_header_t wit_header;
typedef wafka_producer_producer_produce_error_t wit_error;

/* wafka_header goes to the host as the WIT `header` list element: same layout. */
_Static_assert(sizeof(wafka_header) == sizeof(wit_header), "wafka_header size");
_Static_assert(_Alignof(wafka_header) == _Alignof(wit_header), "wafka_header alignment");
_Static_assert(offsetof(wafka_header, key) == offsetof(wit_header, key.ptr), "header key");
_Static_assert(offsetof(wafka_header, key_len) == offsetof(wit_header, key.len), "header key_len");
_Static_assert(offsetof(wafka_header, has_value) == offsetof(wit_header, value.is_some), "header has_value");
_Static_assert(offsetof(wafka_header, value) == offsetof(wit_header, value.val.ptr), "header value");
_Static_assert(offsetof(wafka_header, value_len) == offsetof(wit_header, value.val.len), "header value_len");

/* ---- Text ---------------------------------------------------------------------------------- */

/* A growing NUL-terminated string; aborts (traps) when out of memory, like cabi_realloc. */
typedef struct text {
    char *buf;
    size_t len, cap;
} text;

static void text_reserve(text *t, size_t more)
{
    if (t->len + more + 1 <= t->cap)
        return;
    size_t cap = t->cap ? t->cap : 64;
    while (cap < t->len + more + 1)
        cap *= 2;
    char *buf = realloc(t->buf, cap);
    if (!buf)
        abort();
    t->buf = buf;
    t->cap = cap;
}

static void text_put(text *t, const void *s, size_t n)
{
    text_reserve(t, n);
    if (n)
        memcpy(t->buf + t->len, s, n);
    t->len += n;
    t->buf[t->len] = '\0';
}

static void text_puts(text *t, const char *s)
{
    text_put(t, s, strlen(s));
}

/* Appends host text with control characters (U+0000-U+001F, U+007F-U+009F) replaced by one
 * space each, as the Rust SDK's Display does. */
static void text_put_line(text *t, const uint8_t *s, size_t n)
{
    text_reserve(t, n);
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (c < 0x20 || c == 0x7f) {
            c = ' ';
        } else if (c == 0xc2 && i + 1 < n && s[i + 1] >= 0x80 && s[i + 1] <= 0x9f) {
            c = ' ';
            i++;
        }
        t->buf[t->len++] = (char)c;
    }
    t->buf[t->len] = '\0';
}

static void text_put_u64(text *t, uint64_t v)
{
    char digits[20];
    size_t n = 0;
    do {
        digits[sizeof digits - ++n] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    text_put(t, digits + sizeof digits - n, n);
}

static void text_put_i64(text *t, int64_t v)
{
    if (v < 0) {
        text_put(t, "-", 1);
        text_put_u64(t, (uint64_t)0 - (uint64_t)v);
    } else {
        text_put_u64(t, (uint64_t)v);
    }
}

/* ---- Errors -------------------------------------------------------------------------------- */

static const char *const kinds[] = {
    "not-authorized", "invalid-topic", "record-too-large", "buffer-full", "quota-exceeded",
    "timed-out",      "closed",        "not-allowed",      "broker",
};

const char *wafka_error_kind(int code)
{
    if (code == WAFKA_OK)
        return "ok";
    if (code == WAFKA_ERR_PLUGIN)
        return "plugin";
    if (code <= WAFKA_ERR_NOT_AUTHORIZED && code >= WAFKA_ERR_BROKER)
        return kinds[WAFKA_ERR_NOT_AUTHORIZED - code];
    return "unknown";
}

/* Copies `n` bytes of `s` into `*at` as a NUL-terminated string and returns it. */
static const char *place(char **at, const void *s, size_t n)
{
    char *start = *at;
    if (n)
        memcpy(start, s, n);
    start[n] = '\0';
    *at += n + 1;
    return start;
}

/* The SDK's copy of a WIT produce-error: one allocation holding the struct and its strings,
 * released with free(). */
static wafka_error *error_new(const wit_error *e)
{
    static const char *const prefixes[] = {
        "not authorized: ", "invalid topic: ", NULL, NULL, "quota exceeded: ", "timed out: ",
        NULL, "not allowed: ", NULL,
    };
    text msg = {0};
    const plugin_string_t *detail = NULL;
    const wafka_producer_types_broker_error_t *broker = NULL;
    switch (e->tag) {
    case WAFKA_PRODUCER_TYPES_PRODUCE_ERROR_NOT_AUTHORIZED:
        detail = &e->val.not_authorized;
        break;
    case WAFKA_PRODUCER_TYPES_PRODUCE_ERROR_INVALID_TOPIC:
        detail = &e->val.invalid_topic;
        break;
    case WAFKA_PRODUCER_TYPES_PRODUCE_ERROR_RECORD_TOO_LARGE:
        text_puts(&msg, "record too large: ");
        text_put_u64(&msg, e->val.record_too_large);
        text_puts(&msg, " bytes");
        break;
    case WAFKA_PRODUCER_TYPES_PRODUCE_ERROR_BUFFER_FULL:
        text_puts(&msg, "producer buffer full");
        break;
    case WAFKA_PRODUCER_TYPES_PRODUCE_ERROR_QUOTA_EXCEEDED:
        detail = &e->val.quota_exceeded;
        break;
    case WAFKA_PRODUCER_TYPES_PRODUCE_ERROR_TIMED_OUT:
        detail = &e->val.timed_out;
        break;
    case WAFKA_PRODUCER_TYPES_PRODUCE_ERROR_CLOSED:
        text_puts(&msg, "producer closed");
        break;
    case WAFKA_PRODUCER_TYPES_PRODUCE_ERROR_NOT_ALLOWED:
        detail = &e->val.not_allowed;
        break;
    case WAFKA_PRODUCER_TYPES_PRODUCE_ERROR_BROKER:
        broker = &e->val.broker;
        text_puts(&msg, "broker error ");
        text_put_line(&msg, broker->name.ptr, broker->name.len);
        text_puts(&msg, " (");
        text_put_i64(&msg, broker->code);
        text_puts(&msg, ")");
        if (broker->message.is_some) {
            text_puts(&msg, ": ");
            text_put_line(&msg, broker->message.val.ptr, broker->message.val.len);
        }
        break;
    default:
        /* A case of a newer contract: WAFKA_ERR_UNKNOWN, never one of the known codes. */
        text_puts(&msg, "a produce-error case this SDK does not know (tag ");
        text_put_u64(&msg, e->tag);
        text_puts(&msg, "): rebuild the plugin with the SDK of the host's contract");
        break;
    }
    if (detail) {
        text_puts(&msg, prefixes[e->tag]);
        text_put_line(&msg, detail->ptr, detail->len);
    }

    size_t size = sizeof(wafka_error) + msg.len + 1 + (detail ? detail->len : 0) + 1;
    if (broker)
        size += broker->name.len + 1 + (broker->message.is_some ? broker->message.val.len + 1 : 0);
    wafka_error *err = malloc(size);
    if (!err)
        abort();
    char *at = (char *)(err + 1);
    err->code = e->tag <= WAFKA_PRODUCER_TYPES_PRODUCE_ERROR_BROKER ? WAFKA_ERR_NOT_AUTHORIZED - (int)e->tag : WAFKA_ERR_UNKNOWN;
    err->message = place(&at, msg.buf, msg.len);
    err->detail = detail ? place(&at, detail->ptr, detail->len) : place(&at, "", 0);
    err->record_size = e->tag == WAFKA_PRODUCER_TYPES_PRODUCE_ERROR_RECORD_TOO_LARGE ? e->val.record_too_large : 0;
    err->broker_name = broker ? place(&at, broker->name.ptr, broker->name.len) : "";
    err->broker_code = broker ? broker->code : 0;
    err->broker_message = broker && broker->message.is_some
                              ? place(&at, broker->message.val.ptr, broker->message.val.len)
                              : NULL;
    free(msg.buf);
    return err;
}

static wafka_error *last_error;

const wafka_error *wafka_last_error(void)
{
    return last_error;
}

const char *wafka_error_message(void)
{
    return last_error ? last_error->message : "";
}

/* Keeps `e` as the last error, releases the host's copy, and returns the error's code. */
static int fail_with(wit_error *e)
{
    free(last_error);
    last_error = error_new(e);
    wafka_producer_producer_produce_error_free(e);
    return last_error->code;
}

int wafka_fail(char **err, const char *message)
{
    size_t n = strlen(message);
    char *copy = malloc(n + 1);
    if (!copy)
        abort();
    memcpy(copy, message, n + 1);
    if (err) {
        free(*err);
        *err = copy;
    } else {
        free(copy);
    }
    return WAFKA_ERR_PLUGIN;
}

/* ---- The producer -------------------------------------------------------------------------- */

int wafka_publish(const wafka_record *r, wafka_receipt *receipt)
{
    /* Only the descriptors are rearranged; the bytes stay where the plugin has them. */
    wafka_producer_producer_message_t msg;
    msg.topic.ptr = (uint8_t *)r->topic;
    msg.topic.len = r->topic_len;
    msg.key.is_some = r->has_key;
    msg.key.val.ptr = (uint8_t *)r->key;
    msg.key.val.len = r->has_key ? r->key_len : 0;
    msg.value.ptr = (uint8_t *)r->value;
    msg.value.len = r->value_len;
    msg.headers.ptr = (wit_header *)r->headers;
    msg.headers.len = r->headers_len;
    msg.partition.is_some = r->has_partition;
    msg.partition.val = r->has_partition ? r->partition : 0;

    wafka_producer_producer_receipt_t got;
    wit_error err;
    if (!wafka_producer_producer_publish(&msg, &got, &err))
        return fail_with(&err);
    if (receipt) {
        receipt->id = got.id;
        receipt->partition = got.partition;
        receipt->offset = got.offset;
    }
    return WAFKA_OK;
}

int wafka_flush(void)
{
    wit_error err;
    if (!wafka_producer_producer_flush(&err))
        return fail_with(&err);
    return WAFKA_OK;
}

int wafka_set_autoflush(bool enabled)
{
    wit_error err;
    if (!wafka_producer_producer_set_autoflush(enabled, &err))
        return fail_with(&err);
    return WAFKA_OK;
}

/* The reports of the last wafka_take_reports: one allocation for the array and the topics,
 * plus one per error. */
static wafka_report *reports;
static size_t reports_len;

static void reports_free(void)
{
    for (size_t i = 0; i < reports_len; i++)
        free((void *)reports[i].error);
    free(reports);
    reports = NULL;
    reports_len = 0;
}

size_t wafka_take_reports(uint32_t max, const wafka_report **out)
{
    reports_free();
    wafka_producer_producer_list_delivery_report_t list;
    wafka_producer_producer_take_reports(max, &list);
    if (list.len > 0) {
        size_t size = list.len * sizeof(wafka_report);
        for (size_t i = 0; i < list.len; i++)
            size += list.ptr[i].topic.len + 1;
        reports = malloc(size);
        if (!reports)
            abort();
        char *at = (char *)(reports + list.len);
        for (size_t i = 0; i < list.len; i++) {
            const wafka_producer_producer_delivery_report_t *in = &list.ptr[i];
            wafka_report *r = &reports[i];
            r->id = in->id;
            r->topic = place(&at, in->topic.ptr, in->topic.len);
            r->topic_len = in->topic.len;
            r->partition = in->partition;
            r->offset = in->outcome.is_err ? -1 : in->outcome.val.ok;
            r->error = in->outcome.is_err ? error_new(&in->outcome.val.err) : NULL;
        }
        reports_len = list.len;
    }
    wafka_producer_producer_list_delivery_report_free(&list);
    if (out)
        *out = reports;
    return reports_len;
}

/* ---- Configuration ------------------------------------------------------------------------- */

struct wafka_config {
    size_t len;
    struct pair {
        const char *key, *value;
    } pairs[];
};

size_t wafka_config_count(const wafka_config *c)
{
    return c ? c->len : 0;
}

const char *wafka_config_key(const wafka_config *c, size_t i)
{
    return c && i < c->len ? c->pairs[i].key : NULL;
}

const char *wafka_config_value(const wafka_config *c, size_t i)
{
    return c && i < c->len ? c->pairs[i].value : NULL;
}

const char *wafka_config_get(const wafka_config *c, const char *key)
{
    for (size_t i = wafka_config_count(c); i-- > 0;)
        if (strcmp(c->pairs[i].key, key) == 0)
            return c->pairs[i].value;
    return NULL;
}

const char *wafka_config_get_or(const wafka_config *c, const char *key, const char *fallback)
{
    const char *value = wafka_config_get(c, key);
    return value ? value : fallback;
}

const char *wafka_config_unknown_key(const wafka_config *c, const char *const *known)
{
    for (size_t i = 0; i < wafka_config_count(c); i++) {
        const char *const *k = known;
        while (*k && strcmp(*k, c->pairs[i].key) != 0)
            k++;
        if (!*k)
            return c->pairs[i].key;
    }
    return NULL;
}

/* The configuration as one allocation: the pairs, then the NUL-terminated strings. */
static wafka_config *config_new(const plugin_list_tuple2_string_string_t *list)
{
    size_t size = sizeof(wafka_config) + list->len * sizeof(struct pair);
    for (size_t i = 0; i < list->len; i++)
        size += list->ptr[i].f0.len + 1 + list->ptr[i].f1.len + 1;
    wafka_config *c = malloc(size);
    if (!c)
        abort();
    char *at = (char *)&c->pairs[list->len];
    c->len = list->len;
    for (size_t i = 0; i < list->len; i++) {
        c->pairs[i].key = place(&at, list->ptr[i].f0.ptr, list->ptr[i].f0.len);
        c->pairs[i].value = place(&at, list->ptr[i].f1.ptr, list->ptr[i].f1.len);
    }
    return c;
}

/* ---- The world's exports ------------------------------------------------------------------- */

static wafka_config *config;
static bool initialized;

/* Writes out what the plugin printed. fflush(NULL) only reaches stdout when the plugin linked
 * it (musl's weak __stdout_used), so a plugin that never prints pays nothing for it. */
static void flush_output(void)
{
    fflush(NULL);
}

/* Turns a plugin failure (`code`, `message` or NULL) into the export's error string, which
 * the generated post-return function frees. */
static void export_error(const char *entry, int code, char *message, plugin_string_t *err)
{
    if (!message) {
        text t = {0};
        if (last_error && code == last_error->code) {
            text_puts(&t, last_error->message);
        } else {
            text_puts(&t, entry);
            text_puts(&t, " failed (code ");
            text_put_i64(&t, code);
            text_puts(&t, ")");
        }
        message = t.buf;
    }
    size_t len = strlen(message);
    if (len == 0) {
        /* The post-return function frees only non-empty strings. */
        free(message);
        message = NULL;
    }
    err->ptr = (uint8_t *)message;
    err->len = len;
}

bool exports_plugin_init(plugin_list_tuple2_string_string_t *list, plugin_string_t *err)
{
    /* A failing init leaves no plugin behind; a second init replaces the first. */
    initialized = false;
    free(config);
    config = config_new(list);
    plugin_list_tuple2_string_string_free(list);

    char *message = NULL;
    int code = plugin_init(config, &message);
    flush_output();
    if (code != 0) {
        export_error("plugin_init", code, message, err);
        return false;
    }
    free(message);
    initialized = true;
    return true;
}

bool exports_plugin_finish(plugin_string_t *err)
{
    if (!initialized || !plugin_finish)
        return true;
    char *message = NULL;
    int code = plugin_finish(&message);
    flush_output();
    if (code != 0) {
        export_error("plugin_finish", code, message, err);
        return false;
    }
    free(message);
    return true;
}

bool exports_plugin_handle(plugin_list_u8_t *event, plugin_string_t *err)
{
    if (!initialized) {
        plugin_list_u8_free(event);
        char *message = NULL;
        wafka_fail(&message, "plugin is not initialized (init was not called or failed)");
        export_error("plugin_handle", WAFKA_ERR_PLUGIN, message, err);
        return false;
    }
    char *message = NULL;
    int code = plugin_handle(event->ptr, event->len, &message);
    plugin_list_u8_free(event);
    flush_output();
    if (code != 0) {
        export_error("plugin_handle", code, message, err);
        return false;
    }
    free(message);
    return true;
}
