// `reporter`: publishes every event and prints the delivery reports it gets back.
//
// Configuration:
//
// * `topic` — the destination topic (default `reports`);
// * `autoflush=true` — `init` switches autoflush on (and fails with the host's error message
//   if the host fixed the mode).
//
// `handle` publishes the event as the value (null key), prints `receipt partition=P offset=O`
// when the broker had already acknowledged it (autoflush on), then takes up to 100 delivery
// reports and prints one line per report: `report id=I topic=T partition=P offset=O` or
// `report id=I error=MESSAGE`. `finish` (after the last event) flushes and prints the reports
// still to come.

import { flush, publish, setAutoflush, takeReports } from "wafka";

let topic = "reports";

export function init(config) {
  topic = config.get("topic") ?? "reports";
  if (config.get("autoflush") === "true") {
    setAutoflush(true); // a ProduceError fails init with its message
  }
}

export function handle(event) {
  const receipt = publish({ topic, value: event });
  if (receipt.acknowledged) {
    console.log(`receipt partition=${receipt.partition} offset=${receipt.offset}`);
  }
  printReports();
}

/** After the last event: flush, then print the reports still to come. */
export function finish() {
  try {
    flush();
  } catch {
    // a failed record shows in its report
  }
  printReports();
}

function printReports() {
  for (const r of takeReports(100)) {
    if (r.ok) {
      console.log(`report id=${r.id} topic=${r.topic} partition=${r.partition} offset=${r.offset}`);
    } else {
      console.log(`report id=${r.id} error=${r.error.message}`);
    }
  }
}
