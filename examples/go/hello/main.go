// hello publishes every event as one record (the Go twin of examples/rust/hello).
//
// Configuration:
//
//   - topic — the destination topic (default "hello");
//   - key-delimiter — optional, non-empty: each event is split at the first occurrence of the
//     delimiter into key (before) and value (after). An event without the delimiter is
//     published whole as the value, with a null key. Without this setting, every record has a
//     null key.
//
// Every record carries the header source=hello.
package main

import (
	"bytes"
	"errors"

	wafka "github.com/wafka/wafka/guest-sdk/go"
)

// hello holds the plugin's settings.
type hello struct {
	topic        string
	keyDelimiter []byte // nil: no key
}

var headers = []wafka.Header{{Key: "source", Value: []byte("hello")}}

func (h *hello) Init(config wafka.Config) error {
	h.keyDelimiter = nil
	if d, ok := config.Get("key-delimiter"); ok {
		if d == "" {
			return errors.New("config `key-delimiter` must not be empty")
		}
		h.keyDelimiter = []byte(d)
	}
	h.topic = config.GetOr("topic", "hello")
	return nil
}

func (h *hello) Handle(event []byte) error {
	var key []byte // nil: Kafka's null key
	value := event
	if h.keyDelimiter != nil {
		key, value = splitOnce(event, h.keyDelimiter)
	}
	_, err := wafka.Publish(wafka.Record{Topic: h.topic, Key: key, Value: value, Headers: headers})
	return err
}

// splitOnce splits event at the first delimiter into (key, value), or returns (nil, event)
// when the delimiter does not occur. A found key is never nil, even when empty (it is a
// subslice of event, which is never nil), so an empty key stays an empty key, not a null one.
func splitOnce(event, delimiter []byte) (key, value []byte) {
	before, after, found := bytes.Cut(event, delimiter)
	if !found {
		return nil, event
	}
	return before, after
}

func init() { wafka.Register(&hello{}) }

func main() {}
