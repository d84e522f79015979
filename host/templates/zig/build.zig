//! `zig build` makes the component (zig-out/{{name}}.wasm); `zig build test` runs the tests in
//! plugin.zig natively against the SDK's fake host. The SDK's build.zig (a path dependency on
//! the copy in .wafka, see build.zig.zon) adds both steps; `wafka build` does the same as the
//! first, to build/{{name}}.wasm.

const std = @import("std");
const wafka = @import("wafka");

pub fn build(b: *std.Build) void {
    wafka.addPlugin(b, .{ .name = "{{name}}", .root_source_file = b.path("plugin.zig") });
}
