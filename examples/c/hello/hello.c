/*
 * hello: publishes every event as one record (the C twin of examples/rust/hello).
 *
 * Configuration:
 *  - `topic`: the destination topic (default `hello`);
 *  - `key-delimiter`: optional, non-empty: each event is split at the first occurrence of the
 *    delimiter into key (before) and value (after). An event without the delimiter is
 *    published whole as the value, with a null key. Without this setting, every record has a
 *    null key.
 *
 * Every record carries the header `source=hello`.
 */
#include <wafka.h>

static const char *topic;
static const char *delimiter; /* NULL: no key */
static size_t delimiter_len;

static const wafka_header headers[] = {WAFKA_HEADER_LITERAL("source", "hello")};

int plugin_init(const wafka_config *config, char **err)
{
    /* The configuration's strings live as long as the instance: keep pointers into it. */
    delimiter = wafka_config_get(config, "key-delimiter");
    if (delimiter && delimiter[0] == '\0')
        return wafka_fail(err, "config `key-delimiter` must not be empty");
    delimiter_len = delimiter ? strlen(delimiter) : 0;
    topic = wafka_config_get_or(config, "topic", "hello");
    return 0;
}

/* The index of the first `needle` in `haystack`, or -1. */
static long find(const uint8_t *haystack, size_t len, const char *needle, size_t needle_len)
{
    for (size_t at = 0; at + needle_len <= len; at++)
        if (memcmp(haystack + at, needle, needle_len) == 0)
            return (long)at;
    return -1;
}

int plugin_handle(const uint8_t *event, size_t len, char **err)
{
    (void)err;
    wafka_record record = wafka_record_init(topic, event, len);
    long at = delimiter ? find(event, len, delimiter, delimiter_len) : -1;
    if (at >= 0) {
        wafka_record_set_key(&record, event, (size_t)at);
        record.value = event + at + delimiter_len;
        record.value_len = len - (size_t)at - delimiter_len;
    }
    wafka_record_set_headers(&record, headers, 1);
    /* A failed publish: the SDK reports wafka_error_message() as the event's error. */
    return wafka_publish(&record, NULL);
}
