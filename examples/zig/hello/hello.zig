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

// Against the SDK's fake host (`guest-sdk/zig/test.sh examples/zig/hello/hello.zig`): what the
// plugin publishes, and how an event the host refuses fails. Not in the component.
test "publishes keyed lines and fails an event the host refuses" {
    const t = wafka.testing;
    t.reset();
    try std.testing.expectEqual(null, t.init(&.{ "topic=greetings", "key-delimiter=:" }));
    try std.testing.expectEqual(null, t.handle("alice:hello"));
    try std.testing.expectEqual(null, t.handle("no delimiter"));

    const published = t.published();
    try std.testing.expectEqual(2, published.len);
    try std.testing.expectEqualStrings("greetings", published[0].topic);
    try std.testing.expectEqualStrings("alice", published[0].key.?);
    try std.testing.expectEqualStrings("hello", published[0].value);
    try std.testing.expectEqual(1, published[0].headers.len);
    try std.testing.expectEqualStrings("source", published[0].headers[0].key);
    try std.testing.expectEqualStrings("hello", published[0].headers[0].value.?);
    try std.testing.expectEqual(null, published[1].key);
    try std.testing.expectEqual(1, published[1].offset);

    t.refuseTopic("greetings", .{ .not_authorized = "greetings" });
    try std.testing.expectEqualStrings("not authorized: greetings", t.handle("bob:hi").?);
}

test "rejects an empty delimiter" {
    const t = wafka.testing;
    try std.testing.expectEqualStrings("config `key-delimiter` must not be empty", t.init(&.{"key-delimiter="}).?);
    try std.testing.expectEqualStrings("plugin is not initialized (init was not called or failed)", t.handle("x").?);
}
