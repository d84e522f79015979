/*
 * fake_host.c: the fake host of wafka_testing.h, for plugins' native unit tests (C and Zig).
 *
 * It stands at the lowest layer of a plugin: it defines the `producer` imports that the
 * generated bindings (plugin.c, compiled for the build machine) call, and writes their results
 * in the canonical ABI's layout as plugin.c reads it (pointers of the machine's size), so the
 * SDK (wafka.c, or wafka.zig) and the bindings' own lifting and freeing run as in a component.
 * It calls the plugin through the bindings' exports and post-return functions, as the host
 * does. Its answers are those of the Rust SDK's `wafka_guest::testing` and Go's `FakeHost`:
 * offsets per topic and partition from 0, receipts at -1 until acknowledged unless autoflush is
 * on, one report per record, flush's first failure since the last flush.
 *
 * guest-sdk/c/test.sh and guest-sdk/zig/test.sh compile it; nothing builds it for wasm.
 */
#include "wafka_testing.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

typedef wafka_producer_types_produce_error_t wit_error;
typedef plugin_string_t wit_string;

#define PTR sizeof(void *)

/* What an empty string or list points to: never freed (the bindings free only non-empty
 * ones), as the host passes one. */
static uint8_t empty[8];

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "wafka fake host: out of memory\n");
        abort();
    }
    return p;
}

/* A malloc'd copy of `n` bytes followed by a NUL; for an empty one, `empty`. */
static uint8_t *dup_bytes(const void *s, size_t n)
{
    if (n == 0)
        return empty;
    uint8_t *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

/* Like dup_bytes, but always a NUL-terminated string of its own (for the test's view). */
static char *dup_text(const void *s, size_t n)
{
    char *p = xmalloc(n + 1);
    if (n)
        memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static wit_string wit_dup(const void *s, size_t n)
{
    wit_string out = {dup_bytes(s, n), n};
    return out;
}

static wit_string wit_dup_str(const char *s)
{
    return s ? wit_dup(s, strlen(s)) : wit_dup("", 0);
}

/* ---- Errors -------------------------------------------------------------------------------- */

/* The string a produce-error case carries, or NULL. */
static wit_string *error_text(wit_error *e)
{
    switch (e->tag) {
    case WAFKA_PRODUCER_TYPES_PRODUCE_ERROR_NOT_AUTHORIZED:
        return &e->val.not_authorized;
    case WAFKA_PRODUCER_TYPES_PRODUCE_ERROR_INVALID_TOPIC:
        return &e->val.invalid_topic;
    case WAFKA_PRODUCER_TYPES_PRODUCE_ERROR_QUOTA_EXCEEDED:
        return &e->val.quota_exceeded;
    case WAFKA_PRODUCER_TYPES_PRODUCE_ERROR_TIMED_OUT:
        return &e->val.timed_out;
    case WAFKA_PRODUCER_TYPES_PRODUCE_ERROR_NOT_ALLOWED:
        return &e->val.not_allowed;
    default:
        return NULL;
    }
}

/* The first tag past the contract's cases: what WAFKA_ERR_UNKNOWN stands for. */
#define TAG_UNKNOWN (WAFKA_PRODUCER_TYPES_PRODUCE_ERROR_BROKER + 1)

/* The WIT error for an error as the SDK hands it out (its strings copied with malloc). */
static wit_error from_sdk(const wafka_error *in)
{
    wit_error e;
    memset(&e, 0, sizeof e);
    if (!in || in->code > WAFKA_ERR_NOT_AUTHORIZED || in->code < WAFKA_ERR_UNKNOWN) {
        fprintf(stderr, "wafka fake host: %d is not a produce-error code (WAFKA_ERR_NOT_AUTHORIZED..."
                        "WAFKA_ERR_BROKER, or WAFKA_ERR_UNKNOWN)\n",
                in ? (int)in->code : 0);
        exit(2);
    }
    e.tag = in->code == WAFKA_ERR_UNKNOWN ? TAG_UNKNOWN : (uint8_t)(WAFKA_ERR_NOT_AUTHORIZED - in->code);
    wit_string *text = error_text(&e);
    if (text)
        *text = wit_dup_str(in->detail);
    if (e.tag == WAFKA_PRODUCER_TYPES_PRODUCE_ERROR_RECORD_TOO_LARGE)
        e.val.record_too_large = in->record_size;
    if (e.tag == WAFKA_PRODUCER_TYPES_PRODUCE_ERROR_BROKER) {
        e.val.broker.name = wit_dup_str(in->broker_name);
        e.val.broker.code = in->broker_code;
        e.val.broker.message.is_some = in->broker_message != NULL;
        if (in->broker_message)
            e.val.broker.message.val = wit_dup_str(in->broker_message);
    }
    return e;
}

/* A deep copy, with malloc (what the bindings free). */
static wit_error error_copy(const wit_error *in)
{
    wit_error e = *in;
    wit_string *text = error_text(&e);
    if (text)
        *text = wit_dup(text->ptr, text->len);
    if (e.tag == WAFKA_PRODUCER_TYPES_PRODUCE_ERROR_BROKER) {
        e.val.broker.name = wit_dup(in->val.broker.name.ptr, in->val.broker.name.len);
        if (e.val.broker.message.is_some)
            e.val.broker.message.val = wit_dup(in->val.broker.message.val.ptr, in->val.broker.message.val.len);
    }
    return e;
}

/* An error the fake keeps (NULL: none). */
static wit_error *error_keep(const wafka_error *in)
{
    if (!in)
        return NULL;
    wit_error *e = xmalloc(sizeof *e);
    *e = from_sdk(in);
    return e;
}

static void error_drop(wit_error *e)
{
    if (e) {
        wafka_producer_types_produce_error_free(e);
        free(e);
    }
}

/* ---- The state ----------------------------------------------------------------------------- */

typedef struct refusal {
    char *topic;
    size_t topic_len;
    wit_error *error;
} refusal;

typedef struct offset_entry {
    char *topic;
    size_t topic_len;
    int32_t partition;
    int64_t next;
} offset_entry;

typedef struct report {
    uint64_t id;
    char *topic;
    size_t topic_len;
    int32_t partition;
    int64_t offset;
    wit_error *error; /* NULL: delivered at offset */
} report;

/* A growing array of `type`. */
#define VEC(type) \
    struct {      \
        type *items; \
        size_t len, cap; \
    }

static void *vec_slot(void *items_p, size_t *len, size_t *cap, size_t size)
{
    void **items = items_p;
    if (*len == *cap) {
        *cap = *cap ? *cap * 2 : 8;
        void *grown = realloc(*items, *cap * size);
        if (!grown) {
            fprintf(stderr, "wafka fake host: out of memory\n");
            abort();
        }
        *items = grown;
    }
    return (char *)*items + (*len)++ * size;
}

#define VEC_PUSH(v) vec_slot(&(v).items, &(v).len, &(v).cap, sizeof *(v).items)

static struct {
    VEC(wafka_published) published;
    VEC(offset_entry) offsets;
    VEC(refusal) refused;
    VEC(wit_error *) refuse_next;
    size_t refuse_next_head;
    VEC(report) reports;
    size_t reports_head;
    uint64_t next_id;
    bool autoflush;
    int fixed; /* -1: the plugin chooses; 0: fixed off; 1: fixed on */
    wit_error *failing_reports, *failing_flush, *first_failure;
} fake = {.fixed = -1};

void wafka_testing_reset(void)
{
    for (size_t i = 0; i < fake.published.len; i++) {
        wafka_published *p = &fake.published.items[i];
        free((void *)p->topic);
        free((void *)p->key);
        free((void *)p->value);
        for (size_t h = 0; h < p->headers_len; h++) {
            free((void *)p->headers[h].key);
            free((void *)p->headers[h].value);
        }
        free((void *)p->headers);
    }
    for (size_t i = 0; i < fake.offsets.len; i++)
        free(fake.offsets.items[i].topic);
    for (size_t i = 0; i < fake.refused.len; i++) {
        free(fake.refused.items[i].topic);
        error_drop(fake.refused.items[i].error);
    }
    for (size_t i = fake.refuse_next_head; i < fake.refuse_next.len; i++)
        error_drop(fake.refuse_next.items[i]);
    for (size_t i = fake.reports_head; i < fake.reports.len; i++) {
        free(fake.reports.items[i].topic);
        error_drop(fake.reports.items[i].error);
    }
    free(fake.published.items);
    free(fake.offsets.items);
    free(fake.refused.items);
    free(fake.refuse_next.items);
    free(fake.reports.items);
    error_drop(fake.failing_reports);
    error_drop(fake.failing_flush);
    error_drop(fake.first_failure);
    memset(&fake, 0, sizeof fake);
    fake.fixed = -1;
}

size_t wafka_testing_published(const wafka_published **records)
{
    if (records)
        *records = fake.published.items;
    return fake.published.len;
}

void wafka_testing_refuse_topic(const char *topic, const wafka_error *error)
{
    size_t n = strlen(topic);
    wit_error *e = error_keep(error);
    for (size_t i = 0; i < fake.refused.len; i++) {
        refusal *r = &fake.refused.items[i];
        if (r->topic_len == n && memcmp(r->topic, topic, n) == 0) {
            error_drop(r->error);
            r->error = e;
            return;
        }
    }
    refusal *r = VEC_PUSH(fake.refused);
    r->topic = dup_text(topic, n);
    r->topic_len = n;
    r->error = e;
}

void wafka_testing_refuse_next(const wafka_error *error)
{
    *(wit_error **)VEC_PUSH(fake.refuse_next) = error_keep(error);
}

void wafka_testing_fail_reports(const wafka_error *error)
{
    error_drop(fake.failing_reports);
    fake.failing_reports = error_keep(error);
}

void wafka_testing_fail_flush(const wafka_error *error)
{
    error_drop(fake.failing_flush);
    fake.failing_flush = error_keep(error);
}

void wafka_testing_fix_autoflush(bool on)
{
    fake.fixed = on;
    fake.autoflush = on;
}

bool wafka_testing_autoflush(void)
{
    return fake.autoflush;
}

/* ---- The imports, in the layout plugin.c reads ---------------------------------------------- */

static void put(uint8_t *at, const void *value, size_t n)
{
    memcpy(at, value, n);
}

static void put_string(uint8_t *at, wit_string s)
{
    put(at, &s.ptr, sizeof s.ptr);
    put(at + PTR, &s.len, sizeof s.len);
}

/* Writes a copy of `e` as the error payload of a result at `ret` (tag 1 at 0, the case's tag at
 * 8, its payload at 16). */
static void put_error(uint8_t *ret, const wit_error *e)
{
    wit_error c = error_copy(e);
    ret[0] = 1;
    ret[8] = c.tag;
    uint8_t *payload = ret + 16;
    wit_string *text = error_text(&c);
    if (text) {
        put_string(payload, *text);
    } else if (c.tag == WAFKA_PRODUCER_TYPES_PRODUCE_ERROR_RECORD_TOO_LARGE) {
        int64_t size = (int64_t)c.val.record_too_large;
        put(payload, &size, sizeof size);
    } else if (c.tag == WAFKA_PRODUCER_TYPES_PRODUCE_ERROR_BROKER) {
        put_string(payload, c.val.broker.name);
        put(payload + 2 * PTR, &c.val.broker.code, sizeof c.val.broker.code);
        payload[3 * PTR] = c.val.broker.message.is_some;
        if (c.val.broker.message.is_some)
            put_string(payload + 4 * PTR, c.val.broker.message.val);
    }
}

/* The error a publish to `topic` is refused with, or NULL; *owned says the caller drops it. */
static wit_error *refusal_for(const uint8_t *topic, size_t len, bool *owned)
{
    *owned = fake.refuse_next_head < fake.refuse_next.len;
    if (*owned)
        return fake.refuse_next.items[fake.refuse_next_head++];
    for (size_t i = 0; i < fake.refused.len; i++) {
        const refusal *r = &fake.refused.items[i];
        if (r->topic_len == len && memcmp(r->topic, topic, len) == 0)
            return r->error;
    }
    return NULL;
}

static int64_t next_offset(const uint8_t *topic, size_t len, int32_t partition)
{
    for (size_t i = 0; i < fake.offsets.len; i++) {
        offset_entry *o = &fake.offsets.items[i];
        if (o->partition == partition && o->topic_len == len && memcmp(o->topic, topic, len) == 0)
            return o->next++;
    }
    offset_entry *o = VEC_PUSH(fake.offsets);
    o->topic = dup_text(topic, len);
    o->topic_len = len;
    o->partition = partition;
    o->next = 1;
    return 0;
}

static void add_report(uint64_t id, const uint8_t *topic, size_t len, int32_t partition, int64_t offset,
                       const wit_error *error)
{
    report *r = VEC_PUSH(fake.reports);
    r->id = id;
    r->topic = dup_text(topic, len);
    r->topic_len = len;
    r->partition = partition;
    r->offset = offset;
    r->error = NULL;
    if (error) {
        r->error = xmalloc(sizeof *r->error);
        *r->error = error_copy(error);
    }
}

void __wasm_import_wafka_producer_producer_publish(uint8_t *topic, size_t topic_len, int32_t has_key,
                                                   uint8_t *key, size_t key_len, uint8_t *value,
                                                   size_t value_len, uint8_t *headers, size_t headers_len,
                                                   int32_t has_partition, int32_t partition, uint8_t *ret);
void __wasm_import_wafka_producer_producer_publish(uint8_t *topic, size_t topic_len, int32_t has_key,
                                                   uint8_t *key, size_t key_len, uint8_t *value,
                                                   size_t value_len, uint8_t *headers, size_t headers_len,
                                                   int32_t has_partition, int32_t partition, uint8_t *ret)
{
    bool owned;
    wit_error *refused = refusal_for(topic, topic_len, &owned);
    if (refused) {
        put_error(ret, refused);
        if (owned)
            error_drop(refused);
        return;
    }
    uint64_t id = fake.next_id++;
    int32_t part = has_partition ? partition : 0;
    if (fake.failing_reports) {
        if (fake.autoflush) {
            put_error(ret, fake.failing_reports);
            return;
        }
        if (!fake.first_failure) {
            fake.first_failure = xmalloc(sizeof *fake.first_failure);
            *fake.first_failure = error_copy(fake.failing_reports);
        }
        add_report(id, topic, topic_len, part, -1, fake.failing_reports);
        int64_t none = -1;
        ret[0] = 0;
        put(ret + 8, &id, sizeof id);
        put(ret + 16, &part, sizeof part);
        put(ret + 24, &none, sizeof none);
        return;
    }
    int64_t offset = next_offset(topic, topic_len, part);

    wafka_published *p = VEC_PUSH(fake.published);
    p->topic = dup_text(topic, topic_len);
    p->topic_len = topic_len;
    p->has_key = has_key != 0;
    p->key = has_key ? dup_text(key, key_len) : NULL;
    p->key_len = has_key ? key_len : 0;
    p->value = dup_text(value, value_len);
    p->value_len = value_len;
    const wafka_producer_types_header_t *in = (const wafka_producer_types_header_t *)headers;
    wafka_header *hs = xmalloc(headers_len * sizeof *hs);
    for (size_t i = 0; i < headers_len; i++) {
        hs[i].key = dup_text(in[i].key.ptr, in[i].key.len);
        hs[i].key_len = in[i].key.len;
        hs[i].has_value = in[i].value.is_some;
        hs[i].value = in[i].value.is_some ? (const uint8_t *)dup_text(in[i].value.val.ptr, in[i].value.val.len) : NULL;
        hs[i].value_len = in[i].value.is_some ? in[i].value.val.len : 0;
    }
    p->headers = hs;
    p->headers_len = headers_len;
    p->partition = part;
    p->offset = offset;

    add_report(id, topic, topic_len, part, offset, NULL);
    int64_t receipt_offset = fake.autoflush ? offset : -1;
    ret[0] = 0;
    put(ret + 8, &id, sizeof id);
    put(ret + 16, &part, sizeof part);
    put(ret + 24, &receipt_offset, sizeof receipt_offset);
}

void __wasm_import_wafka_producer_producer_flush(uint8_t *ret);
void __wasm_import_wafka_producer_producer_flush(uint8_t *ret)
{
    if (fake.failing_flush) {
        put_error(ret, fake.failing_flush);
        return;
    }
    if (fake.first_failure) {
        put_error(ret, fake.first_failure);
        error_drop(fake.first_failure);
        fake.first_failure = NULL;
        return;
    }
    ret[0] = 0;
}

void __wasm_import_wafka_producer_producer_set_autoflush(int32_t enabled, uint8_t *ret);
void __wasm_import_wafka_producer_producer_set_autoflush(int32_t enabled, uint8_t *ret)
{
    if (fake.fixed >= 0) {
        wit_error e;
        memset(&e, 0, sizeof e);
        e.tag = WAFKA_PRODUCER_TYPES_PRODUCE_ERROR_NOT_ALLOWED;
        plugin_string_set(&e.val.not_allowed, fake.fixed ? "the host fixed autoflush to on" : "the host fixed autoflush to off");
        put_error(ret, &e);
        return;
    }
    fake.autoflush = enabled != 0;
    ret[0] = 0;
}

void __wasm_import_wafka_producer_producer_take_reports(int32_t max, uint8_t *ret);
void __wasm_import_wafka_producer_producer_take_reports(int32_t max, uint8_t *ret)
{
    size_t n = fake.reports.len - fake.reports_head;
    if ((uint32_t)max < n)
        n = (uint32_t)max;
    wafka_producer_producer_delivery_report_t *list = n ? xmalloc(n * sizeof *list) : (void *)empty;
    for (size_t i = 0; i < n; i++) {
        report *r = &fake.reports.items[fake.reports_head++];
        list[i].id = r->id;
        list[i].topic = wit_dup(r->topic, r->topic_len);
        list[i].partition = r->partition;
        list[i].outcome.is_err = r->error != NULL;
        if (r->error)
            list[i].outcome.val.err = error_copy(r->error);
        else
            list[i].outcome.val.ok = r->offset;
        free(r->topic);
        error_drop(r->error);
    }
    put(ret, &list, sizeof list);
    put(ret + PTR, &n, sizeof n);
}

/* plugin.c links the world's type (a wasm custom section) through this; natively there is none. */
void __component_type_object_force_link_plugin(void);
void __component_type_object_force_link_plugin(void)
{
}

/* ---- Calling the plugin through the exports ------------------------------------------------- */

uint8_t *__wasm_export_exports_plugin_init(uint8_t *arg, size_t len);
uint8_t *__wasm_export_exports_plugin_handle(uint8_t *arg, size_t len);
uint8_t *__wasm_export_exports_plugin_finish(void);
void __wasm_export_exports_plugin_init_post_return(uint8_t *ret);
void __wasm_export_exports_plugin_handle_post_return(uint8_t *ret);
void __wasm_export_exports_plugin_finish_post_return(uint8_t *ret);

/* The last export's error message. */
static char *message;

/* Reads a result<_, string> at `ret`, then lets the bindings free it (the post-return call). */
static const char *export_result(uint8_t *ret, void (*post_return)(uint8_t *))
{
    free(message);
    message = NULL;
    if (ret[0]) {
        uint8_t *ptr;
        size_t len;
        memcpy(&ptr, ret + PTR, sizeof ptr);
        memcpy(&len, ret + 2 * PTR, sizeof len);
        message = dup_text(ptr, len);
    }
    post_return(ret);
    return message;
}

const char *wafka_testing_init(const char *const *config)
{
    size_t n = 0;
    while (config && config[n])
        n++;
    plugin_tuple2_string_string_t *pairs = n ? xmalloc(n * sizeof *pairs) : (void *)empty;
    for (size_t i = 0; i < n; i++) {
        const char *eq = strchr(config[i], '=');
        if (!eq) {
            fprintf(stderr, "wafka_testing_init: `%s` is not KEY=VALUE\n", config[i]);
            exit(2);
        }
        pairs[i].f0 = wit_dup(config[i], (size_t)(eq - config[i]));
        pairs[i].f1 = wit_dup_str(eq + 1);
    }
    return export_result(__wasm_export_exports_plugin_init((uint8_t *)pairs, n),
                         __wasm_export_exports_plugin_init_post_return);
}

const char *wafka_testing_handle(const void *event, size_t len)
{
    return export_result(__wasm_export_exports_plugin_handle(dup_bytes(event, len), len),
                         __wasm_export_exports_plugin_handle_post_return);
}

const char *wafka_testing_handle_str(const char *event)
{
    return wafka_testing_handle(event, strlen(event));
}

const char *wafka_testing_finish(void)
{
    return export_result(__wasm_export_exports_plugin_finish(), __wasm_export_exports_plugin_finish_post_return);
}

/* ---- Checks -------------------------------------------------------------------------------- */

void wafka_testing_check_failed(const char *file, int line, const char *what, const char *got,
                                const char *want)
{
    fprintf(stderr, "%s:%d: check failed: %s", file, line, what);
    if (got || want)
        fprintf(stderr, ": got %s%s%s, want %s%s%s", got ? "\"" : "", got ? got : "NULL", got ? "\"" : "",
                want ? "\"" : "", want ? want : "NULL", want ? "\"" : "");
    fprintf(stderr, "\n");
    exit(1);
}

void wafka_testing_check_str(const char *file, int line, const char *what, const char *got,
                             const char *want)
{
    if (got == want || (got && want && strcmp(got, want) == 0))
        return;
    wafka_testing_check_failed(file, line, what, got, want);
}
