//go:build wasip1

// The bindings for the `plugin` world of wit/producer.wit (wafka:producer@0.1.0), written by
// hand against the component model's canonical ABI (no generator runs without the Go module
// proxy; see README.md). The core module they make is turned into a component by
// `wasm-tools component embed` (the WIT's type information) and `wasm-tools component new`
// (with WASI's reactor adapter): wasm-tools checks every import and export below against the
// WIT, so a layout that drifted from the WIT fails the build, not a plugin.
//
// Memory: see cabi_realloc below for what the host writes into. Go stacks move (when a
// callback into Go grows one), so nothing the host writes to lives on the stack: return areas
// are package variables.

package wafka

import (
	"runtime"
	"runtime/debug"
	"structs"
	"unsafe"
)

var host producer = wasmProducer{}

// --- memory ----------------------------------------------------------------------------------

// The host writes lists and strings into memory it gets from cabi_realloc, while it lowers an
// export's arguments or an import's results. Go code must not call an import then (wasmtime
// traps: "cannot leave component instance"), and a Go heap allocation may: it can start a
// garbage collection, which reads the clock through WASI. So:
//
//   - cabi_realloc bump-allocates from an arena allocated beforehand; what the host wrote is
//     copied out (or decoded) as soon as the call it belongs to returns, and the arena is reset;
//   - a request the arena cannot hold (an event larger than it) is a heap allocation, and the
//     arena grows to twice that size at the next reset, outside the host's call;
//   - the garbage collector is off whenever the host may call cabi_realloc: between exports
//     (it lowers the next event before calling handle) and during take-reports. It runs, as
//     usual (GOGC=100), while init and handle run. With the collector off, an allocation
//     starts no collection and calls no import.

const defaultArena = 1 << 20

var (
	arena      = make([]uint64, defaultArena/8) // 8-aligned
	arenaUsed  uintptr
	arenaNeeds uintptr // the largest request the arena could not hold since the last reset
	oversized  [][]uint64
)

//go:wasmexport cabi_realloc
func cabiRealloc(oldPtr unsafe.Pointer, oldSize, align, newSize uint32) unsafe.Pointer {
	if newSize == 0 {
		return unsafe.Pointer(&zeroSized)
	}
	// The arena is 8-aligned, so aligning the offset aligns the address.
	start := (arenaUsed + uintptr(align) - 1) &^ (uintptr(align) - 1)
	var p unsafe.Pointer
	if end := start + uintptr(newSize); align <= 8 && end <= uintptr(len(arena))*8 {
		arenaUsed = end
		p = unsafe.Add(unsafe.Pointer(&arena[0]), start)
	} else {
		buf := make([]uint64, (newSize+7)/8)
		oversized = append(oversized, buf)
		arenaNeeds = max(arenaNeeds, uintptr(newSize))
		p = unsafe.Pointer(&buf[0])
	}
	if oldPtr != nil && oldSize > 0 {
		copy(unsafe.Slice((*byte)(p), newSize), unsafe.Slice((*byte)(oldPtr), min(oldSize, newSize)))
	}
	return p
}

// zeroSized is where zero-sized allocations point: never read or written.
var zeroSized uint64

// release resets the arena once the host's writes are read; it runs outside the host's calls,
// where allocating is safe.
func release() {
	arenaUsed = 0
	if arenaNeeds > 0 {
		clear(oversized)
		oversized = oversized[:0]
		arena = make([]uint64, (2*arenaNeeds+7)/8)
		arenaNeeds = 0
	}
}

// gcPercent is the collector's setting while init and handle run.
const gcPercent = 100

func init() {
	runtime.MemProfileRate = 0 // no profiling samples in allocations
	debug.SetGCPercent(-1)     // off until the first export runs
}

// collectorOn and collectorOff bracket the plugin's code in an export.
func collectorOn()  { debug.SetGCPercent(gcPercent) }
func collectorOff() { debug.SetGCPercent(-1) } // waits for a running collection to finish

func load8(p unsafe.Pointer, off uintptr) uint8   { return *(*uint8)(unsafe.Add(p, off)) }
func load16(p unsafe.Pointer, off uintptr) uint16 { return *(*uint16)(unsafe.Add(p, off)) }
func load32(p unsafe.Pointer, off uintptr) uint32 { return *(*uint32)(unsafe.Add(p, off)) }
func load64(p unsafe.Pointer, off uintptr) uint64 { return *(*uint64)(unsafe.Add(p, off)) }

// loadPtr reads a 32-bit address the host wrote, which points into memory cabi_realloc gave
// it, and returns it as a pointer into that allocation.
func loadPtr(p unsafe.Pointer, off uintptr) unsafe.Pointer {
	addr := uintptr(load32(p, off))
	if base := uintptr(unsafe.Pointer(&arena[0])); addr >= base && addr < base+uintptr(len(arena))*8 {
		return unsafe.Add(unsafe.Pointer(&arena[0]), addr-base)
	}
	for _, buf := range oversized {
		if base := uintptr(unsafe.Pointer(&buf[0])); addr >= base && addr < base+uintptr(len(buf))*8 {
			return unsafe.Add(unsafe.Pointer(&buf[0]), addr-base)
		}
	}
	if addr == uintptr(unsafe.Pointer(&zeroSized)) {
		return unsafe.Pointer(&zeroSized)
	}
	panic("wafka: the host wrote outside the memory cabi_realloc gave it")
}

// loadString copies the string (ptr, len) at p+off out of the host's buffer.
func loadString(p unsafe.Pointer, off uintptr) string {
	n := load32(p, off+4)
	if n == 0 {
		return ""
	}
	return string(unsafe.Slice((*byte)(loadPtr(p, off)), n))
}

// address is where a Go pointer is in linear memory (memory32: addresses fit in 32 bits).
func address(p unsafe.Pointer) uint32 { return uint32(uintptr(p)) }

func bytesAddress(b []byte) uint32 { return address(unsafe.Pointer(unsafe.SliceData(b))) }

func stringAddress(s string) uint32 { return address(unsafe.Pointer(unsafe.StringData(s))) }

// --- imports: wafka:producer/producer@0.1.0 ----------------------------------------------------

// The flattened `message`: topic, key (option<list<u8>>), value, headers, partition
// (option<s32>); the result goes to `ret` (result<receipt, produce-error>, 40 bytes).
//
//go:wasmimport wafka:producer/producer@0.1.0 publish
func wasmPublish(topicPtr, topicLen, keyIsSome, keyPtr, keyLen, valuePtr, valueLen, headersPtr, headersLen, partitionIsSome uint32, partition int32, ret unsafe.Pointer)

//go:wasmimport wafka:producer/producer@0.1.0 flush
func wasmFlush(ret unsafe.Pointer)

//go:wasmimport wafka:producer/producer@0.1.0 set-autoflush
func wasmSetAutoflush(enabled uint32, ret unsafe.Pointer)

//go:wasmimport wafka:producer/producer@0.1.0 take-reports
func wasmTakeReports(max uint32, ret unsafe.Pointer)

// wasmHeader is the canonical ABI layout of `header`: key (string), value (option<list<u8>>);
// the assertions below hold it to headerSize, headerValue and headerValuePayload.
type wasmHeader struct {
	_           structs.HostLayout
	keyPtr      uint32
	keyLen      uint32
	valueIsSome uint8
	_           [3]uint8
	valuePtr    uint32
	valueLen    uint32
}

// The return area of the imports: result<receipt, produce-error> is the largest
// (publishResultSize bytes, 8-aligned).
var importRet [publishResultSize / 8]uint64

// The Go layout of wasmHeader is the canonical ABI's (a constant index out of range, or a
// negative one, does not compile).
var (
	_ = [1]struct{}{}[unsafe.Sizeof(wasmHeader{})-headerSize]
	_ = [1]struct{}{}[unsafe.Offsetof(wasmHeader{}.valueIsSome)-headerValue]
	_ = [1]struct{}{}[unsafe.Offsetof(wasmHeader{}.valuePtr)-headerValuePayload]
)

// headerBuf is reused for each publish's headers (a package variable: on the heap).
var headerBuf []wasmHeader

// The record being published: referenced here so its buffers stay alive (and on the heap)
// while the host reads them.
var publishing *Record

type wasmProducer struct{}

func (wasmProducer) publish(r *Record) (Receipt, ProduceError) {
	publishing = r
	headerBuf = headerBuf[:0]
	for i := range r.Headers {
		h := &r.Headers[i]
		wh := wasmHeader{keyPtr: stringAddress(h.Key), keyLen: uint32(len(h.Key))}
		if h.Value != nil {
			wh.valueIsSome = 1
			wh.valuePtr = bytesAddress(h.Value)
			wh.valueLen = uint32(len(h.Value))
		}
		headerBuf = append(headerBuf, wh)
	}
	var keyIsSome, keyPtr, keyLen uint32
	if r.Key != nil {
		keyIsSome, keyPtr, keyLen = 1, bytesAddress(r.Key), uint32(len(r.Key))
	}
	var partitionIsSome uint32
	var partition int32
	if r.Partition != nil {
		partitionIsSome, partition = 1, *r.Partition
	}
	var headersPtr uint32
	if len(headerBuf) > 0 {
		headersPtr = address(unsafe.Pointer(&headerBuf[0]))
	}
	ret := unsafe.Pointer(&importRet)
	wasmPublish(stringAddress(r.Topic), uint32(len(r.Topic)), keyIsSome, keyPtr, keyLen,
		bytesAddress(r.Value), uint32(len(r.Value)), headersPtr, uint32(len(headerBuf)),
		partitionIsSome, partition, ret)
	runtime.KeepAlive(r)
	publishing = nil
	defer release()
	if load8(ret, 0) != 0 {
		return Receipt{}, loadProduceError(unsafe.Add(ret, publishResultPayload))
	}
	return Receipt{
		ID:        load64(ret, publishResultPayload+receiptID),
		Partition: int32(load32(ret, publishResultPayload+receiptPartition)),
		Offset:    int64(load64(ret, publishResultPayload+receiptOffset)),
	}, nil
}

func (wasmProducer) flush() ProduceError {
	ret := unsafe.Pointer(&importRet)
	wasmFlush(ret)
	defer release()
	if load8(ret, 0) != 0 {
		return loadProduceError(unsafe.Add(ret, unitResultPayload))
	}
	return nil
}

func (wasmProducer) setAutoflush(enabled bool) ProduceError {
	var flag uint32
	if enabled {
		flag = 1
	}
	ret := unsafe.Pointer(&importRet)
	wasmSetAutoflush(flag, ret)
	defer release()
	if load8(ret, 0) != 0 {
		return loadProduceError(unsafe.Add(ret, unitResultPayload))
	}
	return nil
}

// The layout of `delivery-report`: id u64 @0, topic @8, partition @16, outcome
// (result<s64, produce-error>) @24 with its payload @32; 64 bytes.
// Where the hand-written bindings read WIT values in wasm32 memory (the canonical ABI's
// layout); host/tests/contract.rs computes each from wit/ and fails when one differs.
const (
	deliveryReportSize      = 64 // delivery-report
	deliveryReportTopic     = 8  // its topic (id @0)
	deliveryReportPartition = 16 // its partition
	deliveryReportOutcome   = 24 // its outcome: result<s64, produce-error>
	deliveryReportPayload   = 32 // the outcome's offset or error
	produceErrorPayload     = 8  // a produce-error's payload (discriminant @0)
	brokerErrorCode         = 8  // broker-error's code (name @0)
	brokerErrorMessage      = 12 // broker-error's message: option<string>
	brokerErrorMessageValue = 16 // the message's string
	publishResultSize       = 40 // publish's result<receipt, produce-error>
	publishResultPayload    = 8  // its receipt or error
	receiptID               = 0  // receipt's id
	receiptPartition        = 8  // its partition
	receiptOffset           = 16 // its offset
	unitResultPayload       = 8  // result<_, produce-error>'s error (flush, set-autoflush)
	headerSize              = 20 // header (written for publish's headers)
	headerValue             = 8  // its value: option<list<u8>> (key @0)
	headerValuePayload      = 12 // the value's list
	configPairSize          = 16 // init's tuple<string, string>
	configPairValue         = 8  // its value (key @0)
)

func (wasmProducer) takeReports(max uint32) []DeliveryReport {
	ret := unsafe.Pointer(&importRet)
	collectorOff()
	wasmTakeReports(max, ret)
	collectorOn()
	defer release()
	n := load32(ret, 4)
	if n == 0 {
		return nil
	}
	base := loadPtr(ret, 0)
	out := make([]DeliveryReport, n)
	for i := range out {
		p := unsafe.Add(base, uintptr(i)*deliveryReportSize)
		r := &out[i]
		r.ID = load64(p, 0)
		r.Topic = loadString(p, deliveryReportTopic)
		r.Partition = int32(load32(p, deliveryReportPartition))
		if load8(p, deliveryReportOutcome) == 0 {
			r.Offset = int64(load64(p, deliveryReportPayload))
		} else {
			r.Offset = -1
			r.Err = loadProduceError(unsafe.Add(p, deliveryReportPayload))
		}
	}
	return out
}

// loadProduceError reads a `produce-error` (discriminant @0, payload @8; 32 bytes) at p.
func loadProduceError(p unsafe.Pointer) ProduceError {
	switch load8(p, 0) {
	case 0:
		return &NotAuthorizedError{Detail: loadString(p, produceErrorPayload)}
	case 1:
		return &InvalidTopicError{Detail: loadString(p, produceErrorPayload)}
	case 2:
		return &RecordTooLargeError{Size: load64(p, produceErrorPayload)}
	case 3:
		return &BufferFullError{}
	case 4:
		return &QuotaExceededError{Detail: loadString(p, produceErrorPayload)}
	case 5:
		return &TimedOutError{Detail: loadString(p, produceErrorPayload)}
	case 6:
		return &ClosedError{}
	case 7:
		return &NotAllowedError{Detail: loadString(p, produceErrorPayload)}
	case 8:
		// broker-error: name @0, code @8, message (option<string>) @12, its string @16.
		b := unsafe.Add(p, produceErrorPayload)
		e := &BrokerError{Name: loadString(b, 0), Code: int16(load16(b, brokerErrorCode))}
		if load8(b, brokerErrorMessage) != 0 {
			e.Message, e.HasMessage = loadString(b, brokerErrorMessageValue), true
		}
		return e
	}
	panic("wafka: unknown produce-error variant")
}

// --- exports: init, handle --------------------------------------------------------------------

// The return area of the exports, result<_, string>: discriminant @0, string @4.
var exportRet [3]uint32

// exportErr keeps the error string alive until the host calls cabi_post_*.
var exportErr string

func exportResult(errText string, failed bool) unsafe.Pointer {
	exportRet = [3]uint32{}
	if failed {
		exportErr = errText
		exportRet[0] = 1
		if len(errText) > 0 {
			exportRet[1] = stringAddress(errText)
		}
		exportRet[2] = uint32(len(errText))
	}
	return unsafe.Pointer(&exportRet)
}

// init: func(config: list<tuple<string, string>>) -> result<_, string>
//
//go:wasmexport init
func exportInit(list unsafe.Pointer, n uint32) unsafe.Pointer {
	pairs := make([][2]string, n)
	for i := range pairs {
		p := unsafe.Add(list, uintptr(i)*configPairSize)
		pairs[i] = [2]string{loadString(p, 0), loadString(p, configPairValue)}
	}
	release()
	collectorOn()
	defer collectorOff()
	return exportResult(callInit(Config{pairs: pairs}))
}

//go:wasmexport cabi_post_init
func postInit(unsafe.Pointer) { exportErr = "" }

// handle: func(event: list<u8>) -> result<_, string>
//
//go:wasmexport handle
func exportHandle(data unsafe.Pointer, n uint32) unsafe.Pointer {
	// A copy: the host wrote the event into the arena, which the next call reuses.
	event := make([]byte, n)
	if n > 0 {
		copy(event, unsafe.Slice((*byte)(data), n))
	}
	release()
	collectorOn()
	defer collectorOff()
	return exportResult(callHandle(event))
}

//go:wasmexport cabi_post_handle
func postHandle(unsafe.Pointer) { exportErr = "" }

// finish: func() -> result<_, string> (the `plugin-lifecycle` world)
//
//go:wasmexport finish
func exportFinish() unsafe.Pointer {
	release()
	collectorOn()
	defer collectorOff()
	return exportResult(callFinish())
}

//go:wasmexport cabi_post_finish
func postFinish(unsafe.Pointer) { exportErr = "" }
