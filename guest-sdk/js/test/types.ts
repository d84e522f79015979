// A type test of index.d.ts (scripts/test-sdks runs `tsc --noEmit --strict` on it; never run):
// a plugin written against the declarations compiles, and misuse does not (each
// `@ts-expect-error` fails the check if the line below it compiles, e.g. when a declaration
// decays to `any`).
import {
  BrokerError,
  Config,
  DeliveryReport,
  NotAuthorizedError,
  PluginError,
  ProduceError,
  ProduceErrorCode,
  ProducerRecord,
  Receipt,
  errorMessage,
  flush,
  publish,
  setAutoflush,
  takeReports,
} from "../index.js";

let topic = "events";

export function init(config: Config): void {
  topic = config.get("topic") ?? "events";
  const all: string[] = config.getAll("topic");
  config.checkKnown(["topic", ...all]);
  if (topic === "") throw new PluginError("config `topic` must not be empty");
}

export function handle(event: Uint8Array): void {
  const record: ProducerRecord = { topic, value: event, key: "k", headers: [["h", null]] };
  const receipt: Receipt = publish(record);
  const offset: number | bigint = receipt.offset;
  void offset;
  publish({ topic, value: "text", headers: { source: "types" }, partition: 0 });
  publish({ topic, value: event, headers: new Map([["a", new Uint8Array([1])]]) });
  try {
    flush();
  } catch (e) {
    if (e instanceof ProduceError) {
      const code: ProduceErrorCode = e.code;
      void code;
    }
    if (e instanceof BrokerError) {
      const name: string = e.broker.name;
      void name;
    }
    if (e instanceof NotAuthorizedError) {
      const detail: string = e.detail;
      void detail;
    }
    throw new PluginError(errorMessage(e));
  }
  for (const report of takeReports(100) as DeliveryReport[]) {
    if (!report.ok && report.error !== null) {
      const code: ProduceErrorCode = report.error.code;
      void code;
    }
  }
  setAutoflush(true);
}

export function misuse(config: Config): void {
  // @ts-expect-error a record needs a topic
  publish({ value: "x" });
  // @ts-expect-error values are bytes or text
  publish({ topic, value: 42 });
  // @ts-expect-error the partition is a number
  publish({ topic, value: "x", partition: "0" });
  // @ts-expect-error takeReports takes how many
  takeReports();
  // @ts-expect-error setAutoflush takes a boolean
  setAutoflush("on");
  // @ts-expect-error no such case
  const code: ProduceErrorCode = "not-a-case";
  void code;
  // @ts-expect-error config values are strings
  const n: number = config.require("n");
  void n;
}
