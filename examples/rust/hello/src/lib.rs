//! `hello`: publishes every event as one record.
//!
//! Configuration:
//!
//! * `topic` — the destination topic (default `hello`);
//! * `key-delimiter` — optional, non-empty: each event is split at the first occurrence of the
//!   delimiter into key (before) and value (after). An event without the delimiter is published
//!   whole as the value, with a null key. Without this setting, every record has a null key.
//!
//! Every record carries the header `source=hello`.

use wafka_guest::{Config, Plugin, Record};

/// The plugin's settings.
struct Hello {
    topic: String,
    key_delimiter: Option<Vec<u8>>,
}

impl Plugin for Hello {
    fn init(config: Config) -> wafka_guest::Result<Self> {
        let key_delimiter = match config.get("key-delimiter") {
            None => None,
            Some("") => wafka_guest::fail!("config `key-delimiter` must not be empty"),
            Some(d) => Some(d.as_bytes().to_vec()),
        };
        Ok(Hello {
            topic: config.get_or("topic", "hello").to_string(),
            key_delimiter,
        })
    }

    fn handle(&mut self, event: &[u8]) -> wafka_guest::Result<()> {
        let (key, value) = match &self.key_delimiter {
            Some(delimiter) => split_once(event, delimiter),
            None => (None, event),
        };
        Record::new(self.topic.as_str(), value)
            .maybe_key(key)
            .header("source", "hello")
            .publish()?;
        Ok(())
    }
}

/// Splits `event` at the first `delimiter` into `(Some(key), value)`, or `(None, event)` when
/// the delimiter does not occur.
fn split_once<'a>(event: &'a [u8], delimiter: &[u8]) -> (Option<&'a [u8]>, &'a [u8]) {
    match event
        .windows(delimiter.len())
        .position(|window| window == delimiter)
    {
        Some(at) => (Some(&event[..at]), &event[at + delimiter.len()..]),
        None => (None, event),
    }
}

wafka_guest::export_plugin!(Hello);

#[cfg(test)]
mod tests {
    use super::{split_once, Hello};
    use wafka_guest::{testing, Config, Error, Plugin};

    fn hello(pairs: &[(&str, &str)]) -> Hello {
        let pairs = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Hello::init(Config::new(pairs)).expect("init")
    }

    /// Against the SDK's fake host: what the plugin publishes, and what it does when the host
    /// refuses.
    #[test]
    fn publishes_keyed_lines_and_fails_an_event_the_host_refuses() {
        testing::reset();
        let mut p = hello(&[("topic", "greetings"), ("key-delimiter", ":")]);
        p.handle(b"alice:hello").unwrap();
        p.handle(b"no delimiter").unwrap();
        let published = testing::published();
        assert_eq!(published.len(), 2);
        assert_eq!(published[0].topic, "greetings");
        assert_eq!(published[0].key.as_deref(), Some(&b"alice"[..]));
        assert_eq!(published[0].value, b"hello");
        assert_eq!(
            published[0].headers,
            [("source".to_string(), Some(b"hello".to_vec()))]
        );
        assert_eq!(published[1].key, None);

        testing::refuse_topic("greetings", Error::NotAuthorized("greetings".into()));
        let e = p.handle(b"bob:hi").unwrap_err();
        assert_eq!(e.message(), "not authorized: greetings");
    }

    #[test]
    fn splits_at_the_first_delimiter() {
        assert_eq!(
            split_once(b"k::v::w", b"::"),
            (Some(&b"k"[..]), &b"v::w"[..])
        );
        assert_eq!(split_once(b"::v", b"::"), (Some(&b""[..]), &b"v"[..]));
        assert_eq!(split_once(b"k::", b"::"), (Some(&b"k"[..]), &b""[..]));
        assert_eq!(split_once(b"kv", b"::"), (None, &b"kv"[..]));
        assert_eq!(split_once(b":", b"::"), (None, &b":"[..]));
    }
}
