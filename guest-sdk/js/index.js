// Write wafka plugins in JavaScript.
//
// A wafka plugin is a WebAssembly component for the `plugin` world of `wit/producer.wit`
// (`wafka:producer@0.1.0`): the host calls `init` once with the plugin's `--config KEY=VALUE`
// pairs, then `handle` once per input event, and the plugin publishes Kafka records through
// the host's `producer` interface. This module wraps the imports that componentize-qjs
// generates from the WIT in plain functions, classes and thrown errors:
//
//     import { publish } from "wafka";
//
//     let topic;
//     export function init(config) { topic = config.get("topic") ?? "echo"; }
//     export function handle(event) { publish({ topic, value: event }); }
//
// `build.mjs` (beside this file) turns such a module into a component. See README.md.

import * as host from "wafka:producer/producer@0.1.0";
import "./globals.js";

const encoder = new TextEncoder();

// --- configuration ----------------------------------------------------------------------------

/**
 * The `--config KEY=VALUE` pairs given to `init`: a `Map` from key to value where, for a key
 * given more than once, the last value wins (as in the Rust SDK). `pairs` keeps every pair in
 * order.
 */
export class Config extends Map {
  /** @param {Iterable<[string, string]>} pairs */
  constructor(pairs = []) {
    const list = Array.from(pairs, ([k, v]) => [String(k), String(v)]);
    super(list);
    /** @type {[string, string][]} */
    this.pairs = list;
  }

  /** Every value given for `key`, in order. */
  getAll(key) {
    return this.pairs.filter(([k]) => k === key).map(([, v]) => v);
  }

  /** The value of `key`; throws `PluginError("missing config `KEY`")` when it is absent. */
  require(key) {
    if (!this.has(key)) throw new PluginError(`missing config \`${key}\``);
    return this.get(key);
  }

  /** Throws `PluginError` naming the first key that is not in `known`. */
  checkKnown(known) {
    for (const [k] of this.pairs) {
      if (!known.includes(k)) {
        throw new PluginError(`unknown config \`${k}\` (known: ${known.join(", ")})`);
      }
    }
  }
}

// --- errors -----------------------------------------------------------------------------------

// Line breaks and other control characters (Unicode Cc) become spaces.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;
const oneLine = (text) => String(text).replace(CONTROL, " ");

/** Throw it from `init` or `handle` to fail with exactly its message. */
export class PluginError extends Error {
  constructor(message) {
    super(message);
    this.name = "PluginError";
  }
}

/**
 * Why the host did not publish or deliver a record (the WIT `produce-error`). `kind` is the
 * variant's WIT name (e.g. `"not-authorized"`); `message` is one line, the same text as the
 * Rust SDK's `Display`.
 */
export class ProduceError extends Error {
  constructor(kind, message) {
    super(message);
    this.name = new.target.name;
    /** The WIT case, e.g. `"not-authorized"`, as Node's errors carry a `code`. @type {string} */
    this.code = kind;
    /** The same as `code` (the SDK's first name for it). @type {string} */
    this.kind = kind;
  }
}

/** A `ProduceError` variant that carries a text detail from the host. */
class DetailError extends ProduceError {
  constructor(kind, prefix, detail) {
    super(kind, `${prefix}: ${oneLine(detail)}`);
    /** @type {string} */
    this.detail = detail;
  }
}

/** The plugin may not publish to this topic (host ACL or broker authorization). */
export class NotAuthorizedError extends DetailError {
  constructor(detail) {
    super("not-authorized", "not authorized", detail);
  }
}

/** The topic name is not valid, or the topic does not exist. */
export class InvalidTopicError extends DetailError {
  constructor(detail) {
    super("invalid-topic", "invalid topic", detail);
  }
}

/** The record is larger than the host allows; `size` is the encoded record's bytes. */
export class RecordTooLargeError extends ProduceError {
  constructor(size) {
    super("record-too-large", `record too large: ${size} bytes`);
    /** @type {number} */
    this.size = size;
  }
}

/** The producer's buffer stayed full for the host's maximum wait. */
export class BufferFullError extends ProduceError {
  constructor() {
    super("buffer-full", "producer buffer full");
  }
}

/** The plugin used up its quota (memory, records or bytes). */
export class QuotaExceededError extends DetailError {
  constructor(detail) {
    super("quota-exceeded", "quota exceeded", detail);
  }
}

/** The record was not acknowledged in time. */
export class TimedOutError extends DetailError {
  constructor(detail) {
    super("timed-out", "timed out", detail);
  }
}

/** The producer or this instance is closed. */
export class ClosedError extends ProduceError {
  constructor() {
    super("closed", "producer closed");
  }
}

/** The host's policy does not allow this (e.g. `setAutoflush` when the mode is fixed). */
export class NotAllowedError extends DetailError {
  constructor(detail) {
    super("not-allowed", "not allowed", detail);
  }
}

/**
 * The broker refused the record. `broker` is `{ name, code, message }`: Kafka's error name
 * (e.g. `NOT_ENOUGH_REPLICAS`), its code and the broker's message (or `null`).
 */
export class BrokerError extends ProduceError {
  constructor({ name, code, message = null }) {
    let text = `broker error ${oneLine(name)} (${code})`;
    if (message != null) text += `: ${oneLine(message)}`;
    super("broker", text);
    /** @type {{ name: string, code: number, message: string | null }} */
    this.broker = { name, code, message };
  }
}

const VARIANTS = {
  "not-authorized": (v) => new NotAuthorizedError(v),
  "invalid-topic": (v) => new InvalidTopicError(v),
  "record-too-large": (v) => new RecordTooLargeError(v),
  "buffer-full": () => new BufferFullError(),
  "quota-exceeded": (v) => new QuotaExceededError(v),
  "timed-out": (v) => new TimedOutError(v),
  closed: () => new ClosedError(),
  "not-allowed": (v) => new NotAllowedError(v),
  broker: (v) => new BrokerError(v),
};

/** The error for a WIT `produce-error` value (`{ tag, val }`). */
function fromWit(variant) {
  const make = VARIANTS[variant?.tag];
  return make ? make(variant.val) : new ProduceError(String(variant?.tag), JSON.stringify(variant));
}

/** The bindings throw an `Error` whose `payload` is the `produce-error`. */
function rethrow(e) {
  if (e && typeof e === "object" && "payload" in e) throw fromWit(e.payload);
  throw e;
}

/**
 * The error string a value thrown from `init` or `handle` becomes: the message of a
 * `ProduceError` or `PluginError`, `"Name: message"` for any other `Error`, `String(value)`
 * for anything else.
 */
export function errorMessage(e) {
  if (e instanceof ProduceError || e instanceof PluginError) return e.message;
  if (e instanceof Error) return e.message ? `${e.name}: ${e.message}` : e.name;
  return String(e);
}

// --- records ----------------------------------------------------------------------------------

/**
 * Where a published record went. With autoflush on, `publish` returns after the broker
 * acknowledged the record and `offset` is its offset; with autoflush off, once it is queued:
 * `offset` is then -1 and `id` finds the record's `DeliveryReport` later.
 */
export class Receipt {
  constructor(id, partition, offset) {
    /** @type {number} */ this.id = id;
    /** @type {number} */ this.partition = partition;
    /** @type {number} */ this.offset = offset;
  }

  /** Whether the broker had acknowledged the record when `publish` returned. */
  get acknowledged() {
    return this.offset >= 0;
  }

  toString() {
    return `id=${this.id} partition=${this.partition} offset=${this.offset}`;
  }
}

/**
 * How one record ended: delivered at `offset` (`error` is `null`), or not delivered (`offset`
 * is `null` and `error` is a `ProduceError`).
 */
export class DeliveryReport {
  constructor(id, topic, partition, offset, error) {
    /** @type {number} */ this.id = id;
    /** @type {string} */ this.topic = topic;
    /** @type {number} */ this.partition = partition;
    /** @type {number | null} */ this.offset = offset;
    /** @type {ProduceError | null} */ this.error = error;
  }

  /** Whether the record was delivered. */
  get ok() {
    return this.error === null;
  }

  toString() {
    const head = `id=${this.id} topic=${this.topic} partition=${this.partition} `;
    return this.error === null ? `${head}offset=${this.offset}` : `${head}error: ${this.error.message}`;
  }
}

/** Bytes for the host: a `Uint8Array` as is, a string as UTF-8, other views and buffers. */
function toBytes(data) {
  if (data instanceof Uint8Array) return data;
  if (typeof data === "string") return encoder.encode(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (data instanceof ArrayBuffer || Array.isArray(data)) return new Uint8Array(data);
  throw new TypeError(`expected bytes or a string, got ${typeof data}`);
}

/** Headers from an object, a `Map`, or `[key, value]` pairs (which keep order and repeats). */
function toHeaders(headers) {
  const entries =
    Array.isArray(headers) || headers instanceof Map ? headers : Object.entries(headers);
  const out = [];
  for (const [key, value] of entries) {
    const k = String(key);
    if (!isUtf8(k)) throw new TypeError(`header key ${JSON.stringify(k)} is not valid UTF-8`);
    out.push({ key: k, value: value == null ? null : toBytes(value) });
  }
  return out;
}

/**
 * Whether `text` can be a WIT string, i.e. has no lone surrogate (lowering one would trap the
 * component, ending the instance, where a bad topic or header key should fail the call).
 */
function isUtf8(text) {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0xd800 || c > 0xdfff) continue;
    const next = text.charCodeAt(i + 1);
    if (c > 0xdbff || !(next >= 0xdc00 && next <= 0xdfff)) return false;
    i++; // a surrogate pair
  }
  return true;
}

/**
 * Publishes one record and returns its `Receipt`; throws a `ProduceError`.
 *
 * `key` `null`/`undefined` is Kafka's null key; `partition` `null`/`undefined` lets the host's
 * partitioner choose. Keys, values and header values are `Uint8Array`s (or other buffers) or
 * strings (sent as UTF-8); a header value `null` is Kafka's null.
 *
 * @param {{ topic: string, value: Uint8Array | string, key?: Uint8Array | string | null,
 *   headers?: Record<string, Uint8Array | string | null> | Map<string, Uint8Array | string | null>
 *     | [string, Uint8Array | string | null][] | null,
 *   partition?: number | null }} record
 * @returns {Receipt}
 */
export function publish({ topic, value, key = null, headers = null, partition = null }) {
  if (typeof topic === "string" && !isUtf8(topic)) {
    throw new InvalidTopicError(`${JSON.stringify(topic)} is not valid UTF-8`);
  }
  let r;
  try {
    r = host.publish({
      topic,
      key: key == null ? null : toBytes(key),
      value: toBytes(value),
      headers: headers == null ? [] : toHeaders(headers),
      partition: partition ?? null,
    });
  } catch (e) {
    rethrow(e);
  }
  return new Receipt(r.id, r.partition, r.offset);
}

/**
 * Waits until every record this instance published before is acknowledged or failed; throws
 * the first failure since the previous flush.
 */
export function flush() {
  try {
    host.flush();
  } catch (e) {
    rethrow(e);
  }
}

/** Switches autoflush for this instance; throws `NotAllowedError` where the host fixed it. */
export function setAutoflush(enabled) {
  try {
    host.setAutoflush(Boolean(enabled));
  } catch (e) {
    rethrow(e);
  }
}

/**
 * Takes up to `max` delivery reports of this instance's records, oldest first; each report is
 * returned once.
 *
 * @param {number} max
 * @returns {DeliveryReport[]}
 */
export function takeReports(max) {
  return host.takeReports(max).map(({ id, topic, partition, outcome }) =>
    outcome.tag === "ok"
      ? new DeliveryReport(id, topic, partition, outcome.val, null)
      : new DeliveryReport(id, topic, partition, null, fromWit(outcome.val)),
  );
}
