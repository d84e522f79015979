"""``router``: routes JSON events to a topic chosen by one of their fields (the Python twin of
examples/rust/router).

Each event must be a JSON object. Configuration:

* ``field`` — the field that picks the topic (default ``type``);
* ``prefix`` — prepended to the field's value to make the topic (default ``events.``).

So with the defaults, ``{"type":"click","id":42}`` goes to ``events.click``. The field's value
must be a non-empty string or a number (``events.7``). The record's key is the event's ``id``
field: a string as is, any other value as its compact JSON text, none (Kafka's null) when
``id`` is absent or ``null``. The value is the event's bytes, unchanged.

An event that is not a JSON object, or lacks a usable routing field, fails with a one-line
message (the Rust example's words; after ``event is not JSON:`` comes Python's reason); the
host counts it as an error and goes on with the next event.

Numbers are written back as Python writes them: integers as written (``7``), fractions as
``repr`` does (``1e3`` is ``1000.0``, as in Rust). ``NaN`` and ``Infinity``, which Python's
``json`` accepts, are not JSON and are refused.
"""

import json

import wafka

field = "type"
prefix = "events."


def init(config: wafka.Config) -> None:
    global field, prefix
    field = config.get("field", "type")
    if not field:
        raise wafka.PluginError("config `field` must not be empty")
    prefix = config.get("prefix", "events.")


def handle(event: bytes) -> None:
    topic, key = route(event)
    wafka.publish(topic, event, key=key)


def route(event: bytes):
    """The topic and key for ``event``; ``PluginError`` says why it cannot be routed."""
    try:
        value = json.loads(event.decode("utf-8"), parse_constant=_not_json)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError and JSONDecodeError too
        raise wafka.PluginError(f"event is not JSON: {e}") from None
    if not isinstance(value, dict):
        raise wafka.PluginError(f"event is a JSON {kind(value)}, not an object")
    if field not in value:
        raise wafka.PluginError(f"event has no field `{field}`")
    suffix = value[field]
    if suffix == "":
        raise wafka.PluginError(f"field `{field}` is empty")
    if kind(suffix) not in ("string", "number"):
        raise wafka.PluginError(f"field `{field}` is a JSON {kind(suffix)}, not a string or number")
    key = value.get("id")
    if key is not None and not isinstance(key, str):
        key = json.dumps(key, separators=(",", ":"), ensure_ascii=False)
    return prefix + str(suffix), key


def kind(value) -> str:
    """The JSON type of a decoded ``value``, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):  # before int: a bool is an int in Python
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _not_json(name: str):
    raise ValueError(f"{name} is not a JSON value")
