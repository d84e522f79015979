//! The plugin trait and the state the SDK keeps for it.

use std::cell::RefCell;

use crate::{Config, Failure};

/// A wafka plugin: state built by `init` from the configuration, then fed one event at a time.
///
/// Register the implementing type with [`export_plugin!`](crate::export_plugin). Errors are
/// one-line messages: the host logs them and counts the event as failed, then goes on with the
/// next event. A panic traps the instance instead, which the host reports as a crash.
pub trait Plugin: Sized + 'static {
    /// Builds the plugin from the host's `--config KEY=VALUE` pairs. Called once, before any
    /// event; an error makes the host give up on the plugin.
    fn init(config: Config) -> Result<Self, Failure>;

    /// Handles one event: one line of input, without the newline.
    fn handle(&mut self, event: &[u8]) -> Result<(), Failure>;

    /// Finishes the plugin's work, once, after the last event: the host calls it when the
    /// input ends (`wafka run`, `wafka test`) and, in `wafka serve`, on the instances idle at
    /// a drain or a reload. Publishing still works: flush here, and drain the last delivery
    /// reports. By default it does nothing.
    fn finish(&mut self) -> Result<(), Failure> {
        Ok(())
    }
}

/// [`Plugin`] without its constructor, so the state can be stored without knowing its type.
trait Handler {
    fn handle(&mut self, event: &[u8]) -> Result<(), String>;
    fn finish(&mut self) -> Result<(), String>;
}

impl<P: Plugin> Handler for P {
    fn handle(&mut self, event: &[u8]) -> Result<(), String> {
        Plugin::handle(self, event).map_err(String::from)
    }

    fn finish(&mut self) -> Result<(), String> {
        Plugin::finish(self).map_err(String::from)
    }
}

thread_local! {
    /// The plugin built by the last successful `init`. Components are single-threaded and the
    /// host never re-enters an export, so the `RefCell` is never contended.
    static PLUGIN: RefCell<Option<Box<dyn Handler>>> = const { RefCell::new(None) };
}

/// The `init` export: builds `P` and keeps it.
#[doc(hidden)]
pub fn init<P: Plugin>(config: Vec<(String, String)>) -> Result<(), String> {
    // Drop any previous state first, so a failing `init` leaves no plugin behind.
    PLUGIN.with(|cell| cell.borrow_mut().take());
    let plugin = P::init(Config::new(config)).map_err(String::from)?;
    PLUGIN.with(|cell| *cell.borrow_mut() = Some(Box::new(plugin)));
    Ok(())
}

/// The `handle` export: hands `event` to the plugin kept by `init`.
#[doc(hidden)]
pub fn handle(event: &[u8]) -> Result<(), String> {
    PLUGIN.with(|cell| match cell.borrow_mut().as_mut() {
        Some(plugin) => plugin.handle(event),
        None => Err("plugin is not initialized (init was not called or failed)".to_string()),
    })
}

/// The `finish` export: lets the plugin kept by `init` finish (nothing without one).
#[doc(hidden)]
pub fn finish() -> Result<(), String> {
    PLUGIN.with(|cell| match cell.borrow_mut().as_mut() {
        Some(plugin) => plugin.finish(),
        None => Ok(()),
    })
}

#[cfg(test)]
mod tests {
    use super::{handle, init, Plugin};
    use crate::{fail, Config, Failure};

    struct Counter {
        seen: usize,
        limit: usize,
    }

    impl Plugin for Counter {
        fn init(config: Config) -> Result<Self, Failure> {
            Ok(Counter {
                seen: 0,
                limit: config.parse_or("limit", 2)?,
            })
        }

        fn handle(&mut self, _event: &[u8]) -> Result<(), Failure> {
            self.seen += 1;
            if self.seen > self.limit {
                fail!("event {} over the limit", self.seen);
            }
            Ok(())
        }
    }

    #[test]
    fn state_lives_between_events() {
        assert!(handle(b"x").unwrap_err().contains("not initialized"));
        init::<Counter>(vec![]).unwrap();
        assert_eq!(handle(b"a"), Ok(()));
        assert_eq!(handle(b"b"), Ok(()));
        assert_eq!(handle(b"c"), Err("event 3 over the limit".to_string()));
        // A failed init leaves no plugin behind.
        let bad = vec![("limit".to_string(), "x".to_string())];
        assert!(init::<Counter>(bad).is_err());
        assert!(handle(b"x").unwrap_err().contains("not initialized"));
    }
}
