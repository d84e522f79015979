//! router: routes JSON events to a topic chosen by one of their fields (the Zig twin of
//! examples/rust/router).
//!
//! Each event must be a JSON object. Configuration:
//!
//! * `field`: the field that picks the topic (default `type`);
//! * `prefix`: prepended to the field's value to make the topic (default `events.`).
//!
//! So with the defaults, `{"type":"click","id":42}` goes to `events.click`. The field's value
//! must be a non-empty string or a number (`events.7`). The record's key is the event's `id`
//! field: a string as is, any other value as its compact JSON text, none (Kafka's null) when
//! `id` is absent or `null`. The value is the event's bytes, unchanged.
//!
//! An event that is not a JSON object (nor UTF-8), or lacks a usable routing field, fails with
//! a one-line message (the Rust example's words; after `event is not JSON:` comes std.json's
//! error name and where it stopped); the host counts it as an error and goes on with the next
//! event. Numbers are kept as written in the event: `7` is `7`, `1e3` stays `1e3` (Rust writes
//! `1000.0`); an `id` object's members keep their order.

const std = @import("std");
const wafka = @import("wafka");

/// Panics print to stderr and trap, without std's I/O layer (smaller component).
pub const panic = wafka.panic;

const allocator = std.heap.c_allocator;

const Router = struct {
    field: []const u8,
    prefix: []const u8,

    pub fn init(config: wafka.Config) !Router {
        const field = config.getOr("field", "type");
        if (field.len == 0) return wafka.fail("config `field` must not be empty", .{});
        // The configuration lives as long as the instance: keeping its slices is fine.
        return .{ .field = field, .prefix = config.getOr("prefix", "events.") };
    }

    pub fn handle(self: *Router, event: []const u8) !void {
        var scanner = std.json.Scanner.initCompleteInput(allocator, event);
        defer scanner.deinit();
        var diagnostics: std.json.Diagnostics = .{};
        scanner.enableDiagnostics(&diagnostics);
        // Numbers stay text (`.number_string`); a repeated name keeps its last value, as in Rust.
        const options: std.json.ParseOptions = .{ .duplicate_field_behavior = .use_last, .parse_numbers = false };
        const parsed = std.json.parseFromTokenSource(std.json.Value, allocator, &scanner, options) catch |e| switch (e) {
            error.OutOfMemory => return e,
            else => return wafka.fail("event is not JSON: {s} at line {d} column {d}", .{ @errorName(e), diagnostics.getLine(), diagnostics.getColumn() }),
        };
        defer parsed.deinit();

        const object = switch (parsed.value) {
            .object => |o| o,
            else => |v| return wafka.fail("event is a JSON {s}, not an object", .{kind(v)}),
        };
        const suffix = switch (object.get(self.field) orelse return wafka.fail("event has no field `{s}`", .{self.field})) {
            .string => |s| if (s.len == 0) return wafka.fail("field `{s}` is empty", .{self.field}) else s,
            .number_string => |n| n,
            else => |v| return wafka.fail("field `{s}` is a JSON {s}, not a string or number", .{ self.field, kind(v) }),
        };
        const topic = try std.mem.concat(allocator, u8, &.{ self.prefix, suffix });
        defer allocator.free(topic);

        var key_text: ?[]u8 = null; // an `id` that is not a string, as JSON text
        defer if (key_text) |k| allocator.free(k);
        const key: ?[]const u8 = switch (object.get("id") orelse .null) {
            .null => null,
            .string => |s| s,
            else => |v| text: {
                key_text = try std.json.Stringify.valueAlloc(allocator, v, .{});
                break :text key_text;
            },
        };
        _ = try wafka.publish(.{ .topic = topic, .key = key, .value = event });
    }
};

/// The JSON type of `value`, for messages.
fn kind(value: std.json.Value) []const u8 {
    return switch (value) {
        .null => "null",
        .bool => "boolean",
        .integer, .float, .number_string => "number",
        .string => "string",
        .array => "array",
        .object => "object",
    };
}

comptime {
    wafka.exportPlugin(Router);
}
