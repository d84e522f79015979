"""Write wafka plugins in Python.

A wafka plugin is a WebAssembly component for the ``plugin`` world of ``wit/producer.wit``
(``wafka:producer@0.1.0``): the host calls ``init`` once with the plugin's ``--config KEY=VALUE``
pairs, then ``handle`` once per input event, and the plugin publishes Kafka records through the
host's ``producer`` interface. This package hides the bindings that ``componentize-py`` generates
behind a few functions and exceptions.

A plugin is a class registered with ``@wafka.plugin`` (one object per plugin instance)::

    import wafka

    @wafka.plugin
    class Echo(wafka.Plugin):
        def __init__(self, config: wafka.Config) -> None:
            self.topic = config.get("topic", "echo")

        def handle(self, event: bytes) -> None:
            wafka.publish(self.topic, event)

        def finish(self) -> None:           # optional: after the last event
            wafka.flush()

or a module with two functions (and optionally ``finish()``)::

    import wafka

    def init(config: wafka.Config) -> None:      # optional
        global topic
        topic = config.get("topic", "echo")

    def handle(event: bytes) -> None:
        wafka.publish(topic, event, headers={"source": "echo"})

``guest-sdk/python/build.py`` turns such a module into a component. An exception raised by
``init`` or ``handle`` becomes the export's error string (see ``error_message``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Optional, Tuple, TypeVar, Union

__all__ = [
    "Plugin",
    "plugin",
    "BrokerError",
    "BufferFullError",
    "ClosedError",
    "Config",
    "DeliveryReport",
    "InvalidTopicError",
    "NotAllowedError",
    "NotAuthorizedError",
    "PluginError",
    "ProduceError",
    "QuotaExceededError",
    "Receipt",
    "RecordTooLargeError",
    "TimedOutError",
    "error_message",
    "flush",
    "publish",
    "set_autoflush",
    "take_reports",
]

Bytes = Union[bytes, bytearray, memoryview, str]
"""What a key, value or header value may be: bytes-like, or ``str`` (sent as UTF-8)."""

Headers = Union[Mapping[str, Optional[Bytes]], Iterable[Tuple[str, Optional[Bytes]]]]
"""Headers as a mapping or as ``(key, value)`` pairs (pairs keep their order and may repeat a
key); a ``None`` value is Kafka's null."""


# --- configuration ----------------------------------------------------------------------------


class Config(dict):
    """The ``--config KEY=VALUE`` pairs given to ``init``.

    A ``dict`` from key to value; where a key is given more than once the last value wins, as in
    the Rust SDK. ``pairs`` keeps every pair in order and ``get_all`` returns each value of a key.
    """

    def __init__(self, pairs: Iterable[Tuple[str, str]] = ()):
        self.pairs = [(str(k), str(v)) for k, v in pairs]
        super().__init__(self.pairs)

    def get_all(self, key: str) -> list:
        """Every value given for ``key``, in order."""
        return [v for k, v in self.pairs if k == key]

    def require(self, key: str) -> str:
        """The value of ``key``; ``PluginError("missing config `KEY`")`` when it is absent."""
        try:
            return self[key]
        except KeyError:
            raise PluginError(f"missing config `{key}`") from None

    def check_known(self, known: Iterable[str]) -> None:
        """Raises ``PluginError`` naming the first key that is not in ``known``."""
        known = list(known)
        for k, _ in self.pairs:
            if k not in known:
                raise PluginError(f"unknown config `{k}` (known: {', '.join(known)})")


# --- errors -----------------------------------------------------------------------------------


def _one_line(text: str) -> str:
    """``text`` with line breaks and other control characters (Unicode Cc) as spaces."""
    if text.isprintable():
        return text
    return "".join(" " if (c < " " or "\x7f" <= c <= "\x9f") else c for c in text)


class PluginError(Exception):
    """Raise it from ``init`` or ``handle`` to fail with exactly this message."""


class ProduceError(Exception):
    """Why the host did not publish or deliver a record (the WIT ``produce-error``).

    ``kind`` is the WIT variant's name (e.g. ``"not-authorized"``); ``str(error)`` is one line,
    the same text as the Rust SDK's ``Display``.
    """

    kind = ""
    _prefix = "produce error"

    def __init__(self, detail: str = ""):
        super().__init__(detail)
        self.detail = detail

    def __str__(self) -> str:
        return f"{self._prefix}: {_one_line(self.detail)}"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.args == other.args  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self), self.args))


class NotAuthorizedError(ProduceError):
    """The plugin may not publish to this topic (host ACL or broker authorization)."""

    kind = "not-authorized"
    _prefix = "not authorized"


class InvalidTopicError(ProduceError):
    """The topic name is not valid, or the topic does not exist."""

    kind = "invalid-topic"
    _prefix = "invalid topic"


class RecordTooLargeError(ProduceError):
    """The record is larger than the host allows; ``size`` is the encoded record's bytes."""

    kind = "record-too-large"

    def __init__(self, size: int):
        Exception.__init__(self, size)
        self.size = size
        self.detail = ""

    def __str__(self) -> str:
        return f"record too large: {self.size} bytes"


class BufferFullError(ProduceError):
    """The producer's buffer stayed full for the host's maximum wait."""

    kind = "buffer-full"

    def __str__(self) -> str:
        return "producer buffer full"


class QuotaExceededError(ProduceError):
    """The plugin used up its quota (memory, records or bytes)."""

    kind = "quota-exceeded"
    _prefix = "quota exceeded"


class TimedOutError(ProduceError):
    """The record was not acknowledged in time."""

    kind = "timed-out"
    _prefix = "timed out"


class ClosedError(ProduceError):
    """The producer or this instance is closed."""

    kind = "closed"

    def __str__(self) -> str:
        return "producer closed"


class NotAllowedError(ProduceError):
    """The host's policy does not allow this (e.g. ``set_autoflush`` when the mode is fixed)."""

    kind = "not-allowed"
    _prefix = "not allowed"


class BrokerError(ProduceError):
    """The broker refused the record: Kafka's error ``name`` (e.g. ``NOT_ENOUGH_REPLICAS``),
    ``code`` and the broker's ``message``, if any."""

    kind = "broker"

    def __init__(self, name: str, code: int, message: Optional[str] = None):
        Exception.__init__(self, name, code, message)
        self.name = name
        self.code = code
        self.message = message
        self.detail = ""

    def __str__(self) -> str:
        text = f"broker error {_one_line(self.name)} ({self.code})"
        if self.message is not None:
            text += ": " + _one_line(self.message)
        return text


def error_message(error: BaseException) -> str:
    """The error string an exception from ``init`` or ``handle`` becomes: ``str(error)`` for a
    ``ProduceError`` or ``PluginError``, ``"TypeName: str(error)"`` for any other exception."""
    if isinstance(error, (ProduceError, PluginError)):
        return str(error)
    text = str(error)
    name = type(error).__name__
    return f"{name}: {text}" if text else name


# --- records ----------------------------------------------------------------------------------


@dataclass(eq=True, slots=True)
class Receipt:
    """Where a published record went.

    With autoflush on, ``publish`` returns after the broker acknowledged the record and
    ``offset`` is its offset; with autoflush off, once it is queued: ``offset`` is then -1 and
    ``id`` finds the record's ``DeliveryReport`` later.
    """

    id: int
    partition: int
    offset: int

    @property
    def acknowledged(self) -> bool:
        """Whether the broker had acknowledged the record when ``publish`` returned."""
        return self.offset >= 0

    def __str__(self) -> str:
        return f"id={self.id} partition={self.partition} offset={self.offset}"


@dataclass(eq=True, slots=True)
class DeliveryReport:
    """How one record ended: delivered at ``offset`` (``error`` is ``None``), or not delivered
    (``offset`` is ``None`` and ``error`` says why)."""

    id: int
    topic: str
    partition: int
    offset: Optional[int]
    error: Optional[ProduceError]

    @property
    def ok(self) -> bool:
        """Whether the record was delivered."""
        return self.error is None

    def __str__(self) -> str:
        head = f"id={self.id} topic={self.topic} partition={self.partition} "
        if self.error is None:
            return head + f"offset={self.offset}"
        return head + f"error: {self.error}"


# --- the host ---------------------------------------------------------------------------------
#
# The generated bindings exist only inside a component build (build.py generates them with
# `componentize-py bindings`); elsewhere the functions below raise, but the rest of the module
# (errors, Config, Receipt) can still be imported and tested.

try:
    from componentize_py_types import Err as _Err
    from componentize_py_types import Ok as _Ok
    from wit_world.imports import producer as _host
    from wit_world.imports import types as _wit
except ImportError:  # pragma: no cover - outside a component build
    _host = None
    _wit = None

    class _Err(Exception):  # type: ignore[no-redef]
        value = None

    class _Ok:  # type: ignore[no-redef]
        value = None


def _from_wit(e) -> ProduceError:
    """The exception for a WIT ``produce-error`` value."""
    w = _wit
    if isinstance(e, w.ProduceError_NotAuthorized):
        return NotAuthorizedError(e.value)
    if isinstance(e, w.ProduceError_InvalidTopic):
        return InvalidTopicError(e.value)
    if isinstance(e, w.ProduceError_RecordTooLarge):
        return RecordTooLargeError(e.value)
    if isinstance(e, w.ProduceError_BufferFull):
        return BufferFullError()
    if isinstance(e, w.ProduceError_QuotaExceeded):
        return QuotaExceededError(e.value)
    if isinstance(e, w.ProduceError_TimedOut):
        return TimedOutError(e.value)
    if isinstance(e, w.ProduceError_Closed):
        return ClosedError()
    if isinstance(e, w.ProduceError_NotAllowed):
        return NotAllowedError(e.value)
    if isinstance(e, w.ProduceError_Broker):
        b = e.value
        return BrokerError(b.name, b.code, b.message)
    return ProduceError(repr(e))  # a variant this SDK does not know


def _to_bytes(data: Bytes) -> bytes:
    if type(data) is bytes:
        return data
    if isinstance(data, str):
        return data.encode()
    return bytes(data)


def _is_utf8(text: str) -> bool:
    """Whether ``text`` can be a WIT string, i.e. has no lone surrogate (lowering one would trap
    the component, ending the instance, where a bad topic or header key should fail the call)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _header_key(key) -> str:
    key = str(key)
    if not _is_utf8(key):
        raise ValueError(f"header key {key!r} is not valid UTF-8")
    return key


def _headers(headers: Headers) -> list:
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [
        _wit.Header(_header_key(k), None if v is None else _to_bytes(v))
        for k, v in items
    ]


def publish(
    topic: str,
    value: Bytes,
    key: Optional[Bytes] = None,
    headers: Optional[Headers] = None,
    partition: Optional[int] = None,
) -> Receipt:
    """Publishes one record and returns its ``Receipt``; raises a ``ProduceError``.

    ``key=None`` is Kafka's null key; ``partition=None`` lets the host's partitioner choose.
    With autoflush on it returns after the broker acknowledged the record; with autoflush off,
    once it is queued (``receipt.offset == -1``).
    """
    if isinstance(topic, str) and not _is_utf8(topic):
        raise InvalidTopicError(f"{topic!r} is not valid UTF-8")
    msg = _wit.Message(
        topic,
        None if key is None else _to_bytes(key),
        value if type(value) is bytes else _to_bytes(value),
        _headers(headers) if headers else [],
        partition,
    )
    try:
        r = _host.publish(msg)
    except _Err as e:
        raise _from_wit(e.value) from None
    return Receipt(r.id, r.partition, r.offset)


def flush() -> None:
    """Waits until every record this instance published before is acknowledged or failed;
    raises the first failure since the previous flush."""
    try:
        _host.flush()
    except _Err as e:
        raise _from_wit(e.value) from None


def set_autoflush(enabled: bool) -> None:
    """Switches autoflush for this instance; ``NotAllowedError`` where the host fixed it."""
    try:
        _host.set_autoflush(bool(enabled))
    except _Err as e:
        raise _from_wit(e.value) from None


def take_reports(max: int) -> list[DeliveryReport]:
    """Takes up to ``max`` delivery reports of this instance's records, oldest first: a list of
    ``DeliveryReport``; each report is returned once."""
    out = []
    for r in _host.take_reports(max):
        outcome = r.outcome
        if isinstance(outcome, _Ok):
            out.append(DeliveryReport(r.id, r.topic, r.partition, outcome.value, None))
        else:
            out.append(DeliveryReport(r.id, r.topic, r.partition, None, _from_wit(outcome.value)))
    return out


# --- class-based plugins ------------------------------------------------------------------------


class Plugin:
    """Base class of a class-based plugin (register it with ``@wafka.plugin``): the host's
    ``init`` builds one object from the configuration, ``handle`` is called on it once per
    event, and ``finish`` once after the last event. Raising from any of them fails that call
    with the exception's message (see ``error_message``)."""

    def __init__(self, config: Config) -> None:
        """Builds the plugin's state from the ``--config KEY=VALUE`` pairs."""

    def handle(self, event: bytes) -> None:
        """Handles one event: one line of input, without the newline."""
        raise NotImplementedError("a wafka.Plugin subclass must define handle(self, event)")

    def finish(self) -> None:
        """After the last event (the input ended, or the host drains or drops the instance):
        flush and drain the last delivery reports here. Does nothing by default."""


P = TypeVar("P", bound=type)

_registered: Optional[type] = None


def plugin(cls: P) -> P:
    """Registers ``cls`` as the module's plugin: a class (``wafka.Plugin`` or any class) built
    with ``cls(config)`` and called with ``handle(event)`` and, if it has one, ``finish()``.
    Use it once per plugin."""
    global _registered
    if _registered is not None and _registered is not cls:
        raise TypeError(f"two plugin classes registered: {_registered.__name__} and {cls.__name__}")
    handle = getattr(cls, "handle", None)
    if not callable(handle) or handle is Plugin.handle:
        raise TypeError(f"plugin class {cls.__name__} has no method handle(self, event)")
    _registered = cls
    return cls
