// Native tests of the SDK and the examples (hello, reporter, router, batcher) against a fake host:
//
//     cd guest-sdk/js && npm test   (node --import ./testing/register.mjs --test test/sdk.test.mjs)

import assert from "node:assert/strict";
import { beforeEach, describe, it, mock } from "node:test";

import { state } from "../testing/fake-host.mjs";
import * as wafka from "../index.js";
import { NOT_INITIALIZED, exportsFor } from "../world.js";
import { renameExport } from "../tools/rename-init.mjs";
import { Utf8Decoder, Utf8Encoder } from "../utf8.js";
import * as hello from "../../../examples/js/hello/hello.js";
import * as reporter from "../../../examples/js/reporter/reporter.js";
import * as router from "../../../examples/js/router/router.js";
import * as batcher from "../../../examples/js/batcher/batcher.js";

const bytes = (s) => new TextEncoder().encode(s);
const text = (b) => (b === null ? null : new TextDecoder().decode(b));

/** What an export threw (the component model's error string). */
function thrown(f) {
  try {
    f();
  } catch (e) {
    return e;
  }
  assert.fail("expected a throw");
}

beforeEach(() => state.reset());

describe("errors", () => {
  it("match the Rust SDK's messages", () => {
    const cases = [
      [new wafka.NotAuthorizedError("t"), "not authorized: t"],
      [new wafka.InvalidTopicError("bad\nname"), "invalid topic: bad name"],
      [new wafka.RecordTooLargeError(12), "record too large: 12 bytes"],
      [new wafka.BufferFullError(), "producer buffer full"],
      [new wafka.QuotaExceededError("records"), "quota exceeded: records"],
      [new wafka.TimedOutError("30s"), "timed out: 30s"],
      [new wafka.ClosedError(), "producer closed"],
      [new wafka.NotAllowedError("fixed"), "not allowed: fixed"],
      [
        new wafka.BrokerError({ name: "NOT_ENOUGH_REPLICAS", code: 19, message: "2 < 3\r\n" }),
        "broker error NOT_ENOUGH_REPLICAS (19): 2 < 3  ",
      ],
      [new wafka.BrokerError({ name: "UNKNOWN", code: -1, message: null }), "broker error UNKNOWN (-1)"],
    ];
    for (const [error, message] of cases) {
      assert.equal(error.message, message);
      assert.ok(error instanceof wafka.ProduceError);
      assert.equal(wafka.errorMessage(error), message);
    }
    assert.equal(new wafka.BufferFullError().kind, "buffer-full");
    assert.equal(new wafka.BufferFullError().code, "buffer-full");
    assert.equal(new wafka.NotAuthorizedError("t").code, "not-authorized");
    assert.equal(new wafka.BrokerError({ name: "X", code: 7 }).code, "broker");
    assert.equal(new wafka.BufferFullError().name, "BufferFullError");
    assert.equal(wafka.errorMessage(new TypeError("x")), "TypeError: x");
    assert.equal(wafka.errorMessage("plain"), "plain");
  });

  it("come from the host's variants", () => {
    state.refuse = { tag: "broker", val: { name: "X", code: 7, message: null } };
    const e = thrown(() => wafka.publish({ topic: "t", value: "v" }));
    assert.ok(e instanceof wafka.BrokerError);
    assert.deepEqual(e.broker, { name: "X", code: 7, message: null });
    state.fixed = true;
    assert.throws(() => wafka.setAutoflush(true), wafka.NotAllowedError);
  });
});

describe("config", () => {
  it("keeps the last value", () => {
    const c = new wafka.Config([["topic", "a"], ["n", "3"], ["topic", "b"]]);
    assert.equal(c.get("topic"), "b");
    assert.deepEqual(c.getAll("topic"), ["a", "b"]);
    assert.equal(c.get("missing") ?? "d", "d");
    assert.throws(() => c.require("x"), { message: "missing config `x`" });
    assert.throws(() => c.checkKnown(["topic"]), { message: "unknown config `n` (known: topic)" });
  });
});

describe("publish", () => {
  it("converts its arguments", () => {
    const receipt = wafka.publish({
      topic: "t",
      value: "vé",
      key: new Uint16Array([0x6b]),
      headers: [["a", "1"], ["b", null], ["a", bytes("2")]],
      partition: 2,
    });
    assert.equal(receipt.id, 0);
    assert.equal(receipt.acknowledged, false);
    assert.equal(String(receipt), "id=0 partition=2 offset=-1");
    const msg = state.records[0];
    assert.equal(msg.topic, "t");
    assert.deepEqual([...msg.key], [0x6b, 0]);
    assert.equal(text(msg.value), "vé");
    assert.equal(msg.partition, 2);
    assert.deepEqual(
      msg.headers.map((h) => [h.key, text(h.value)]),
      [["a", "1"], ["b", null], ["a", "2"]],
    );
    wafka.publish({ topic: "t", value: bytes("v"), headers: { x: "y" } });
    assert.equal(state.records[1].key, null);
    assert.equal(state.records[1].partition, null);
    assert.deepEqual(state.records[1].headers.map((h) => [h.key, text(h.value)]), [["x", "y"]]);
  });

  it("refuses strings that are not UTF-8 instead of passing them on", () => {
    // A lone surrogate cannot be lowered to a WIT string: the component would trap.
    const e = thrown(() => wafka.publish({ topic: "events.\ud800x", value: "v" }));
    assert.ok(e instanceof wafka.InvalidTopicError);
    assert.equal(e.message, 'invalid topic: "events.\\ud800x" is not valid UTF-8');
    assert.throws(() => wafka.publish({ topic: "t", value: "v", headers: { "a\udc00": "1" } }), {
      name: "TypeError",
      message: 'header key "a\\udc00" is not valid UTF-8',
    });
    assert.equal(state.records.length, 0);
  });

  it("takes reports", () => {
    wafka.publish({ topic: "t", value: "a" });
    state.reports.push({ id: 9, topic: "t", partition: 1, outcome: { tag: "err", val: { tag: "timed-out", val: "late" } } });
    const [ok, failed] = wafka.takeReports(10);
    assert.equal(ok.ok, true);
    assert.equal(ok.offset, 0);
    assert.equal(failed.ok, false);
    assert.equal(failed.offset, null);
    assert.equal(String(failed), "id=9 topic=t partition=1 error: timed out: late");
  });
});

describe("hello", () => {
  const records = () => state.records.map((m) => [m.topic, text(m.key), text(m.value), m.headers.map((h) => [h.key, text(h.value)])]);

  it("is not initialized before init", () => {
    assert.equal(thrown(() => exportsFor(hello).handle(bytes("x"))), NOT_INITIALIZED);
  });

  it("splits at the first delimiter", () => {
    const world = exportsFor(hello);
    world.init([["topic", "greetings"], ["key-delimiter", "::"]]);
    for (const e of ["k::v::w", "::v", "k::", "kv", ":"]) world.handle(bytes(e));
    const h = [["source", "hello"]];
    assert.deepEqual(records(), [
      ["greetings", "k", "v::w", h],
      ["greetings", "", "v", h],
      ["greetings", "k", "", h],
      ["greetings", null, "kv", h],
      ["greetings", null, ":", h],
    ]);
  });

  it("has defaults and refuses an empty delimiter", () => {
    const world = exportsFor(hello);
    world.init([]);
    world.handle(bytes("a:b"));
    assert.deepEqual(records(), [["hello", null, "a:b", [["source", "hello"]]]]);
    assert.equal(thrown(() => world.init([["key-delimiter", ""]])), "config `key-delimiter` must not be empty");
    assert.equal(thrown(() => world.handle(bytes("x"))), NOT_INITIALIZED);
  });

  it("fails the event on a publish error", () => {
    const world = exportsFor(hello);
    world.init([]);
    state.refuse = { tag: "not-authorized", val: "no" };
    assert.equal(thrown(() => world.handle(bytes("x"))), "not authorized: no");
  });
});

describe("reporter", () => {
  function lines(world, event) {
    const log = mock.method(console, "log", () => {});
    try {
      world.handle(bytes(event));
      return log.mock.calls.map((c) => c.arguments.join(" "));
    } finally {
      log.mock.restore();
    }
  }

  it("prints the receipt and the reports with autoflush", () => {
    const world = exportsFor(reporter);
    world.init([["autoflush", "true"], ["topic", "r"]]);
    assert.equal(state.autoflush, true);
    assert.deepEqual(lines(world, "x"), ["receipt partition=0 offset=0", "report id=0 topic=r partition=0 offset=0"]);
    assert.equal(state.records[0].key, null);
  });

  it("prints failed reports", () => {
    const world = exportsFor(reporter);
    world.init([]);
    state.reports.push({ id: 5, topic: "reports", partition: 2, outcome: { tag: "err", val: { tag: "closed" } } });
    assert.deepEqual(lines(world, "x"), ["report id=5 error=producer closed", "report id=0 topic=reports partition=0 offset=0"]);
  });

  it("fails init when autoflush is refused", () => {
    state.fixed = true;
    assert.equal(thrown(() => exportsFor(reporter).init([["autoflush", "true"]])), "not allowed: the host fixed autoflush");
  });
});

describe("router", () => {
  it("routes by field with keys from id", () => {
    router.init(new wafka.Config([["prefix", "p."]]));
    const events = ['{"type":"click","id":"u1"}', '{"type":7,"id":{"a":[1,2]}}', '{"type":"v"}'];
    for (const e of events) router.handle(bytes(e));
    assert.deepEqual(
      state.records.map((m) => [m.topic, text(m.key)]),
      [["p.click", "u1"], ["p.7", '{"a":[1,2]}'], ["p.v", null]],
    );
    assert.equal(text(state.records[1].value), '{"type":7,"id":{"a":[1,2]}}');
  });

  it("refuses what it cannot route", () => {
    router.init(new wafka.Config([]));
    const cases = [
      ["[1]", "event is a JSON array, not an object"],
      ['{"id":1}', "event has no field `type`"],
      ['{"type":""}', "field `type` is empty"],
      ['{"type":true}', "field `type` is a JSON boolean, not a string or number"],
    ];
    for (const [event, message] of cases) {
      assert.throws(() => router.handle(bytes(event)), { name: "PluginError", message });
    }
    const notUtf8 = thrown(() => router.handle(new Uint8Array([0x7b, 0xff, 0x7d])));
    assert.match(notUtf8.message, /^event is not JSON: /); // the reason is the TextDecoder's
    assert.equal(state.records.length, 0);
  });
});

describe("batcher", () => {
  it("dead-letters failed records and keeps one batch", () => {
    batcher.init(new wafka.Config([["topic", "orders"], ["batch", "2"]]));
    batcher.handle(bytes("lost one"));
    state.reports[0].outcome = { tag: "err", val: { tag: "timed-out", val: "late" } };
    const lines = [];
    mock.method(console, "log", (line) => lines.push(line));
    batcher.handle(bytes("two"));
    batcher.handle(bytes("three"));
    batcher.finish();
    mock.restoreAll();
    assert.deepEqual(
      state.records.map((m) => [
        m.topic,
        text(m.value),
        m.headers.map((h) => [h.key, text(h.value)]),
      ]),
      [
        ["orders", "lost one", []],
        ["orders", "two", []],
        ["orders.dlq", "lost one", [["error", "timed out: late"], ["topic", "orders"]]],
        ["orders", "three", []],
      ],
    );
    assert.deepEqual(lines, ["dead-letter id=0 topic=orders error=timed out: late"]);
  });

  it("checks its config and goes on where the host fixed autoflush", () => {
    assert.throws(() => batcher.init(new wafka.Config([])), { message: "missing config `topic`" });
    assert.throws(() => batcher.init(new wafka.Config([["topic", "t"], ["batch", "0"]])), {
      message: "config `batch` must be a number from 1 to 2048, not `0`",
    });
    state.fixed = true;
    batcher.init(new wafka.Config([["topic", "t"]]));
  });
});

describe("utf8", () => {
  it("matches Node's TextEncoder and TextDecoder", () => {
    const e = new Utf8Encoder();
    const d = new Utf8Decoder();
    for (const s of ["", "abc", "é", "€uro", "😀x", "a\ud800b", "\udc00", "日本語"]) {
      assert.deepEqual(e.encode(s), new TextEncoder().encode(s));
    }
    const bad = [[0xff], [0xc3], [0xc3, 0x28], [0xe2, 0x82, 0x28], [0xf0, 0x9f, 0x98, 0x80], [0xed, 0xa0, 0x80], [0xc0, 0x80], [0xef, 0xbb, 0xbf, 0x41], [0xf4, 0x90, 0x80, 0x80], [0x41, 0xf0, 0x9f]];
    for (const b of bad) {
      assert.equal(d.decode(new Uint8Array(b)), new TextDecoder().decode(new Uint8Array(b)));
    }
    assert.throws(() => new Utf8Decoder("utf-8", { fatal: true }).decode(new Uint8Array([0xff])), TypeError);
  });
});

describe("rename-init", () => {
  it("refuses what is not a component", () => {
    assert.throws(() => renameExport(new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]), "a", "b"), /not a WebAssembly component/);
  });
});

describe("index.d.ts", () => {
  it("declares every export of index.js, and nothing it does not export", async () => {
    const { readFileSync } = await import("node:fs");
    const dts = readFileSync(new URL("../index.d.ts", import.meta.url), "utf8");
    const declared = new Set(
      [...dts.matchAll(/^export (?:class|function) (\w+)/gm)].map((m) => m[1]),
    );
    const exported = new Set(Object.keys(wafka));
    assert.deepEqual([...exported].filter((n) => !declared.has(n)), [], "exported, not declared");
    assert.deepEqual([...declared].filter((n) => !exported.has(n)), [], "declared, not exported");
  });
});

describe("the fake host (wafka/testing)", () => {
  beforeEach(() => state.reset());

  it("answers as the host does: offsets, reports, refusals, failures, fixed autoflush", () => {
    let r = wafka.publish({ topic: "t", value: "a", key: "k", headers: { h: "v" } });
    assert.deepEqual([r.id, r.offset], [0, -1]);
    wafka.setAutoflush(true);
    r = wafka.publish({ topic: "t", value: "b", partition: 2 });
    assert.deepEqual([r.id, r.partition, r.offset], [1, 2, 0]);
    r = wafka.publish({ topic: "t", value: "c" });
    assert.deepEqual([r.id, r.partition, r.offset], [2, 0, 1]);
    assert.deepEqual(wafka.takeReports(10).map((x) => x.offset), [0, 0, 1]);
    assert.deepEqual(
      state.published.map((p) => [p.topic, text(p.value), p.partition, p.offset]),
      [["t", "a", 0, 0], ["t", "b", 2, 0], ["t", "c", 0, 1]],
    );
    assert.deepEqual(state.published[0].headers.map(([k, v]) => [k, text(v)]), [["h", "v"]]);
    assert.equal(text(state.published[0].key), "k");

    state.refuseTopic("audit", new wafka.NotAuthorizedError("audit"));
    assert.throws(() => wafka.publish({ topic: "audit", value: "x" }), { code: "not-authorized", message: "not authorized: audit" });
    state.refuseNext(new wafka.BrokerError({ name: "NOT_ENOUGH_REPLICAS", code: 19 }));
    assert.throws(() => wafka.publish({ topic: "t", value: "y" }), { code: "broker" });
    wafka.publish({ topic: "t", value: "z" }); // refused once only

    wafka.setAutoflush(false);
    state.failReports(new wafka.TimedOutError("expired"));
    wafka.publish({ topic: "t", value: "late" });
    const [report] = wafka.takeReports(10).slice(-1);
    assert.equal(report.ok, false);
    assert.equal(report.error.code, "timed-out");
    assert.throws(() => wafka.flush(), { code: "timed-out", message: "timed out: expired" });
    wafka.flush(); // reported once
    wafka.setAutoflush(true);
    assert.throws(() => wafka.publish({ topic: "t", value: "now" }), { code: "timed-out" });

    state.failFlush(new wafka.ClosedError());
    assert.throws(() => wafka.flush(), { code: "closed" });
    state.fixAutoflush(false);
    assert.throws(() => wafka.setAutoflush(true), { code: "not-allowed", message: "not allowed: the host fixed autoflush to off" });
    assert.deepEqual(state.published.map((p) => text(p.value)), ["a", "b", "c", "z"]);
  });
});
