// reporter publishes every event and prints the delivery reports it gets back.
//
// Configuration:
//
//   - topic — the destination topic (default "reports");
//   - autoflush=true — Init switches autoflush on (and fails with the host's error message if
//     the host fixed the mode).
//
// Handle publishes the event as the value (null key), prints "receipt partition=P offset=O"
// when the broker had already acknowledged it (autoflush on), then takes up to 100 delivery
// reports and prints one line per report: "report id=I topic=T partition=P offset=O" or
// "report id=I error=MESSAGE".
package main

import (
	"fmt"

	wafka "github.com/wafka/wafka/guest-sdk/go"
)

type reporter struct {
	topic string
}

func (r *reporter) Init(config wafka.Config) error {
	r.topic = config.GetOr("topic", "reports")
	if v, _ := config.Get("autoflush"); v == "true" {
		return wafka.SetAutoflush(true) // a ProduceError fails init with its message
	}
	return nil
}

func (r *reporter) Handle(event []byte) error {
	receipt, err := wafka.Publish(wafka.Record{Topic: r.topic, Value: event})
	if err != nil {
		return err
	}
	if receipt.Acknowledged() {
		fmt.Printf("receipt partition=%d offset=%d\n", receipt.Partition, receipt.Offset)
	}
	printReports()
	return nil
}

// Finish (wafka.Finisher), after the last event: flush, then print the reports still to come.
func (r *reporter) Finish() error {
	_ = wafka.Flush() // a failed record shows in its report
	printReports()
	return nil
}

func printReports() {
	for _, report := range wafka.TakeReports(100) {
		if report.OK() {
			fmt.Printf("report id=%d topic=%s partition=%d offset=%d\n",
				report.ID, report.Topic, report.Partition, report.Offset)
		} else {
			fmt.Printf("report id=%d error=%s\n", report.ID, report.Err)
		}
	}
}

func init() { wafka.Register(&reporter{}) }

func main() {}
