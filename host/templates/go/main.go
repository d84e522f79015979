// {{name}}: a wafka plugin. The host calls Init once with the plugin's `--config KEY=VALUE`
// pairs, then Handle once per input event (one line of input, without the newline), and
// Finish once after the last event.
//
// This one publishes every event, unchanged, to the topic named by the config `topic`
// (default `{{name}}`), with the header `plugin={{name}}`.
package main

import (
	"errors"

	wafka "github.com/wafka/wafka/guest-sdk/go"
)

// app is the plugin's state: one value per instance, alive from Init to the end.
type app struct {
	topic string
}

var headers = []wafka.Header{{Key: "plugin", Value: []byte("{{name}}")}}

func (a *app) Init(config wafka.Config) error {
	a.topic = config.GetOr("topic", "{{name}}")
	if a.topic == "" {
		// A failed Init stops the plugin with this one-line message.
		return errors.New("config `topic` must not be empty")
	}
	return nil
}

func (a *app) Handle(event []byte) error {
	// Set Key to choose the partition (nil is Kafka's null key). Publish returns a receipt, or
	// the host's error (errors.Is(err, wafka.ErrNotAuthorized), ...): returning it fails this
	// event; the host logs it in one line and goes on with the next event.
	_, err := wafka.Publish(wafka.Record{Topic: a.topic, Value: event, Headers: headers})
	return err
}

// Finish waits for every record: with autoflush off (the default) Publish returns once the
// record is queued; wafka.TakeReports tells which ones failed.
func (a *app) Finish() error {
	return wafka.Flush()
}

func init() { wafka.Register(&app{}) }

func main() {}
