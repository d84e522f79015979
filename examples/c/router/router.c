/*
 * router: routes JSON events to a topic chosen by one of their fields (the C twin of
 * examples/rust/router).
 *
 * Each event must be a JSON object. Configuration:
 *  - `field`: the field that picks the topic (default `type`);
 *  - `prefix`: prepended to the field's value to make the topic (default `events.`).
 *
 * So with the defaults, {"type":"click","id":42} goes to `events.click`. The field's value must
 * be a non-empty string or a number (`events.7`). The record's key is the event's `id` field:
 * a string as is, any other value as its JSON text, none (Kafka's null) when `id` is absent or
 * null. The value is the event's bytes, unchanged.
 *
 * An event that is not a JSON object, or lacks a usable routing field, fails with a one-line
 * message (the Rust example's words; after `event is not JSON:` comes the scanner's reason and
 * the byte it stopped at); the host counts it as an error and goes on with the next event.
 *
 * C has no JSON library, so the scanner below reads just what routing needs. It checks that
 * the whole event is one JSON value (RFC 8259: UTF-8, no trailing data, at most 127 levels of
 * nesting, as in Rust), walks the members of the top-level object, skipping (and checking)
 * nested values, and decodes the strings it needs: member names, the routing field and `id`,
 * with their escapes (\uXXXX and surrogate pairs included). A repeated name keeps its last
 * value, as in Rust. Numbers and an `id` that is not a string are used as written in the
 * event (`7` is `7`; Rust writes `1e3` as `1000.0`, and an object without spaces, its members
 * sorted).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wafka.h>

static const char *field;
static const char *prefix;

int plugin_init(const wafka_config *config, char **err)
{
    field = wafka_config_get_or(config, "field", "type");
    if (!*field)
        return wafka_fail(err, "config `field` must not be empty");
    prefix = wafka_config_get_or(config, "prefix", "events.");
    return 0;
}

/* ---- A JSON scanner ------------------------------------------------------------------------ */

/* Containers nested deeper than this are refused, as by Rust's serde_json. */
#define MAX_DEPTH 127

/* A cursor over the event, and the first reason it is not JSON. */
typedef struct scanner {
    const uint8_t *start, *at, *end;
    const char *error;
    size_t error_at; /* the byte the scanner stopped at, from 0 */
} scanner;

/* A value in the event: its text and its JSON type ("object", ..., "null"; NULL: absent). */
typedef struct span {
    const uint8_t *at;
    size_t len;
    const char *kind;
} span;

/* What routing needs from the top-level object. */
typedef struct wanted {
    const char *field;
    span field_value, id;
    uint8_t *name; /* room for any member name of the event, decoded */
} wanted;

static bool fail(scanner *s, const char *why)
{
    if (!s->error) {
        s->error = why;
        s->error_at = (size_t)(s->at - s->start);
    }
    return false;
}

static bool at_end(const scanner *s)
{
    return s->at >= s->end;
}

static void skip_space(scanner *s)
{
    while (!at_end(s) && (*s->at == ' ' || *s->at == '\t' || *s->at == '\n' || *s->at == '\r'))
        s->at++;
}

/* Whether the n bytes at p are UTF-8 (no overlong forms, surrogates or code points past
 * U+10FFFF). */
static bool utf8_valid(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = p[i];
        size_t extra;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            extra = 1, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            extra = 2, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            extra = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (n - i <= extra)
            return false;
        for (size_t k = 1; k <= extra; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (p[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += extra + 1;
    }
    return true;
}

/* Reads the four hex digits of a \u escape. */
static bool read_hex4(scanner *s, uint32_t *unit)
{
    if (s->end - s->at < 4)
        return fail(s, "EOF while parsing a string");
    uint32_t u = 0;
    for (int i = 0; i < 4; i++) {
        uint8_t c = *s->at;
        int digit = c >= '0' && c <= '9' ? c - '0'
                    : c >= 'a' && c <= 'f' ? c - 'a' + 10
                    : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                           : -1;
        if (digit < 0)
            return fail(s, "invalid escape");
        u = u << 4 | (uint32_t)digit;
        s->at++;
    }
    *unit = u;
    return true;
}

/* Writes code point cp as UTF-8 to out (unless NULL); returns its length. */
static size_t put_utf8(uint8_t *out, uint32_t cp)
{
    uint8_t b[4];
    size_t n;
    if (cp < 0x80) {
        b[0] = (uint8_t)cp, n = 1;
    } else if (cp < 0x800) {
        b[0] = (uint8_t)(0xc0 | cp >> 6), b[1] = (uint8_t)(0x80 | (cp & 0x3f)), n = 2;
    } else if (cp < 0x10000) {
        b[0] = (uint8_t)(0xe0 | cp >> 12), b[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
        b[2] = (uint8_t)(0x80 | (cp & 0x3f)), n = 3;
    } else {
        b[0] = (uint8_t)(0xf0 | cp >> 18), b[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3f));
        b[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3f)), b[3] = (uint8_t)(0x80 | (cp & 0x3f)), n = 4;
    }
    if (out)
        memcpy(out, b, n);
    return n;
}

/* Reads a string (s->at is at its opening quote). With `out`, which must have room for as
 * many bytes as the string's text (decoding never grows it), writes the decoded string there
 * and its length to *out_len. */
static bool read_string(scanner *s, uint8_t *out, size_t *out_len)
{
    size_t n = 0;
    s->at++;
    for (;;) {
        if (at_end(s))
            return fail(s, "EOF while parsing a string");
        uint8_t c = *s->at++;
        if (c == '"')
            break;
        if (c < 0x20)
            return fail(s, "control character in a string");
        if (c != '\\') {
            if (out)
                out[n] = c;
            n++;
            continue;
        }
        if (at_end(s))
            return fail(s, "EOF while parsing a string");
        uint32_t cp;
        switch (*s->at++) {
        case '"': cp = '"'; break;
        case '\\': cp = '\\'; break;
        case '/': cp = '/'; break;
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'n': cp = '\n'; break;
        case 'r': cp = '\r'; break;
        case 't': cp = '\t'; break;
        case 'u':
            if (!read_hex4(s, &cp))
                return false;
            if (cp >= 0xdc00 && cp <= 0xdfff)
                return fail(s, "lone trailing surrogate in hex escape");
            if (cp >= 0xd800 && cp <= 0xdbff) {
                /* A high surrogate: a \u escape of a low one must follow. */
                uint32_t low;
                if (s->end - s->at < 2 || s->at[0] != '\\' || s->at[1] != 'u')
                    return fail(s, "lone leading surrogate in hex escape");
                s->at += 2;
                if (!read_hex4(s, &low))
                    return false;
                if (low < 0xdc00 || low > 0xdfff)
                    return fail(s, "lone leading surrogate in hex escape");
                cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
            }
            break;
        default:
            s->at--;
            return fail(s, "invalid escape");
        }
        n += put_utf8(out ? out + n : NULL, cp);
    }
    if (out_len)
        *out_len = n;
    return true;
}

/* Reads one or more digits. */
static bool read_digits(scanner *s)
{
    const uint8_t *from = s->at;
    while (!at_end(s) && *s->at >= '0' && *s->at <= '9')
        s->at++;
    return s->at > from || fail(s, "invalid number");
}

/* Reads a number: -? (0 | [1-9][0-9]*) (.[0-9]+)? ([eE][+-]?[0-9]+)? */
static bool read_number(scanner *s)
{
    if (*s->at == '-')
        s->at++;
    if (!at_end(s) && *s->at == '0')
        s->at++;
    else if (!read_digits(s))
        return false;
    if (!at_end(s) && *s->at == '.') {
        s->at++;
        if (!read_digits(s))
            return false;
    }
    if (!at_end(s) && (*s->at == 'e' || *s->at == 'E')) {
        s->at++;
        if (!at_end(s) && (*s->at == '+' || *s->at == '-'))
            s->at++;
        if (!read_digits(s))
            return false;
    }
    return true;
}

/* Reads the literal `word` (true, false, null). */
static bool read_word(scanner *s, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(s->end - s->at) < n || memcmp(s->at, word, n) != 0)
        return fail(s, "expected value");
    s->at += n;
    return true;
}

static bool read_value(scanner *s, int depth, span *value, wanted *w);

/* Reads an object (s->at is at its `{`) whose values are inside `depth` containers. With `w`,
 * decodes each member's name and keeps the values of the routing field and of `id` (the last
 * ones). */
static bool read_object(scanner *s, int depth, wanted *w)
{
    s->at++;
    skip_space(s);
    if (!at_end(s) && *s->at == '}') {
        s->at++;
        return true;
    }
    for (;;) {
        skip_space(s);
        if (at_end(s))
            return fail(s, "EOF while parsing an object");
        if (*s->at != '"')
            return fail(s, "key must be a string");
        size_t len = 0;
        if (!read_string(s, w ? w->name : NULL, &len))
            return false;
        skip_space(s);
        if (at_end(s) || *s->at != ':')
            return fail(s, at_end(s) ? "EOF while parsing an object" : "expected `:`");
        s->at++;
        span value;
        if (!read_value(s, depth, &value, NULL))
            return false;
        if (w && len == strlen(w->field) && memcmp(w->name, w->field, len) == 0)
            w->field_value = value;
        if (w && len == 2 && memcmp(w->name, "id", 2) == 0)
            w->id = value;
        skip_space(s);
        if (at_end(s))
            return fail(s, "EOF while parsing an object");
        if (*s->at == '}') {
            s->at++;
            return true;
        }
        if (*s->at++ != ',') {
            s->at--;
            return fail(s, "expected `,` or `}`");
        }
    }
}

/* Reads an array (s->at is at its `[`) whose values are inside `depth` containers. */
static bool read_array(scanner *s, int depth)
{
    s->at++;
    skip_space(s);
    if (!at_end(s) && *s->at == ']') {
        s->at++;
        return true;
    }
    for (;;) {
        if (!read_value(s, depth, NULL, NULL))
            return false;
        skip_space(s);
        if (at_end(s))
            return fail(s, "EOF while parsing a list");
        if (*s->at == ']') {
            s->at++;
            return true;
        }
        if (*s->at++ != ',') {
            s->at--;
            return fail(s, "expected `,` or `]`");
        }
    }
}

/* Reads one value inside `depth` containers (leading spaces skipped) and, with `value`, says
 * where it is and what it is. `w` (only for the top level) is handed to an object. */
static bool read_value(scanner *s, int depth, span *value, wanted *w)
{
    skip_space(s);
    if (at_end(s))
        return fail(s, "EOF while parsing a value");
    if ((*s->at == '{' || *s->at == '[') && depth >= MAX_DEPTH)
        return fail(s, "recursion limit exceeded");
    const uint8_t *from = s->at;
    const char *kind;
    bool ok;
    switch (*s->at) {
    case '{': kind = "object", ok = read_object(s, depth + 1, w); break;
    case '[': kind = "array", ok = read_array(s, depth + 1); break;
    case '"': kind = "string", ok = read_string(s, NULL, NULL); break;
    case 't': kind = "boolean", ok = read_word(s, "true"); break;
    case 'f': kind = "boolean", ok = read_word(s, "false"); break;
    case 'n': kind = "null", ok = read_word(s, "null"); break;
    default:
        if (*s->at != '-' && !(*s->at >= '0' && *s->at <= '9'))
            return fail(s, "expected value");
        kind = "number", ok = read_number(s);
    }
    if (ok && value)
        *value = (span){from, (size_t)(s->at - from), kind};
    return ok;
}

/* Decodes the string at `v` into out (room for v.len bytes); returns its length. The string
 * was checked when the event was read. */
static size_t decode(span v, uint8_t *out)
{
    scanner s = {v.at, v.at, v.at + v.len, NULL, 0};
    size_t len = 0;
    read_string(&s, out, &len);
    return len;
}

/* ---- The plugin ------------------------------------------------------------------------------ */

int plugin_handle(const uint8_t *event, size_t len, char **err)
{
    int code = 0;
    size_t prefix_len = strlen(prefix);
    /* Every string decoded from the event is at most as long as the event. */
    uint8_t *name = malloc(len + 1), *key = malloc(len + 1);
    char *topic = malloc(prefix_len + len + 1);
    if (!name || !key || !topic)
        abort();

    scanner s = {event, event, event + len, NULL, 0};
    wanted w = {.field = field, .name = name};
    span top;
    if (!utf8_valid(event, len)) {
        code = wafka_fail(err, "event is not JSON: invalid UTF-8");
        goto done;
    }
    if (read_value(&s, 0, &top, &w)) {
        skip_space(&s);
        if (!at_end(&s))
            fail(&s, "trailing characters");
    }
    if (s.error) {
        code = wafka_failf(err, "event is not JSON: %s at byte %zu", s.error, s.error_at + 1);
        goto done;
    }
    if (strcmp(top.kind, "object") != 0) {
        code = wafka_failf(err, "event is a JSON %s, not an object", top.kind);
        goto done;
    }

    /* The topic: the prefix, then the field's string or number. */
    span f = w.field_value;
    size_t topic_len = prefix_len;
    memcpy(topic, prefix, prefix_len);
    if (!f.kind) {
        code = wafka_failf(err, "event has no field `%s`", field);
        goto done;
    } else if (strcmp(f.kind, "string") == 0) {
        size_t n = decode(f, (uint8_t *)topic + prefix_len);
        if (n == 0) {
            code = wafka_failf(err, "field `%s` is empty", field);
            goto done;
        }
        topic_len += n;
    } else if (strcmp(f.kind, "number") == 0) {
        memcpy(topic + prefix_len, f.at, f.len);
        topic_len += f.len;
    } else {
        code = wafka_failf(err, "field `%s` is a JSON %s, not a string or number", field, f.kind);
        goto done;
    }
    topic[topic_len] = '\0';

    wafka_record record = wafka_record_init(topic, event, len);
    record.topic_len = topic_len; /* a decoded name may hold a \u0000 */
    if (w.id.kind && strcmp(w.id.kind, "string") == 0)
        wafka_record_set_key(&record, key, decode(w.id, key));
    else if (w.id.kind && strcmp(w.id.kind, "null") != 0)
        wafka_record_set_key(&record, w.id.at, w.id.len); /* its JSON text, as written */
    code = wafka_publish(&record, NULL); /* on failure, the event fails with its message */

done:
    free(name);
    free(key);
    free(topic);
    return code;
}
