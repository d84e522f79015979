// Unit tests against the SDK's fake host (`npm test`, under Node: no component, no broker).
import assert from "node:assert/strict";
import { beforeEach, it } from "node:test";
import { NotAuthorizedError } from "wafka";
import { state } from "wafka/testing";
import * as plugin from "./plugin.js";

const bytes = (text) => new TextEncoder().encode(text);

beforeEach(() => state.reset());

it("publishes every event to the topic", () => {
  plugin.init(new Map([["topic", "events"]]));
  plugin.handle(bytes("one"));
  plugin.handle(bytes("two"));
  assert.equal(state.published.length, 2);
  assert.equal(state.published[0].topic, "events");
  assert.deepEqual([...state.published[1].value], [...bytes("two")]);
  assert.equal(state.published[1].offset, 1);
  assert.deepEqual(
    state.published[0].headers.map(([k, v]) => [k, new TextDecoder().decode(v)]),
    [["plugin", "{{name}}"]],
  );
});

it("fails an event the host refuses with its error", () => {
  plugin.init(new Map([["topic", "events"]]));
  state.refuseTopic("events", new NotAuthorizedError("events"));
  assert.throws(() => plugin.handle(bytes("one")), { code: "not-authorized", message: "not authorized: events" });
});

it("refuses an empty topic", () => {
  assert.throws(() => plugin.init(new Map([["topic", ""]])), { message: "config `topic` must not be empty" });
});
