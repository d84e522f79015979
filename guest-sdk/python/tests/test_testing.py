"""The public fake host (wafka.testing), as a plugin's tests use it: no bindings needed."""

import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# Imported in the test, not here: test discovery imports every test module first, and the
# other module must import the SDK with its bindings on the path.


class FakeHostTest(unittest.TestCase):
    def setUp(self):
        global wafka, testing
        import wafka
        from wafka import testing

        # The other tests use the generated bindings: give them back afterwards.
        saved = (wafka._host, wafka._wit, wafka._Err, wafka._Ok)

        def restore():
            wafka._host, wafka._wit, wafka._Err, wafka._Ok = saved

        self.addCleanup(restore)

    def test_publishes_reports_and_refuses_as_the_host(self):
        fake = testing.use_fake_host()
        r = wafka.publish("t", "a", key="k", headers={"h": "v"})
        self.assertEqual((r.id, r.offset), (0, -1))
        wafka.set_autoflush(True)
        r = wafka.publish("t", b"b", partition=2)
        self.assertEqual((r.id, r.partition, r.offset), (1, 2, 0))
        self.assertEqual([x.offset for x in wafka.take_reports(10)], [0, 0])
        self.assertEqual(fake.published[0].key, b"k")
        self.assertEqual(fake.published[0].headers, [("h", b"v")])

        fake.refuse_topic("audit", wafka.NotAuthorizedError("audit"))
        with self.assertRaises(wafka.NotAuthorizedError) as caught:
            wafka.publish("audit", b"x")
        self.assertEqual(str(caught.exception), "not authorized: audit")
        fake.refuse_next(wafka.BrokerError("NOT_ENOUGH_REPLICAS", 19))
        with self.assertRaises(wafka.BrokerError):
            wafka.publish("t", b"y")

        wafka.set_autoflush(False)
        fake.fail_reports(wafka.TimedOutError("expired"))
        wafka.publish("t", b"z")
        [report] = wafka.take_reports(10)
        self.assertIsInstance(report.error, wafka.TimedOutError)
        with self.assertRaises(wafka.TimedOutError):
            wafka.flush()
        wafka.flush()  # reported once
        self.assertEqual([p.value for p in fake.published], [b"a", b"b"])

        fake.fix_autoflush(False)
        with self.assertRaises(wafka.NotAllowedError):
            wafka.set_autoflush(True)

    def test_the_plugins_of_several_tests_register_one_after_the_other(self):
        saved = wafka._registered
        self.addCleanup(setattr, wafka, "_registered", saved)
        testing.use_fake_host()

        @wafka.plugin
        class First(wafka.Plugin):
            def handle(self, event):
                pass

        testing.use_fake_host()  # the next plugin's test

        @wafka.plugin
        class Second(wafka.Plugin):
            def handle(self, event):
                pass

        self.assertIs(wafka._registered, Second)
        # Without a new fake host in between, a second class is the mistake it always was.
        with self.assertRaises(TypeError):

            @wafka.plugin
            class Third(wafka.Plugin):
                def handle(self, event):
                    pass


if __name__ == "__main__":
    unittest.main()
