// What the QuickJS runtime of componentize-qjs lacks and plugins expect: `console` (writing
// to the plugin's WASI stdout and stderr, which the host logs) and UTF-8 `TextEncoder` /
// `TextDecoder`. Each is installed on `globalThis` only where the engine has none.

import { getStderr } from "wasi:cli/stderr@0.2.12";
import { getStdout } from "wasi:cli/stdout@0.2.12";

import { Utf8Decoder, Utf8Encoder } from "./utf8.js";

if (typeof globalThis.TextEncoder === "undefined") globalThis.TextEncoder = Utf8Encoder;
if (typeof globalThis.TextDecoder === "undefined") globalThis.TextDecoder = Utf8Decoder;

// --- console ----------------------------------------------------------------------------------

const encoder = new globalThis.TextEncoder();
const CHUNK = 4096; // the most `blocking-write-and-flush` takes at once

function show(value) {
  if (typeof value === "string") return value;
  if (value instanceof Error) return value.stack ? `${value.name}: ${value.message}\n${value.stack}` : String(value);
  if (typeof value === "bigint") return `${value}n`;
  if (value === undefined || typeof value === "function" || typeof value === "symbol") {
    return String(value);
  }
  try {
    return JSON.stringify(value, (_, v) => (typeof v === "bigint" ? `${v}n` : v)) ?? String(value);
  } catch {
    return String(value);
  }
}

/** Writes one line to stdout or stderr. The stream is taken per call and dropped at once: a
 * handle taken while the component is pre-initialized would not survive into the instance. */
function writer(getStream) {
  return (...args) => {
    const bytes = encoder.encode(args.map(show).join(" ") + "\n");
    const stream = getStream();
    try {
      for (let at = 0; at < bytes.length; at += CHUNK) {
        stream.blockingWriteAndFlush(bytes.subarray(at, at + CHUNK));
      }
    } catch {
      // A closed stream loses the line, as a closed stdout would.
    } finally {
      stream[Symbol.dispose]?.();
    }
  };
}

if (typeof globalThis.console === "undefined") {
  const out = writer(getStdout);
  const err = writer(getStderr);
  globalThis.console = { log: out, info: out, debug: out, warn: err, error: err, trace: err };
}
