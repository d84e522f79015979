/*
 * {{name}}: a wafka plugin. The host calls plugin_init once with the plugin's
 * `--config KEY=VALUE` pairs, then plugin_handle once per input event (one line of input,
 * without the newline), and plugin_finish once after the last event.
 *
 * This one publishes every event, unchanged, to the topic named by the config `topic`
 * (default `{{name}}`), with the header `plugin={{name}}`.
 */
#include <wafka.h>

static const char *topic;

static const wafka_header headers[] = {WAFKA_HEADER_LITERAL("plugin", "{{name}}")};

int plugin_init(const wafka_config *config, char **err)
{
    /* The configuration's strings live as long as the instance: keep pointers into it. */
    topic = wafka_config_get_or(config, "topic", "{{name}}");
    if (topic[0] == '\0')
        /* A failed init stops the plugin with this one-line message. */
        return wafka_fail(err, "config `topic` must not be empty");
    return 0;
}

int plugin_handle(const uint8_t *event, size_t len, char **err)
{
    (void)err;
    wafka_record record = wafka_record_init(topic, event, len);
    wafka_record_set_headers(&record, headers, 1);
    /* wafka_record_set_key chooses the partition (no key: Kafka's null key). A non-zero code
     * fails this event with wafka_error_message(); the host logs it in one line and goes on
     * with the next event. */
    wafka_receipt receipt;
    return wafka_publish(&record, &receipt);
}

/* With autoflush off (the default) wafka_publish returns once the record is queued: wait for
 * every record here; wafka_take_reports tells which ones failed. */
int plugin_finish(char **err)
{
    (void)err;
    return wafka_flush();
}
