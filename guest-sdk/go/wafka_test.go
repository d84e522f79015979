package wafka

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// fakeProducer records what the SDK hands the host.
type fakeProducer struct {
	records []Record
	refuse  ProduceError
	fixed   bool
	reports []DeliveryReport
}

func (f *fakeProducer) publish(r *Record) (Receipt, ProduceError) {
	if f.refuse != nil {
		return Receipt{}, f.refuse
	}
	f.records = append(f.records, *r)
	return Receipt{ID: uint64(len(f.records) - 1), Offset: -1}, nil
}
func (f *fakeProducer) flush() ProduceError { return nil }
func (f *fakeProducer) setAutoflush(bool) ProduceError {
	if f.fixed {
		return &NotAllowedError{Detail: "fixed"}
	}
	return nil
}
func (f *fakeProducer) takeReports(max uint32) []DeliveryReport {
	n := min(int(max), len(f.reports))
	out := f.reports[:n]
	f.reports = f.reports[n:]
	return out
}

func withFake(t *testing.T) *fakeProducer {
	fake := &fakeProducer{}
	saved := host
	host = fake
	t.Cleanup(func() { host = saved })
	return fake
}

func TestErrorMessagesMatchTheRustSDK(t *testing.T) {
	cases := []struct {
		err  ProduceError
		text string
		kind string
	}{
		{&NotAuthorizedError{"t"}, "not authorized: t", "not-authorized"},
		{&InvalidTopicError{"bad\nname"}, "invalid topic: bad name", "invalid-topic"},
		{&RecordTooLargeError{12}, "record too large: 12 bytes", "record-too-large"},
		{&BufferFullError{}, "producer buffer full", "buffer-full"},
		{&QuotaExceededError{"records"}, "quota exceeded: records", "quota-exceeded"},
		{&TimedOutError{"30s"}, "timed out: 30s", "timed-out"},
		{&ClosedError{}, "producer closed", "closed"},
		{&NotAllowedError{"fixed"}, "not allowed: fixed", "not-allowed"},
		{&BrokerError{Name: "NOT_ENOUGH_REPLICAS", Code: 19, Message: "2 < 3\r\n", HasMessage: true},
			"broker error NOT_ENOUGH_REPLICAS (19): 2 < 3  ", "broker"},
		{&BrokerError{Name: "UNKNOWN", Code: -1}, "broker error UNKNOWN (-1)", "broker"},
	}
	for _, c := range cases {
		if got := c.err.Error(); got != c.text {
			t.Errorf("Error() = %q, want %q", got, c.text)
		}
		if got := c.err.Kind(); got != c.kind {
			t.Errorf("Kind() = %q, want %q", got, c.kind)
		}
	}
}

func TestConfigLastValueWins(t *testing.T) {
	c := NewConfig([2]string{"topic", "a"}, [2]string{"n", "3"}, [2]string{"topic", "b"})
	if v, _ := c.Get("topic"); v != "b" {
		t.Errorf("Get = %q", v)
	}
	if got := c.GetAll("topic"); strings.Join(got, ",") != "a,b" {
		t.Errorf("GetAll = %v", got)
	}
	if c.GetOr("missing", "d") != "d" {
		t.Error("GetOr")
	}
	if _, err := c.Require("x"); err == nil || err.Error() != "missing config `x`" {
		t.Errorf("Require: %v", err)
	}
	if n, err := c.Int("n", 0); n != 3 || err != nil {
		t.Errorf("Int = %d, %v", n, err)
	}
	if err := c.CheckKnown("topic"); err == nil || err.Error() != "unknown config `n` (known: topic)" {
		t.Errorf("CheckKnown: %v", err)
	}
}

func TestPublish(t *testing.T) {
	fake := withFake(t)
	r, err := Publish(Record{Topic: "t", Value: []byte("v"), Partition: Partition(2)})
	if err != nil || r.Acknowledged() || r.String() != "id=0 partition=0 offset=-1" {
		t.Fatalf("Publish = %v, %v", r, err)
	}
	if got := fake.records[0]; got.Key != nil || *got.Partition != 2 {
		t.Errorf("record = %+v", got)
	}
	if _, err := Publish(Record{Topic: "bad\xff"}); err == nil || !strings.HasPrefix(err.Error(), "invalid topic: ") {
		t.Errorf("invalid UTF-8 topic: %v", err)
	}
	fake.refuse = &NotAuthorizedError{"no"}
	_, err = Publish(Record{Topic: "t"})
	var notAuthorized *NotAuthorizedError
	if !errors.As(err, &notAuthorized) || notAuthorized.Detail != "no" {
		t.Errorf("refused: %v", err)
	}
}

func TestReports(t *testing.T) {
	fake := withFake(t)
	fake.reports = []DeliveryReport{
		{ID: 0, Topic: "t", Offset: 5},
		{ID: 1, Topic: "t", Partition: 1, Offset: -1, Err: &TimedOutError{"late"}},
	}
	got := TakeReports(10)
	if len(got) != 2 || !got[0].OK() || got[1].OK() {
		t.Fatalf("TakeReports = %v", got)
	}
	if s := got[1].String(); s != "id=1 topic=t partition=1 error: timed out: late" {
		t.Errorf("String = %q", s)
	}
	fake.fixed = true
	var notAllowed *NotAllowedError
	if err := SetAutoflush(true); !errors.As(err, &notAllowed) {
		t.Errorf("SetAutoflush: %v", err)
	}
}

type counter struct{ seen, limit int }

func (c *counter) Init(config Config) (err error) {
	c.seen = 0
	c.limit, err = config.Int("limit", 2)
	return err
}

func (c *counter) Handle([]byte) error {
	c.seen++
	if c.seen > c.limit {
		return errors.New("over the limit")
	}
	return nil
}

func TestExports(t *testing.T) {
	saved := registered
	t.Cleanup(func() { registered, ready = saved, false })
	registered, ready = &counter{}, false

	if text, failed := callHandle(nil); !failed || text != NotInitialized {
		t.Errorf("handle before init: %q %v", text, failed)
	}
	if _, failed := callInit(Config{}); failed {
		t.Fatal("init failed")
	}
	callHandle(nil)
	callHandle(nil)
	if text, failed := callHandle(nil); !failed || text != "over the limit" {
		t.Errorf("third event: %q %v", text, failed)
	}
	// A failed init leaves no plugin behind.
	if text, failed := callInit(NewConfig([2]string{"limit", "x"})); !failed || !strings.Contains(text, "invalid value") {
		t.Errorf("bad init: %q", text)
	}
	if text, _ := callHandle(nil); text != NotInitialized {
		t.Errorf("after a failed init: %q", text)
	}
}

func TestSentinelErrorsMatchTheirCaseOnly(t *testing.T) {
	cases := []struct {
		err      error
		sentinel error
	}{
		{&NotAuthorizedError{Detail: "t"}, ErrNotAuthorized},
		{&InvalidTopicError{Detail: "t"}, ErrInvalidTopic},
		{&RecordTooLargeError{Size: 9}, ErrRecordTooLarge},
		{&BufferFullError{}, ErrBufferFull},
		{&QuotaExceededError{Detail: "q"}, ErrQuotaExceeded},
		{&TimedOutError{Detail: "d"}, ErrTimedOut},
		{&ClosedError{}, ErrClosed},
		{&NotAllowedError{Detail: "n"}, ErrNotAllowed},
		{&BrokerError{Name: "NOT_ENOUGH_REPLICAS", Code: 19}, ErrBroker},
	}
	for i, c := range cases {
		wrapped := fmt.Errorf("publishing: %w", c.err)
		if !errors.Is(wrapped, c.sentinel) {
			t.Errorf("%T is not %v", c.err, c.sentinel)
		}
		for j, other := range cases {
			if i != j && errors.Is(c.err, other.sentinel) {
				t.Errorf("%T is also %v", c.err, other.sentinel)
			}
		}
	}
}
