package main

import (
	"testing"

	wafka "github.com/wafka/wafka/guest-sdk/go"
)

func TestRoutesByFieldWithKeysFromID(t *testing.T) {
	r := &router{}
	if err := r.Init(wafka.NewConfig([2]string{"field", "kind"}, [2]string{"prefix", "p."})); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ event, topic, key string }{
		{`{"kind":"click","id":"u1"}`, "p.click", "u1"},
		{`{"kind":7,"id":42}`, "p.7", "42"},
		{`{"id":{"b":1,"a":"<"},"kind":"x"}`, "p.x", `{"a":"<","b":1}`},
		{`{"kind":"caf\u00e9","kind":"last"}`, "p.last", ""},
	}
	for _, c := range cases {
		topic, key, err := r.route([]byte(c.event))
		if err != nil || topic != c.topic || string(key) != c.key {
			t.Errorf("route(%s) = %q, %q, %v", c.event, topic, key, err)
		}
	}
	if _, key, _ := r.route([]byte(`{"kind":"a","id":null}`)); key != nil {
		t.Errorf("a null id is a null key, not %q", key)
	}
}

func TestRefusesEventsItCannotRoute(t *testing.T) {
	r := &router{}
	if err := r.Init(wafka.NewConfig()); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ event, err string }{
		{`[1]`, "event is a JSON array, not an object"},
		{`{"id":1}`, "event has no field `type`"},
		{`{"type":""}`, "field `type` is empty"},
		{`{"type":null}`, "field `type` is a JSON null, not a string or number"},
		{`{"type":"a"} x`, "event is not JSON: invalid character 'x' after top-level value"},
		{"{\"type\":\"\xff\"}", "event is not JSON: invalid UTF-8"},
	}
	for _, c := range cases {
		if _, _, err := r.route([]byte(c.event)); err == nil || err.Error() != c.err {
			t.Errorf("route(%q): %v, want %q", c.event, err, c.err)
		}
	}
	if err := r.Init(wafka.NewConfig([2]string{"field", ""})); err == nil {
		t.Error("an empty field is refused")
	}
}

// Against the SDK's fake host: the record is the event, unchanged, on the routed topic.
func TestPublishesTheEventUnchanged(t *testing.T) {
	fake := wafka.UseFakeHost()
	r := &router{}
	_ = r.Init(wafka.NewConfig())
	event := []byte(` {"type":"view","id":"u2"} `)
	if err := r.Handle(event); err != nil {
		t.Fatal(err)
	}
	p := fake.Published[0]
	if p.Topic != "events.view" || string(p.Key) != "u2" || string(p.Value) != string(event) {
		t.Errorf("published %+v", p)
	}
}
