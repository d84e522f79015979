//! `{{name}}`: a wafka plugin. The host calls `init` once with the plugin's `--config
//! KEY=VALUE` pairs, then `handle` once per input event (one line of input, without the
//! newline); `finish` once after the last event.
//!
//! This one publishes every event, unchanged, to the topic named by the config `topic`
//! (default `{{name}}`), with the header `plugin={{name}}`.

use wafka_guest::{Config, Plugin, Record};

/// The plugin's state: one value per instance, alive from `init` to the end.
struct App {
    topic: String,
}

impl Plugin for App {
    fn init(config: Config) -> wafka_guest::Result<Self> {
        let topic = config.get_or("topic", "{{name}}");
        if topic.is_empty() {
            // A failed init stops the plugin with this one-line message.
            wafka_guest::fail!("config `topic` must not be empty");
        }
        Ok(App {
            topic: topic.to_string(),
        })
    }

    fn handle(&mut self, event: &[u8]) -> wafka_guest::Result<()> {
        // `.key(..)` sets a key (records with the same key go to the same partition);
        // `publish` returns a receipt, or the host's error (`?` fails this event with it; the
        // host logs it in one line and goes on with the next event).
        Record::new(self.topic.as_str(), event)
            .header("plugin", "{{name}}")
            .publish()?;
        Ok(())
    }

    // With autoflush off (the default), `publish` returns once the record is queued; flush
    // here to wait for every record before the host ends the plugin, and read
    // `wafka_guest::take_reports` to learn which ones failed.
    fn finish(&mut self) -> wafka_guest::Result<()> {
        wafka_guest::flush()?;
        Ok(())
    }
}

wafka_guest::export_plugin!(App);

/// Unit tests against the SDK's fake host (`cargo test`, natively: no component, no broker).
#[cfg(test)]
mod tests {
    use super::App;
    use wafka_guest::{testing, Config, Error, Plugin};

    fn app(topic: &str) -> App {
        App::init(Config::new(vec![("topic".into(), topic.into())])).expect("init")
    }

    #[test]
    fn publishes_every_event_to_the_topic() {
        testing::reset();
        let mut plugin = app("events");
        plugin.handle(b"one").unwrap();
        plugin.handle(b"two").unwrap();
        let published = testing::published();
        assert_eq!(published.len(), 2);
        assert_eq!(published[0].topic, "events");
        assert_eq!(published[0].value, b"one");
        assert_eq!(published[1].offset, 1);
        assert_eq!(
            published[0].headers,
            [("plugin".to_string(), Some(b"{{name}}".to_vec()))]
        );
    }

    #[test]
    fn an_event_the_host_refuses_fails_with_its_error() {
        testing::reset();
        let mut plugin = app("events");
        testing::refuse_topic("events", Error::NotAuthorized("events".into()));
        let error = plugin.handle(b"one").unwrap_err();
        assert_eq!(error.message(), "not authorized: events");
    }

    #[test]
    fn an_empty_topic_is_refused_at_init() {
        let error = App::init(Config::new(vec![("topic".into(), "".into())]))
            .err()
            .expect("init fails");
        assert_eq!(error.message(), "config `topic` must not be empty");
    }
}
