package wafka

import (
	"strings"
)

// Plugin is what a plugin implements: Init is called once with the configuration, Handle once
// per event. An error from either is that call's error (its Error() is the message the host
// reports; an event whose Handle fails is counted and the host goes on); a panic traps the
// instance.
type Plugin interface {
	Init(config Config) error
	Handle(event []byte) error
}

// Funcs adapts functions to a Plugin (and a Finisher); InitFunc and FinishFunc may be nil.
type Funcs struct {
	InitFunc   func(config Config) error
	HandleFunc func(event []byte) error
	FinishFunc func() error
}

// Finish calls FinishFunc, if any.
func (f Funcs) Finish() error {
	if f.FinishFunc == nil {
		return nil
	}
	return f.FinishFunc()
}

// Init calls InitFunc, if any.
func (f Funcs) Init(config Config) error {
	if f.InitFunc == nil {
		return nil
	}
	return f.InitFunc(config)
}

// Handle calls HandleFunc.
func (f Funcs) Handle(event []byte) error { return f.HandleFunc(event) }

// Handle registers f as the plugin, for plugins that need no configuration nor state: the
// shortcut for Register(Funcs{HandleFunc: f}). Call it once, from a package init function:
//
//	func init() { wafka.Handle(func(event []byte) error { ... }) }
//	func main() {}
func Handle(f func(event []byte) error) {
	Register(Funcs{HandleFunc: f})
}

// NotInitialized is the error of an event handled before a successful Init.
const NotInitialized = "plugin is not initialized (init was not called or failed)"

var (
	registered Plugin
	ready      bool
)

// Register makes p the component's plugin. Call it once, from a package init function:
//
//	func init() { wafka.Register(&myPlugin{}) }
//	func main() {}
func Register(p Plugin) {
	if registered != nil {
		panic("wafka.Register called twice")
	}
	registered = p
}

// callInit is the `init` export.
func callInit(config Config) (errText string, failed bool) {
	// A failing init leaves no plugin behind.
	ready = false
	if registered == nil {
		return "no plugin registered (call wafka.Register from an init function)", true
	}
	if err := registered.Init(config); err != nil {
		return errorText(err), true
	}
	ready = true
	return "", false
}

// callHandle is the `handle` export.
func callHandle(event []byte) (errText string, failed bool) {
	if !ready {
		return NotInitialized, true
	}
	if err := registered.Handle(event); err != nil {
		return errorText(err), true
	}
	return "", false
}

// Finisher is what a Plugin also implements to finish its work once after the last event (the
// host calls it when its input ends, and in wafka serve on instances idle at a drain or reload): flush, drain the
// last delivery reports. Publishing still works there.
type Finisher interface {
	Finish() error
}

// callFinish is the `finish` export: the plugin's Finish, if it has one.
func callFinish() (errText string, failed bool) {
	f, ok := registered.(Finisher)
	if !ready || !ok {
		return "", false
	}
	if err := f.Finish(); err != nil {
		return errorText(err), true
	}
	return "", false
}

// errorText is err's message, made valid UTF-8 (the component model's strings must be).
func errorText(err error) string {
	return strings.ToValidUTF8(err.Error(), "\uFFFD")
}
