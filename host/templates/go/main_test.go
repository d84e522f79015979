// Unit tests against the SDK's fake host (`go test ./...`, natively: no component, no broker).
package main

import (
	"errors"
	"testing"

	wafka "github.com/wafka/wafka/guest-sdk/go"
)

func newApp(t *testing.T, topic string) *app {
	a := &app{}
	if err := a.Init(wafka.NewConfig([2]string{"topic", topic})); err != nil {
		t.Fatal(err)
	}
	return a
}

func TestPublishesEveryEventToTheTopic(t *testing.T) {
	fake := wafka.UseFakeHost()
	a := newApp(t, "events")
	for _, event := range []string{"one", "two"} {
		if err := a.Handle([]byte(event)); err != nil {
			t.Fatal(err)
		}
	}
	if len(fake.Published) != 2 {
		t.Fatalf("published %d records", len(fake.Published))
	}
	r := fake.Published[0]
	if r.Topic != "events" || string(r.Value) != "one" || fake.Offsets[1] != 1 {
		t.Errorf("published %+v, offsets %v", r, fake.Offsets)
	}
	if len(r.Headers) != 1 || r.Headers[0].Key != "plugin" || string(r.Headers[0].Value) != "{{name}}" {
		t.Errorf("headers %+v", r.Headers)
	}
}

func TestAnEventTheHostRefusesFailsWithItsError(t *testing.T) {
	fake := wafka.UseFakeHost()
	a := newApp(t, "events")
	fake.RefuseTopic("events", &wafka.NotAuthorizedError{Detail: "events"})
	err := a.Handle([]byte("one"))
	if !errors.Is(err, wafka.ErrNotAuthorized) || err.Error() != "not authorized: events" {
		t.Errorf("refused event: %v", err)
	}
}

func TestAnEmptyTopicIsRefusedAtInit(t *testing.T) {
	err := (&app{}).Init(wafka.NewConfig([2]string{"topic", ""}))
	if err == nil || err.Error() != "config `topic` must not be empty" {
		t.Errorf("init: %v", err)
	}
}
