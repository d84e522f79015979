package wafka

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// Header is a record header. A nil Value is Kafka's null; an empty non-nil Value is an empty
// header value.
type Header struct {
	Key   string
	Value []byte
}

// Record is a record to publish.
type Record struct {
	// Topic is the destination topic; the host checks it against the plugin's ACL.
	Topic string
	// Key is the record's key; nil is Kafka's null key (the producer then spreads records).
	Key []byte
	// Value is the record's value.
	Value []byte
	// Headers are the record's headers, in order; a key may repeat.
	Headers []Header
	// Partition is an explicit partition; nil lets the partitioner choose (murmur2 of the key).
	Partition *int32
}

// Partition returns a pointer to p, for Record.Partition.
func Partition(p int32) *int32 { return &p }

// Receipt tells where a published record went.
//
// With autoflush on, Publish returns after the broker acknowledged the record and Offset is
// its offset. With autoflush off, Publish returns once the record is queued: Offset is then -1
// and ID finds the record's DeliveryReport later.
type Receipt struct {
	// ID is the record's id within this plugin instance, counting from 0.
	ID        uint64
	Partition int32
	Offset    int64
}

// Acknowledged reports whether the broker had acknowledged the record when Publish returned.
func (r Receipt) Acknowledged() bool { return r.Offset >= 0 }

func (r Receipt) String() string {
	return fmt.Sprintf("id=%d partition=%d offset=%d", r.ID, r.Partition, r.Offset)
}

// DeliveryReport tells how one record ended, as TakeReports returns it: delivered at Offset
// (Err is nil), or not delivered (Err says why).
type DeliveryReport struct {
	ID        uint64
	Topic     string
	Partition int32
	Offset    int64
	Err       ProduceError
}

// OK reports whether the record was delivered.
func (r DeliveryReport) OK() bool { return r.Err == nil }

func (r DeliveryReport) String() string {
	head := fmt.Sprintf("id=%d topic=%s partition=%d ", r.ID, r.Topic, r.Partition)
	if r.Err == nil {
		return head + fmt.Sprintf("offset=%d", r.Offset)
	}
	return head + "error: " + r.Err.Error()
}

// errNotUTF8 is returned for strings the component model cannot carry (the host would trap).
var errNotUTF8 = errors.New("not valid UTF-8")

func checkRecord(r *Record) error {
	if !utf8.ValidString(r.Topic) {
		return &InvalidTopicError{Detail: fmt.Sprintf("%q is not valid UTF-8", r.Topic)}
	}
	for _, h := range r.Headers {
		if !utf8.ValidString(h.Key) {
			return fmt.Errorf("header key %q: %w", h.Key, errNotUTF8)
		}
	}
	return nil
}

// Publish publishes one record and returns its Receipt; the error is a ProduceError (or, for
// a topic or header key that is not valid UTF-8, an error the SDK makes without asking the
// host).
//
// With autoflush on, it returns after the broker acknowledged the record; with autoflush off,
// once the record is queued (the Receipt's Offset is then -1). Which mode applies is the
// host's choice, unless it lets the plugin switch with SetAutoflush.
func Publish(r Record) (Receipt, error) {
	if err := checkRecord(&r); err != nil {
		return Receipt{}, err
	}
	receipt, perr := host.publish(&r)
	if perr != nil {
		return Receipt{}, perr
	}
	return receipt, nil
}

// Flush waits until every record this instance published before the call is acknowledged or
// has failed; it returns the first failure since the previous flush.
func Flush() error {
	if err := host.flush(); err != nil {
		return err
	}
	return nil
}

// SetAutoflush switches autoflush for this instance: a *NotAllowedError where the host fixed
// the mode.
func SetAutoflush(enabled bool) error {
	if err := host.setAutoflush(enabled); err != nil {
		return err
	}
	return nil
}

// TakeReports takes up to max delivery reports of this instance's records, oldest first.
// Each report is returned once; an empty result means none is pending right now.
func TakeReports(max uint32) []DeliveryReport {
	return host.takeReports(max)
}

// producer is the host's producer interface: the WIT imports on wasm (abi_wasm.go), a fake in
// native tests.
type producer interface {
	publish(r *Record) (Receipt, ProduceError)
	flush() ProduceError
	setAutoflush(enabled bool) ProduceError
	takeReports(max uint32) []DeliveryReport
}
