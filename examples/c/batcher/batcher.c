/*
 * batcher: publishes every event with autoflush off, flushes every N records, and sends the
 * records that were not delivered to a dead-letter topic (the C twin of examples/rust/batcher).
 *
 * Configuration:
 *  - `topic`: the destination topic (required);
 *  - `batch`: flush after this many records (default 100, from 1 to 2048: the host keeps at
 *    most 4,096 undrained reports, and a batch's reports and its dead letters' must fit);
 *  - `dead-letter`: the dead-letter topic (default `<topic>.dlq`).
 *
 * init switches autoflush off. Where the host fixed the mode (`wafka run`'s default
 * `--autoflush off` does) the switch is refused and the batcher goes on: under `off` that is the
 * mode it wants; under `on` each publish waits for its ack and a failed record fails its event
 * instead.
 *
 * Each event is published as the value (null key, no headers), and a copy of the value is kept
 * until the record's delivery report comes. After every `batch` records the plugin calls
 * wafka_flush (a failed flush is not the event's error: the reports say which records failed)
 * and drains the delivery reports until none is left. A record that was not delivered is
 * published to the dead-letter topic with its value, a null key and the headers `error` (the
 * error's one-line text, as the `reporter` example prints it) and `topic` (the record's topic),
 * and the plugin prints
 *     dead-letter id=<id> topic=<topic> error=<message>
 * A dead letter that fails too is printed as
 *     lost id=<id> topic=<topic> error=<message>
 * (the host also counts it as refused or failed, and `wafka run` then exits non-zero). An event
 * refused at publish fails with the error's text.
 *
 * plugin_finish flushes and drains the same way, then flushes and drains once more for the
 * dead letters. So the values kept are those of one batch: at most `batch` records.
 */
#include <inttypes.h>
#include <stdio.h>
#include <wafka.h>

static const char *topic;
static const char *dead_letter;
static char *dead_letter_made; /* `<topic>.dlq`, when the plugin made it */
static size_t batch;
static size_t unflushed; /* published since the last flush */

/* The values of records not yet reported, in the order published (so by increasing id). An
 * entry whose report came has value NULL until the drain compacts the array. */
typedef struct pending {
    uint64_t id;
    uint8_t *value;
    size_t len;
} pending;
static pending *pendings;
static size_t pendings_len, pendings_cap;

int plugin_init(const wafka_config *config, char **err)
{
    static const char *const known[] = {"topic", "batch", "dead-letter", NULL};
    const char *unknown = wafka_config_unknown_key(config, known);
    if (unknown)
        return wafka_failf(err, "unknown config `%s` (known: topic, batch, dead-letter)", unknown);
    topic = wafka_config_get(config, "topic");
    if (!topic)
        return wafka_fail(err, "missing config `topic`");
    const char *n = wafka_config_get_or(config, "batch", "100");
    size_t digits = strspn(n, "0123456789");
    batch = digits > 0 && digits <= 4 && n[digits] == '\0' ? (size_t)atoi(n) : 0;
    if (batch < 1 || batch > 2048)
        return wafka_failf(err, "config `batch` must be a number from 1 to 2048, not `%s`", n);
    free(dead_letter_made);
    dead_letter_made = NULL;
    dead_letter = wafka_config_get(config, "dead-letter");
    if (!dead_letter) {
        dead_letter_made = malloc(strlen(topic) + sizeof ".dlq");
        if (!dead_letter_made)
            abort();
        strcpy(dead_letter_made, topic);
        strcat(dead_letter_made, ".dlq");
        dead_letter = dead_letter_made;
    }
    for (size_t i = 0; i < pendings_len; i++)
        free(pendings[i].value);
    pendings_len = 0;
    unflushed = 0;
    if (wafka_set_autoflush(false) != 0 && wafka_last_error()->code != WAFKA_ERR_NOT_ALLOWED)
        return wafka_last_error()->code; /* not-allowed: the host fixed the mode, see above */
    return 0;
}

static int by_id(const void *key, const void *entry)
{
    uint64_t id = *(const uint64_t *)key, other = ((const pending *)entry)->id;
    return id < other ? -1 : id > other;
}

/* Takes the value of record `id` out of the pending ones (NULL: not one of ours). */
static uint8_t *take_pending(uint64_t id, size_t *len)
{
    pending *p = bsearch(&id, pendings, pendings_len, sizeof *pendings, by_id);
    if (!p || !p->value)
        return NULL;
    uint8_t *value = p->value;
    *len = p->len;
    p->value = NULL;
    return value;
}

/* Publishes the value of record `r`, which was not delivered, to the dead-letter topic. */
static void send_dead_letter(const wafka_report *r, const uint8_t *value, size_t len)
{
    const wafka_header headers[] = {
        wafka_header_str("error", r->error->message),
        wafka_header_bytes("topic", r->topic, r->topic_len),
    };
    wafka_record record = wafka_record_init(dead_letter, value, len);
    wafka_record_set_headers(&record, headers, 2);
    if (wafka_publish(&record, NULL) == 0)
        printf("dead-letter id=%" PRIu64 " topic=%s error=%s\n", r->id, r->topic, r->error->message);
    else
        printf("lost id=%" PRIu64 " topic=%s error=%s (dead letter refused: %s)\n", r->id, r->topic,
               r->error->message, wafka_error_message());
}

/* Flushes, then drains every delivery report. */
static void settle(void)
{
    (void)wafka_flush(); /* a failed record shows in its report */
    unflushed = 0;
    const wafka_report *reports;
    size_t n;
    while ((n = wafka_take_reports(100, &reports)) > 0) {
        for (size_t i = 0; i < n; i++) {
            const wafka_report *r = &reports[i];
            size_t len = 0;
            uint8_t *value = take_pending(r->id, &len);
            if (r->error && value)
                send_dead_letter(r, value, len);
            else if (r->error) /* a dead letter, which has no dead letter of its own */
                printf("lost id=%" PRIu64 " topic=%s error=%s\n", r->id, r->topic, r->error->message);
            free(value);
        }
    }
    /* Drop the entries whose report came (all of them, unless a flush timed out). */
    size_t kept = 0;
    for (size_t i = 0; i < pendings_len; i++) {
        if (pendings[i].value)
            pendings[kept++] = pendings[i];
    }
    pendings_len = kept;
}

int plugin_handle(const uint8_t *event, size_t len, char **err)
{
    (void)err;
    wafka_record record = wafka_record_init(topic, event, len);
    wafka_receipt receipt;
    int code = wafka_publish(&record, &receipt);
    if (code != 0)
        return code; /* the event fails with wafka_error_message() */
    if (pendings_len == pendings_cap) {
        pendings_cap = pendings_cap ? 2 * pendings_cap : batch;
        pendings = realloc(pendings, pendings_cap * sizeof *pendings);
        if (!pendings)
            abort();
    }
    /* The event's memory is the SDK's only for this call: keep a copy. */
    uint8_t *value = malloc(len ? len : 1);
    if (!value)
        abort();
    memcpy(value, event, len);
    pendings[pendings_len++] = (pending){receipt.id, value, len};
    if (++unflushed == batch)
        settle();
    return 0;
}

int plugin_finish(char **err)
{
    (void)err;
    settle(); /* the last records */
    settle(); /* their dead letters */
    return 0;
}
