// `hello`: publishes every event as one record (the JavaScript twin of examples/rust/hello).
//
// Configuration:
//
// * `topic` — the destination topic (default `hello`);
// * `key-delimiter` — optional, non-empty: each event is split at the first occurrence of the
//   delimiter into key (before) and value (after). An event without the delimiter is published
//   whole as the value, with a null key. Without this setting, every record has a null key.
//
// Every record carries the header `source=hello`.

import { PluginError, publish } from "wafka";

const HEADERS = [["source", "hello"]];

let topic = "hello";
let keyDelimiter = null;

export function init(config) {
  const delimiter = config.get("key-delimiter");
  if (delimiter === "") throw new PluginError("config `key-delimiter` must not be empty");
  keyDelimiter = delimiter === undefined ? null : new TextEncoder().encode(delimiter);
  topic = config.get("topic") ?? "hello";
}

export function handle(event) {
  const [key, value] = keyDelimiter === null ? [null, event] : splitOnce(event, keyDelimiter);
  publish({ topic, key, value, headers: HEADERS });
}

/** `[key, value]` split at the first `delimiter`, or `[null, event]` without one. */
export function splitOnce(event, delimiter) {
  const at = indexOf(event, delimiter);
  if (at < 0) return [null, event];
  return [event.subarray(0, at), event.subarray(at + delimiter.length)];
}

function indexOf(haystack, needle) {
  const first = needle[0];
  const last = haystack.length - needle.length;
  outer: for (let i = haystack.indexOf(first); i !== -1 && i <= last; i = haystack.indexOf(first, i + 1)) {
    for (let j = 1; j < needle.length; j++) {
      if (haystack[i + j] !== needle[j]) continue outer;
    }
    return i;
  }
  return -1;
}
