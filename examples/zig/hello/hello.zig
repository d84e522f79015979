//! hello: publishes every event as one record (the Zig twin of examples/rust/hello).
//!
//! Configuration:
//!
//! * `topic`: the destination topic (default `hello`);
//! * `key-delimiter`: optional, non-empty: each event is split at the first occurrence of the
//!   delimiter into key (before) and value (after). An event without the delimiter is published
//!   whole as the value, with a null key. Without this setting, every record has a null key.
//!
//! Every record carries the header `source=hello`.

const std = @import("std");
const wafka = @import("wafka");

/// Panics print to stderr and trap, without std's I/O layer (smaller component).
pub const panic = wafka.panic;

const Hello = struct {
    topic: []const u8,
    key_delimiter: ?[]const u8,

    const headers = [_]wafka.Header{.{ .key = "source", .value = "hello" }};

    pub fn init(config: wafka.Config) !Hello {
        const delimiter = config.get("key-delimiter");
        if (delimiter) |d| {
            if (d.len == 0) return wafka.fail("config `key-delimiter` must not be empty", .{});
        }
        // The configuration lives as long as the instance: keeping its slices is fine.
        return .{ .topic = config.getOr("topic", "hello"), .key_delimiter = delimiter };
    }

    pub fn handle(self: *Hello, event: []const u8) !void {
        var key: ?[]const u8 = null;
        var value = event;
        if (self.key_delimiter) |d| {
            if (std.mem.cut(u8, event, d)) |parts| {
                key, value = parts;
            }
        }
        _ = try wafka.publish(.{ .topic = self.topic, .key = key, .value = value, .headers = &headers });
    }
};

comptime {
    wafka.exportPlugin(Hello);
}
