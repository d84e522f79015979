//! Write wafka plugins in Zig.
//!
//! A wafka plugin is a WebAssembly component for the `plugin` world of the WIT package
//! `wafka:producer@0.1.0` (wit/producer.wit): the host calls `init` once with the plugin's
//! `--config KEY=VALUE` pairs, then `handle` once per input event, and the plugin publishes
//! Kafka records through the host's `producer` interface.
//!
//! This module wraps the C bindings that `wit-bindgen c` generates (translated to Zig at build
//! time, imported as the module `wafka_bindings`):
//!
//! * write a plugin type with `init` and `handle` and register it with `exportPlugin`;
//! * read settings from `Config`;
//! * publish a `Record` with `publish` (or `Record.publish`); failures are the error set
//!   `Error`, whose details `lastError` keeps;
//! * control delivery with `flush`, `setAutoflush` and `takeReports`;
//! * fail with a message of your own with `fail`; print lines to stdout with `print`;
//! * in native unit tests (`guest-sdk/zig/test.sh`), drive the plugin and the fake host with
//!   `testing`.
//!
//! ```zig
//! const wafka = @import("wafka");
//!
//! const Echo = struct {
//!     topic: []const u8,
//!
//!     pub fn init(config: wafka.Config) !Echo {
//!         return .{ .topic = config.getOr("topic", "echo") };
//!     }
//!
//!     pub fn handle(self: *Echo, event: []const u8) !void {
//!         _ = try wafka.publish(.{ .topic = self.topic, .value = event });
//!     }
//! };
//!
//! comptime {
//!     wafka.exportPlugin(Echo);
//! }
//! ```
//!
//! Nothing is copied on the way to the host: a record's topic, key, value and headers are read
//! by the host in place during `publish` (only the header descriptors are rearranged).

const std = @import("std");
const c = @import("wafka_bindings");
const wafka = @This();

const Writer = std.Io.Writer;

// ---- Errors ---------------------------------------------------------------------------------

/// Why the host did not publish or deliver a record: the WIT `produce-error` variants. The
/// details of the last one are in `lastError()`.
pub const Error = error{
    /// The plugin may not publish to this topic (host ACL or broker authorization).
    NotAuthorized,
    /// The topic name is not valid, or the topic does not exist.
    InvalidTopic,
    /// The record is larger than the host allows.
    RecordTooLarge,
    /// The producer's buffer stayed full for the host's maximum wait.
    BufferFull,
    /// The plugin used up its quota (memory, records or bytes).
    QuotaExceeded,
    /// The record was not acknowledged in time.
    TimedOut,
    /// The producer or this instance is closed.
    Closed,
    /// The host's policy does not allow this (e.g. `setAutoflush` when the mode is fixed).
    NotAllowed,
    /// The broker refused the record.
    Broker,
};

/// An error answer from the broker.
pub const BrokerError = struct {
    /// Kafka's error name, e.g. `NOT_ENOUGH_REPLICAS`.
    name: []const u8,
    /// Kafka's error code.
    code: i16,
    /// The broker's message, if it sent one.
    message: ?[]const u8,
};

/// A producer error with its details (the WIT `produce-error`). Its slices point into memory
/// the SDK owns (see `lastError` and `Reports`).
pub const ProduceError = union(enum) {
    not_authorized: []const u8,
    invalid_topic: []const u8,
    /// The size of the encoded record in bytes.
    record_too_large: u64,
    buffer_full,
    quota_exceeded: []const u8,
    timed_out: []const u8,
    closed,
    not_allowed: []const u8,
    broker: BrokerError,

    /// The member of `Error` this is.
    pub fn toError(self: ProduceError) Error {
        return switch (self) {
            .not_authorized => error.NotAuthorized,
            .invalid_topic => error.InvalidTopic,
            .record_too_large => error.RecordTooLarge,
            .buffer_full => error.BufferFull,
            .quota_exceeded => error.QuotaExceeded,
            .timed_out => error.TimedOut,
            .closed => error.Closed,
            .not_allowed => error.NotAllowed,
            .broker => error.Broker,
        };
    }

    /// The variant's name as in the WIT, e.g. "not-authorized": stable text for logs.
    pub fn kind(self: ProduceError) []const u8 {
        return switch (self) {
            .not_authorized => "not-authorized",
            .invalid_topic => "invalid-topic",
            .record_too_large => "record-too-large",
            .buffer_full => "buffer-full",
            .quota_exceeded => "quota-exceeded",
            .timed_out => "timed-out",
            .closed => "closed",
            .not_allowed => "not-allowed",
            .broker => "broker",
        };
    }

    /// One line (control characters become spaces), the same text as the Rust SDK's
    /// `Display`: use it with "{f}", e.g. `wafka.print("{f}\n", .{e})`.
    pub fn format(self: ProduceError, w: *Writer) Writer.Error!void {
        switch (self) {
            .not_authorized => |d| try prefixed(w, "not authorized: ", d),
            .invalid_topic => |d| try prefixed(w, "invalid topic: ", d),
            .record_too_large => |n| try w.print("record too large: {d} bytes", .{n}),
            .buffer_full => try w.writeAll("producer buffer full"),
            .quota_exceeded => |d| try prefixed(w, "quota exceeded: ", d),
            .timed_out => |d| try prefixed(w, "timed out: ", d),
            .closed => try w.writeAll("producer closed"),
            .not_allowed => |d| try prefixed(w, "not allowed: ", d),
            .broker => |b| {
                try w.writeAll("broker error ");
                try writeLine(w, b.name);
                try w.print(" ({d})", .{b.code});
                if (b.message) |m| {
                    try w.writeAll(": ");
                    try writeLine(w, m);
                }
            },
        }
    }

    fn fromC(e: *const c.wafka_producer_types_produce_error_t) ProduceError {
        return switch (e.tag) {
            c.WAFKA_PRODUCER_TYPES_PRODUCE_ERROR_NOT_AUTHORIZED => .{ .not_authorized = str(e.val.not_authorized) },
            c.WAFKA_PRODUCER_TYPES_PRODUCE_ERROR_INVALID_TOPIC => .{ .invalid_topic = str(e.val.invalid_topic) },
            c.WAFKA_PRODUCER_TYPES_PRODUCE_ERROR_RECORD_TOO_LARGE => .{ .record_too_large = e.val.record_too_large },
            c.WAFKA_PRODUCER_TYPES_PRODUCE_ERROR_BUFFER_FULL => .buffer_full,
            c.WAFKA_PRODUCER_TYPES_PRODUCE_ERROR_QUOTA_EXCEEDED => .{ .quota_exceeded = str(e.val.quota_exceeded) },
            c.WAFKA_PRODUCER_TYPES_PRODUCE_ERROR_TIMED_OUT => .{ .timed_out = str(e.val.timed_out) },
            c.WAFKA_PRODUCER_TYPES_PRODUCE_ERROR_CLOSED => .closed,
            c.WAFKA_PRODUCER_TYPES_PRODUCE_ERROR_NOT_ALLOWED => .{ .not_allowed = str(e.val.not_allowed) },
            c.WAFKA_PRODUCER_TYPES_PRODUCE_ERROR_BROKER => .{ .broker = .{
                .name = str(e.val.broker.name),
                .code = e.val.broker.code,
                .message = if (e.val.broker.message.is_some) str(e.val.broker.message.val) else null,
            } },
            // A case of a newer contract: never read it as one of these (host/tests/contract.rs).
            else => @panic("wafka: a produce-error case this SDK does not know: rebuild the plugin with the SDK of the host's contract"),
        };
    }
};

fn prefixed(w: *Writer, prefix: []const u8, detail: []const u8) Writer.Error!void {
    try w.writeAll(prefix);
    try writeLine(w, detail);
}

/// Writes host text with control characters (U+0000-U+001F, U+007F-U+009F) replaced by one
/// space each.
fn writeLine(w: *Writer, text: []const u8) Writer.Error!void {
    var i: usize = 0;
    while (i < text.len) : (i += 1) {
        const b = text[i];
        if (b < 0x20 or b == 0x7f) {
            try w.writeByte(' ');
        } else if (b == 0xc2 and i + 1 < text.len and text[i + 1] >= 0x80 and text[i + 1] <= 0x9f) {
            try w.writeByte(' ');
            i += 1;
        } else {
            try w.writeByte(b);
        }
    }
}

fn str(s: anytype) []const u8 {
    return if (s.len == 0) "" else s.ptr[0..s.len];
}

/// The host's copy of the last producer error, kept until the next one.
var last_error_c: c.wafka_producer_types_produce_error_t = undefined;
var last_error: ?ProduceError = null;

/// The details of the last failure of `publish`, `flush` or `setAutoflush`, or null if none
/// failed yet. Its slices are valid until the next failing call.
pub fn lastError() ?ProduceError {
    return last_error;
}

fn failWith(e: *c.wafka_producer_types_produce_error_t) Error {
    if (last_error != null) c.wafka_producer_types_produce_error_free(&last_error_c);
    last_error_c = e.*;
    last_error = ProduceError.fromC(&last_error_c);
    return last_error.?.toError();
}

// ---- Records --------------------------------------------------------------------------------

/// A record header; `value` null is Kafka's null.
pub const Header = struct {
    key: []const u8,
    value: ?[]const u8,
};

/// A record to publish. Without `key` the record has Kafka's null key (the producer spreads
/// such records); without `partition` the partitioner chooses (murmur2 of the key).
pub const Record = struct {
    topic: []const u8,
    key: ?[]const u8 = null,
    value: []const u8,
    /// In order; a key may repeat.
    headers: []const Header = &.{},
    partition: ?i32 = null,

    /// Publishes the record (see `publish`).
    pub fn publish(self: Record) Error!Receipt {
        return wafka.publish(self);
    }
};

/// Where a published record went. With autoflush on, `publish` returns after the broker
/// acknowledged the record and `offset` is its offset; with autoflush off, once the record is
/// queued: `offset` is then -1 and `id` finds the record's delivery report later.
pub const Receipt = struct {
    /// The record's id within this plugin instance, counting from 0.
    id: u64,
    partition: i32,
    /// The record's offset, or -1 while it is not acknowledged.
    offset: i64,

    /// Whether the broker had acknowledged the record when `publish` returned.
    pub fn isAcknowledged(self: Receipt) bool {
        return self.offset >= 0;
    }
};

fn bytes(s: []const u8) c.plugin_list_u8_t {
    return .{ .ptr = @constCast(s.ptr), .len = s.len };
}

/// Publishes `record`. With autoflush on, returns after the broker acknowledged it; with
/// autoflush off, once it is queued (the receipt's offset is then -1).
pub fn publish(record: Record) Error!Receipt {
    // The header descriptors in the WIT layout: on the stack for the usual few headers.
    var stack: [16]c.wafka_producer_types_header_t = undefined;
    var headers: []c.wafka_producer_types_header_t = stack[0..];
    var heap: ?[]c.wafka_producer_types_header_t = null;
    defer if (heap) |h| std.heap.c_allocator.free(h);
    if (record.headers.len > stack.len) {
        heap = std.heap.c_allocator.alloc(c.wafka_producer_types_header_t, record.headers.len) catch @panic("out of memory");
        headers = heap.?;
    }
    for (record.headers, headers[0..record.headers.len]) |h, *out| {
        out.* = .{
            .key = .{ .ptr = @constCast(h.key.ptr), .len = h.key.len },
            .value = if (h.value) |v| .{ .is_some = true, .val = bytes(v) } else .{ .is_some = false },
        };
    }
    var msg: c.wafka_producer_producer_message_t = .{
        .topic = .{ .ptr = @constCast(record.topic.ptr), .len = record.topic.len },
        .key = if (record.key) |k| .{ .is_some = true, .val = bytes(k) } else .{ .is_some = false },
        .value = bytes(record.value),
        .headers = .{ .ptr = headers.ptr, .len = record.headers.len },
        .partition = if (record.partition) |p| .{ .is_some = true, .val = p } else .{ .is_some = false },
    };
    var receipt: c.wafka_producer_producer_receipt_t = undefined;
    var err: c.wafka_producer_producer_produce_error_t = undefined;
    if (!c.wafka_producer_producer_publish(&msg, &receipt, &err)) return failWith(&err);
    return .{ .id = receipt.id, .partition = receipt.partition, .offset = receipt.offset };
}

/// Waits until every record this instance published before the call is acknowledged or has
/// failed; returns the first failure since the previous flush.
pub fn flush() Error!void {
    var err: c.wafka_producer_producer_produce_error_t = undefined;
    if (!c.wafka_producer_producer_flush(&err)) return failWith(&err);
}

/// Switches autoflush for this instance: `error.NotAllowed` where the host fixed the mode.
pub fn setAutoflush(enabled: bool) Error!void {
    var err: c.wafka_producer_producer_produce_error_t = undefined;
    if (!c.wafka_producer_producer_set_autoflush(enabled, &err)) return failWith(&err);
}

/// How one record ended.
pub const DeliveryReport = struct {
    /// The record's id, as in its `Receipt`.
    id: u64,
    topic: []const u8,
    partition: i32,
    /// The record's offset, or why it was not delivered.
    outcome: union(enum) {
        offset: i64,
        failed: ProduceError,
    },
};

/// Delivery reports taken with `takeReports`, in the memory the host filled: call `deinit`
/// when done (the reports' slices point into it).
pub const Reports = struct {
    list: c.wafka_producer_producer_list_delivery_report_t,

    pub fn len(self: Reports) usize {
        return self.list.len;
    }

    /// Report `i` (< `len()`).
    pub fn get(self: Reports, i: usize) DeliveryReport {
        const items: []const c.wafka_producer_producer_delivery_report_t = self.list.ptr[0..self.list.len];
        const r = &items[i];
        return .{
            .id = r.id,
            .topic = str(r.topic),
            .partition = r.partition,
            .outcome = if (r.outcome.is_err)
                .{ .failed = ProduceError.fromC(&r.outcome.val.err) }
            else
                .{ .offset = r.outcome.val.ok },
        };
    }

    /// Iterates over the reports: `var it = reports.iterator(); while (it.next()) |r| ...`.
    pub fn iterator(self: *const Reports) Iterator {
        return .{ .reports = self };
    }

    pub const Iterator = struct {
        reports: *const Reports,
        i: usize = 0,

        pub fn next(it: *Iterator) ?DeliveryReport {
            if (it.i >= it.reports.len()) return null;
            defer it.i += 1;
            return it.reports.get(it.i);
        }
    };

    pub fn deinit(self: *Reports) void {
        c.wafka_producer_producer_list_delivery_report_free(&self.list);
        self.list = .{ .ptr = null, .len = 0 };
    }
};

/// Takes up to `max` delivery reports of this instance's records, oldest first; each report
/// is returned once (none pending: `len() == 0`).
pub fn takeReports(max: u32) Reports {
    var reports: Reports = .{ .list = undefined };
    c.wafka_producer_producer_take_reports(max, &reports.list);
    return reports;
}

// ---- Configuration --------------------------------------------------------------------------

/// The `KEY=VALUE` pairs the host passes to `init`, in their order; a key may appear more than
/// once. The SDK keeps them for the instance's lifetime (until the next `init`), so a plugin
/// may keep the slices it gets.
pub const Config = struct {
    pairs: []const c.plugin_tuple2_string_string_t,

    /// The number of pairs (counting repeated keys).
    pub fn count(self: Config) usize {
        return self.pairs.len;
    }

    /// Pair `i` (< `count()`).
    pub fn pair(self: Config, i: usize) struct { key: []const u8, value: []const u8 } {
        return .{ .key = str(self.pairs[i].f0), .value = str(self.pairs[i].f1) };
    }

    /// The last value given for `key`, if any.
    pub fn get(self: Config, key: []const u8) ?[]const u8 {
        var i = self.pairs.len;
        while (i > 0) {
            i -= 1;
            if (std.mem.eql(u8, str(self.pairs[i].f0), key)) return str(self.pairs[i].f1);
        }
        return null;
    }

    /// The last value given for `key`, or `default` when there is none.
    pub fn getOr(self: Config, key: []const u8, default: []const u8) []const u8 {
        return self.get(key) orelse default;
    }

    /// The first key that is not in `known`, if any: lets a plugin reject misspelt settings.
    pub fn unknownKey(self: Config, known: []const []const u8) ?[]const u8 {
        outer: for (self.pairs) |p| {
            for (known) |k| {
                if (std.mem.eql(u8, str(p.f0), k)) continue :outer;
            }
            return str(p.f0);
        }
        return null;
    }
};

// ---- Failing, printing ----------------------------------------------------------------------

/// The message `fail` set, malloc'd (the export's post-return function frees it).
var failure: ?[]u8 = null;

/// Sets the message the current `init` or `handle` fails with and returns
/// `error.PluginFailed`: `return wafka.fail("config `{s}` must not be empty", .{key});`
pub fn fail(comptime fmt: []const u8, args: anytype) error{PluginFailed} {
    if (failure) |f| std.c.free(f.ptr);
    failure = mallocPrint(fmt, args);
    return error.PluginFailed;
}

/// Formats into memory from C's malloc (what the generated post-return functions free).
fn mallocPrint(comptime fmt: []const u8, args: anytype) []u8 {
    const n = std.fmt.count(fmt, args);
    const ptr: [*]u8 = @ptrCast(std.c.malloc(@max(n, 1)) orelse @panic("out of memory"));
    return std.fmt.bufPrint(ptr[0..n], fmt, args) catch unreachable;
}

fn stdoutDrain(w: *Writer, data: []const []const u8, splat: usize) Writer.Error!usize {
    try writeFd(1, w.buffer[0..w.end]);
    w.end = 0;
    var n: usize = 0;
    for (data[0 .. data.len - 1]) |d| {
        try writeFd(1, d);
        n += d.len;
    }
    const last = data[data.len - 1];
    for (0..splat) |_| {
        try writeFd(1, last);
        n += last.len;
    }
    return n;
}

fn writeFd(fd: c_int, data: []const u8) Writer.Error!void {
    var rest = data;
    while (rest.len > 0) {
        const n = std.c.write(fd, rest.ptr, rest.len);
        if (n <= 0) return error.WriteFailed;
        rest = rest[@intCast(n)..];
    }
}

/// Prints to stdout (which the host logs line by line), unbuffered: each call is written
/// before it returns. Output errors are ignored.
pub fn print(comptime fmt: []const u8, args: anytype) void {
    var buffer: [512]u8 = undefined;
    var w: Writer = .{ .vtable = &.{ .drain = stdoutDrain }, .buffer = &buffer };
    w.print(fmt, args) catch return;
    w.flush() catch return;
}

/// A panic handler for plugins: writes `panic: MESSAGE` to stderr (the host's log), then traps
/// the instance. Declare it in the plugin's root file, `pub const panic = wafka.panic;`: Zig's
/// default handler works too, but brings in std's whole I/O layer (about 45 KB more).
pub const panic = std.debug.FullPanic(panicTrap);

fn panicTrap(message: []const u8, _: ?usize) noreturn {
    @branchHint(.cold);
    writeFd(2, "panic: ") catch {};
    writeFd(2, message) catch {};
    writeFd(2, "\n") catch {};
    @trap();
}

// ---- The world's exports --------------------------------------------------------------------

/// Makes `Plugin` the implementation of the component's `init`, `handle` and `finish` exports
/// (the `plugin-lifecycle` world). Call it once, in a `comptime` block of the plugin's root
/// file. `Plugin` must have
///
///     pub fn init(config: wafka.Config) !Plugin
///     pub fn handle(self: *Plugin, event: []const u8) !void
///
/// and may have `pub fn finish(self: *Plugin) !void`, called once after the last event (flush,
/// drain the last delivery reports; publishing still works there).
///
/// The SDK keeps the value `init` returns for the instance's lifetime and hands it to
/// `handle` for every event (`handle` before a successful `init` fails without calling it).
/// A second `init` first calls `pub fn deinit(self: *Plugin) void` on the old value, if the
/// type declares one.
/// An error from either becomes the export's error message: the text given to `fail` for
/// `error.PluginFailed`, the producer error's text (see `ProduceError.format`) for the last
/// `Error` that `publish`, `flush` or `setAutoflush` returned, else the error's name.
/// A panic traps the instance.
pub fn exportPlugin(comptime Plugin: type) void {
    const Exports = struct {
        var plugin: ?Plugin = null;
        var config: c.plugin_list_tuple2_string_string_t = .{ .ptr = null, .len = 0 };

        fn init(list: *c.plugin_list_tuple2_string_string_t, err: *c.plugin_string_t) callconv(.c) bool {
            // A failing init leaves no plugin behind; a second init replaces the first.
            if (plugin) |*p| {
                if (@hasDecl(Plugin, "deinit")) p.deinit();
            }
            plugin = null;
            c.plugin_list_tuple2_string_string_free(&config);
            config = list.*;
            const pairs: []const c.plugin_tuple2_string_string_t = if (config.len == 0) &.{} else config.ptr[0..config.len];
            plugin = Plugin.init(.{ .pairs = pairs }) catch |e| return exportError(e, err);
            dropFailure();
            return true;
        }

        fn handle(event: *c.plugin_list_u8_t, err: *c.plugin_string_t) callconv(.c) bool {
            defer c.plugin_list_u8_free(event);
            const p = if (plugin) |*p| p else {
                setError(err, mallocPrint("plugin is not initialized (init was not called or failed)", .{}));
                return false;
            };
            p.handle(str(event.*)) catch |e| return exportError(e, err);
            dropFailure();
            return true;
        }

        fn finish(err: *c.plugin_string_t) callconv(.c) bool {
            const p = if (plugin) |*p| p else return true;
            if (@hasDecl(Plugin, "finish")) {
                p.finish() catch |e| return exportError(e, err);
                dropFailure();
            }
            return true;
        }
    };
    @export(&Exports.init, .{ .name = "exports_plugin_init" });
    @export(&Exports.handle, .{ .name = "exports_plugin_handle" });
    @export(&Exports.finish, .{ .name = "exports_plugin_finish" });
}

fn exportError(e: anyerror, err: *c.plugin_string_t) bool {
    const message = if (e == error.PluginFailed and failure != null)
        failure.?
    else if (last_error != null and last_error.?.toError() == e)
        mallocPrint("{f}", .{last_error.?})
    else
        mallocPrint("{s}", .{@errorName(e)});
    if (failure) |f| {
        if (f.ptr != message.ptr) std.c.free(f.ptr);
    }
    failure = null;
    setError(err, message);
    return false;
}

/// Drops a message `fail` set in a call that then succeeded.
fn dropFailure() void {
    if (failure) |f| std.c.free(f.ptr);
    failure = null;
}

fn setError(err: *c.plugin_string_t, message: []u8) void {
    if (message.len == 0) {
        // The post-return function frees only non-empty strings.
        std.c.free(message.ptr);
        err.* = .{ .ptr = null, .len = 0 };
    } else {
        err.* = .{ .ptr = message.ptr, .len = message.len };
    }
}

// ---- Native unit tests ----------------------------------------------------------------------

/// A fake host for plugins' native unit tests, run by `guest-sdk/zig/test.sh PLUGIN.zig` (which
/// compiles the bindings and the C SDK's fake host, guest-sdk/c/testing/fake_host.c, for the
/// build machine). The fake stands where the host's imports are: `publish`, `flush`,
/// `setAutoflush` and `takeReports` run this module's code and the bindings' as in a component,
/// and the fake answers as the host does: receipts with offsets per topic and partition
/// (counting from 0; -1 until acknowledged unless autoflush is on), one delivery report per
/// record, flush's first failure since the last flush, and the refusals and failures a test
/// asks for. `init`, `handle` and `finish` call the plugin through the component's exports, as
/// the host does:
///
/// ```zig
/// test "publishes and fails refused events" {
///     wafka.testing.reset();
///     try std.testing.expect(wafka.testing.init(&.{"topic=greetings"}) == null);
///     try std.testing.expect(wafka.testing.handle("hello") == null);
///     try std.testing.expectEqualStrings("hello", wafka.testing.published()[0].value);
///     wafka.testing.refuseTopic("greetings", .{ .not_authorized = "greetings" });
///     try std.testing.expectEqualStrings("not authorized: greetings", wafka.testing.handle("again").?);
/// }
/// ```
///
/// Only for tests on the build machine: nothing of it is in a component.
pub const testing = struct {
    /// A record the plugin published, as the fake kept it.
    pub const Published = struct {
        topic: []const u8,
        /// null: Kafka's null key.
        key: ?[]const u8,
        value: []const u8,
        /// In order.
        headers: []const Header,
        /// The partition asked for, else 0.
        partition: i32,
        /// Its offset in that topic and partition, counting from 0.
        offset: i64,
    };

    /// Starts afresh: nothing published, no reports, no refusals, autoflush off and the
    /// plugin's to choose. (The plugin's state is untouched: call `init` again for that.)
    pub fn reset() void {
        native();
        wafka_testing_reset();
        _ = arena.reset(.free_all);
    }

    /// The records published (and not refused) since the last `reset`, in order; valid until
    /// the next call of `published` or `reset`.
    pub fn published() []const Published {
        native();
        _ = arena.reset(.free_all);
        var records: ?[*]const CPublished = null;
        const n = wafka_testing_published(&records);
        const out = arena.allocator().alloc(Published, n) catch @panic("out of memory");
        if (n == 0) return out;
        for (records.?[0..n], out) |r, *p| {
            const headers = arena.allocator().alloc(Header, r.headers_len) catch @panic("out of memory");
            for (r.headers[0..r.headers_len], headers) |h, *o| {
                o.* = .{ .key = h.key[0..h.key_len], .value = if (h.has_value) h.value.?[0..h.value_len] else null };
            }
            p.* = .{
                .topic = r.topic[0..r.topic_len],
                .key = if (r.has_key) r.key.?[0..r.key_len] else null,
                .value = r.value[0..r.value_len],
                .headers = headers,
                .partition = r.partition,
                .offset = r.offset,
            };
        }
        return out;
    }

    /// Every publish to `topic` is refused with `err` (as the host's ACL refuses with
    /// `.{ .not_authorized = topic }`, say).
    pub fn refuseTopic(topic: []const u8, err: ProduceError) void {
        native();
        const t = dupeZ(topic);
        defer std.heap.c_allocator.free(t);
        var e = CError.of(err);
        defer e.deinit();
        wafka_testing_refuse_topic(t.ptr, &e.c);
    }

    /// The next publish is refused with `err` (several calls queue up; then publishes go
    /// through again).
    pub fn refuseNext(err: ProduceError) void {
        native();
        var e = CError.of(err);
        defer e.deinit();
        wafka_testing_refuse_next(&e.c);
    }

    /// Every record published from now on is queued, then not delivered: its delivery report
    /// (and the next `flush`) carries `err`, as when the broker refuses it; with autoflush on,
    /// `publish` itself fails with it. null delivers records again.
    pub fn failReports(err: ?ProduceError) void {
        native();
        var e = if (err) |x| CError.of(x) else null;
        defer if (e) |*x| x.deinit();
        wafka_testing_fail_reports(if (e) |*x| &x.c else null);
    }

    /// Every `flush` fails with `err`; null stops that.
    pub fn failFlush(err: ?ProduceError) void {
        native();
        var e = if (err) |x| CError.of(x) else null;
        defer if (e) |*x| x.deinit();
        wafka_testing_fail_flush(if (e) |*x| &x.c else null);
    }

    /// The host fixes autoflush on or off: `setAutoflush` then fails with `error.NotAllowed`.
    /// Until a `reset`.
    pub fn fixAutoflush(on: bool) void {
        native();
        wafka_testing_fix_autoflush(on);
    }

    /// Whether autoflush is on now.
    pub fn autoflush() bool {
        native();
        return wafka_testing_autoflush();
    }

    /// Calls the component's `init` export with `config`, "KEY=VALUE" strings (split at the
    /// first '='), as `--config KEY=VALUE` does. Returns null when it succeeded, else the error
    /// message the host would see (valid until the next call of `init`, `handle` or `finish`).
    pub fn init(config: []const []const u8) ?[]const u8 {
        native();
        const strings = std.heap.c_allocator.alloc(?[*:0]const u8, config.len + 1) catch @panic("out of memory");
        defer std.heap.c_allocator.free(strings);
        for (config, strings[0..config.len]) |pair, *s| s.* = dupeZ(pair).ptr;
        strings[config.len] = null;
        defer for (strings[0..config.len]) |s| std.heap.c_allocator.free(std.mem.span(s.?));
        return message(wafka_testing_init(strings.ptr));
    }

    /// Calls the `handle` export with `event`; returns like `init`.
    pub fn handle(event: []const u8) ?[]const u8 {
        native();
        return message(wafka_testing_handle(event.ptr, event.len));
    }

    /// Calls the `finish` export (the plugin's `finish`, if it has one); returns like `init`.
    pub fn finish() ?[]const u8 {
        native();
        return message(wafka_testing_finish());
    }

    fn message(m: ?[*:0]const u8) ?[]const u8 {
        return if (m) |s| std.mem.span(s) else null;
    }

    fn native() void {
        if (comptime @import("builtin").target.cpu.arch.isWasm()) {
            @compileError("wafka.testing is for native unit tests (guest-sdk/zig/test.sh), not for a component");
        }
    }

    fn dupeZ(s: []const u8) [:0]u8 {
        return std.heap.c_allocator.dupeSentinel(u8, s, 0) catch @panic("out of memory");
    }

    /// What `published` hands out lives here.
    var arena = std.heap.ArenaAllocator.init(std.heap.c_allocator);

    // wafka_testing.h's types and functions (guest-sdk/c/testing/fake_host.c).

    const CHeader = extern struct {
        key: [*]const u8,
        key_len: usize,
        has_value: bool,
        value: ?[*]const u8,
        value_len: usize,
    };

    const CPublished = extern struct {
        topic: [*]const u8,
        topic_len: usize,
        has_key: bool,
        key: ?[*]const u8,
        key_len: usize,
        value: [*]const u8,
        value_len: usize,
        headers: [*]const CHeader,
        headers_len: usize,
        partition: i32,
        offset: i64,
    };

    /// A `wafka_error` of wafka.h, with its strings NUL-terminated copies.
    const CError = struct {
        c: extern struct {
            code: c_int,
            message: ?[*:0]const u8 = null,
            detail: ?[*:0]const u8 = null,
            record_size: u64 = 0,
            broker_name: ?[*:0]const u8 = null,
            broker_code: i16 = 0,
            broker_message: ?[*:0]const u8 = null,
        },

        fn of(e: ProduceError) CError {
            // WAFKA_ERR_NOT_AUTHORIZED (-2) and on, in the order of the WIT cases.
            const code = -2 - @as(c_int, @backingInt(std.meta.activeTag(e)));
            var out: CError = .{ .c = .{ .code = code } };
            switch (e) {
                .not_authorized, .invalid_topic, .quota_exceeded, .timed_out, .not_allowed => |d| out.c.detail = dupeZ(d).ptr,
                .record_too_large => |n| out.c.record_size = n,
                .buffer_full, .closed => {},
                .broker => |b| {
                    out.c.broker_name = dupeZ(b.name).ptr;
                    out.c.broker_code = b.code;
                    if (b.message) |m| out.c.broker_message = dupeZ(m).ptr;
                },
            }
            return out;
        }

        fn deinit(self: *CError) void {
            for ([_]?[*:0]const u8{ self.c.detail, self.c.broker_name, self.c.broker_message }) |s| {
                if (s) |p| std.heap.c_allocator.free(std.mem.span(p));
            }
        }
    };

    extern fn wafka_testing_reset() void;
    extern fn wafka_testing_published(records: *?[*]const CPublished) usize;
    extern fn wafka_testing_refuse_topic(topic: [*:0]const u8, err: *const anyopaque) void;
    extern fn wafka_testing_refuse_next(err: *const anyopaque) void;
    extern fn wafka_testing_fail_reports(err: ?*const anyopaque) void;
    extern fn wafka_testing_fail_flush(err: ?*const anyopaque) void;
    extern fn wafka_testing_fix_autoflush(on: bool) void;
    extern fn wafka_testing_autoflush() bool;
    extern fn wafka_testing_init(config: [*]const ?[*:0]const u8) ?[*:0]const u8;
    extern fn wafka_testing_handle(event: [*]const u8, len: usize) ?[*:0]const u8;
    extern fn wafka_testing_finish() ?[*:0]const u8;
};
