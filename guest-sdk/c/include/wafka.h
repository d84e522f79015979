/*
 * wafka.h: write wafka plugins in C.
 *
 * A wafka plugin is a WebAssembly component for the `plugin` world of the WIT package
 * `wafka:producer@0.1.0` (wit/producer.wit): the host calls `init` once with the plugin's
 * `--config KEY=VALUE` pairs, then `handle` once per input event, and the plugin publishes
 * Kafka records through the host's `producer` interface.
 *
 * This header hides the bindings that `wit-bindgen c` generates. A plugin implements the two
 * entry points declared at the end (plugin_init, plugin_handle and optionally plugin_finish)
 * and calls wafka_publish,
 * wafka_flush, wafka_set_autoflush and wafka_take_reports. guest-sdk/c/build.sh compiles the
 * plugin, the SDK and the generated bindings and turns the result into a component.
 *
 * Conventions:
 *  - Functions that can fail return 0 on success or a negative WAFKA_ERR_* code; the details
 *    of the last failure are in wafka_last_error() (and its one-line text in
 *    wafka_error_message()) until the next failing call.
 *  - Nothing is copied on the way to the host: a record's topic, key, value and headers are
 *    read by the host straight from the plugin's memory during wafka_publish, and only for the
 *    duration of the call.
 *  - Byte strings are (pointer, length) pairs and need not be NUL-terminated; strings the SDK
 *    hands out (configuration, error texts, report topics) are NUL-terminated.
 *  - A plugin instance is single-threaded and the host never re-enters it.
 */
#ifndef WAFKA_H
#define WAFKA_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Errors ---------------------------------------------------------------------------- */

/* Return codes. The WAFKA_ERR_* codes from WAFKA_ERR_NOT_AUTHORIZED to WAFKA_ERR_BROKER are
 * the WIT `produce-error` variants, in their order (host/tests/contract.rs checks it). */
typedef enum wafka_error_code {
    WAFKA_OK = 0,
    /* A plugin-defined failure: what wafka_fail and wafka_failf return. */
    WAFKA_ERR_PLUGIN = -1,
    /* The plugin may not publish to this topic (host ACL or broker authorization). */
    WAFKA_ERR_NOT_AUTHORIZED = -2,
    /* The topic name is not valid, or the topic does not exist. */
    WAFKA_ERR_INVALID_TOPIC = -3,
    /* The record is larger than the host allows (see wafka_error.record_size). */
    WAFKA_ERR_RECORD_TOO_LARGE = -4,
    /* The producer's buffer stayed full for the host's maximum wait. */
    WAFKA_ERR_BUFFER_FULL = -5,
    /* The plugin used up its quota (memory, records or bytes). */
    WAFKA_ERR_QUOTA_EXCEEDED = -6,
    /* The record was not acknowledged in time. */
    WAFKA_ERR_TIMED_OUT = -7,
    /* The producer or this instance is closed. */
    WAFKA_ERR_CLOSED = -8,
    /* The host's policy does not allow this (e.g. wafka_set_autoflush when the mode is fixed). */
    WAFKA_ERR_NOT_ALLOWED = -9,
    /* The broker refused the record (see wafka_error.broker_*). */
    WAFKA_ERR_BROKER = -10,
    /* A produce-error case of a newer contract than this SDK's: rebuild the plugin with the
     * SDK of the host's contract. Never one of the codes above. */
    WAFKA_ERR_UNKNOWN = -11,
} wafka_error_code;

/* A producer error, as the host reported it. */
typedef struct wafka_error {
    /* A WAFKA_ERR_* code. */
    wafka_error_code code;
    /* One line (control characters become spaces), the same text as the Rust SDK's
     * `Display`, e.g. "not allowed: autoflush is fixed by the host" or
     * "broker error NOT_ENOUGH_REPLICAS (19): ...". */
    const char *message;
    /* The host's text for NOT_AUTHORIZED, INVALID_TOPIC, QUOTA_EXCEEDED, TIMED_OUT and
     * NOT_ALLOWED; "" for the other codes. */
    const char *detail;
    /* RECORD_TOO_LARGE: the size of the encoded record in bytes; 0 otherwise. */
    uint64_t record_size;
    /* BROKER: Kafka's error name (e.g. "NOT_ENOUGH_REPLICAS"), its code, and the broker's
     * message (NULL when it sent none); "", 0 and NULL otherwise. */
    const char *broker_name;
    int16_t broker_code;
    const char *broker_message;
} wafka_error;

/* The last failure of wafka_publish, wafka_flush or wafka_set_autoflush, or NULL if none
 * failed yet. Valid until the next failing call. */
const wafka_error *wafka_last_error(void);

/* wafka_last_error()->message, or "" if no call failed yet. */
const char *wafka_error_message(void);

/* The WIT name of a code, e.g. "not-authorized" for WAFKA_ERR_NOT_AUTHORIZED; "plugin" for
 * WAFKA_ERR_PLUGIN, "ok" for 0, "unknown" for anything else. Stable text for logs. */
const char *wafka_error_kind(int code);

/* ---- Records ---------------------------------------------------------------------------- */

/* A record header. has_value false is Kafka's null value. Same memory layout as the WIT
 * `header` (the SDK checks this at compile time), so an array of them goes to the host as is. */
typedef struct wafka_header {
    const char *key; /* UTF-8, key_len bytes */
    size_t key_len;
    bool has_value;
    const uint8_t *value;
    size_t value_len;
} wafka_header;

/* A record to publish. Build it with wafka_record_init and the setters below, or fill it in
 * directly. */
typedef struct wafka_record {
    const char *topic; /* UTF-8, topic_len bytes */
    size_t topic_len;
    bool has_key; /* false: Kafka's null key (the producer spreads such records) */
    const uint8_t *key;
    size_t key_len;
    const uint8_t *value;
    size_t value_len;
    const wafka_header *headers; /* headers_len of them, in order; a key may repeat */
    size_t headers_len;
    bool has_partition; /* false: the partitioner chooses (murmur2 of the key) */
    int32_t partition;
} wafka_record;

/* Where a published record went. With autoflush on, wafka_publish returns after the broker
 * acknowledged the record and offset is its offset; with autoflush off, once the record is
 * queued: offset is then -1 and id finds the record's delivery report later. */
typedef struct wafka_receipt {
    uint64_t id; /* the record's id within this plugin instance, counting from 0 */
    int32_t partition;
    int64_t offset; /* -1 while not acknowledged */
} wafka_receipt;

/* A record for `topic` (NUL-terminated) with `value`, a null key, no headers and no explicit
 * partition. */
static inline wafka_record wafka_record_init(const char *topic, const void *value, size_t value_len)
{
    wafka_record r;
    memset(&r, 0, sizeof r);
    r.topic = topic;
    r.topic_len = strlen(topic);
    r.value = (const uint8_t *)value;
    r.value_len = value_len;
    return r;
}

/* Sets the key (key_len bytes; may be empty, which is not the null key). */
static inline void wafka_record_set_key(wafka_record *r, const void *key, size_t key_len)
{
    r->has_key = true;
    r->key = (const uint8_t *)key;
    r->key_len = key_len;
}

/* Makes the key Kafka's null key again. */
static inline void wafka_record_clear_key(wafka_record *r)
{
    r->has_key = false;
    r->key = NULL;
    r->key_len = 0;
}

/* Attaches `len` headers (the array must stay valid until wafka_publish returns). */
static inline void wafka_record_set_headers(wafka_record *r, const wafka_header *headers, size_t len)
{
    r->headers = headers;
    r->headers_len = len;
}

/* Sends the record to `partition` instead of letting the partitioner choose. */
static inline void wafka_record_set_partition(wafka_record *r, int32_t partition)
{
    r->has_partition = true;
    r->partition = partition;
}

/* A header `key` (NUL-terminated) with `value_len` bytes of `value`. */
static inline wafka_header wafka_header_bytes(const char *key, const void *value, size_t value_len)
{
    wafka_header h;
    h.key = key;
    h.key_len = strlen(key);
    h.has_value = true;
    h.value = (const uint8_t *)value;
    h.value_len = value_len;
    return h;
}

/* A header with NUL-terminated key and value. */
static inline wafka_header wafka_header_str(const char *key, const char *value)
{
    return wafka_header_bytes(key, value, strlen(value));
}

/* A header whose value is Kafka's null. */
static inline wafka_header wafka_header_null(const char *key)
{
    wafka_header h;
    memset(&h, 0, sizeof h);
    h.key = key;
    h.key_len = strlen(key);
    return h;
}

/* A header from two string literals, usable in static initializers:
 *   static const wafka_header source = WAFKA_HEADER_LITERAL("source", "hello"); */
#define WAFKA_HEADER_LITERAL(k, v) \
    { (k), sizeof(k) - 1, true, (const uint8_t *)(v), sizeof(v) - 1 }

/* ---- The producer ----------------------------------------------------------------------- */

/* Publishes `record`. With autoflush on, returns after the broker acknowledged it; with
 * autoflush off, once it is queued (receipt->offset is then -1). `receipt` may be NULL.
 * Returns 0 or a WAFKA_ERR_* code (details in wafka_last_error()). */
int wafka_publish(const wafka_record *record, wafka_receipt *receipt);

/* Waits until every record this instance published before the call is acknowledged or has
 * failed; returns the first failure since the previous flush. */
int wafka_flush(void);

/* Switches autoflush for this instance: WAFKA_ERR_NOT_ALLOWED where the host fixed the mode. */
int wafka_set_autoflush(bool enabled);

/* How one record ended. */
typedef struct wafka_report {
    uint64_t id; /* as in the record's wafka_receipt */
    const char *topic; /* NUL-terminated, topic_len bytes */
    size_t topic_len;
    int32_t partition;
    int64_t offset; /* the record's offset when delivered; -1 when error is set */
    const wafka_error *error; /* NULL when delivered, else why not */
} wafka_report;

/* Takes up to `max` delivery reports of this instance's records, oldest first; each report is
 * returned once. Sets *reports to an array owned by the SDK, valid until the next call, and
 * returns its length (0: none is pending right now). */
size_t wafka_take_reports(uint32_t max, const wafka_report **reports);

/* ---- Configuration ---------------------------------------------------------------------- */

/* The KEY=VALUE pairs the host passes to init, in their order; a key may appear more than
 * once. It and its strings stay valid for the instance's lifetime (until the next init), so a
 * plugin may keep pointers into it. */
typedef struct wafka_config wafka_config;

/* The number of pairs (counting repeated keys). */
size_t wafka_config_count(const wafka_config *config);

/* The key and the value of pair `i` (< wafka_config_count). */
const char *wafka_config_key(const wafka_config *config, size_t i);
const char *wafka_config_value(const wafka_config *config, size_t i);

/* The last value given for `key`, or NULL when there is none. */
const char *wafka_config_get(const wafka_config *config, const char *key);

/* The last value given for `key`, or `fallback` when there is none. */
const char *wafka_config_get_or(const wafka_config *config, const char *key, const char *fallback);

/* The first key that is not in `known` (an array ended by NULL), or NULL: lets a plugin
 * reject misspelt settings. */
const char *wafka_config_unknown_key(const wafka_config *config, const char *const *known);

/* ---- Failing from plugin_init and plugin_handle ------------------------------------------ */

/* Sets *err to a copy of `message` and returns WAFKA_ERR_PLUGIN:
 *   return wafka_fail(err, "config `topic` is missing"); */
int wafka_fail(char **err, const char *message);

/* Like wafka_fail with a printf-style message. Defined here, so that only plugins that call it
 * link vsnprintf (with wasi-libc that also brings in stdio's file operations). */
static inline __attribute__((format(printf, 2, 3))) int wafka_failf(char **err, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    int n = vsnprintf(NULL, 0, format, args);
    va_end(args);
    if (n < 0)
        return wafka_fail(err, format);
    char *message = (char *)malloc((size_t)n + 1);
    if (!message)
        abort();
    va_start(args, format);
    vsnprintf(message, (size_t)n + 1, format, args);
    va_end(args);
    if (err) {
        free(*err);
        *err = message;
    } else {
        free(message);
    }
    return WAFKA_ERR_PLUGIN;
}

/* ---- What the plugin implements ---------------------------------------------------------- */

/* Builds the plugin's state from the configuration. Called once, before any event; a second
 * call replaces the state. Return 0 on success. On failure return non-zero and either set
 * *err to a message allocated with malloc (the SDK frees it; wafka_fail does this), or leave
 * *err NULL after returning the code of a failed wafka_* call, whose message is then used.
 * A failed init makes the host give up on the plugin. */
int plugin_init(const wafka_config *config, char **err);

/* Handles one event: one line of input without the newline, `len` bytes that stay valid
 * until plugin_handle returns. Returns like plugin_init; the host logs a failed event and
 * counts it, then goes on with the next one. Not called unless plugin_init succeeded. */
int plugin_handle(const uint8_t *event, size_t len, char **err);

/* Optional: finishes the plugin's work, once after the last event (the host calls it when its
 * input ends, and in wafka serve on instances idle at a drain or reload): flush, drain the last delivery reports.
 * Publishing still works here. Returns like plugin_init. A plugin that does not define it
 * finishes with nothing to do (the SDK declares it weak). */
__attribute__((weak)) int plugin_finish(char **err);

#ifdef __cplusplus
}
#endif

#endif /* WAFKA_H */
