/*
 * The plugin's unit tests, against the SDK's fake host (natively: no component, no broker):
 *
 *   .wafka/guest-sdk/c/test.sh plugin.c plugin_test.c
 */
#include <wafka_testing.h>

static void publishes_every_event_to_the_topic(void)
{
    wafka_testing_reset();
    WAFKA_CHECK(wafka_testing_init((const char *[]){"topic=events", NULL}) == NULL);
    WAFKA_CHECK(wafka_testing_handle_str("one") == NULL);
    WAFKA_CHECK(wafka_testing_handle_str("two") == NULL);

    const wafka_published *records;
    WAFKA_CHECK(wafka_testing_published(&records) == 2);
    WAFKA_CHECK_STR(records[0].topic, "events");
    WAFKA_CHECK_STR(records[0].value, "one");
    WAFKA_CHECK(!records[0].has_key);
    WAFKA_CHECK(records[0].headers_len == 1);
    WAFKA_CHECK_STR(records[0].headers[0].key, "plugin");
    WAFKA_CHECK_STR((const char *)records[0].headers[0].value, "{{name}}");
    WAFKA_CHECK(records[1].offset == 1);
    WAFKA_CHECK(wafka_testing_finish() == NULL);
}

static void an_event_the_host_refuses_fails_with_its_error(void)
{
    wafka_testing_reset();
    WAFKA_CHECK(wafka_testing_init((const char *[]){"topic=events", NULL}) == NULL);
    wafka_testing_refuse_topic("events", &(wafka_error){.code = WAFKA_ERR_NOT_AUTHORIZED, .detail = "events"});
    WAFKA_CHECK_STR(wafka_testing_handle_str("one"), "not authorized: events");
}

static void an_empty_topic_is_refused(void)
{
    wafka_testing_reset();
    WAFKA_CHECK_STR(wafka_testing_init((const char *[]){"topic=", NULL}), "config `topic` must not be empty");
}

int main(void)
{
    publishes_every_event_to_the_topic();
    an_event_the_host_refuses_fails_with_its_error();
    an_empty_topic_is_refused();
    return 0;
}
