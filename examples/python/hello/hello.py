"""``hello``: publishes every event as one record (the Python twin of examples/rust/hello).

Configuration:

* ``topic`` — the destination topic (default ``hello``);
* ``key-delimiter`` — optional, non-empty: each event is split at the first occurrence of the
  delimiter into key (before) and value (after). An event without the delimiter is published
  whole as the value, with a null key. Without this setting, every record has a null key.

Every record carries the header ``source=hello``.
"""

import wafka

HEADERS = [("source", b"hello")]

topic = "hello"
key_delimiter = None


def init(config: wafka.Config) -> None:
    global topic, key_delimiter
    delimiter = config.get("key-delimiter")
    if delimiter == "":
        raise wafka.PluginError("config `key-delimiter` must not be empty")
    key_delimiter = None if delimiter is None else delimiter.encode()
    topic = config.get("topic", "hello")


def handle(event: bytes) -> None:
    key, value = split_once(event, key_delimiter) if key_delimiter else (None, event)
    wafka.publish(topic, value, key=key, headers=HEADERS)


def split_once(event: bytes, delimiter: bytes):
    """``(key, value)`` split at the first ``delimiter``, or ``(None, event)`` without one."""
    at = event.find(delimiter)
    if at < 0:
        return None, event
    return event[:at], event[at + len(delimiter):]
