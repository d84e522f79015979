package main

import (
	"errors"
	"testing"

	wafka "github.com/wafka/wafka/guest-sdk/go"
)

func TestSplitOnce(t *testing.T) {
	cases := []struct {
		event, key, value string
		null              bool
	}{
		{"k::v::w", "k", "v::w", false},
		{"::v", "", "v", false},
		{"k::", "k", "", false},
		{"kv", "", "kv", true},
		{":", "", ":", true},
	}
	for _, c := range cases {
		key, value := splitOnce([]byte(c.event), []byte("::"))
		if (key == nil) != c.null || string(key) != c.key || string(value) != c.value {
			t.Errorf("splitOnce(%q) = %q, %q", c.event, key, value)
		}
	}
}

// Against the SDK's fake host: what the plugin publishes, and how an event the host refuses
// fails.
func TestPublishesKeyedLinesAndFailsRefusedEvents(t *testing.T) {
	fake := wafka.UseFakeHost()
	h := &hello{}
	if err := h.Init(wafka.NewConfig([2]string{"topic", "greetings"}, [2]string{"key-delimiter", ":"})); err != nil {
		t.Fatal(err)
	}
	if err := h.Handle([]byte("alice:hi")); err != nil {
		t.Fatal(err)
	}
	if len(fake.Published) != 1 {
		t.Fatalf("published %d records", len(fake.Published))
	}
	r := fake.Published[0]
	if r.Topic != "greetings" || string(r.Key) != "alice" || string(r.Value) != "hi" || fake.Offsets[0] != 0 {
		t.Errorf("published %+v at %d", r, fake.Offsets[0])
	}
	fake.RefuseTopic("greetings", &wafka.NotAuthorizedError{Detail: "greetings"})
	err := h.Handle([]byte("bob:hey"))
	if !errors.Is(err, wafka.ErrNotAuthorized) || err.Error() != "not authorized: greetings" {
		t.Errorf("refused event: %v", err)
	}
}
