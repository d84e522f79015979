#!/usr/bin/env node
// Builds a JavaScript wafka plugin into a WebAssembly component with jco's QuickJS backend.
//
//     node build.mjs PLUGIN.js -o OUT.wasm [--wit DIR] [--toolchain DIR]
//
// PLUGIN.js is an ES module exporting `handle(event)` and optionally `init(config)`; it imports
// the SDK as "wafka" (see README.md). --toolchain is the directory whose node_modules holds
// @bytecodealliance/jco (default: $WAFKA_JS_TOOLCHAIN, else this directory).
//
// What it does, in a temporary directory:
//
//  1. Copies the WIT (default: ../../wit beside this file) with two changes to the `plugin`
//     world: the export `init` is named `wafka-init` (componentize-qjs keeps an export named
//     `init` of its own, so a world exporting `init` does not build: "duplicate items detected
//     when collecting into set or map"), and the world imports wasi:cli/stdout and
//     wasi:cli/stderr, which the QuickJS runtime imports anyway, for the SDK's `console`. The
//     WASI packages come from jco's bundled WIT.
//  2. Writes an entry module that hands the plugin's functions to the SDK (world.js).
//  3. Bundles the entry, the plugin, the SDK and whatever they import into one ES module with
//     rolldown (jco's bundler; `jco componentize --bundle` itself cannot be used: jco 1.35 runs
//     wasm-tools through a WASI shim that has no preopened directories, so it fails to read
//     the WIT with "failed to get path metadata").
//  4. `jco componentize --backend quickjs --backend-qjs-disable-async`: componentize-qjs
//     generates the bindings for the world and snapshots the initialized QuickJS engine
//     (Wizer). The synchronous runtime: the world has no async functions.
//  5. Names the export `wafka-init` `init` again, dropping the runtime's own `init`
//     (tools/rename-init.mjs), so the component's world is exactly `plugin`.

import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";

import { renameExport } from "./tools/rename-init.mjs";

const SDK = dirname(fileURLToPath(import.meta.url));
const WORLD = "plugin-lifecycle";
const WASI_VERSION = "0.2.12"; // what componentize-qjs 0.4's runtime imports
const WASI_PACKAGES = ["cli", "io", "clocks", "filesystem", "random", "sockets"];

function fail(message) {
  console.error(`build.mjs: ${message}`);
  process.exit(1);
}

function run(command, args) {
  const result = spawnSync(command, args, { stdio: ["ignore", "inherit", "inherit"] });
  if (result.error) fail(`${command}: ${result.error.message}`);
  if (result.status !== 0) fail(`${[command, ...args].join(" ")} exited with ${result.status}`);
}

/** The world's WIT with `init` renamed and the stdio imports added. */
function buildWit(text) {
  // Every world that exports `init` (`plugin`, `plugin-lifecycle`): the one built is among them.
  const exportInit = /^(\s*)export init:/gm;
  const worldStart = new RegExp(`^(\\s*)world ${WORLD} \\{[^\\n]*\\n`, "m");
  if (!exportInit.test(text) || !worldStart.test(text)) return null;
  return text
    .replace(exportInit, "$1export wafka-init:")
    .replace(
      worldStart,
      (line, indent) =>
        `${line}${indent}    import wasi:cli/stdout@${WASI_VERSION};\n` +
        `${indent}    import wasi:cli/stderr@${WASI_VERSION};\n`,
    );
}

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    output: { type: "string", short: "o" },
    wit: { type: "string", default: join(SDK, "..", "..", "wit") },
    toolchain: { type: "string", default: process.env.WAFKA_JS_TOOLCHAIN ?? SDK },
  },
});
if (positionals.length !== 1 || !values.output) {
  fail("usage: node build.mjs PLUGIN.js -o OUT.wasm [--wit DIR] [--toolchain DIR]");
}
const plugin = resolve(positionals[0]);
const output = resolve(values.output);
const wit = resolve(values.wit);
const jcoDir = join(resolve(values.toolchain), "node_modules", "@bytecodealliance", "jco");
const jco = join(jcoDir, "dist", "jco.js");
try {
  readFileSync(jco);
} catch {
  fail(`jco not found at ${jco} (npm install in the toolchain directory, see README.md)`);
}

const tmp = mkdtempSync(join(tmpdir(), "wafka-js-"));
try {
  // 1. The WIT for the build.
  const witOut = join(tmp, "wit");
  cpSync(wit, witOut, { recursive: true });
  let patched = 0;
  for (const name of readdirSync(witOut).filter((n) => n.endsWith(".wit"))) {
    const text = buildWit(readFileSync(join(witOut, name), "utf8"));
    if (text !== null) {
      writeFileSync(join(witOut, name), text);
      patched++;
    }
  }
  if (patched !== 1) fail(`expected one world \`${WORLD}\` exporting \`init\` in ${wit}`);
  const builtin = join(jcoDir, "lib", "wit", "builtin", WASI_VERSION);
  for (const p of WASI_PACKAGES) {
    cpSync(join(builtin, `wasi-${p}`), join(witOut, "deps", `wasi-${p}`), { recursive: true });
  }

  // 2. The entry module.
  const entry = join(tmp, "entry.js");
  writeFileSync(
    entry,
    `import * as plugin from ${JSON.stringify(plugin)};\n` +
      `import { exportsFor } from ${JSON.stringify(join(SDK, "world.js"))};\n` +
      `const world = exportsFor(plugin);\n` +
      `export const wafkaInit = world.init;\n` +
      `export const handle = world.handle;\n` +
      `export const finish = world.finish;\n`,
  );

  // 3. One module.
  const require = createRequire(join(resolve(values.toolchain), "package.json"));
  const { rolldown } = await import(pathToFileURL(require.resolve("rolldown")).href);
  const bundler = await rolldown({
    input: entry,
    cwd: tmp,
    platform: "neutral",
    external: [/^wafka:/, /^wasi:/],
    resolve: { alias: { wafka: join(SDK, "index.js") }, mainFields: ["module", "main"] },
  });
  let source;
  try {
    const { output } = await bundler.generate({ format: "esm", codeSplitting: false });
    const chunks = output.filter((item) => item.type === "chunk");
    if (chunks.length !== 1) fail(`the bundle has ${chunks.length} chunks, not one`);
    source = chunks[0].code;
  } finally {
    await bundler.close();
  }
  const bundled = join(tmp, "plugin.js");
  writeFileSync(bundled, source);

  // 4. The component.
  const built = join(tmp, "component.wasm");
  run(process.execPath, [
    jco, "componentize", bundled,
    "--wit", witOut,
    "--world-name", WORLD,
    "--backend", "quickjs",
    "--backend-qjs-disable-async",
    "-o", built,
  ]);

  // 5. The world's own export names.
  const component = renameExport(readFileSync(built), "wafka-init", "init");
  mkdirSync(dirname(output), { recursive: true });
  const partial = `${output}.partial`;
  writeFileSync(partial, component);
  renameSync(partial, output);
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
