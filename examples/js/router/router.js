// `router`: routes JSON events to a topic chosen by one of their fields (the JavaScript twin of
// examples/rust/router).
//
// Each event must be a JSON object. Configuration:
//
// * `field` — the field that picks the topic (default `type`);
// * `prefix` — prepended to the field's value to make the topic (default `events.`).
//
// So with the defaults, `{"type":"click","id":42}` goes to `events.click`. The field's value
// must be a non-empty string or a number (`events.7`). The record's key is the event's `id`
// field: a string as is, any other value as its compact JSON text, none (Kafka's null) when
// `id` is absent or `null`. The value is the event's bytes, unchanged.
//
// An event that is not a JSON object (nor UTF-8), or lacks a usable routing field, fails with
// a one-line message (the Rust example's words; after `event is not JSON:` comes the engine's
// reason); the host counts it as an error and goes on with the next event.
//
// Numbers are JavaScript numbers: integers as written (`7`) up to 2^53, other numbers as
// JavaScript writes them (`1e3` is `1000`, where Rust writes `1000.0`).

import { PluginError, publish } from "wafka";

let field = "type";
let prefix = "events.";

// Strict: bytes that are not UTF-8 are not JSON; a byte order mark is kept (and refused).
const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

export function init(config) {
  field = config.get("field") ?? "type";
  if (field === "") throw new PluginError("config `field` must not be empty");
  prefix = config.get("prefix") ?? "events.";
}

export function handle(event) {
  const [topic, key] = route(event);
  publish({ topic, key, value: event });
}

/** `[topic, key]` for `event`; throws a `PluginError` saying why it cannot be routed. */
export function route(event) {
  let value;
  try {
    value = JSON.parse(decoder.decode(event));
  } catch (e) {
    throw new PluginError(`event is not JSON: ${oneLine(e.message)}`);
  }
  if (kind(value) !== "object") {
    throw new PluginError(`event is a JSON ${kind(value)}, not an object`);
  }
  if (!Object.prototype.hasOwnProperty.call(value, field)) {
    throw new PluginError(`event has no field \`${field}\``);
  }
  const suffix = value[field];
  if (suffix === "") throw new PluginError(`field \`${field}\` is empty`);
  if (typeof suffix !== "string" && typeof suffix !== "number") {
    throw new PluginError(`field \`${field}\` is a JSON ${kind(suffix)}, not a string or number`);
  }
  const id = value.id ?? null; // absent or null: Kafka's null key
  const key = id === null || typeof id === "string" ? id : JSON.stringify(id);
  return [prefix + String(suffix), key];
}

/** The JSON type of a parsed `value`, for messages. */
function kind(value) {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  return typeof value; // "object", "string", "number" or "boolean"
}

function oneLine(text) {
  return String(text).replace(/[\r\n]+/g, " ");
}
