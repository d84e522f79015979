"""Unit tests against the SDK's fake host (``python3 -m unittest``, natively: no component, no
broker). The SDK is in .wafka/guest-sdk/python: see README.md."""

import unittest

import wafka
from wafka import testing


class AppTest(unittest.TestCase):
    def setUp(self):
        self.fake = testing.use_fake_host()
        import plugin  # after the fake host is in place

        self.plugin = plugin

    def app(self, topic: str):
        return self.plugin.App(wafka.Config([("topic", topic)]))

    def test_publishes_every_event_to_the_topic(self):
        app = self.app("events")
        app.handle(b"one")
        app.handle(b"two")
        self.assertEqual([p.value for p in self.fake.published], [b"one", b"two"])
        self.assertEqual(self.fake.published[0].topic, "events")
        self.assertEqual(self.fake.published[1].offset, 1)
        self.assertEqual(self.fake.published[0].headers, [("plugin", b"{{name}}")])

    def test_an_event_the_host_refuses_fails_with_its_error(self):
        app = self.app("events")
        self.fake.refuse_topic("events", wafka.NotAuthorizedError("events"))
        with self.assertRaises(wafka.NotAuthorizedError) as caught:
            app.handle(b"one")
        self.assertEqual(str(caught.exception), "not authorized: events")

    def test_an_empty_topic_is_refused(self):
        with self.assertRaises(wafka.PluginError):
            self.app("")


if __name__ == "__main__":
    unittest.main()
