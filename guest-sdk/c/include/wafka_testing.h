/*
 * wafka_testing.h: a fake host for C plugins' native unit tests (guest-sdk/c/test.sh).
 *
 * A test program links the plugin's sources with the SDK (src/wafka.c), the generated
 * bindings (plugin.c, compiled for the build machine) and the fake (testing/fake_host.c),
 * which stands where the host's `producer` imports are in a component. wafka_publish,
 * wafka_flush, wafka_set_autoflush and wafka_take_reports run the SDK's own code and reach the
 * fake, which answers as the host does: receipts with offsets per topic and partition
 * (counting from 0; -1 until acknowledged unless autoflush is on), one delivery report per
 * record, flush's first failure since the last flush, and the refusals and failures a test
 * asks for. The test drives the plugin through the component's exports, as the host does:
 *
 *   #include <wafka_testing.h>
 *
 *   int main(void)
 *   {
 *       WAFKA_CHECK(wafka_testing_init((const char *[]){"topic=greetings", NULL}) == NULL);
 *       WAFKA_CHECK(wafka_testing_handle_str("hello") == NULL);
 *       const wafka_published *records;
 *       WAFKA_CHECK(wafka_testing_published(&records) == 1);
 *       WAFKA_CHECK_STR(records[0].value, "hello");
 *       wafka_testing_refuse_topic("greetings", &(wafka_error){.code = WAFKA_ERR_NOT_AUTHORIZED,
 *                                                              .detail = "greetings"});
 *       WAFKA_CHECK_STR(wafka_testing_handle_str("again"), "not authorized: greetings");
 *       return 0;
 *   }
 *
 * Nothing here is in a component: only test.sh compiles the fake.
 */
#ifndef WAFKA_TESTING_H
#define WAFKA_TESTING_H

#include "wafka.h"

#ifdef __wasm__
#error "wafka_testing.h is for native unit tests (guest-sdk/c/test.sh), not for a component"
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Calling the plugin ------------------------------------------------------------------ */

/* Calls the component's `init` export with `config`, an array of "KEY=VALUE" strings (split
 * at the first '=') ended by NULL, as `--config KEY=VALUE` does. Returns NULL when it
 * succeeded, else the error message the host would see (valid until the next call of this
 * group). */
const char *wafka_testing_init(const char *const *config);

/* Calls the `handle` export with `len` bytes of `event`; returns like wafka_testing_init. */
const char *wafka_testing_handle(const void *event, size_t len);

/* wafka_testing_handle with a NUL-terminated event. */
const char *wafka_testing_handle_str(const char *event);

/* Calls the `finish` export (plugin_finish, when the plugin defines it); returns like
 * wafka_testing_init. */
const char *wafka_testing_finish(void);

/* ---- The fake host ----------------------------------------------------------------------- */

/* A record the plugin published, as the fake kept it. Its bytes are the fake's copies, each
 * followed by a NUL (so text compares with strcmp); headers are copies too. */
typedef struct wafka_published {
    const char *topic;
    size_t topic_len;
    bool has_key; /* false: Kafka's null key (key is then NULL) */
    const char *key;
    size_t key_len;
    const char *value;
    size_t value_len;
    const wafka_header *headers; /* in order; a header's value is NUL-terminated too */
    size_t headers_len;
    int32_t partition; /* the partition asked for, else 0 */
    int64_t offset; /* its offset in that topic and partition, counting from 0 */
} wafka_published;

/* Starts afresh: nothing published, no reports, no refusals, autoflush off and the plugin's to
 * choose. (The plugin's own state is untouched: call wafka_testing_init again for that.) */
void wafka_testing_reset(void);

/* The records published (and not refused) since the last reset, in order: sets *records to
 * the fake's array (valid until the next publish or reset) and returns their number. */
size_t wafka_testing_published(const wafka_published **records);

/* Every publish to `topic` is refused with `error` (as the host's ACL refuses with
 * WAFKA_ERR_NOT_AUTHORIZED, say). An error is given as the SDK hands it out: its code and the
 * fields of that code (detail, record_size, broker_name/code/message); message is ignored and
 * NULL strings count as "". WAFKA_ERR_UNKNOWN stands for a case of a newer contract. The fake
 * copies it. */
void wafka_testing_refuse_topic(const char *topic, const wafka_error *error);

/* The next publish is refused with `error` (several calls queue up; then publishes go through
 * again). */
void wafka_testing_refuse_next(const wafka_error *error);

/* Every record published from now on is queued, then not delivered: its delivery report (and
 * the next flush) carries `error`, as when the broker refuses it; with autoflush on, publish
 * itself fails with it. NULL delivers records again. */
void wafka_testing_fail_reports(const wafka_error *error);

/* Every flush fails with `error`; NULL stops that. */
void wafka_testing_fail_flush(const wafka_error *error);

/* The host fixes autoflush on or off: wafka_set_autoflush then fails with
 * WAFKA_ERR_NOT_ALLOWED. Until a reset. */
void wafka_testing_fix_autoflush(bool on);

/* Whether autoflush is on now. */
bool wafka_testing_autoflush(void);

/* ---- Checks ------------------------------------------------------------------------------ */

/* Fails the test (a line on stderr, exit status 1) unless `cond` holds; not turned off by
 * NDEBUG. */
#define WAFKA_CHECK(cond) \
    ((cond) ? (void)0 : wafka_testing_check_failed(__FILE__, __LINE__, #cond, NULL, NULL))

/* Fails the test unless the strings are equal (NULL equals only NULL), printing both. */
#define WAFKA_CHECK_STR(got, want) wafka_testing_check_str(__FILE__, __LINE__, #got, (got), (want))

void wafka_testing_check_failed(const char *file, int line, const char *what, const char *got,
                                const char *want);
void wafka_testing_check_str(const char *file, int line, const char *what, const char *got,
                             const char *want);

#ifdef __cplusplus
}
#endif

#endif /* WAFKA_TESTING_H */
