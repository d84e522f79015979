"""``{{name}}``: a wafka plugin.

The host makes one ``App`` per plugin instance with the plugin's ``--config KEY=VALUE`` pairs,
then calls ``handle`` once per input event (one line of input, without the newline), and
``finish`` once after the last event.

This one publishes every event, unchanged, to the topic named by the config ``topic``
(default ``{{name}}``), with the header ``plugin={{name}}``.
"""

import wafka

HEADERS = {"plugin": "{{name}}"}


@wafka.plugin
class App(wafka.Plugin):
    def __init__(self, config: wafka.Config) -> None:
        self.topic = config.get("topic", "{{name}}")
        if not self.topic:
            # An exception here stops the plugin with its one-line message.
            raise wafka.PluginError("config `topic` must not be empty")

    def handle(self, event: bytes) -> None:
        # key=... chooses the partition (None is Kafka's null key). publish returns a receipt
        # or raises the host's error (wafka.NotAuthorizedError, ...): letting it propagate
        # fails this event; the host logs it in one line and goes on with the next event.
        wafka.publish(self.topic, event, headers=HEADERS)

    def finish(self) -> None:
        # With autoflush off (the default) publish returns once the record is queued: wait for
        # every record here; wafka.take_reports() tells which ones failed.
        wafka.flush()
