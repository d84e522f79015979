/*
 * reporter: publishes every event and prints the delivery reports it gets back.
 *
 * Configuration:
 *  - `topic`: the destination topic (default `reports`);
 *  - `autoflush=true`: init asks the host for autoflush (set-autoflush(true)) and fails with
 *    the host's message if the host refuses.
 *
 * Each event is published as the value of one record with a null key. When the receipt shows
 * the record acknowledged (autoflush on), the plugin prints
 *     receipt partition=<p> offset=<o>
 * Then it takes up to 100 delivery reports and prints one line for each:
 *     report id=<id> topic=<t> partition=<p> offset=<o>
 *     report id=<id> error=<message>
 */
#include <inttypes.h>
#include <stdio.h>
#include <wafka.h>

static const char *topic;

int plugin_init(const wafka_config *config, char **err)
{
    topic = wafka_config_get_or(config, "topic", "reports");
    const char *autoflush = wafka_config_get(config, "autoflush");
    if (autoflush && strcmp(autoflush, "true") == 0) {
        int code = wafka_set_autoflush(true);
        if (code != 0)
            return wafka_fail(err, wafka_error_message());
    }
    return 0;
}

/* Takes up to 100 delivery reports and prints one line each. */
static void print_reports(void)
{
    const wafka_report *reports;
    size_t n = wafka_take_reports(100, &reports);
    for (size_t i = 0; i < n; i++) {
        const wafka_report *r = &reports[i];
        if (r->error)
            printf("report id=%" PRIu64 " error=%s\n", r->id, r->error->message);
        else
            printf("report id=%" PRIu64 " topic=%s partition=%" PRId32 " offset=%" PRId64 "\n",
                   r->id, r->topic, r->partition, r->offset);
    }
}

int plugin_handle(const uint8_t *event, size_t len, char **err)
{
    (void)err;
    wafka_record record = wafka_record_init(topic, event, len);
    wafka_receipt receipt;
    int code = wafka_publish(&record, &receipt);
    if (code != 0)
        return code; /* the event fails with wafka_error_message() */
    if (receipt.offset >= 0)
        printf("receipt partition=%" PRId32 " offset=%" PRId64 "\n", receipt.partition, receipt.offset);
    print_reports();
    return 0;
}

/* After the last event: flush, then print the reports still to come. */
int plugin_finish(char **err)
{
    (void)err;
    (void)wafka_flush(); /* a failed record shows in its report */
    print_reports();
    return 0;
}
