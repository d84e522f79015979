// batcher publishes every event with autoflush off, flushes every N records, and sends the
// records that were not delivered to a dead-letter topic (the Go twin of
// examples/rust/batcher).
//
// Configuration:
//
//   - topic — the destination topic (required);
//   - batch — flush after this many records (default 100, from 1 to 2048: the host keeps at
//     most 4,096 undrained reports, and a batch's reports and its dead letters' must fit);
//   - dead-letter — the dead-letter topic (default "<topic>.dlq").
//
// Init switches autoflush off. Where the host fixed the mode (wafka run's default
// --autoflush off does) the switch is refused and the batcher goes on: under off that is the
// mode it wants; under on each publish waits for its ack and a failed record fails its event
// instead.
//
// Handle publishes the event as the value (null key, no headers) and keeps the value until
// the record's delivery report comes. After every batch records it calls Flush (a failed
// flush is not the event's error: the reports say which records failed) and drains the
// delivery reports until none is left. A record that was not delivered is published to the
// dead-letter topic with its value, null key and the headers error (the error's one-line text,
// as the reporter example prints it) and topic (the record's topic), and the plugin prints
// "dead-letter id=I topic=T error=MESSAGE". A dead letter that fails too is printed as
// "lost id=I topic=T error=MESSAGE" (the host also counts it as refused or failed, and
// wafka run then exits non-zero). An event refused at Publish fails with the error's text.
//
// Finish flushes and drains the same way, then flushes and drains once more for the dead
// letters. So the values kept are those of one batch: at most batch records.
package main

import (
	"errors"
	"fmt"
	"strconv"

	wafka "github.com/wafka/wafka/guest-sdk/go"
)

type batcher struct {
	topic, deadLetter string
	batch             int
	unflushed         int               // published since the last flush
	pending           map[uint64][]byte // values of records not yet reported, by id
}

func (b *batcher) Init(config wafka.Config) error {
	if err := config.CheckKnown("topic", "batch", "dead-letter"); err != nil {
		return err
	}
	topic, err := config.Require("topic")
	if err != nil {
		return err
	}
	n := config.GetOr("batch", "100")
	batch, err := strconv.Atoi(n)
	if err != nil || batch < 1 || batch > 2048 || n[0] == '+' {
		return fmt.Errorf("config `batch` must be a number from 1 to 2048, not `%s`", n)
	}
	*b = batcher{
		topic:      topic,
		deadLetter: config.GetOr("dead-letter", topic+".dlq"),
		batch:      batch,
		pending:    map[uint64][]byte{},
	}
	if err := wafka.SetAutoflush(false); err != nil && !errors.Is(err, wafka.ErrNotAllowed) {
		return err // not-allowed: the host fixed the mode, see above
	}
	return nil
}

func (b *batcher) Handle(event []byte) error {
	receipt, err := wafka.Publish(wafka.Record{Topic: b.topic, Value: event})
	if err != nil {
		return err
	}
	b.pending[receipt.ID] = event // the SDK gives each event its own slice
	b.unflushed++
	if b.unflushed == b.batch {
		b.settle()
	}
	return nil
}

// Finish (wafka.Finisher), after the last event.
func (b *batcher) Finish() error {
	b.settle() // the last records
	b.settle() // their dead letters
	return nil
}

// settle flushes, then drains every delivery report.
func (b *batcher) settle() {
	_ = wafka.Flush() // a failed record shows in its report
	b.unflushed = 0
	for reports := wafka.TakeReports(100); len(reports) > 0; reports = wafka.TakeReports(100) {
		for _, r := range reports {
			value, ours := b.pending[r.ID]
			delete(b.pending, r.ID)
			switch {
			case r.OK():
			case ours:
				b.sendDeadLetter(r.ID, r.Topic, value, r.Err)
			default: // a dead letter, which has no dead letter of its own
				fmt.Printf("lost id=%d topic=%s error=%s\n", r.ID, r.Topic, r.Err)
			}
		}
	}
}

// sendDeadLetter publishes the value of record id, which topic did not take, to the
// dead-letter topic.
func (b *batcher) sendDeadLetter(id uint64, topic string, value []byte, cause error) {
	_, err := wafka.Publish(wafka.Record{
		Topic: b.deadLetter,
		Value: value,
		Headers: []wafka.Header{
			{Key: "error", Value: []byte(cause.Error())},
			{Key: "topic", Value: []byte(topic)},
		},
	})
	if err != nil {
		fmt.Printf("lost id=%d topic=%s error=%s (dead letter refused: %s)\n", id, topic, cause, err)
		return
	}
	fmt.Printf("dead-letter id=%d topic=%s error=%s\n", id, topic, cause)
}

func init() { wafka.Register(&batcher{}) }

func main() {}
