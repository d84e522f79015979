// router routes JSON events to a topic chosen by one of their fields (the Go twin of
// examples/rust/router).
//
// Each event must be a JSON object. Configuration:
//
//   - field — the field that picks the topic (default "type");
//   - prefix — prepended to the field's value to make the topic (default "events.").
//
// So with the defaults, {"type":"click","id":42} goes to events.click. The field's value must
// be a non-empty string or a number (events.7). The record's key is the event's id field: a
// string as is, any other value as its compact JSON text, none (Kafka's null) when id is
// absent or null. The value is the event's bytes, unchanged.
//
// An event that is not a JSON object (nor UTF-8), or lacks a usable routing field, fails with
// a one-line message (the Rust example's words; after "event is not JSON:" comes
// encoding/json's reason); the host counts it as an error and goes on with the next event.
//
// Numbers are kept as written in the event (json.Number): 7 is "7", 1e3 stays "1e3" (Rust
// writes 1000.0). An id object's members are written sorted by name, as Rust's are.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	wafka "github.com/wafka/wafka/guest-sdk/go"
)

// router holds the plugin's settings.
type router struct {
	field, prefix string
}

func (r *router) Init(config wafka.Config) error {
	r.field = config.GetOr("field", "type")
	if r.field == "" {
		return errors.New("config `field` must not be empty")
	}
	r.prefix = config.GetOr("prefix", "events.")
	return nil
}

func (r *router) Handle(event []byte) error {
	topic, key, err := r.route(event)
	if err != nil {
		return err
	}
	_, err = wafka.Publish(wafka.Record{Topic: topic, Key: key, Value: event})
	return err
}

// route returns the topic and key (nil: Kafka's null key) for event, or why it cannot be
// routed.
func (r *router) route(event []byte) (topic string, key []byte, err error) {
	value, err := parse(event)
	if err != nil {
		return "", nil, fmt.Errorf("event is not JSON: %w", err)
	}
	object, ok := value.(map[string]any)
	if !ok {
		return "", nil, fmt.Errorf("event is a JSON %s, not an object", kind(value))
	}
	var suffix string
	switch v := object[r.field].(type) {
	case string:
		if v == "" {
			return "", nil, fmt.Errorf("field `%s` is empty", r.field)
		}
		suffix = v
	case json.Number:
		suffix = v.String()
	default:
		if _, found := object[r.field]; !found {
			return "", nil, fmt.Errorf("event has no field `%s`", r.field)
		}
		return "", nil, fmt.Errorf("field `%s` is a JSON %s, not a string or number", r.field, kind(v))
	}
	switch id := object["id"].(type) {
	case nil: // absent or null
	case string:
		key = []byte(id)
	default:
		if key, err = compact(id); err != nil {
			return "", nil, err
		}
	}
	return r.prefix + suffix, key, nil
}

// parse decodes one JSON value, numbers as json.Number; only whitespace may follow it.
func parse(event []byte) (any, error) {
	if !utf8.Valid(event) { // encoding/json would read bad bytes as U+FFFD
		return nil, errors.New("invalid UTF-8")
	}
	d := json.NewDecoder(bytes.NewReader(event))
	d.UseNumber()
	var value any
	if err := d.Decode(&value); err != nil {
		return nil, err
	}
	if rest := bytes.Trim(event[d.InputOffset():], " \t\r\n"); len(rest) > 0 {
		return nil, fmt.Errorf("invalid character %q after top-level value", rest[0])
	}
	return value, nil
}

// compact is value's JSON text without spaces or HTML escapes.
func compact(value any) ([]byte, error) {
	var b bytes.Buffer
	e := json.NewEncoder(&b)
	e.SetEscapeHTML(false)
	if err := e.Encode(value); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// kind is the JSON type of a decoded value, for messages.
func kind(value any) string {
	switch value.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case json.Number:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	default:
		return "object"
	}
}

func init() { wafka.Register(&router{}) }

func main() {}
