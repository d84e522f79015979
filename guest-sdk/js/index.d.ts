// TypeScript declarations of the wafka JavaScript SDK (index.js): what a plugin imports from
// "wafka". The plugin module itself exports `handle(event)` and optionally `init(config)` and
// `finish()` (see README.md).

/** Bytes for the host: a Uint8Array (or another view or buffer), or a string sent as UTF-8. */
export type Bytes = Uint8Array | ArrayBufferView | ArrayBuffer | number[] | string;

/** Record headers: an object, a Map, or [key, value] pairs (which keep order and repeats). */
export type Headers =
  | Record<string, Bytes | null>
  | Map<string, Bytes | null>
  | [string, Bytes | null][];

/** A record to publish (named so as not to hide TypeScript's own `Record<K, V>`). */
export interface ProducerRecord {
  topic: string;
  value: Bytes;
  /** Kafka's null key when null or absent. */
  key?: Bytes | null;
  headers?: Headers | null;
  /** The partition; null or absent lets the host's partitioner choose. */
  partition?: number | null;
}

/** The `--config KEY=VALUE` pairs; the last value of a key wins in `get`. */
export class Config extends Map<string, string> {
  constructor(pairs?: Iterable<[string, string]>);
  /** Every pair, in order. */
  readonly pairs: [string, string][];
  /** Every value given for `key`, in order. */
  getAll(key: string): string[];
  /** The value of `key`; throws a PluginError naming it when missing. */
  require(key: string): string;
  /** Throws a PluginError for the first key not in `known`. */
  checkKnown(known: string[]): void;
}

/** A plugin-defined failure: its message is the event's error. */
export class PluginError extends Error {
  constructor(message: string);
}

/** The WIT `produce-error` cases. */
export type ProduceErrorCode =
  | "not-authorized"
  | "invalid-topic"
  | "record-too-large"
  | "buffer-full"
  | "quota-exceeded"
  | "timed-out"
  | "closed"
  | "not-allowed"
  | "broker";

/** An error from the host's producer; `message` is one line, the Rust SDK's text. */
export class ProduceError extends Error {
  constructor(code: ProduceErrorCode, message: string);
  /** The case, e.g. "not-authorized". */
  readonly code: ProduceErrorCode;
  /** The same as `code`. */
  readonly kind: ProduceErrorCode;
}

export class NotAuthorizedError extends ProduceError {
  constructor(detail: string);
  readonly code: "not-authorized";
  readonly detail: string;
}

export class InvalidTopicError extends ProduceError {
  constructor(detail: string);
  readonly code: "invalid-topic";
  readonly detail: string;
}

export class RecordTooLargeError extends ProduceError {
  constructor(size: number | bigint);
  readonly code: "record-too-large";
  readonly size: number | bigint;
}

export class BufferFullError extends ProduceError {
  constructor();
  readonly code: "buffer-full";
}

export class QuotaExceededError extends ProduceError {
  constructor(detail: string);
  readonly code: "quota-exceeded";
  readonly detail: string;
}

export class TimedOutError extends ProduceError {
  constructor(detail: string);
  readonly code: "timed-out";
  readonly detail: string;
}

export class ClosedError extends ProduceError {
  constructor();
  readonly code: "closed";
}

export class NotAllowedError extends ProduceError {
  constructor(detail: string);
  readonly code: "not-allowed";
  readonly detail: string;
}

export class BrokerError extends ProduceError {
  constructor(broker: { name: string; code: number; message?: string | null });
  readonly code: "broker";
  /** Kafka's error: its name (e.g. "NOT_ENOUGH_REPLICAS"), code and message. */
  readonly broker: { name: string; code: number; message: string | null };
}

/** The error string a value thrown from init, handle or finish becomes. */
export function errorMessage(e: unknown): string;

/** Where a published record went. */
export class Receipt {
  readonly id: number | bigint;
  readonly partition: number;
  /** The offset, or -1 while not acknowledged (autoflush off). */
  readonly offset: number | bigint;
  /** Whether the broker had acknowledged the record when publish returned. */
  readonly acknowledged: boolean;
}

/** How one record ended. */
export class DeliveryReport {
  readonly id: number | bigint;
  readonly topic: string;
  readonly partition: number;
  /** The offset when delivered, else null. */
  readonly offset: number | bigint | null;
  /** Why it was not delivered, else null. */
  readonly error: ProduceError | null;
  /** Whether the record was delivered. */
  readonly ok: boolean;
}

/** Publishes one record; throws a ProduceError. */
export function publish(record: ProducerRecord): Receipt;

/** Waits until every record published before is acknowledged or failed; throws the first failure. */
export function flush(): void;

/** Switches autoflush for this instance; throws NotAllowedError where the host fixed it. */
export function setAutoflush(enabled: boolean): void;

/** Takes up to `max` delivery reports, oldest first. */
export function takeReports(max: number): DeliveryReport[];
