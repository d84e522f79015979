"""``reporter``: publishes every event and prints the delivery reports it gets back.

Configuration:

* ``topic`` — the destination topic (default ``reports``);
* ``autoflush=true`` — ``init`` switches autoflush on (and fails with the host's error message
  if the host fixed the mode).

``handle`` publishes the event as the value (null key), prints ``receipt partition=P offset=O``
when the broker had already acknowledged it (autoflush on), then takes up to 100 delivery
reports and prints one line per report: ``report id=I topic=T partition=P offset=O`` or
``report id=I error=MESSAGE``. ``finish`` (after the last event) flushes and prints the
reports still to come.
"""

import wafka

topic = "reports"


def init(config: wafka.Config) -> None:
    global topic
    topic = config.get("topic", "reports")
    if config.get("autoflush") == "true":
        wafka.set_autoflush(True)  # a ProduceError fails init with its message


def handle(event: bytes) -> None:
    receipt = wafka.publish(topic, event)
    if receipt.acknowledged:
        print(f"receipt partition={receipt.partition} offset={receipt.offset}")
    print_reports()


def finish() -> None:
    """After the last event: flush, then print the reports still to come."""
    try:
        wafka.flush()
    except wafka.ProduceError:
        pass  # a failed record shows in its report
    print_reports()


def print_reports() -> None:
    for r in wafka.take_reports(100):
        if r.ok:
            print(f"report id={r.id} topic={r.topic} partition={r.partition} offset={r.offset}")
        else:
            print(f"report id={r.id} error={r.error}")
