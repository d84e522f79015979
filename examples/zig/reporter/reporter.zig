//! reporter: publishes every event and prints the delivery reports it gets back.
//!
//! Configuration:
//!
//! * `topic`: the destination topic (default `reports`);
//! * `autoflush=true`: init asks the host for autoflush (set-autoflush(true)) and fails with
//!   the host's message if the host refuses.
//!
//! Each event is published as the value of one record with a null key. When the receipt shows
//! the record acknowledged (autoflush on), the plugin prints
//! `receipt partition=<p> offset=<o>`. Then it takes up to 100 delivery reports and prints one
//! line for each: `report id=<id> topic=<t> partition=<p> offset=<o>` or
//! `report id=<id> error=<message>`.

const std = @import("std");
const wafka = @import("wafka");

/// Panics print to stderr and trap, without std's I/O layer (smaller component).
pub const panic = wafka.panic;

const Reporter = struct {
    topic: []const u8,

    pub fn init(config: wafka.Config) !Reporter {
        if (config.get("autoflush")) |autoflush| {
            // A refusal fails init with the host's message (see wafka.exportPlugin).
            if (std.mem.eql(u8, autoflush, "true")) try wafka.setAutoflush(true);
        }
        return .{ .topic = config.getOr("topic", "reports") };
    }

    pub fn handle(self: *Reporter, event: []const u8) !void {
        const receipt = try wafka.publish(.{ .topic = self.topic, .value = event });
        if (receipt.isAcknowledged()) {
            wafka.print("receipt partition={d} offset={d}\n", .{ receipt.partition, receipt.offset });
        }
        printReports();
    }

    /// After the last event: flush, then print the reports still to come.
    pub fn finish(_: *Reporter) !void {
        wafka.flush() catch {}; // a failed record shows in its report
        printReports();
    }
};

/// Takes up to 100 delivery reports and prints one line each.
fn printReports() void {
    var reports = wafka.takeReports(100);
    defer reports.deinit();
    var it = reports.iterator();
    while (it.next()) |r| {
        switch (r.outcome) {
            .offset => |offset| wafka.print("report id={d} topic={s} partition={d} offset={d}\n", .{ r.id, r.topic, r.partition, offset }),
            .failed => |e| wafka.print("report id={d} error={f}\n", .{ r.id, e }),
        }
    }
}

comptime {
    wafka.exportPlugin(Reporter);
}
