"""``batcher``: publishes every event with autoflush off, flushes every N records, and sends the
records that were not delivered to a dead-letter topic (the Python twin of
examples/rust/batcher).

Configuration:

* ``topic`` — the destination topic (required);
* ``batch`` — flush after this many records (default 100, from 1 to 2048: the host keeps at
  most 4,096 undrained reports, and a batch's reports and its dead letters' must fit);
* ``dead-letter`` — the dead-letter topic (default ``<topic>.dlq``).

``init`` switches autoflush off. Where the host fixed the mode (``wafka run``'s default
``--autoflush off`` does) the switch is refused and the batcher goes on: under ``off`` that is
the mode it wants; under ``on`` each publish waits for its ack and a failed record fails its
event instead.

``handle`` publishes the event as the value (null key, no headers) and keeps the value until
the record's delivery report comes. After every ``batch`` records it calls ``flush`` (a failed
flush is not the event's error: the reports say which records failed) and drains the delivery
reports until none is left. A record that was not delivered is published to the dead-letter
topic with its value, null key and the headers ``error`` (the error's one-line text, as the
``reporter`` example prints it) and ``topic`` (the record's topic), and the plugin prints
``dead-letter id=I topic=T error=MESSAGE``. A dead letter that fails too is printed as
``lost id=I topic=T error=MESSAGE`` (the host also counts it as refused or failed, and
``wafka run`` then exits non-zero). An event refused at ``publish`` fails with the error's text.

``finish`` flushes and drains the same way, then flushes and drains once more for the dead
letters. So the values kept are those of one batch: at most ``batch`` records.
"""

import wafka


@wafka.plugin
class Batcher(wafka.Plugin):
    def __init__(self, config: wafka.Config) -> None:
        config.check_known(["topic", "batch", "dead-letter"])
        self.topic = config.require("topic")
        batch = config.get("batch", "100")
        if not (batch.isascii() and batch.isdigit() and 1 <= int(batch) <= 2048):
            raise wafka.PluginError(
                f"config `batch` must be a number from 1 to 2048, not `{batch}`"
            )
        self.batch = int(batch)
        self.dead_letter = config.get("dead-letter", f"{self.topic}.dlq")
        try:
            wafka.set_autoflush(False)
        except wafka.NotAllowedError:
            pass  # the host fixed the mode: see above
        self.unflushed = 0  # published since the last flush
        self.pending: dict[int, bytes] = {}  # values of records not yet reported, by id

    def handle(self, event: bytes) -> None:
        receipt = wafka.publish(self.topic, event)
        self.pending[receipt.id] = event
        self.unflushed += 1
        if self.unflushed == self.batch:
            self.settle()

    def finish(self) -> None:
        self.settle()  # the last records
        self.settle()  # their dead letters

    def settle(self) -> None:
        """Flushes, then drains every delivery report."""
        try:
            wafka.flush()
        except wafka.ProduceError:
            pass  # a failed record shows in its report
        self.unflushed = 0
        while reports := wafka.take_reports(100):
            for r in reports:
                value = self.pending.pop(r.id, None)
                if r.ok:
                    continue
                if value is None:  # a dead letter, which has no dead letter of its own
                    print(f"lost id={r.id} topic={r.topic} error={r.error}")
                else:
                    self.send_dead_letter(r.id, r.topic, value, r.error)

    def send_dead_letter(self, id: int, topic: str, value: bytes, error: wafka.ProduceError):
        """Publishes the value of record ``id``, which ``topic`` did not take, to the
        dead-letter topic."""
        headers = [("error", str(error)), ("topic", topic)]
        try:
            wafka.publish(self.dead_letter, value, headers=headers)
        except wafka.ProduceError as refused:
            print(f"lost id={id} topic={topic} error={error} (dead letter refused: {refused})")
        else:
            print(f"dead-letter id={id} topic={topic} error={error}")
