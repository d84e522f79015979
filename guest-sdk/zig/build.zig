//! The Zig SDK as a package for `zig build`: a plugin's build.zig depends on this directory
//! (build.zig.zon: `.wafka = .{ .path = "..." }`) and calls `addPlugin`, which adds
//!
//!   zig build          the component, as zig-out/<name>.wasm (through build.sh: the bindings,
//!                      the wasm32-wasi reactor and `wasm-tools component new`)
//!   zig build test     the plugin's `test` blocks, natively against the fake host (test.sh)
//!
//! The steps run the SDK's own scripts, which install their tools into the cache on first
//! use; they always run (the scripts follow the plugin's imports, which zig build cannot see).
//! The dependency must stay a path dependency: the scripts find the contract at ../../wit.

const std = @import("std");

pub fn build(b: *std.Build) void {
    _ = b; // nothing of its own to build: see addPlugin
}

pub const PluginOptions = struct {
    /// The component is zig-out/<name>.wasm.
    name: []const u8,
    /// The plugin's root file, which imports the SDK as @import("wafka").
    root_source_file: std.Build.LazyPath,
};

/// Adds the plugin's component to `zig build` (install) and its tests to `zig build test`.
pub fn addPlugin(b: *std.Build, options: PluginOptions) void {
    const sdk = b.dependencyFromBuildZig(@This(), .{});
    const wasm = b.fmt("{s}.wasm", .{options.name});

    const component = b.addSystemCommand(&.{"bash"});
    component.addFileArg(sdk.path("build.sh"));
    component.addArg("-o");
    const out = component.addOutputFileArg(wasm);
    component.addFileArg(options.root_source_file);
    component.has_side_effects = true;
    b.getInstallStep().dependOn(&b.addInstallFile(out, wasm).step);

    const tests = b.addSystemCommand(&.{"bash"});
    tests.addFileArg(sdk.path("test.sh"));
    tests.addFileArg(options.root_source_file);
    tests.has_side_effects = true;
    b.step("test", "Run the plugin's tests natively, against the fake host").dependOn(&tests.step);
}
