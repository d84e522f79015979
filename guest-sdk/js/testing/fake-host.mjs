// A fake `wafka:producer/producer@0.1.0` for plugins' unit tests ("wafka/testing"; load it with
// `node --import wafka/testing/register.mjs`): `state.records` holds what the plugin published,
// `state.refuse` (a produce-error variant, e.g. { tag: "not-authorized", val: "t" }) refuses
// the next publish, `state.fixed` fixes autoflush, `state.reset()` starts afresh. It records what the plugin publishes
// and answers in the shapes componentize-qjs uses (errors are thrown as an Error whose
// `payload` is the `produce-error` variant; u64/s64 are numbers).
export const state = {
  records: [],
  reports: [],
  autoflush: false,
  fixed: false,
  refuse: null,
  reset() {
    this.records = [];
    this.reports = [];
    this.autoflush = false;
    this.fixed = false;
    this.refuse = null;
  },
};

function fail(payload) {
  const e = new Error("[object Object] (see error.payload)");
  e.payload = payload;
  throw e;
}

export function publish(msg) {
  if (state.refuse) {
    const payload = state.refuse;
    state.refuse = null;
    fail(payload);
  }
  const id = state.records.length;
  state.records.push(msg);
  state.reports.push({ id, topic: msg.topic, partition: 0, outcome: { tag: "ok", val: id } });
  return { id, partition: 0, offset: state.autoflush ? id : -1 };
}

export function flush() {}

export function setAutoflush(enabled) {
  if (state.fixed) fail({ tag: "not-allowed", val: "the host fixed autoflush" });
  state.autoflush = enabled;
}

export function takeReports(max) {
  return state.reports.splice(0, max);
}
