/*
 * hello_test.c: hello's unit test, against the SDK's fake host (not part of the component:
 * scripts/guests/c.sh leaves *_test.c out). Run it with
 *
 *   guest-sdk/c/test.sh examples/c/hello/hello.c examples/c/hello/hello_test.c
 */
#include <wafka_testing.h>

/* What the plugin publishes, and how an event the host refuses fails. */
static void publishes_keyed_lines_and_fails_refused_events(void)
{
    wafka_testing_reset();
    WAFKA_CHECK(wafka_testing_init((const char *[]){"topic=greetings", "key-delimiter=:", NULL}) == NULL);
    WAFKA_CHECK(wafka_testing_handle_str("alice:hello") == NULL);
    WAFKA_CHECK(wafka_testing_handle_str("no delimiter") == NULL);

    const wafka_published *records;
    WAFKA_CHECK(wafka_testing_published(&records) == 2);
    WAFKA_CHECK_STR(records[0].topic, "greetings");
    WAFKA_CHECK(records[0].has_key);
    WAFKA_CHECK_STR(records[0].key, "alice");
    WAFKA_CHECK_STR(records[0].value, "hello");
    WAFKA_CHECK(records[0].headers_len == 1);
    WAFKA_CHECK_STR(records[0].headers[0].key, "source");
    WAFKA_CHECK_STR((const char *)records[0].headers[0].value, "hello");
    WAFKA_CHECK(!records[1].has_key);
    WAFKA_CHECK_STR(records[1].value, "no delimiter");
    WAFKA_CHECK(records[1].offset == 1);

    wafka_testing_refuse_topic("greetings", &(wafka_error){.code = WAFKA_ERR_NOT_AUTHORIZED, .detail = "greetings"});
    WAFKA_CHECK_STR(wafka_testing_handle_str("bob:hi"), "not authorized: greetings");
    WAFKA_CHECK(wafka_testing_finish() == NULL); /* hello has no plugin_finish */
}

static void rejects_an_empty_delimiter(void)
{
    WAFKA_CHECK_STR(wafka_testing_init((const char *[]){"key-delimiter=", NULL}),
                    "config `key-delimiter` must not be empty");
    WAFKA_CHECK_STR(wafka_testing_handle_str("x"), "plugin is not initialized (init was not called or failed)");
}

int main(void)
{
    publishes_keyed_lines_and_fails_refused_events();
    rejects_an_empty_delimiter();
    return 0;
}
