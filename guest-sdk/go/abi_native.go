//go:build !wasip1

package wafka

// On other targets the package compiles with a fake host, so plugins unit-test themselves
// natively (`go test`): see UseFakeHost. Until a test installs one, calling into the host
// panics.
var host producer = nativeProducer{}

type nativeProducer struct{}

const nativeMessage = "wafka: the host's producer is only there in a wasip1 component (tests: wafka.UseFakeHost())"

func (nativeProducer) publish(*Record) (Receipt, ProduceError) { panic(nativeMessage) }
func (nativeProducer) flush() ProduceError                     { panic(nativeMessage) }
func (nativeProducer) setAutoflush(bool) ProduceError          { panic(nativeMessage) }
func (nativeProducer) takeReports(uint32) []DeliveryReport     { panic(nativeMessage) }

type topicPartition struct {
	topic     string
	partition int32
}

// FakeHost answers Publish, Flush, SetAutoflush and TakeReports as the host does, for plugins'
// native unit tests (not in a wasip1 component): receipts with offsets per topic and partition
// (-1 until acknowledged unless autoflush is on), a delivery report per record, and the
// refusals and failures a test asks for. Not safe for concurrent use; one per test.
type FakeHost struct {
	// Published holds the records published and not refused, in order.
	Published []Record
	// Offsets holds each published record's offset, by index in Published.
	Offsets []int64

	nextID      uint64
	offsets     map[topicPartition]int64
	autoflush   bool
	fixed       *bool
	refused     map[string]ProduceError
	refuseNext  []ProduceError
	failReports ProduceError
	failFlush   ProduceError
	reports     []DeliveryReport
	firstFail   ProduceError
}

// UseFakeHost installs a new FakeHost as the host for the rest of the test process (until the
// next call) and returns it.
func UseFakeHost() *FakeHost {
	f := &FakeHost{offsets: map[topicPartition]int64{}, refused: map[string]ProduceError{}}
	host = f
	return f
}

// RefuseTopic makes every Publish to topic fail with err.
func (f *FakeHost) RefuseTopic(topic string, err ProduceError) { f.refused[topic] = err }

// RefuseNext makes the next Publish fail with err.
func (f *FakeHost) RefuseNext(err ProduceError) { f.refuseNext = append(f.refuseNext, err) }

// FailReports queues every record published from now on and then fails it: its delivery
// report (and the next Flush) carries err, as when the broker refuses it.
func (f *FakeHost) FailReports(err ProduceError) { f.failReports = err }

// FailFlush makes every Flush fail with err.
func (f *FakeHost) FailFlush(err ProduceError) { f.failFlush = err }

// FixAutoflush fixes autoflush on or off, as a host policy: SetAutoflush then fails with a
// *NotAllowedError.
func (f *FakeHost) FixAutoflush(on bool) {
	f.fixed = &on
	f.autoflush = on
}

// Autoflush says whether autoflush is on now.
func (f *FakeHost) Autoflush() bool { return f.autoflush }

func (f *FakeHost) publish(r *Record) (Receipt, ProduceError) {
	if len(f.refuseNext) > 0 {
		err := f.refuseNext[0]
		f.refuseNext = f.refuseNext[1:]
		return Receipt{}, err
	}
	if err, ok := f.refused[r.Topic]; ok {
		return Receipt{}, err
	}
	id := f.nextID
	f.nextID++
	var partition int32
	if r.Partition != nil {
		partition = *r.Partition
	}
	if f.failReports != nil {
		if f.autoflush {
			return Receipt{}, f.failReports
		}
		if f.firstFail == nil {
			f.firstFail = f.failReports
		}
		f.reports = append(f.reports, DeliveryReport{ID: id, Topic: r.Topic, Partition: partition, Err: f.failReports})
		return Receipt{ID: id, Partition: partition, Offset: -1}, nil
	}
	key := topicPartition{r.Topic, partition}
	offset := f.offsets[key]
	f.offsets[key] = offset + 1
	f.Published = append(f.Published, *r)
	f.Offsets = append(f.Offsets, offset)
	f.reports = append(f.reports, DeliveryReport{ID: id, Topic: r.Topic, Partition: partition, Offset: offset})
	receipt := Receipt{ID: id, Partition: partition, Offset: -1}
	if f.autoflush {
		receipt.Offset = offset
	}
	return receipt, nil
}

func (f *FakeHost) flush() ProduceError {
	if f.failFlush != nil {
		return f.failFlush
	}
	err := f.firstFail
	f.firstFail = nil
	return err
}

func (f *FakeHost) setAutoflush(enabled bool) ProduceError {
	if f.fixed != nil {
		mode := "off"
		if *f.fixed {
			mode = "on"
		}
		return &NotAllowedError{Detail: "the host fixed autoflush to " + mode}
	}
	f.autoflush = enabled
	return nil
}

func (f *FakeHost) takeReports(max uint32) []DeliveryReport {
	n := min(int(max), len(f.reports))
	out := f.reports[:n]
	f.reports = f.reports[n:]
	return out
}
