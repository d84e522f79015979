//! `router`: routes JSON events to a topic chosen by one of their fields.
//!
//! Each event must be a JSON object. Configuration:
//!
//! * `field` — the field that picks the topic (default `type`);
//! * `prefix` — prepended to the field's value to make the topic (default `events.`).
//!
//! So with the defaults, `{"type":"click","id":42}` goes to `events.click`. The field's value
//! must be a non-empty string or a number (used as written, e.g. `events.7`). The record's key
//! is the event's `id` field: a string as is, any other value as its JSON text, none (Kafka's
//! null) when `id` is absent or `null`. The value is the event's bytes, unchanged.
//!
//! An event that is not a JSON object, or lacks a usable routing field, fails with a one-line
//! message; the host counts it as an error and goes on with the next event.

use serde_json::{Map, Value};
use wafka_guest::{Config, Plugin, Record};

/// The plugin's settings.
struct Router {
    field: String,
    prefix: String,
}

impl Plugin for Router {
    fn init(config: Config) -> wafka_guest::Result<Self> {
        let field = config.get_or("field", "type");
        if field.is_empty() {
            wafka_guest::fail!("config `field` must not be empty");
        }
        Ok(Router {
            field: field.to_string(),
            prefix: config.get_or("prefix", "events.").to_string(),
        })
    }

    fn handle(&mut self, event: &[u8]) -> wafka_guest::Result<()> {
        let (topic, key) = self.route(event)?;
        Record::new(topic, event).maybe_key(key).publish()?;
        Ok(())
    }
}

impl Router {
    /// The topic and key for `event`, or why it cannot be routed.
    fn route(&self, event: &[u8]) -> Result<(String, Option<String>), String> {
        let object: Map<String, Value> = match serde_json::from_slice(event) {
            Ok(Value::Object(object)) => object,
            Ok(other) => return Err(format!("event is a JSON {}, not an object", kind(&other))),
            Err(e) => return Err(format!("event is not JSON: {e}")),
        };
        let suffix = match object.get(&self.field) {
            None => return Err(format!("event has no field `{}`", self.field)),
            Some(Value::String(s)) if s.is_empty() => {
                return Err(format!("field `{}` is empty", self.field))
            }
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(other) => {
                return Err(format!(
                    "field `{}` is a JSON {}, not a string or number",
                    self.field,
                    kind(other)
                ))
            }
        };
        let key = match object.get("id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
        };
        Ok((format!("{}{suffix}", self.prefix), key))
    }
}

/// The JSON type of `value`, for messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

wafka_guest::export_plugin!(Router);

#[cfg(test)]
mod tests {
    use super::Router;
    use wafka_guest::{Config, Plugin};

    fn router(pairs: &[(&str, &str)]) -> Router {
        Router::init(pairs.iter().copied().collect::<Config>()).unwrap()
    }

    #[test]
    fn routes_by_field() {
        let r = router(&[]);
        assert_eq!(
            r.route(br#"{"type":"click","id":"u1"}"#),
            Ok(("events.click".to_string(), Some("u1".to_string())))
        );
        assert_eq!(
            r.route(br#"{"type":7,"id":42}"#),
            Ok(("events.7".to_string(), Some("42".to_string())))
        );
        assert_eq!(
            r.route(br#"{"type":"a","id":null}"#),
            Ok(("events.a".to_string(), None))
        );
        let r = router(&[("field", "kind"), ("prefix", "")]);
        assert_eq!(r.route(br#"{"kind":"x"}"#), Ok(("x".to_string(), None)));
    }

    #[test]
    fn rejects_unroutable_events() {
        let r = router(&[]);
        let err = |event: &[u8]| r.route(event).unwrap_err();
        assert!(err(b"hello").starts_with("event is not JSON: expected value at line 1"));
        assert_eq!(err(b"[1]"), "event is a JSON array, not an object");
        assert_eq!(err(br#"{"id":1}"#), "event has no field `type`");
        assert_eq!(err(br#"{"type":""}"#), "field `type` is empty");
        assert_eq!(
            err(br#"{"type":{"a":1}}"#),
            "field `type` is a JSON object, not a string or number"
        );
        assert!(!err(b"{\"type\":\n").contains('\n'));
    }
}
