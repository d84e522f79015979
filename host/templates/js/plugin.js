// `{{name}}`: a wafka plugin. The host calls `init` once with the plugin's `--config KEY=VALUE`
// pairs (a Map), then `handle` once per input event (a Uint8Array: one line of input, without
// the newline), and `finish` once after the last event.
//
// This one publishes every event, unchanged, to the topic named by the config `topic` (default
// `{{name}}`), with the header `plugin={{name}}`.

import { PluginError, flush, publish } from "wafka";

const HEADERS = [["plugin", "{{name}}"]];

let topic = "{{name}}";

export function init(config) {
  topic = config.get("topic") ?? "{{name}}";
  // Throwing stops the plugin with this one-line message.
  if (topic === "") throw new PluginError("config `topic` must not be empty");
}

export function handle(event) {
  // `key` chooses the partition (null is Kafka's null key). `publish` returns a receipt or
  // throws the host's error (its `.code` names the case, e.g. "not-authorized"): letting it
  // propagate fails this event; the host logs it in one line and goes on with the next event.
  publish({ topic, value: event, headers: HEADERS });
}

export function finish() {
  // With autoflush off (the default) `publish` returns once the record is queued: wait for
  // every record here; `takeReports()` tells which ones failed.
  flush();
}
