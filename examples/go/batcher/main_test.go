package main

import (
	"testing"

	wafka "github.com/wafka/wafka/guest-sdk/go"
)

func start(t *testing.T, pairs ...[2]string) *batcher {
	t.Helper()
	b := &batcher{}
	if err := b.Init(wafka.NewConfig(pairs...)); err != nil {
		t.Fatal(err)
	}
	return b
}

// Against the SDK's fake host: every N records the batcher drains the reports, so it keeps at
// most N values, and a record that failed goes to the dead-letter topic with its headers.
func TestDeadLettersFailedRecordsAndKeepsOneBatch(t *testing.T) {
	fake := wafka.UseFakeHost()
	b := start(t, [2]string{"topic", "orders"}, [2]string{"batch", "2"})
	fake.FailReports(&wafka.TimedOutError{Detail: "late"})
	_ = b.Handle([]byte("lost one"))
	fake.FailReports(nil)
	for _, e := range []string{"two", "three"} {
		if err := b.Handle([]byte(e)); err != nil {
			t.Fatal(err)
		}
	}
	if len(b.pending) != 1 {
		t.Errorf("pending after 3 records with batch=2: %d", len(b.pending))
	}
	if err := b.Finish(); err != nil || len(b.pending) != 0 {
		t.Fatalf("finish: %v, %d pending", err, len(b.pending))
	}
	var topics, values []string
	for _, p := range fake.Published {
		topics, values = append(topics, p.Topic), append(values, string(p.Value))
	}
	want := []string{"orders", "orders.dlq", "orders"}
	if len(topics) != 3 || topics[0] != want[0] || topics[1] != want[1] || topics[2] != want[2] {
		t.Fatalf("published to %v, values %v", topics, values)
	}
	dead := fake.Published[1]
	if string(dead.Value) != "lost one" || dead.Key != nil || len(dead.Headers) != 2 ||
		string(dead.Headers[0].Value) != "timed out: late" || string(dead.Headers[1].Value) != "orders" {
		t.Errorf("dead letter %+v", dead)
	}
}

func TestConfig(t *testing.T) {
	wafka.UseFakeHost()
	b := start(t, [2]string{"topic", "t"})
	if b.batch != 100 || b.deadLetter != "t.dlq" {
		t.Errorf("defaults: %+v", b)
	}
	for _, pairs := range [][][2]string{
		{},
		{{"topic", "t"}, {"batch", "0"}},
		{{"topic", "t"}, {"batch", "2049"}},
		{{"topic", "t"}, {"batch", "+5"}},
		{{"topic", "t"}, {"typo", "x"}},
	} {
		if err := (&batcher{}).Init(wafka.NewConfig(pairs...)); err == nil {
			t.Errorf("config %v accepted", pairs)
		}
	}
	// A host that fixed autoflush off is what the batcher wants: it goes on.
	wafka.UseFakeHost().FixAutoflush(false)
	start(t, [2]string{"topic", "t"})
}
