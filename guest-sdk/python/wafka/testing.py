"""A fake host for plugins' unit tests (``python -m unittest`` on the build machine).

Outside a component the SDK has no host (the bindings exist only in a component build);
``use_fake_host()`` gives it one that answers ``publish``, ``flush``, ``set_autoflush`` and
``take_reports`` as the host does: receipts with offsets per topic and partition (``-1`` until
acknowledged unless autoflush is on), one delivery report per record, and the refusals and
failures a test asks for::

    import unittest
    import wafka
    from wafka import testing

    class ShoutTest(unittest.TestCase):
        def test_publishes(self):
            fake = testing.use_fake_host()
            import shout                                   # the plugin module
            shout.handle(b"hi")
            self.assertEqual(fake.published[0].value, b"HI")
            fake.refuse_topic("shouts", wafka.NotAuthorizedError("shouts"))
            with self.assertRaises(wafka.NotAuthorizedError):
                shout.handle(b"again")

It must not be imported by a plugin's own code (only by its tests).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import wafka

__all__ = ["FakeHost", "Published", "use_fake_host"]


# The shapes of componentize-py's bindings that the SDK uses.


class _Err(Exception):
    def __init__(self, value):
        super().__init__(value)
        self.value = value


@dataclass
class _Ok:
    value: object


@dataclass
class _Header:
    key: str
    value: Optional[bytes]


@dataclass
class _Message:
    topic: str
    key: Optional[bytes]
    value: bytes
    headers: list
    partition: Optional[int]


@dataclass
class _Receipt:
    id: int
    partition: int
    offset: int


@dataclass
class _Report:
    id: int
    topic: str
    partition: int
    outcome: object


@dataclass
class _BrokerError:
    name: str
    code: int
    message: Optional[str]


def _case(name: str):
    def init(self, value=None):
        self.value = value

    return type(f"ProduceError_{name}", (), {"__init__": init})


# Each SDK exception, the binding's case for it and the case's payload.
_CASES = [
    (wafka.NotAuthorizedError, "NotAuthorized", lambda e: e.detail),
    (wafka.InvalidTopicError, "InvalidTopic", lambda e: e.detail),
    (wafka.RecordTooLargeError, "RecordTooLarge", lambda e: e.size),
    (wafka.BufferFullError, "BufferFull", lambda e: None),
    (wafka.QuotaExceededError, "QuotaExceeded", lambda e: e.detail),
    (wafka.TimedOutError, "TimedOut", lambda e: e.detail),
    (wafka.ClosedError, "Closed", lambda e: None),
    (wafka.NotAllowedError, "NotAllowed", lambda e: e.detail),
    (wafka.BrokerError, "Broker", lambda e: _BrokerError(e.name, e.code, e.message)),
]


class _Types:
    """Stands for ``wit_world.imports.types``."""

    Header = _Header
    Message = _Message
    BrokerError = _BrokerError


for _exc, _name, _ in _CASES:
    setattr(_Types, f"ProduceError_{_name}", _case(_name))


def _variant(e: wafka.ProduceError):
    """The binding's variant for an SDK exception."""
    for exc, name, payload in _CASES:
        if isinstance(e, exc):
            return getattr(_Types, f"ProduceError_{name}")(payload(e))
    raise TypeError(f"not a produce error: {e!r}")


@dataclass
class Published:
    """A record the plugin published, as the fake host kept it."""

    topic: str
    key: Optional[bytes]
    value: bytes
    headers: list  # of (key, value) pairs
    partition: int
    offset: int


@dataclass
class FakeHost:
    """The fake host; see the module's doc. ``published`` holds what was published and not
    refused, in order."""

    published: list = field(default_factory=list)
    autoflush: bool = False
    _fixed: Optional[bool] = None
    _refused: dict = field(default_factory=dict)
    _refuse_next: list = field(default_factory=list)
    _fail_reports: Optional[wafka.ProduceError] = None
    _fail_flush: Optional[wafka.ProduceError] = None
    _reports: list = field(default_factory=list)
    _first_failure: Optional[wafka.ProduceError] = None
    _next_id: int = 0
    _offsets: dict = field(default_factory=dict)

    def refuse_topic(self, topic: str, error: wafka.ProduceError) -> None:
        """Every ``publish`` to ``topic`` raises ``error``."""
        self._refused[topic] = error

    def refuse_next(self, error: wafka.ProduceError) -> None:
        """The next ``publish`` raises ``error``."""
        self._refuse_next.append(error)

    def fail_reports(self, error: wafka.ProduceError) -> None:
        """Every record published from now on is queued, then not delivered: its report (and
        the next ``flush``) carries ``error``."""
        self._fail_reports = error

    def fail_flush(self, error: wafka.ProduceError) -> None:
        """Every ``flush`` raises ``error``."""
        self._fail_flush = error

    def fix_autoflush(self, on: bool) -> None:
        """The host fixes autoflush on or off: ``set_autoflush`` raises ``NotAllowedError``."""
        self._fixed = on
        self.autoflush = on

    # The producer interface, as the SDK calls it.

    def publish(self, msg: _Message) -> _Receipt:
        refused = self._refuse_next.pop(0) if self._refuse_next else self._refused.get(msg.topic)
        if refused is not None:
            raise _Err(_variant(refused))
        rid = self._next_id
        self._next_id += 1
        partition = msg.partition or 0
        if self._fail_reports is not None:
            if self.autoflush:
                raise _Err(_variant(self._fail_reports))
            if self._first_failure is None:
                self._first_failure = self._fail_reports
            self._reports.append(
                _Report(rid, msg.topic, partition, _Err(_variant(self._fail_reports)))
            )
            return _Receipt(rid, partition, -1)
        offset = self._offsets.get((msg.topic, partition), 0)
        self._offsets[(msg.topic, partition)] = offset + 1
        self.published.append(
            Published(
                msg.topic,
                msg.key,
                msg.value,
                [(h.key, h.value) for h in msg.headers],
                partition,
                offset,
            )
        )
        self._reports.append(_Report(rid, msg.topic, partition, _Ok(offset)))
        return _Receipt(rid, partition, offset if self.autoflush else -1)

    def flush(self) -> None:
        if self._fail_flush is not None:
            raise _Err(_variant(self._fail_flush))
        failure, self._first_failure = self._first_failure, None
        if failure is not None:
            raise _Err(_variant(failure))

    def set_autoflush(self, enabled: bool) -> None:
        if self._fixed is not None:
            mode = "on" if self._fixed else "off"
            raise _Err(_Types.ProduceError_NotAllowed(f"the host fixed autoflush to {mode}"))
        self.autoflush = enabled

    def take_reports(self, max: int) -> list:
        out, self._reports = self._reports[:max], self._reports[max:]
        return out


def use_fake_host() -> FakeHost:
    """Installs a new ``FakeHost`` as the SDK's host (until the next call) and returns it.

    It also forgets which class ``@wafka.plugin`` registered, so that the tests of several
    plugins can run in one process (a component holds one plugin: there, a second class is an
    error). Tests build plugin objects themselves (``App(config)``); the registration is only
    read by a component's exports."""
    wafka._registered = None
    fake = FakeHost()
    wafka._host = fake
    wafka._wit = _Types
    wafka._Err = _Err
    wafka._Ok = _Ok
    return fake
