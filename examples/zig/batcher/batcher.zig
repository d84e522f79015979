//! batcher: publishes every event with autoflush off, flushes every N records, and sends the
//! records that were not delivered to a dead-letter topic (the Zig twin of
//! examples/rust/batcher).
//!
//! Configuration:
//!
//! * `topic`: the destination topic (required);
//! * `batch`: flush after this many records (default 100, from 1 to 2048: the host keeps at
//!   most 4,096 undrained reports, and a batch's reports and its dead letters' must fit);
//! * `dead-letter`: the dead-letter topic (default `<topic>.dlq`).
//!
//! `init` switches autoflush off. Where the host fixed the mode (`wafka run`'s default
//! `--autoflush off` does) the switch is refused and the batcher goes on: under `off` that is
//! the mode it wants; under `on` each publish waits for its ack and a failed record fails its
//! event instead.
//!
//! `handle` publishes the event as the value (null key, no headers) and keeps a copy of the
//! value until the record's delivery report comes. After every `batch` records it calls
//! `flush` (a failed flush is not the event's error: the reports say which records failed) and
//! drains the delivery reports until none is left. A record that was not delivered is
//! published to the dead-letter topic with its value, null key and the headers `error` (the
//! error's one-line text, as the `reporter` example prints it) and `topic` (the record's
//! topic), and the plugin prints `dead-letter id=I topic=T error=MESSAGE`. A dead letter that
//! fails too is printed as `lost id=I topic=T error=MESSAGE` (the host also counts it as
//! refused or failed, and `wafka run` then exits non-zero). An event refused at `publish`
//! fails with the error's text.
//!
//! `finish` flushes and drains the same way, then flushes and drains once more for the dead
//! letters. So the values kept are those of one batch: at most `batch` records.

const std = @import("std");
const wafka = @import("wafka");

/// Panics print to stderr and trap, without std's I/O layer (smaller component).
pub const panic = wafka.panic;

const allocator = std.heap.c_allocator;

const Batcher = struct {
    topic: []const u8,
    dead_letter: []const u8,
    /// `dead_letter` when the batcher made it (`<topic>.dlq`), to free.
    dead_letter_made: ?[]u8,
    batch: usize,
    /// Published since the last flush.
    unflushed: usize = 0,
    /// Copies of the values of records not yet reported, by record id.
    pending: std.AutoHashMapUnmanaged(u64, []u8) = .empty,

    pub fn init(config: wafka.Config) !Batcher {
        if (config.unknownKey(&.{ "topic", "batch", "dead-letter" })) |key| {
            return wafka.fail("unknown config `{s}` (known: topic, batch, dead-letter)", .{key});
        }
        // The configuration lives as long as the instance: keeping its slices is fine.
        const topic = config.get("topic") orelse return wafka.fail("missing config `topic`", .{});
        const n = config.getOr("batch", "100");
        const batch = parseBatch(n) orelse return wafka.fail("config `batch` must be a number from 1 to 2048, not `{s}`", .{n});
        const made = if (config.get("dead-letter") == null) try std.fmt.allocPrint(allocator, "{s}.dlq", .{topic}) else null;
        // error.NotAllowed: the host fixed the mode, see above.
        wafka.setAutoflush(false) catch |e| if (e != error.NotAllowed) return e;
        return .{
            .topic = topic,
            .dead_letter = made orelse config.get("dead-letter").?,
            .dead_letter_made = made,
            .batch = batch,
        };
    }

    /// Called by the SDK before a second `init` replaces this one.
    pub fn deinit(self: *Batcher) void {
        var values = self.pending.valueIterator();
        while (values.next()) |v| allocator.free(v.*);
        self.pending.deinit(allocator);
        if (self.dead_letter_made) |d| allocator.free(d);
    }

    pub fn handle(self: *Batcher, event: []const u8) !void {
        const receipt = try wafka.publish(.{ .topic = self.topic, .value = event });
        // The event's memory is the SDK's only for this call: keep a copy.
        const copy = try allocator.dupe(u8, event);
        errdefer allocator.free(copy);
        try self.pending.put(allocator, receipt.id, copy);
        self.unflushed += 1;
        if (self.unflushed == self.batch) self.settle();
    }

    pub fn finish(self: *Batcher) !void {
        self.settle(); // the last records
        self.settle(); // their dead letters
    }

    /// Flushes, then drains every delivery report.
    fn settle(self: *Batcher) void {
        wafka.flush() catch {}; // a failed record shows in its report
        self.unflushed = 0;
        while (true) {
            var reports = wafka.takeReports(100);
            defer reports.deinit();
            if (reports.len() == 0) break;
            var it = reports.iterator();
            while (it.next()) |r| {
                const value = if (self.pending.fetchRemove(r.id)) |entry| entry.value else null;
                defer if (value) |v| allocator.free(v);
                switch (r.outcome) {
                    .offset => {},
                    .failed => |e| if (value) |v| {
                        self.sendDeadLetter(r.id, r.topic, v, e);
                    } else {
                        // A dead letter, which has no dead letter of its own.
                        wafka.print("lost id={d} topic={s} error={f}\n", .{ r.id, r.topic, e });
                    },
                }
            }
        }
    }

    /// Publishes the value of record `id`, which `topic` did not take, to the dead-letter topic.
    fn sendDeadLetter(self: *Batcher, id: u64, topic: []const u8, value: []const u8, e: wafka.ProduceError) void {
        const text = std.fmt.allocPrint(allocator, "{f}", .{e}) catch @panic("out of memory");
        defer allocator.free(text);
        const headers = [_]wafka.Header{
            .{ .key = "error", .value = text },
            .{ .key = "topic", .value = topic },
        };
        if (wafka.publish(.{ .topic = self.dead_letter, .value = value, .headers = &headers })) |_| {
            wafka.print("dead-letter id={d} topic={s} error={s}\n", .{ id, topic, text });
        } else |_| {
            wafka.print("lost id={d} topic={s} error={s} (dead letter refused: {f})\n", .{ id, topic, text, wafka.lastError().? });
        }
    }
};

/// `n` as a batch size: digits only, from 1 to 2048.
fn parseBatch(n: []const u8) ?usize {
    if (n.len == 0 or n.len > 4) return null;
    for (n) |c| if (!std.ascii.isDigit(c)) return null;
    const batch = std.fmt.parseInt(usize, n, 10) catch return null;
    return if (batch >= 1 and batch <= 2048) batch else null;
}

comptime {
    wafka.exportPlugin(Batcher);
}
