//go:build !wasip1

package wafka

// On other targets the package compiles, so plugins can unit-test their own logic natively,
// but calling into the host panics.
var host producer = nativeProducer{}

type nativeProducer struct{}

const nativeMessage = "wafka: the host's producer is only there in a wasip1 component"

func (nativeProducer) publish(*Record) (Receipt, ProduceError) { panic(nativeMessage) }
func (nativeProducer) flush() ProduceError                     { panic(nativeMessage) }
func (nativeProducer) setAutoflush(bool) ProduceError          { panic(nativeMessage) }
func (nativeProducer) takeReports(uint32) []DeliveryReport     { panic(nativeMessage) }
