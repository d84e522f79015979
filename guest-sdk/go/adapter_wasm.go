//go:build wasip1

package wafka

import "unsafe"

// WASI's preview1 adapter (which turns Go's wasip1 imports into WASI 0.2) needs memory of its
// own: a page for its state and one for its stack. It takes them through the module's
// `cabi_realloc_adapter` export, at its first call, which comes while Go's runtime is still
// starting (Go reads its arguments, environment and clocks through WASI in _initialize). So
// this allocator takes no Go heap memory and does not grow its stack: it bump-allocates from a
// static array, which Go's heap never covers.
//
// The alternatives fail: the module's cabi_realloc (a Go heap allocation) cannot run before
// the runtime is up, and memory from memory.grow (`wasm-tools component new
// --realloc-via-memory-grow`) is memory Go's heap later grows over, corrupting the adapter
// ("assertion failed at adapter line ..." after some thousand events).

// adapterArena holds the adapter's allocations (two pages, asked for once), with room to spare.
var adapterArena [4 << 16 / 8]uint64

var adapterUsed uintptr

//go:wasmexport cabi_realloc_adapter
//go:nosplit
func cabiReallocAdapter(oldPtr unsafe.Pointer, oldSize, align, newSize uint32) unsafe.Pointer {
	if oldPtr != nil || align == 0 {
		return nil // the adapter only allocates; it traps on nil
	}
	base := uintptr(unsafe.Pointer(&adapterArena))
	pad := (uintptr(align) - (base+adapterUsed)%uintptr(align)) % uintptr(align)
	start := adapterUsed + pad
	if start+uintptr(newSize) > uintptr(len(adapterArena))*8 {
		return nil
	}
	adapterUsed = start + uintptr(newSize)
	return unsafe.Add(unsafe.Pointer(&adapterArena), start)
}
