/*
 * fake_host_test.c: the C SDK's tests of its fake host (testing/fake_host.c) and of the SDK's
 * code over it: offsets, receipts, reports, flush's first failure, refusals, fixed autoflush,
 * every produce-error case reaching the plugin as itself, and the exports. The answers checked
 * are those of the Rust SDK's `wafka_guest::testing` and Go's FakeHost. Run by
 * scripts/test-sdks c:
 *
 *   guest-sdk/c/test.sh guest-sdk/c/tests/fake_host_test.c
 *
 * The file is also the plugin under test: its plugin_handle runs `action`, set by each test.
 */
#include <wafka_testing.h>

/* ---- The plugin ---------------------------------------------------------------------------- */

static int (*action)(const uint8_t *event, size_t len, char **err);
static const wafka_config *seen_config;
static int finished;

int plugin_init(const wafka_config *config, char **err)
{
    seen_config = config;
    if (wafka_config_get(config, "fail"))
        return wafka_failf(err, "init failed: %s", wafka_config_get(config, "fail"));
    return 0;
}

int plugin_handle(const uint8_t *event, size_t len, char **err)
{
    return action ? action(event, len, err) : 0;
}

int plugin_finish(char **err)
{
    (void)err;
    finished++;
    return wafka_flush();
}

static int publish_event(const uint8_t *event, size_t len, char **err)
{
    (void)err;
    wafka_record r = wafka_record_init("events", event, len);
    return wafka_publish(&r, NULL);
}

/* ---- Helpers ------------------------------------------------------------------------------- */

static wafka_receipt publish_ok(const char *topic, const char *value)
{
    wafka_record r = wafka_record_init(topic, value, strlen(value));
    wafka_receipt receipt;
    WAFKA_CHECK(wafka_publish(&r, &receipt) == WAFKA_OK);
    return receipt;
}

static wafka_receipt publish_to(const char *topic, int32_t partition)
{
    wafka_record r = wafka_record_init(topic, "v", 1);
    wafka_record_set_partition(&r, partition);
    wafka_receipt receipt;
    WAFKA_CHECK(wafka_publish(&r, &receipt) == WAFKA_OK);
    return receipt;
}

static int publish_code(const char *topic)
{
    wafka_record r = wafka_record_init(topic, "v", 1);
    return wafka_publish(&r, NULL);
}

/* ---- Tests --------------------------------------------------------------------------------- */

static void published_records_keep_every_field(void)
{
    wafka_testing_reset();
    static const uint8_t bytes[] = {'a', 0, 'b'};
    wafka_header headers[] = {wafka_header_str("h", "1"), wafka_header_null("n"), wafka_header_str("h", "2")};
    wafka_record r = wafka_record_init("orders", bytes, sizeof bytes);
    wafka_record_set_key(&r, "k", 1);
    wafka_record_set_headers(&r, headers, 3);
    wafka_record_set_partition(&r, 4);
    WAFKA_CHECK(wafka_publish(&r, NULL) == WAFKA_OK);
    wafka_record empty = wafka_record_init("orders", "", 0);
    wafka_record_set_key(&empty, "", 0);
    WAFKA_CHECK(wafka_publish(&empty, NULL) == WAFKA_OK);

    const wafka_published *p;
    WAFKA_CHECK(wafka_testing_published(&p) == 2);
    WAFKA_CHECK_STR(p[0].topic, "orders");
    WAFKA_CHECK(p[0].topic_len == 6);
    WAFKA_CHECK(p[0].has_key && p[0].key_len == 1);
    WAFKA_CHECK_STR(p[0].key, "k");
    WAFKA_CHECK(p[0].value_len == 3 && memcmp(p[0].value, bytes, 3) == 0);
    WAFKA_CHECK(p[0].headers_len == 3);
    WAFKA_CHECK_STR(p[0].headers[0].key, "h");
    WAFKA_CHECK(p[0].headers[0].has_value && p[0].headers[0].value_len == 1);
    WAFKA_CHECK_STR((const char *)p[0].headers[0].value, "1");
    WAFKA_CHECK_STR(p[0].headers[1].key, "n");
    WAFKA_CHECK(!p[0].headers[1].has_value && p[0].headers[1].value == NULL);
    WAFKA_CHECK_STR((const char *)p[0].headers[2].value, "2");
    WAFKA_CHECK(p[0].partition == 4 && p[0].offset == 0);
    /* The empty key is not the null key. */
    WAFKA_CHECK(p[1].has_key && p[1].key_len == 0);
    WAFKA_CHECK_STR(p[1].key, "");
    WAFKA_CHECK(p[1].value_len == 0 && p[1].headers_len == 0 && p[1].partition == 0);

    wafka_record unkeyed = wafka_record_init("orders", "x", 1);
    WAFKA_CHECK(wafka_publish(&unkeyed, NULL) == WAFKA_OK);
    WAFKA_CHECK(wafka_testing_published(&p) == 3);
    WAFKA_CHECK(!p[2].has_key && p[2].key == NULL);
}

static void offsets_count_per_topic_and_partition(void)
{
    wafka_testing_reset();
    WAFKA_CHECK(wafka_set_autoflush(true) == WAFKA_OK);
    WAFKA_CHECK(publish_to("t", 0).offset == 0);
    WAFKA_CHECK(publish_to("t", 0).offset == 1);
    WAFKA_CHECK(publish_to("t", 2).offset == 0);
    WAFKA_CHECK(publish_to("u", 0).offset == 0);
    WAFKA_CHECK(publish_to("t", 2).offset == 1);
    WAFKA_CHECK(publish_ok("t", "no partition").offset == 2); /* partition 0 */
    const wafka_published *p;
    WAFKA_CHECK(wafka_testing_published(&p) == 6);
    WAFKA_CHECK(p[4].partition == 2 && p[4].offset == 1);
    WAFKA_CHECK(p[5].partition == 0 && p[5].offset == 2);
}

static void receipts_are_unacknowledged_unless_autoflush(void)
{
    wafka_testing_reset();
    WAFKA_CHECK(!wafka_testing_autoflush());
    wafka_receipt r = publish_to("t", 3);
    WAFKA_CHECK(r.id == 0 && r.partition == 3 && r.offset == -1);
    r = publish_ok("t", "b");
    WAFKA_CHECK(r.id == 1 && r.partition == 0 && r.offset == -1);
    WAFKA_CHECK(wafka_set_autoflush(true) == WAFKA_OK);
    WAFKA_CHECK(wafka_testing_autoflush());
    r = publish_to("t", 3);
    WAFKA_CHECK(r.id == 2 && r.partition == 3 && r.offset == 1);
    WAFKA_CHECK(wafka_set_autoflush(false) == WAFKA_OK);
    WAFKA_CHECK(publish_ok("t", "d").offset == -1);
}

static void reports_come_once_oldest_first(void)
{
    wafka_testing_reset();
    const wafka_report *reports;
    WAFKA_CHECK(wafka_take_reports(10, &reports) == 0);
    publish_ok("a", "1");
    publish_to("b", 1);
    publish_ok("a", "3");
    WAFKA_CHECK(wafka_take_reports(2, &reports) == 2);
    WAFKA_CHECK(reports[0].id == 0 && reports[0].partition == 0 && reports[0].offset == 0);
    WAFKA_CHECK_STR(reports[0].topic, "a");
    WAFKA_CHECK(reports[0].error == NULL);
    WAFKA_CHECK(reports[1].id == 1 && reports[1].partition == 1 && reports[1].offset == 0);
    WAFKA_CHECK_STR(reports[1].topic, "b");
    WAFKA_CHECK(wafka_take_reports(10, &reports) == 1);
    WAFKA_CHECK(reports[0].id == 2 && reports[0].offset == 1);
    WAFKA_CHECK(wafka_take_reports(10, &reports) == 0);
    WAFKA_CHECK(wafka_flush() == WAFKA_OK);
}

static void failed_reports_fail_the_next_flush_once_with_the_first_failure(void)
{
    wafka_testing_reset();
    publish_ok("t", "delivered");
    wafka_testing_fail_reports(&(wafka_error){.code = WAFKA_ERR_TIMED_OUT, .detail = "expired"});
    wafka_receipt r = publish_ok("t", "lost");
    WAFKA_CHECK(r.id == 1 && r.offset == -1);
    wafka_testing_fail_reports(&(wafka_error){.code = WAFKA_ERR_BUFFER_FULL});
    publish_ok("t", "lost too");
    const wafka_published *p;
    WAFKA_CHECK(wafka_testing_published(&p) == 1);

    const wafka_report *reports;
    WAFKA_CHECK(wafka_take_reports(10, &reports) == 3);
    WAFKA_CHECK(reports[0].error == NULL && reports[0].offset == 0);
    WAFKA_CHECK(reports[1].id == 1 && reports[1].offset == -1 && reports[1].error);
    WAFKA_CHECK(reports[1].error->code == WAFKA_ERR_TIMED_OUT);
    WAFKA_CHECK_STR(reports[1].error->message, "timed out: expired");
    WAFKA_CHECK(reports[2].error && reports[2].error->code == WAFKA_ERR_BUFFER_FULL);

    WAFKA_CHECK(wafka_flush() == WAFKA_ERR_TIMED_OUT);
    WAFKA_CHECK_STR(wafka_error_message(), "timed out: expired");
    WAFKA_CHECK(wafka_flush() == WAFKA_OK);

    /* With autoflush on, publish itself fails, and flush has nothing to report. */
    WAFKA_CHECK(wafka_set_autoflush(true) == WAFKA_OK);
    WAFKA_CHECK(publish_code("t") == WAFKA_ERR_BUFFER_FULL);
    WAFKA_CHECK(wafka_flush() == WAFKA_OK);
    WAFKA_CHECK(wafka_take_reports(10, &reports) == 0);

    wafka_testing_fail_reports(NULL);
    r = publish_ok("t", "delivered again");
    WAFKA_CHECK(r.id == 4 && r.offset == 1);
}

static void failing_flush_fails_every_flush(void)
{
    wafka_testing_reset();
    wafka_testing_fail_flush(&(wafka_error){.code = WAFKA_ERR_CLOSED});
    WAFKA_CHECK(wafka_flush() == WAFKA_ERR_CLOSED);
    WAFKA_CHECK(wafka_flush() == WAFKA_ERR_CLOSED);
    WAFKA_CHECK_STR(wafka_error_message(), "producer closed");
    wafka_testing_fail_flush(NULL);
    WAFKA_CHECK(wafka_flush() == WAFKA_OK);
}

static void refusals_by_topic_and_next(void)
{
    wafka_testing_reset();
    wafka_testing_refuse_topic("audit", &(wafka_error){.code = WAFKA_ERR_NOT_AUTHORIZED, .detail = "audit"});
    WAFKA_CHECK(publish_code("audit") == WAFKA_ERR_NOT_AUTHORIZED);
    WAFKA_CHECK_STR(wafka_error_message(), "not authorized: audit");
    WAFKA_CHECK(publish_code("audit") == WAFKA_ERR_NOT_AUTHORIZED);
    WAFKA_CHECK(publish_ok("orders", "x").id == 0); /* refused records take no id */

    wafka_testing_refuse_next(&(wafka_error){.code = WAFKA_ERR_BUFFER_FULL});
    wafka_testing_refuse_next(&(wafka_error){.code = WAFKA_ERR_QUOTA_EXCEEDED, .detail = "records"});
    WAFKA_CHECK(publish_code("orders") == WAFKA_ERR_BUFFER_FULL);
    WAFKA_CHECK(publish_code("orders") == WAFKA_ERR_QUOTA_EXCEEDED);
    WAFKA_CHECK(publish_ok("orders", "y").id == 1);

    /* A later refusal of the same topic replaces the earlier one. */
    wafka_testing_refuse_topic("audit", &(wafka_error){.code = WAFKA_ERR_INVALID_TOPIC, .detail = "audit"});
    WAFKA_CHECK(publish_code("audit") == WAFKA_ERR_INVALID_TOPIC);

    const wafka_published *p;
    WAFKA_CHECK(wafka_testing_published(&p) == 2);
    const wafka_report *reports;
    WAFKA_CHECK(wafka_take_reports(10, &reports) == 2);
    WAFKA_CHECK(wafka_flush() == WAFKA_OK);
}

static void fixed_autoflush_refuses_the_plugin(void)
{
    wafka_testing_reset();
    wafka_testing_fix_autoflush(true);
    WAFKA_CHECK(wafka_testing_autoflush());
    WAFKA_CHECK(wafka_set_autoflush(false) == WAFKA_ERR_NOT_ALLOWED);
    WAFKA_CHECK_STR(wafka_error_message(), "not allowed: the host fixed autoflush to on");
    WAFKA_CHECK(publish_ok("t", "x").offset == 0);
    wafka_testing_fix_autoflush(false);
    WAFKA_CHECK(wafka_set_autoflush(true) == WAFKA_ERR_NOT_ALLOWED);
    WAFKA_CHECK_STR(wafka_last_error()->detail, "the host fixed autoflush to off");
    WAFKA_CHECK(publish_ok("t", "y").offset == -1);
    wafka_testing_reset();
    WAFKA_CHECK(wafka_set_autoflush(true) == WAFKA_OK);
}

/* Every produce-error case, refused at publish, failed in a report and at flush, arrives as
 * itself: its code, fields and the Rust SDK's text; from plugin_handle, as the event's error. */
static void every_error_case_reaches_the_plugin(void)
{
    static const struct {
        wafka_error in;
        const char *message, *kind;
    } cases[] = {
        {{.code = WAFKA_ERR_NOT_AUTHORIZED, .detail = "t"}, "not authorized: t", "not-authorized"},
        {{.code = WAFKA_ERR_INVALID_TOPIC, .detail = "bad\nname"}, "invalid topic: bad name", "invalid-topic"},
        {{.code = WAFKA_ERR_RECORD_TOO_LARGE, .record_size = 1ull << 40}, "record too large: 1099511627776 bytes",
         "record-too-large"},
        {{.code = WAFKA_ERR_BUFFER_FULL}, "producer buffer full", "buffer-full"},
        {{.code = WAFKA_ERR_QUOTA_EXCEEDED, .detail = "records"}, "quota exceeded: records", "quota-exceeded"},
        {{.code = WAFKA_ERR_TIMED_OUT, .detail = "30s"}, "timed out: 30s", "timed-out"},
        {{.code = WAFKA_ERR_CLOSED}, "producer closed", "closed"},
        {{.code = WAFKA_ERR_NOT_ALLOWED, .detail = ""}, "not allowed: ", "not-allowed"},
        {{.code = WAFKA_ERR_BROKER, .broker_name = "NOT_ENOUGH_REPLICAS", .broker_code = 19, .broker_message = "2 < 3\r\n"},
         "broker error NOT_ENOUGH_REPLICAS (19): 2 < 3  ", "broker"},
        {{.code = WAFKA_ERR_BROKER, .broker_name = "UNKNOWN_SERVER_ERROR", .broker_code = -1},
         "broker error UNKNOWN_SERVER_ERROR (-1)", "broker"},
        {{.code = WAFKA_ERR_UNKNOWN},
         "a produce-error case this SDK does not know (tag 9): rebuild the plugin with the SDK of the host's contract",
         "unknown"},
    };
    WAFKA_CHECK(wafka_testing_init(NULL) == NULL);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const wafka_error *in = &cases[i].in;
        for (int where = 0; where < 3; where++) {
            wafka_testing_reset();
            int code;
            const wafka_error *got;
            if (where == 0) {
                wafka_testing_refuse_next(in);
                code = publish_code("t");
                got = wafka_last_error();
            } else if (where == 1) {
                wafka_testing_fail_reports(in);
                publish_ok("t", "x");
                code = wafka_flush();
                got = wafka_last_error();
            } else {
                wafka_testing_fail_reports(in);
                publish_ok("t", "x");
                const wafka_report *reports;
                WAFKA_CHECK(wafka_take_reports(1, &reports) == 1);
                got = reports[0].error;
                code = got ? got->code : WAFKA_OK;
            }
            WAFKA_CHECK(code == in->code && got && got->code == in->code);
            WAFKA_CHECK_STR(got->message, cases[i].message);
            WAFKA_CHECK_STR(wafka_error_kind(got->code), cases[i].kind);
            WAFKA_CHECK_STR(got->detail, in->detail ? in->detail : "");
            WAFKA_CHECK(got->record_size == in->record_size);
            WAFKA_CHECK_STR(got->broker_name, in->broker_name ? in->broker_name : "");
            WAFKA_CHECK(got->broker_code == in->broker_code);
            WAFKA_CHECK_STR(got->broker_message, in->broker_message);
        }
        /* From plugin_handle: the code returned with *err left NULL makes the event's error. */
        wafka_testing_reset();
        wafka_testing_refuse_next(in);
        action = publish_event;
        WAFKA_CHECK_STR(wafka_testing_handle_str("x"), cases[i].message);
        action = NULL;
    }
}

static int fail_with_message(const uint8_t *event, size_t len, char **err)
{
    return wafka_failf(err, "bad event %.*s", (int)len, (const char *)event);
}

static int fail_with_code(const uint8_t *event, size_t len, char **err)
{
    (void)event, (void)len, (void)err;
    return 7;
}

static const uint8_t *handled;
static size_t handled_len;

static int keep_event(const uint8_t *event, size_t len, char **err)
{
    (void)err;
    handled = malloc(len + 1);
    memcpy((void *)handled, event, len);
    handled_len = len;
    return 0;
}

static void exports_run_as_the_host_calls_them(void)
{
    wafka_testing_reset();
    WAFKA_CHECK(wafka_testing_init((const char *[]){"topic=a", "x=1=2", "empty=", "topic=b", NULL}) == NULL);
    WAFKA_CHECK(wafka_config_count(seen_config) == 4);
    WAFKA_CHECK_STR(wafka_config_get(seen_config, "topic"), "b");
    WAFKA_CHECK_STR(wafka_config_get(seen_config, "x"), "1=2");
    WAFKA_CHECK_STR(wafka_config_get(seen_config, "empty"), "");
    WAFKA_CHECK_STR(wafka_config_key(seen_config, 2), "empty");

    action = publish_event;
    WAFKA_CHECK(wafka_testing_handle("a\0b", 3) == NULL);
    WAFKA_CHECK(wafka_testing_handle("", 0) == NULL);
    const wafka_published *p;
    WAFKA_CHECK(wafka_testing_published(&p) == 2);
    WAFKA_CHECK(p[0].value_len == 3 && memcmp(p[0].value, "a\0b", 3) == 0);
    WAFKA_CHECK(p[1].value_len == 0);

    action = keep_event;
    WAFKA_CHECK(wafka_testing_handle_str("kept") == NULL);
    WAFKA_CHECK(handled_len == 4 && memcmp(handled, "kept", 4) == 0);
    free((void *)handled);

    action = fail_with_message;
    WAFKA_CHECK_STR(wafka_testing_handle_str("e1"), "bad event e1");
    action = fail_with_code;
    WAFKA_CHECK_STR(wafka_testing_handle_str("e2"), "plugin_handle failed (code 7)");
    action = NULL;

    /* finish flushes (see plugin_finish): its failure is finish's error. */
    finished = 0;
    WAFKA_CHECK(wafka_testing_finish() == NULL);
    wafka_testing_fail_flush(&(wafka_error){.code = WAFKA_ERR_TIMED_OUT, .detail = "late"});
    WAFKA_CHECK_STR(wafka_testing_finish(), "timed out: late");
    WAFKA_CHECK(finished == 2);

    WAFKA_CHECK_STR(wafka_testing_init((const char *[]){"fail=no", NULL}), "init failed: no");
    WAFKA_CHECK_STR(wafka_testing_handle_str("x"), "plugin is not initialized (init was not called or failed)");
    WAFKA_CHECK(wafka_testing_finish() == NULL);
    WAFKA_CHECK(finished == 2); /* not after a failed init */
}

static void reset_starts_afresh(void)
{
    publish_ok("t", "x");
    wafka_testing_refuse_topic("t", &(wafka_error){.code = WAFKA_ERR_CLOSED});
    wafka_testing_refuse_next(&(wafka_error){.code = WAFKA_ERR_CLOSED});
    wafka_testing_fail_reports(&(wafka_error){.code = WAFKA_ERR_CLOSED});
    wafka_testing_fail_flush(&(wafka_error){.code = WAFKA_ERR_CLOSED});
    wafka_testing_fix_autoflush(true);
    wafka_testing_reset();
    WAFKA_CHECK(wafka_testing_published(NULL) == 0);
    WAFKA_CHECK(!wafka_testing_autoflush());
    WAFKA_CHECK(wafka_flush() == WAFKA_OK);
    wafka_receipt r = publish_ok("t", "y");
    WAFKA_CHECK(r.id == 0 && r.offset == -1);
    const wafka_report *reports;
    WAFKA_CHECK(wafka_take_reports(10, &reports) == 1 && reports[0].offset == 0);
    WAFKA_CHECK(wafka_set_autoflush(true) == WAFKA_OK);
    wafka_testing_reset();
}

int main(void)
{
    published_records_keep_every_field();
    offsets_count_per_topic_and_partition();
    receipts_are_unacknowledged_unless_autoflush();
    reports_come_once_oldest_first();
    failed_reports_fail_the_next_flush_once_with_the_first_failure();
    failing_flush_fails_every_flush();
    refusals_by_topic_and_next();
    fixed_autoflush_refuses_the_plugin();
    every_error_case_reaches_the_plugin();
    exports_run_as_the_host_calls_them();
    reset_starts_afresh();
    return 0;
}
