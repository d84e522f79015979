package wafka

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
)

// ProduceError is an error from the host's producer (the WIT `produce-error`): one of
// *NotAuthorizedError, *InvalidTopicError, *RecordTooLargeError, *BufferFullError,
// *QuotaExceededError, *TimedOutError, *ClosedError, *NotAllowedError and *BrokerError. Use
// errors.Is with the Err* sentinels to tell the cases apart, errors.As for their details. Error() is one line, the same text as the Rust SDK's Display.
type ProduceError interface {
	error
	// Kind returns the variant's WIT name, e.g. "not-authorized".
	Kind() string
}

// NotAuthorizedError: the plugin may not publish to this topic (host ACL or broker
// authorization).
type NotAuthorizedError struct{ Detail string }

// InvalidTopicError: the topic name is not valid, or the topic does not exist.
type InvalidTopicError struct{ Detail string }

// RecordTooLargeError: the record is larger than the host allows; Size is the encoded
// record's bytes.
type RecordTooLargeError struct{ Size uint64 }

// BufferFullError: the producer's buffer stayed full for the host's maximum wait.
type BufferFullError struct{}

// QuotaExceededError: the plugin used up its quota (memory, records or bytes).
type QuotaExceededError struct{ Detail string }

// TimedOutError: the record was not acknowledged in time.
type TimedOutError struct{ Detail string }

// ClosedError: the producer or this instance is closed.
type ClosedError struct{}

// NotAllowedError: the host's policy does not allow this (e.g. SetAutoflush when the host
// fixed the mode).
type NotAllowedError struct{ Detail string }

// BrokerError: the broker refused the record.
type BrokerError struct {
	// Name is Kafka's error name, e.g. NOT_ENOUGH_REPLICAS.
	Name string
	// Code is Kafka's error code.
	Code int16
	// Message is the broker's message; HasMessage tells whether it sent one.
	Message    string
	HasMessage bool
}

// oneLine replaces line breaks and other control characters with spaces.
func oneLine(text string) string {
	if strings.IndexFunc(text, unicode.IsControl) < 0 {
		return text
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, text)
}

func (e *NotAuthorizedError) Error() string { return "not authorized: " + oneLine(e.Detail) }
func (e *InvalidTopicError) Error() string  { return "invalid topic: " + oneLine(e.Detail) }
func (e *RecordTooLargeError) Error() string {
	return fmt.Sprintf("record too large: %d bytes", e.Size)
}
func (e *BufferFullError) Error() string    { return "producer buffer full" }
func (e *QuotaExceededError) Error() string { return "quota exceeded: " + oneLine(e.Detail) }
func (e *TimedOutError) Error() string      { return "timed out: " + oneLine(e.Detail) }
func (e *ClosedError) Error() string        { return "producer closed" }
func (e *NotAllowedError) Error() string    { return "not allowed: " + oneLine(e.Detail) }

func (e *BrokerError) Error() string {
	text := fmt.Sprintf("broker error %s (%d)", oneLine(e.Name), e.Code)
	if e.HasMessage {
		text += ": " + oneLine(e.Message)
	}
	return text
}

// Sentinel errors, one per `produce-error` case, for errors.Is: every error of a case is Is its
// sentinel (errors.Is(err, wafka.ErrBufferFull)), also when wrapped. errors.As gives the
// details (the topic, the size, the broker's code).
var (
	ErrNotAuthorized  = errors.New("not authorized")
	ErrInvalidTopic   = errors.New("invalid topic")
	ErrRecordTooLarge = errors.New("record too large")
	ErrBufferFull     = errors.New("producer buffer full")
	ErrQuotaExceeded  = errors.New("quota exceeded")
	ErrTimedOut       = errors.New("timed out")
	ErrClosed         = errors.New("producer closed")
	ErrNotAllowed     = errors.New("not allowed")
	ErrBroker         = errors.New("broker error")
)

func (*NotAuthorizedError) Is(target error) bool  { return target == ErrNotAuthorized }
func (*InvalidTopicError) Is(target error) bool   { return target == ErrInvalidTopic }
func (*RecordTooLargeError) Is(target error) bool { return target == ErrRecordTooLarge }
func (*BufferFullError) Is(target error) bool     { return target == ErrBufferFull }
func (*QuotaExceededError) Is(target error) bool  { return target == ErrQuotaExceeded }
func (*TimedOutError) Is(target error) bool       { return target == ErrTimedOut }
func (*ClosedError) Is(target error) bool         { return target == ErrClosed }
func (*NotAllowedError) Is(target error) bool     { return target == ErrNotAllowed }
func (*BrokerError) Is(target error) bool         { return target == ErrBroker }

func (*NotAuthorizedError) Kind() string  { return "not-authorized" }
func (*InvalidTopicError) Kind() string   { return "invalid-topic" }
func (*RecordTooLargeError) Kind() string { return "record-too-large" }
func (*BufferFullError) Kind() string     { return "buffer-full" }
func (*QuotaExceededError) Kind() string  { return "quota-exceeded" }
func (*TimedOutError) Kind() string       { return "timed-out" }
func (*ClosedError) Kind() string         { return "closed" }
func (*NotAllowedError) Kind() string     { return "not-allowed" }
func (*BrokerError) Kind() string         { return "broker" }
