//! `batcher`: publishes every event with autoflush off, flushes every N records, and sends the
//! records that were not delivered to a dead-letter topic.
//!
//! Configuration:
//!
//! * `topic` — the destination topic (required);
//! * `batch` — flush after this many records (default 100, from 1 to 2048: the host keeps at
//!   most 4,096 undrained reports, and a batch's reports and its dead letters' must fit);
//! * `dead-letter` — the dead-letter topic (default `<topic>.dlq`).
//!
//! `init` switches autoflush off. Where the host fixed the mode (`wafka run`'s default
//! `--autoflush off` does) the switch is refused and the batcher goes on: under `off` that is
//! the mode it wants; under `on` each publish waits for its ack and a failed record fails its
//! event instead.
//!
//! `handle` publishes the event as the value (null key, no headers) and keeps the value until
//! the record's delivery report comes. After every `batch` records it calls `flush` (a failed
//! flush is not the event's error: the reports say which records failed) and drains the
//! delivery reports until none is left. A record that was not delivered is published to the
//! dead-letter topic with its value, null key and the headers `error` (the error's one-line
//! text, as the `reporter` example prints it) and `topic` (the record's topic), and the plugin
//! prints `dead-letter id=I topic=T error=MESSAGE`. A dead letter that fails too is printed as
//! `lost id=I topic=T error=MESSAGE` (the host also counts it as refused or failed, and
//! `wafka run` then exits non-zero). An event refused at `publish` fails with the error's text.
//!
//! `finish` flushes and drains the same way, then flushes and drains once more for the dead
//! letters. So the values kept are those of one batch: at most `batch` records.

use std::collections::HashMap;

use wafka_guest::{set_autoflush, take_reports, Config, Error, Plugin, Record};

struct Batcher {
    topic: String,
    dead_letter: String,
    batch: usize,
    /// Published since the last flush.
    unflushed: usize,
    /// The values of records whose delivery report has not come yet, by record id.
    pending: HashMap<u64, Vec<u8>>,
}

impl Plugin for Batcher {
    fn init(config: Config) -> wafka_guest::Result<Self> {
        config.check_known(&["topic", "batch", "dead-letter"])?;
        let topic = config.require("topic")?.to_string();
        let batch = match config.get("batch") {
            None => 100,
            Some(n) => match n.parse::<usize>() {
                Ok(n) if (1..=2048).contains(&n) => n,
                _ => {
                    wafka_guest::fail!("config `batch` must be a number from 1 to 2048, not `{n}`")
                }
            },
        };
        let dead_letter = config
            .get_or("dead-letter", &format!("{topic}.dlq"))
            .to_string();
        match set_autoflush(false) {
            Ok(()) | Err(Error::NotAllowed(_)) => {} // the host fixed the mode: see above
            Err(e) => return Err(e.into()),
        }
        Ok(Batcher {
            topic,
            dead_letter,
            batch,
            unflushed: 0,
            pending: HashMap::new(),
        })
    }

    fn handle(&mut self, event: &[u8]) -> wafka_guest::Result<()> {
        let receipt = Record::new(self.topic.as_str(), event).publish()?;
        self.pending.insert(receipt.id, event.to_vec());
        self.unflushed += 1;
        if self.unflushed == self.batch {
            self.settle();
        }
        Ok(())
    }

    fn finish(&mut self) -> wafka_guest::Result<()> {
        self.settle(); // the last records
        self.settle(); // their dead letters
        Ok(())
    }
}

impl Batcher {
    /// Flushes, then drains every delivery report.
    fn settle(&mut self) {
        // A failed record shows in its report: flush's own error adds nothing here.
        let _ = wafka_guest::flush();
        self.unflushed = 0;
        loop {
            let reports = take_reports(100);
            if reports.is_empty() {
                break;
            }
            for report in reports {
                let value = self.pending.remove(&report.id);
                match (report.outcome, value) {
                    (Ok(_), _) => {}
                    (Err(e), Some(value)) => self.dead_letter(report.id, &report.topic, value, e),
                    // Not one of ours: a dead letter, which has no dead letter of its own.
                    (Err(e), None) => {
                        println!("lost id={} topic={} error={e}", report.id, report.topic)
                    }
                }
            }
        }
    }

    /// Publishes the value of record `id`, which `topic` did not take, to the dead-letter topic.
    fn dead_letter(&mut self, id: u64, topic: &str, value: Vec<u8>, error: Error) {
        let published = Record::new(self.dead_letter.as_str(), value)
            .header("error", error.to_string())
            .header("topic", topic)
            .publish();
        match published {
            Ok(_) => println!("dead-letter id={id} topic={topic} error={error}"),
            Err(refused) => println!(
                "lost id={id} topic={topic} error={error} (dead letter refused: {refused})"
            ),
        }
    }
}

wafka_guest::export_plugin!(Batcher);

#[cfg(test)]
mod tests {
    use super::Batcher;
    use wafka_guest::{testing, Config, Plugin};

    fn config(pairs: &[(&str, &str)]) -> Config {
        pairs.iter().copied().collect()
    }

    #[test]
    fn keeps_one_batch_of_values_and_drains_at_finish() {
        testing::reset();
        let mut b = Batcher::init(config(&[("topic", "t"), ("batch", "3")])).unwrap();
        for n in 0..7 {
            b.handle(format!("e{n}").as_bytes()).unwrap();
            assert_eq!(b.pending.len(), (n + 1) % 3, "after event {n}");
        }
        b.finish().unwrap();
        assert!(b.pending.is_empty());
        let values: Vec<_> = testing::published().into_iter().map(|p| p.value).collect();
        assert_eq!(values.len(), 7);
        assert_eq!(values[6], b"e6");
    }

    #[test]
    fn config_is_checked() {
        testing::reset();
        let err = |pairs: &[(&str, &str)]| Batcher::init(config(pairs)).err().unwrap().to_string();
        assert_eq!(err(&[]), "missing config `topic`");
        assert_eq!(
            err(&[("topic", "t"), ("batch", "0")]),
            "config `batch` must be a number from 1 to 2048, not `0`"
        );
        assert!(err(&[("topic", "t"), ("typo", "1")]).starts_with("unknown config `typo`"));
        // A host that fixed autoflush off is what the batcher wants: it goes on.
        testing::fix_autoflush(Some(false));
        let b = Batcher::init(config(&[("topic", "t")])).unwrap();
        assert_eq!((b.batch, b.dead_letter.as_str()), (100, "t.dlq"));
    }
}
