// A fake `wafka:producer/producer@0.1.0` for plugins' unit tests ("wafka/testing"; load it with
// `node --import wafka/testing/register.mjs`). It answers as the host does and as the other
// SDKs' fakes do (Rust `wafka_guest::testing`, Go `UseFakeHost`, Python `use_fake_host`):
// offsets per topic and partition from 0, receipts with offset -1 until acknowledged unless
// autoflush is on, one delivery report per record, `flush` failing with the first failure
// since the last flush. A test drives it through `state`:
//
//   state.reset()                          starts afresh (nothing published, autoflush off)
//   state.published                        what was published and not refused: { topic, key,
//                                          value, headers, partition, offset }, in order
//   state.refuseTopic(topic, error)        every publish to `topic` throws `error`
//   state.refuseNext(error)                the next publish throws `error`
//   state.failReports(error)               records are queued, then fail with `error` in their
//                                          delivery report and the next flush
//   state.failFlush(error)                 every flush throws `error`
//   state.fixAutoflush(on)                 the host fixes autoflush to true/false (null: the
//                                          plugin chooses); set-autoflush is then not-allowed
//
// `error` is one of the SDK's error classes (new NotAuthorizedError("t"), ...) or a WIT
// `produce-error` variant ({ tag: "not-authorized", val: "t" }). `state.records` keeps each
// message as the SDK passed it to the host, `state.refuse` (a variant) refuses the next
// publish, `state.fixed = true` fixes autoflush as it is. Errors are thrown as componentize-qjs
// throws them: an Error whose `payload` is the variant; u64/s64 are numbers.

/** The WIT `produce-error` variant of an SDK error (or of a variant, as it is). */
function variant(error) {
  if (error && typeof error === "object" && "tag" in error) return error;
  switch (error?.code) {
    case "not-authorized":
    case "invalid-topic":
    case "quota-exceeded":
    case "timed-out":
    case "not-allowed":
      return { tag: error.code, val: error.detail };
    case "record-too-large":
      return { tag: error.code, val: Number(error.size) };
    case "buffer-full":
    case "closed":
      return { tag: error.code };
    case "broker":
      return { tag: "broker", val: { ...error.broker, message: error.broker.message ?? undefined } };
    default:
      throw new TypeError(`not a produce error: ${error}`);
  }
}

export const state = {
  records: [],
  published: [],
  reports: [],
  autoflush: false,
  fixed: false,
  fixedTo: null,
  refuse: null,
  refusedTopics: new Map(),
  refusals: [],
  failingReports: null,
  failingFlush: null,
  firstFailure: null,
  nextId: 0,
  offsets: new Map(),
  reset() {
    this.records = [];
    this.published = [];
    this.reports = [];
    this.autoflush = false;
    this.fixed = false;
    this.fixedTo = null;
    this.refuse = null;
    this.refusedTopics = new Map();
    this.refusals = [];
    this.failingReports = null;
    this.failingFlush = null;
    this.firstFailure = null;
    this.nextId = 0;
    this.offsets = new Map();
  },
  refuseTopic(topic, error) {
    this.refusedTopics.set(topic, variant(error));
  },
  refuseNext(error) {
    this.refusals.push(variant(error));
  },
  failReports(error) {
    this.failingReports = variant(error);
  },
  failFlush(error) {
    this.failingFlush = variant(error);
  },
  fixAutoflush(on) {
    this.fixedTo = on;
    if (on !== null) this.autoflush = on;
  },
};

function fail(payload) {
  const e = new Error("[object Object] (see error.payload)");
  e.payload = payload;
  throw e;
}

export function publish(msg) {
  let refused = null;
  if (state.refuse) {
    refused = state.refuse;
    state.refuse = null;
  }
  refused ??= state.refusals.shift() ?? state.refusedTopics.get(msg.topic) ?? null;
  if (refused) fail(refused);
  state.records.push(msg);
  const id = state.nextId++;
  const partition = msg.partition ?? 0;
  if (state.failingReports) {
    if (state.autoflush) fail(state.failingReports);
    state.firstFailure ??= state.failingReports;
    state.reports.push({ id, topic: msg.topic, partition, outcome: { tag: "err", val: state.failingReports } });
    return { id, partition, offset: -1 };
  }
  const at = `${partition}/${msg.topic}`;
  const offset = state.offsets.get(at) ?? 0;
  state.offsets.set(at, offset + 1);
  const headers = (msg.headers ?? []).map((h) => [h.key, h.value ?? null]);
  state.published.push({ topic: msg.topic, key: msg.key ?? null, value: msg.value, headers, partition, offset });
  state.reports.push({ id, topic: msg.topic, partition, outcome: { tag: "ok", val: offset } });
  return { id, partition, offset: state.autoflush ? offset : -1 };
}

export function flush() {
  if (state.failingFlush) fail(state.failingFlush);
  const first = state.firstFailure;
  state.firstFailure = null;
  if (first) fail(first);
}

export function setAutoflush(enabled) {
  if (state.fixedTo !== null) fail({ tag: "not-allowed", val: `the host fixed autoflush to ${state.fixedTo ? "on" : "off"}` });
  if (state.fixed) fail({ tag: "not-allowed", val: "the host fixed autoflush" });
  state.autoflush = enabled;
}

export function takeReports(max) {
  return state.reports.splice(0, max);
}
