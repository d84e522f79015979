"""Native tests of the SDK and the examples against a fake host.

Run with the build venv (it has componentize-py, which generates the real bindings):

    ~/.cache/wafka/venv-py/bin/python -m unittest discover -s guest-sdk/python/tests -v
"""

import contextlib
import io
import shutil
import subprocess
import sys
import tempfile
import unittest
import unittest.mock
from pathlib import Path

SDK = Path(__file__).resolve().parent.parent
ROOT = SDK.parent.parent
EXAMPLES = ROOT / "examples" / "python"


def _generate_bindings() -> str:
    tool = Path(sys.executable).parent / "componentize-py"
    tool = str(tool) if tool.exists() else shutil.which("componentize-py")
    if tool is None:
        raise unittest.SkipTest("componentize-py is not installed")
    out = tempfile.mkdtemp(prefix="wafka-py-test-")
    subprocess.run(
        [tool, "-q", "-d", str(ROOT / "wit"), "-w", "plugin", "bindings", out], check=True
    )
    return out


BINDINGS = _generate_bindings()
EXAMPLE_DIRS = [str(EXAMPLES / n) for n in ("hello", "reporter", "router", "batcher")]
sys.path[:0] = [BINDINGS, str(SDK), *EXAMPLE_DIRS]

from componentize_py_types import Err, Ok  # noqa: E402
from wit_world.imports import producer as host  # noqa: E402
from wit_world.imports import types as wit  # noqa: E402

import wafka  # noqa: E402
from wafka import _world  # noqa: E402


class FakeHost:
    """Stands in for the host's producer: records what the plugin publishes."""

    def __init__(self):
        self.records = []
        self.autoflush = False
        self.fixed = False
        self.refuse = None  # a produce-error for the next publish
        self.reports = []

    def publish(self, msg):
        if self.refuse is not None:
            e, self.refuse = self.refuse, None
            raise Err(e)
        rid = len(self.records)
        self.records.append(msg)
        offset = rid if self.autoflush else -1
        self.reports.append(wit.DeliveryReport(rid, msg.topic, 0, Ok(rid)))
        return wit.Receipt(rid, 0, offset)

    def flush(self):
        pass

    def set_autoflush(self, enabled):
        if self.fixed:
            raise Err(wit.ProduceError_NotAllowed("the host fixed autoflush"))
        self.autoflush = enabled

    def take_reports(self, max):
        out, self.reports = self.reports[:max], self.reports[max:]
        return out


class HostTest(unittest.TestCase):
    def setUp(self):
        self.host = FakeHost()
        for name in ("publish", "flush", "set_autoflush", "take_reports"):
            patcher = unittest.mock.patch.object(host, name, getattr(self.host, name))
            patcher.start()
            self.addCleanup(patcher.stop)

    def plugin(self, module):
        return _world.world_for(module)()


class ErrorTest(unittest.TestCase):
    def test_messages_match_the_rust_sdk(self):
        cases = [
            (wafka.NotAuthorizedError("t"), "not authorized: t"),
            (wafka.InvalidTopicError("bad\nname"), "invalid topic: bad name"),
            (wafka.RecordTooLargeError(12), "record too large: 12 bytes"),
            (wafka.BufferFullError(), "producer buffer full"),
            (wafka.QuotaExceededError("records"), "quota exceeded: records"),
            (wafka.TimedOutError("30s"), "timed out: 30s"),
            (wafka.ClosedError(), "producer closed"),
            (wafka.NotAllowedError("fixed"), "not allowed: fixed"),
            (
                wafka.BrokerError("NOT_ENOUGH_REPLICAS", 19, "2 < 3\r\n"),
                "broker error NOT_ENOUGH_REPLICAS (19): 2 < 3  ",
            ),
            (wafka.BrokerError("UNKNOWN", -1), "broker error UNKNOWN (-1)"),
        ]
        for error, text in cases:
            self.assertEqual(str(error), text)
            self.assertIsInstance(error, wafka.ProduceError)
            self.assertEqual(wafka.error_message(error), text)
        self.assertEqual(wafka.BufferFullError().kind, "buffer-full")
        self.assertEqual(wafka.error_message(ValueError("x")), "ValueError: x")
        self.assertEqual(wafka.error_message(wafka.PluginError("as is")), "as is")

    def test_config_last_value_wins(self):
        c = wafka.Config([("topic", "a"), ("n", "3"), ("topic", "b")])
        self.assertEqual(c["topic"], "b")
        self.assertEqual(c.get_all("topic"), ["a", "b"])
        self.assertEqual(c.get("missing", "d"), "d")
        with self.assertRaisesRegex(wafka.PluginError, "missing config `x`"):
            c.require("x")
        with self.assertRaisesRegex(wafka.PluginError, r"unknown config `n` \(known: topic\)"):
            c.check_known(["topic"])


class PublishTest(HostTest):
    def test_publish_converts_arguments(self):
        receipt = wafka.publish(
            "t", "vé", key=bytearray(b"k"), headers=[("a", "1"), ("b", None), ("a", b"2")], partition=2
        )
        self.assertEqual(receipt, wafka.Receipt(0, 0, -1))
        self.assertFalse(receipt.acknowledged)
        msg = self.host.records[0]
        self.assertEqual(msg.topic, "t")
        self.assertEqual(msg.key, b"k")
        self.assertEqual(msg.value, "vé".encode())
        self.assertEqual(msg.partition, 2)
        self.assertEqual(
            [(h.key, h.value) for h in msg.headers], [("a", b"1"), ("b", None), ("a", b"2")]
        )
        wafka.publish("t", memoryview(b"v"), headers={"x": "y"})
        self.assertEqual(self.host.records[1].key, None)
        self.assertEqual(self.host.records[1].value, b"v")
        self.assertEqual([(h.key, h.value) for h in self.host.records[1].headers], [("x", b"y")])

    def test_strings_that_are_not_utf8_are_refused_not_passed_on(self):
        # A lone surrogate cannot be lowered to a WIT string: the component would trap.
        with self.assertRaises(wafka.InvalidTopicError) as caught:
            wafka.publish("events.\ud800x", b"v")
        self.assertEqual(str(caught.exception), "invalid topic: 'events.\\ud800x' is not valid UTF-8")
        with self.assertRaisesRegex(ValueError, "header key 'a\\\\udc00' is not valid UTF-8"):
            wafka.publish("t", b"v", headers={"a\udc00": b"1"})
        self.assertEqual(self.host.records, [])

    def test_errors_become_exceptions(self):
        self.host.refuse = wit.ProduceError_Broker(wit.BrokerError("X", 7, None))
        with self.assertRaises(wafka.BrokerError) as caught:
            wafka.publish("t", b"v")
        self.assertEqual((caught.exception.name, caught.exception.code), ("X", 7))
        self.host.fixed = True
        with self.assertRaisesRegex(wafka.NotAllowedError, "not allowed: the host fixed"):
            wafka.set_autoflush(True)

    def test_reports(self):
        wafka.publish("t", b"a")
        self.host.reports.append(
            wit.DeliveryReport(9, "t", 1, Err(wit.ProduceError_TimedOut("late")))
        )
        reports = wafka.take_reports(10)
        self.assertEqual(reports[0], wafka.DeliveryReport(0, "t", 0, 0, None))
        self.assertTrue(reports[0].ok)
        self.assertFalse(reports[1].ok)
        self.assertEqual(str(reports[1].error), "timed out: late")
        self.assertEqual(str(reports[1]), "id=9 topic=t partition=1 error: timed out: late")


class HelloTest(HostTest):
    def setUp(self):
        super().setUp()
        import hello

        self.hello = hello
        self.world = self.plugin(hello)

    def records(self):
        return [(m.topic, m.key, m.value, [(h.key, h.value) for h in m.headers]) for m in self.host.records]

    def test_not_initialized(self):
        with self.assertRaises(Err) as caught:
            self.world.handle(b"x")
        self.assertEqual(caught.exception.value, _world.NOT_INITIALIZED)

    def test_split_at_the_first_delimiter(self):
        self.world.init([("topic", "greetings"), ("key-delimiter", "::")])
        for event in [b"k::v::w", b"::v", b"k::", b"kv", b":"]:
            self.world.handle(event)
        h = [("source", b"hello")]
        self.assertEqual(
            self.records(),
            [
                ("greetings", b"k", b"v::w", h),
                ("greetings", b"", b"v", h),
                ("greetings", b"k", b"", h),
                ("greetings", None, b"kv", h),
                ("greetings", None, b":", h),
            ],
        )

    def test_defaults_and_empty_delimiter(self):
        self.world.init([])
        self.world.handle(b"a:b")
        self.assertEqual(self.records(), [("hello", None, b"a:b", [("source", b"hello")])])
        with self.assertRaises(Err) as caught:
            self.world.init([("key-delimiter", "")])
        self.assertEqual(caught.exception.value, "config `key-delimiter` must not be empty")
        # A failed init leaves no plugin behind.
        with self.assertRaises(Err):
            self.world.handle(b"x")

    def test_publish_errors_fail_the_event(self):
        self.world.init([])
        self.host.refuse = wit.ProduceError_NotAuthorized("no")
        with self.assertRaises(Err) as caught:
            self.world.handle(b"x")
        self.assertEqual(caught.exception.value, "not authorized: no")


class ReporterTest(HostTest):
    def setUp(self):
        super().setUp()
        import reporter

        self.world = self.plugin(reporter)

    def run_events(self, *events):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            for e in events:
                self.world.handle(e)
        return out.getvalue().splitlines()

    def test_autoflush(self):
        self.world.init([("autoflush", "true"), ("topic", "r")])
        self.assertTrue(self.host.autoflush)
        self.assertEqual(
            self.run_events(b"x"),
            ["receipt partition=0 offset=0", "report id=0 topic=r partition=0 offset=0"],
        )
        self.assertEqual(self.host.records[0].key, None)

    def test_without_autoflush(self):
        self.world.init([])
        self.host.reports.append(wit.DeliveryReport(5, "reports", 2, Err(wit.ProduceError_Closed())))
        self.assertEqual(
            self.run_events(b"x"),
            ["report id=5 error=producer closed", "report id=0 topic=reports partition=0 offset=0"],
        )

    def test_refused_autoflush_fails_init(self):
        self.host.fixed = True
        with self.assertRaises(Err) as caught:
            self.world.init([("autoflush", "true")])
        self.assertEqual(caught.exception.value, "not allowed: the host fixed autoflush")


class RouterTest(HostTest):
    def setUp(self):
        super().setUp()
        import router

        self.world = self.plugin(router)

    def test_routes_by_field_with_keys_from_id(self):
        self.world.init([("prefix", "p.")])
        events = [b'{"type":"click","id":"u1"}', b'{"type":7,"id":{"a":[1,2]}}', b'{"type":"v"}']
        for event in events:
            self.world.handle(event)
        self.assertEqual(
            [(m.topic, m.key) for m in self.host.records],
            [("p.click", b"u1"), ("p.7", b'{"a":[1,2]}'), ("p.v", None)],
        )
        self.assertEqual(self.host.records[1].value, b'{"type":7,"id":{"a":[1,2]}}')

    def test_refuses_what_it_cannot_route(self):
        self.world.init([])
        cases = [
            (b"[1]", "event is a JSON array, not an object"),
            (b'{"id":1}', "event has no field `type`"),
            (b'{"type":""}', "field `type` is empty"),
            (b'{"type":true}', "field `type` is a JSON boolean, not a string or number"),
            (b'{"type":NaN}', "event is not JSON: NaN is not a JSON value"),
            (b'{"type":"\xff"}', "event is not JSON: 'utf-8' codec can't decode byte 0xff"),
        ]
        for event, error in cases:
            with self.assertRaises(Err) as caught:
                self.world.handle(event)
            self.assertTrue(caught.exception.value.startswith(error), caught.exception.value)
        self.assertEqual(self.host.records, [])


class BatcherTest(HostTest):
    def setUp(self):
        super().setUp()
        from batcher import Batcher

        self.Batcher = Batcher

    def tearDown(self):
        wafka._registered = None  # importing the example registered its class

    def test_dead_letters_failed_records_and_keeps_one_batch(self):
        b = self.Batcher(wafka.Config([("topic", "orders"), ("batch", "2")]))
        b.handle(b"lost one")
        late = Err(wit.ProduceError_TimedOut("late"))
        self.host.reports[-1] = wit.DeliveryReport(0, "orders", 0, late)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            b.handle(b"two")
            b.handle(b"three")
            self.assertEqual(len(b.pending), 1)
            b.finish()
        self.assertEqual(b.pending, {})
        self.assertEqual(
            [(m.topic, m.value, [(h.key, h.value) for h in m.headers]) for m in self.host.records],
            [
                ("orders", b"lost one", []),
                ("orders", b"two", []),
                ("orders.dlq", b"lost one", [("error", b"timed out: late"), ("topic", b"orders")]),
                ("orders", b"three", []),
            ],
        )
        self.assertEqual(out.getvalue(), "dead-letter id=0 topic=orders error=timed out: late\n")

    def test_config(self):
        with self.assertRaisesRegex(wafka.PluginError, "missing config `topic`"):
            self.Batcher(wafka.Config([]))
        with self.assertRaisesRegex(wafka.PluginError, "must be a number from 1 to 2048, not `0`"):
            self.Batcher(wafka.Config([("topic", "t"), ("batch", "0")]))
        self.host.fixed = True  # a host that fixed the mode: the batcher goes on
        b = self.Batcher(wafka.Config([("topic", "t")]))
        self.assertEqual((b.batch, b.dead_letter), (100, "t.dlq"))


class ClassPluginTest(HostTest):
    def tearDown(self):
        wafka._registered = None

    def test_a_registered_class_is_the_plugin(self):
        @wafka.plugin
        class Counter(wafka.Plugin):
            def __init__(self, config: wafka.Config) -> None:
                self.topic = config.get("topic", "t")
                self.seen = 0

            def handle(self, event: bytes) -> None:
                self.seen += 1
                wafka.publish(self.topic, event)

            def finish(self) -> None:
                wafka.publish(self.topic, f"finished after {self.seen}")

        world = self.plugin(object())
        with self.assertRaises(Err) as caught:
            world.handle(b"early")
        self.assertEqual(caught.exception.value, _world.NOT_INITIALIZED)
        world.init([("topic", "c")])
        world.handle(b"a")
        world.handle(b"b")
        world.finish()
        self.assertEqual(
            [(m.topic, m.value) for m in self.host.records],
            [("c", b"a"), ("c", b"b"), ("c", b"finished after 2")],
        )

    def test_failures_are_the_calls_errors_and_a_second_class_is_refused(self):
        @wafka.plugin
        class Picky:
            def __init__(self, config):
                if "topic" not in config:
                    raise wafka.PluginError("missing config `topic`")

            def handle(self, event):
                raise ValueError("not this one")

        world = self.plugin(object())
        with self.assertRaises(Err) as caught:
            world.init([])
        self.assertEqual(caught.exception.value, "missing config `topic`")
        world.init([("topic", "t")])
        with self.assertRaises(Err) as caught:
            world.handle(b"x")
        self.assertEqual(caught.exception.value, "ValueError: not this one")
        world.finish()  # no finish method: nothing to do

        with self.assertRaises(TypeError):

            @wafka.plugin
            class Other(wafka.Plugin):
                def handle(self, event):
                    pass

        wafka._registered = None
        with self.assertRaises(TypeError):

            @wafka.plugin
            class NoHandle(wafka.Plugin):
                pass


def tearDownModule():
    shutil.rmtree(BINDINGS, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
