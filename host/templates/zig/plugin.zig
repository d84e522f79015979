//! {{name}}: a wafka plugin. The host makes one `App` per plugin instance with `init` (the
//! plugin's `--config KEY=VALUE` pairs), then calls `handle` once per input event (one line of
//! input, without the newline), and `finish` once after the last event.
//!
//! This one publishes every event, unchanged, to the topic named by the config `topic`
//! (default `{{name}}`), with the header `plugin={{name}}`.

const std = @import("std");
const wafka = @import("wafka");

/// Panics print to stderr and trap, without std's I/O layer (smaller component).
pub const panic = wafka.panic;

const App = struct {
    topic: []const u8,

    const headers = [_]wafka.Header{.{ .key = "plugin", .value = "{{name}}" }};

    pub fn init(config: wafka.Config) !App {
        // The configuration lives as long as the instance: keeping its slices is fine.
        const topic = config.getOr("topic", "{{name}}");
        // A failed init stops the plugin with this one-line message.
        if (topic.len == 0) return wafka.fail("config `topic` must not be empty", .{});
        return .{ .topic = topic };
    }

    pub fn handle(self: *App, event: []const u8) !void {
        // `.key` chooses the partition (null: Kafka's null key). An error fails this event with
        // its message; the host logs it in one line and goes on with the next event.
        _ = try wafka.publish(.{ .topic = self.topic, .value = event, .headers = &headers });
    }

    /// With autoflush off (the default) `publish` returns once the record is queued: wait for
    /// every record here; `wafka.takeReports` tells which ones failed.
    pub fn finish(self: *App) !void {
        _ = self;
        try wafka.flush();
    }
};

comptime {
    wafka.exportPlugin(App);
}

// Unit tests against the SDK's fake host (natively: no component, no broker):
//   .wafka/guest-sdk/zig/test.sh plugin.zig

test "publishes every event to the topic" {
    const t = wafka.testing;
    t.reset();
    try std.testing.expectEqual(null, t.init(&.{"topic=events"}));
    try std.testing.expectEqual(null, t.handle("one"));
    try std.testing.expectEqual(null, t.handle("two"));
    const published = t.published();
    try std.testing.expectEqual(2, published.len);
    try std.testing.expectEqualStrings("events", published[0].topic);
    try std.testing.expectEqualStrings("one", published[0].value);
    try std.testing.expectEqual(null, published[0].key);
    try std.testing.expectEqualStrings("plugin", published[0].headers[0].key);
    try std.testing.expectEqualStrings("{{name}}", published[0].headers[0].value.?);
    try std.testing.expectEqual(1, published[1].offset);
    try std.testing.expectEqual(null, t.finish());
}

test "an event the host refuses fails with its error" {
    const t = wafka.testing;
    t.reset();
    try std.testing.expectEqual(null, t.init(&.{"topic=events"}));
    t.refuseTopic("events", .{ .not_authorized = "events" });
    try std.testing.expectEqualStrings("not authorized: events", t.handle("one").?);
}

test "an empty topic is refused" {
    const t = wafka.testing;
    t.reset();
    try std.testing.expectEqualStrings("config `topic` must not be empty", t.init(&.{"topic="}).?);
}
