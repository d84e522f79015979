// `batcher`: publishes every event with autoflush off, flushes every N records, and sends the
// records that were not delivered to a dead-letter topic (the JavaScript twin of
// examples/rust/batcher).
//
// Configuration:
//
// * `topic` — the destination topic (required);
// * `batch` — flush after this many records (default 100, from 1 to 2048: the host keeps at
//   most 4,096 undrained reports, and a batch's reports and its dead letters' must fit);
// * `dead-letter` — the dead-letter topic (default `<topic>.dlq`).
//
// `init` switches autoflush off. Where the host fixed the mode (`wafka run`'s default
// `--autoflush off` does) the switch is refused and the batcher goes on: under `off` that is
// the mode it wants; under `on` each publish waits for its ack and a failed record fails its
// event instead.
//
// `handle` publishes the event as the value (null key, no headers) and keeps the value until the
// record's delivery report comes. After every `batch` records it calls `flush` (a failed flush
// is not the event's error: the reports say which records failed) and drains the delivery
// reports until none is left. A record that was not delivered is published to the dead-letter
// topic with its value, null key and the headers `error` (the error's one-line text, as the
// `reporter` example prints it) and `topic` (the record's topic), and the plugin prints
// `dead-letter id=I topic=T error=MESSAGE`. A dead letter that fails too is printed as
// `lost id=I topic=T error=MESSAGE` (the host also counts it as refused or failed, and
// `wafka run` then exits non-zero). An event refused at `publish` fails with the error's text.
//
// `finish` flushes and drains the same way, then flushes and drains once more for the dead
// letters. So the values kept are those of one batch: at most `batch` records.

import {
  NotAllowedError,
  PluginError,
  ProduceError,
  flush,
  publish,
  setAutoflush,
  takeReports,
} from "wafka";

let topic;
let deadLetter;
let batch = 100;
let unflushed = 0; // published since the last flush
const pending = new Map(); // values of records not yet reported, by id

export function init(config) {
  config.checkKnown(["topic", "batch", "dead-letter"]);
  topic = config.require("topic");
  const n = config.get("batch") ?? "100";
  if (!/^[0-9]+$/.test(n) || Number(n) < 1 || Number(n) > 2048) {
    throw new PluginError(`config \`batch\` must be a number from 1 to 2048, not \`${n}\``);
  }
  batch = Number(n);
  deadLetter = config.get("dead-letter") ?? `${topic}.dlq`;
  try {
    setAutoflush(false);
  } catch (e) {
    if (!(e instanceof NotAllowedError)) throw e; // the host fixed the mode: see above
  }
  unflushed = 0;
  pending.clear();
}

export function handle(event) {
  const receipt = publish({ topic, value: event });
  pending.set(receipt.id, event);
  unflushed += 1;
  if (unflushed === batch) settle();
}

export function finish() {
  settle(); // the last records
  settle(); // their dead letters
}

/** Flushes, then drains every delivery report. */
function settle() {
  try {
    flush();
  } catch (e) {
    if (!(e instanceof ProduceError)) throw e; // a failed record shows in its report
  }
  unflushed = 0;
  for (let reports = takeReports(100); reports.length > 0; reports = takeReports(100)) {
    for (const r of reports) {
      const value = pending.get(r.id);
      pending.delete(r.id);
      if (r.ok) continue;
      if (value === undefined) {
        // A dead letter, which has no dead letter of its own.
        console.log(`lost id=${r.id} topic=${r.topic} error=${r.error.message}`);
      } else {
        sendDeadLetter(r.id, r.topic, value, r.error);
      }
    }
  }
}

/** Publishes the value of record `id`, which `topic` did not take, to the dead-letter topic. */
function sendDeadLetter(id, recordTopic, value, error) {
  const headers = [["error", error.message], ["topic", recordTopic]];
  try {
    publish({ topic: deadLetter, value, headers });
  } catch (refused) {
    if (!(refused instanceof ProduceError)) throw refused;
    const why = `dead letter refused: ${refused.message}`;
    console.log(`lost id=${id} topic=${recordTopic} error=${error.message} (${why})`);
    return;
  }
  console.log(`dead-letter id=${id} topic=${recordTopic} error=${error.message}`);
}
