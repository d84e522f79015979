//! The Zig SDK's tests of `wafka.testing` (the C SDK's fake host under wafka.zig): offsets,
//! receipts, reports, flush's first failure, refusals, fixed autoflush, every produce-error
//! case reaching the plugin as itself, and the exports. The answers checked are those of the
//! Rust SDK's `wafka_guest::testing` and Go's FakeHost. Run by scripts/test-sdks zig:
//!
//!     guest-sdk/zig/test.sh guest-sdk/zig/tests/fake_host_test.zig
//!
//! The file is also the plugin under test: its `handle` does what `action` says.

const std = @import("std");
const wafka = @import("wafka");
const t = wafka.testing;
const expect = std.testing.expect;
const expectEqual = std.testing.expectEqual;
const expectEqualStrings = std.testing.expectEqualStrings;

var action: enum { none, publish, fail } = .none;
var finished: usize = 0;
var seen: ?wafka.Config = null;

const Probe = struct {
    pub fn init(config: wafka.Config) !Probe {
        seen = config;
        if (config.get("fail")) |why| return wafka.fail("init failed: {s}", .{why});
        return .{};
    }

    pub fn handle(_: *Probe, event: []const u8) !void {
        switch (action) {
            .none => {},
            .publish => _ = try wafka.publish(.{ .topic = "events", .value = event }),
            .fail => return wafka.fail("bad event {s}", .{event}),
        }
    }

    pub fn finish(_: *Probe) !void {
        finished += 1;
        try wafka.flush();
    }
};

comptime {
    wafka.exportPlugin(Probe);
}

fn publishTo(topic: []const u8, partition: ?i32) !wafka.Receipt {
    return wafka.publish(.{ .topic = topic, .value = "v", .partition = partition });
}

test "published records keep every field" {
    t.reset();
    _ = try wafka.publish(.{
        .topic = "orders",
        .key = "k",
        .value = "a\x00b",
        .headers = &.{ .{ .key = "h", .value = "1" }, .{ .key = "n", .value = null }, .{ .key = "h", .value = "2" } },
        .partition = 4,
    });
    _ = try wafka.publish(.{ .topic = "orders", .key = "", .value = "" });
    _ = try wafka.publish(.{ .topic = "orders", .value = "x" });
    const p = t.published();
    try expectEqual(3, p.len);
    try expectEqualStrings("orders", p[0].topic);
    try expectEqualStrings("k", p[0].key.?);
    try expectEqualStrings("a\x00b", p[0].value);
    try expectEqual(3, p[0].headers.len);
    try expectEqualStrings("h", p[0].headers[0].key);
    try expectEqualStrings("1", p[0].headers[0].value.?);
    try expectEqualStrings("n", p[0].headers[1].key);
    try expectEqual(null, p[0].headers[1].value);
    try expectEqualStrings("2", p[0].headers[2].value.?);
    try expectEqual(4, p[0].partition);
    try expectEqual(0, p[0].offset);
    // The empty key is not the null key.
    try expectEqualStrings("", p[1].key.?);
    try expectEqualStrings("", p[1].value);
    try expectEqual(0, p[1].headers.len);
    try expectEqual(0, p[1].partition);
    try expectEqual(null, p[2].key);
}

test "offsets count per topic and partition" {
    t.reset();
    try wafka.setAutoflush(true);
    try expectEqual(0, (try publishTo("t", 0)).offset);
    try expectEqual(1, (try publishTo("t", 0)).offset);
    try expectEqual(0, (try publishTo("t", 2)).offset);
    try expectEqual(0, (try publishTo("u", 0)).offset);
    try expectEqual(1, (try publishTo("t", 2)).offset);
    try expectEqual(2, (try publishTo("t", null)).offset);
    const p = t.published();
    try expectEqual(6, p.len);
    try expectEqual(2, p[4].partition);
    try expectEqual(1, p[4].offset);
}

test "receipts are unacknowledged unless autoflush is on" {
    t.reset();
    try expect(!t.autoflush());
    try expectEqual(wafka.Receipt{ .id = 0, .partition = 3, .offset = -1 }, try publishTo("t", 3));
    try expectEqual(wafka.Receipt{ .id = 1, .partition = 0, .offset = -1 }, try publishTo("t", null));
    try wafka.setAutoflush(true);
    try expect(t.autoflush());
    const r = try publishTo("t", 3);
    try expectEqual(wafka.Receipt{ .id = 2, .partition = 3, .offset = 1 }, r);
    try expect(r.isAcknowledged());
    try wafka.setAutoflush(false);
    try expectEqual(-1, (try publishTo("t", null)).offset);
}

test "reports come once, oldest first" {
    t.reset();
    var none = wafka.takeReports(10);
    try expectEqual(0, none.len());
    none.deinit();
    _ = try publishTo("a", null);
    _ = try publishTo("b", 1);
    _ = try publishTo("a", null);
    var two = wafka.takeReports(2);
    defer two.deinit();
    try expectEqual(2, two.len());
    const first = two.get(0);
    try expectEqual(0, first.id);
    try expectEqualStrings("a", first.topic);
    try expectEqual(0, first.outcome.offset);
    try expectEqual(1, two.get(1).partition);
    var rest = wafka.takeReports(10);
    defer rest.deinit();
    try expectEqual(1, rest.len());
    try expectEqual(2, rest.get(0).id);
    try expectEqual(1, rest.get(0).outcome.offset);
    var empty = wafka.takeReports(10);
    defer empty.deinit();
    try expectEqual(0, empty.len());
    try wafka.flush();
}

test "failed reports fail the next flush once, with the first failure" {
    t.reset();
    _ = try publishTo("t", null);
    t.failReports(.{ .timed_out = "expired" });
    const lost = try publishTo("t", null);
    try expectEqual(wafka.Receipt{ .id = 1, .partition = 0, .offset = -1 }, lost);
    t.failReports(.buffer_full);
    _ = try publishTo("t", null);
    try expectEqual(1, t.published().len);

    var reports = wafka.takeReports(10);
    defer reports.deinit();
    try expectEqual(3, reports.len());
    try expectEqual(0, reports.get(0).outcome.offset);
    try expectEqualStrings("expired", reports.get(1).outcome.failed.timed_out);
    try expectEqual(error.BufferFull, reports.get(2).outcome.failed.toError());

    try std.testing.expectError(error.TimedOut, wafka.flush());
    try expectEqualStrings("expired", wafka.lastError().?.timed_out);
    try wafka.flush();

    // With autoflush on, publish itself fails, and flush has nothing to report.
    try wafka.setAutoflush(true);
    try std.testing.expectError(error.BufferFull, publishTo("t", null));
    try wafka.flush();
    t.failReports(null);
    try expectEqual(wafka.Receipt{ .id = 4, .partition = 0, .offset = 1 }, try publishTo("t", null));
}

test "a failing flush fails every flush" {
    t.reset();
    t.failFlush(.closed);
    try std.testing.expectError(error.Closed, wafka.flush());
    try std.testing.expectError(error.Closed, wafka.flush());
    t.failFlush(null);
    try wafka.flush();
}

test "refusals by topic and of the next publish" {
    t.reset();
    t.refuseTopic("audit", .{ .not_authorized = "audit" });
    try std.testing.expectError(error.NotAuthorized, publishTo("audit", null));
    try std.testing.expectError(error.NotAuthorized, publishTo("audit", null));
    try expectEqual(0, (try publishTo("orders", null)).id); // refused records take no id

    t.refuseNext(.buffer_full);
    t.refuseNext(.{ .quota_exceeded = "records" });
    try std.testing.expectError(error.BufferFull, publishTo("orders", null));
    try std.testing.expectError(error.QuotaExceeded, publishTo("orders", null));
    try expectEqual(1, (try publishTo("orders", null)).id);
    try expectEqual(2, t.published().len);
}

test "a fixed autoflush refuses the plugin" {
    t.reset();
    t.fixAutoflush(true);
    try expect(t.autoflush());
    try std.testing.expectError(error.NotAllowed, wafka.setAutoflush(false));
    try expectEqualStrings("the host fixed autoflush to on", wafka.lastError().?.not_allowed);
    try expectEqual(0, (try publishTo("t", null)).offset);
    t.fixAutoflush(false);
    try std.testing.expectError(error.NotAllowed, wafka.setAutoflush(true));
    try expectEqualStrings("the host fixed autoflush to off", wafka.lastError().?.not_allowed);
    try expectEqual(-1, (try publishTo("t", null)).offset);
    t.reset();
    try wafka.setAutoflush(true);
}

fn expectSame(want: wafka.ProduceError, got: wafka.ProduceError) !void {
    try expectEqualStrings(want.kind(), got.kind());
    switch (want) {
        .not_authorized, .invalid_topic, .quota_exceeded, .timed_out, .not_allowed => |d| {
            const g = switch (got) {
                .not_authorized, .invalid_topic, .quota_exceeded, .timed_out, .not_allowed => |x| x,
                else => return error.TestUnexpectedResult,
            };
            try expectEqualStrings(d, g);
        },
        .record_too_large => |n| try expectEqual(n, got.record_too_large),
        .buffer_full, .closed => {},
        .broker => |b| {
            try expectEqualStrings(b.name, got.broker.name);
            try expectEqual(b.code, got.broker.code);
            try expectEqual(b.message == null, got.broker.message == null);
            if (b.message) |m| try expectEqualStrings(m, got.broker.message.?);
        },
    }
}

test "every produce-error case reaches the plugin as itself" {
    const cases = [_]struct { err: wafka.ProduceError, text: []const u8 }{
        .{ .err = .{ .not_authorized = "t" }, .text = "not authorized: t" },
        .{ .err = .{ .invalid_topic = "bad\nname" }, .text = "invalid topic: bad name" },
        .{ .err = .{ .record_too_large = 1 << 40 }, .text = "record too large: 1099511627776 bytes" },
        .{ .err = .buffer_full, .text = "producer buffer full" },
        .{ .err = .{ .quota_exceeded = "records" }, .text = "quota exceeded: records" },
        .{ .err = .{ .timed_out = "30s" }, .text = "timed out: 30s" },
        .{ .err = .closed, .text = "producer closed" },
        .{ .err = .{ .not_allowed = "" }, .text = "not allowed: " },
        .{ .err = .{ .broker = .{ .name = "NOT_ENOUGH_REPLICAS", .code = 19, .message = "2 < 3\r\n" } }, .text = "broker error NOT_ENOUGH_REPLICAS (19): 2 < 3  " },
        .{ .err = .{ .broker = .{ .name = "UNKNOWN_SERVER_ERROR", .code = -1, .message = null } }, .text = "broker error UNKNOWN_SERVER_ERROR (-1)" },
    };
    try expectEqual(null, t.init(&.{}));
    for (cases) |c| {
        // Refused at publish.
        t.reset();
        t.refuseNext(c.err);
        try std.testing.expectError(c.err.toError(), publishTo("t", null));
        try expectSame(c.err, wafka.lastError().?);
        var text: std.Io.Writer.Allocating = .init(std.testing.allocator);
        defer text.deinit();
        try text.writer.print("{f}", .{wafka.lastError().?});
        try expectEqualStrings(c.text, text.written());

        // Failed in its report, and at flush.
        t.reset();
        t.failReports(c.err);
        _ = try publishTo("t", null);
        var reports = wafka.takeReports(1);
        defer reports.deinit();
        try expectSame(c.err, reports.get(0).outcome.failed);
        try std.testing.expectError(c.err.toError(), wafka.flush());
        try expectSame(c.err, wafka.lastError().?);

        // From handle, `try` makes it the event's error.
        t.reset();
        t.refuseNext(c.err);
        action = .publish;
        defer action = .none;
        try expectEqualStrings(c.text, t.handle("x").?);
    }
}

test "the exports run as the host calls them" {
    t.reset();
    try expectEqual(null, t.init(&.{ "topic=a", "x=1=2", "empty=", "topic=b" }));
    const config = seen.?;
    try expectEqual(4, config.count());
    try expectEqualStrings("b", config.get("topic").?);
    try expectEqualStrings("1=2", config.get("x").?);
    try expectEqualStrings("", config.get("empty").?);
    try expectEqualStrings("empty", config.pair(2).key);

    action = .publish;
    defer action = .none;
    try expectEqual(null, t.handle("a\x00b"));
    try expectEqual(null, t.handle(""));
    const p = t.published();
    try expectEqual(2, p.len);
    try expectEqualStrings("a\x00b", p[0].value);
    try expectEqualStrings("", p[1].value);

    action = .fail;
    try expectEqualStrings("bad event e1", t.handle("e1").?);

    // finish flushes (see Probe.finish): its failure is finish's error.
    finished = 0;
    try expectEqual(null, t.finish());
    t.failFlush(.{ .timed_out = "late" });
    try expectEqualStrings("timed out: late", t.finish().?);
    try expectEqual(2, finished);

    try expectEqualStrings("init failed: no", t.init(&.{"fail=no"}).?);
    try expectEqualStrings("plugin is not initialized (init was not called or failed)", t.handle("x").?);
    try expectEqual(null, t.finish());
    try expectEqual(2, finished); // not after a failed init
}

test "reset starts afresh" {
    _ = try publishTo("t", null);
    t.refuseTopic("t", .closed);
    t.refuseNext(.closed);
    t.failReports(.closed);
    t.failFlush(.closed);
    t.fixAutoflush(true);
    t.reset();
    try expectEqual(0, t.published().len);
    try expect(!t.autoflush());
    try wafka.flush();
    try expectEqual(wafka.Receipt{ .id = 0, .partition = 0, .offset = -1 }, try publishTo("t", null));
    var reports = wafka.takeReports(10);
    defer reports.deinit();
    try expectEqual(1, reports.len());
    try wafka.setAutoflush(true);
    t.reset();
}
