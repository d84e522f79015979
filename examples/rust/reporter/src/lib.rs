//! `reporter`: publishes every event and prints the delivery reports it gets back — the three
//! ways of sending from one plugin: wait for the ack (autoflush on), fire and forget, and
//! asynchronous reports.
//!
//! Configuration:
//!
//! * `topic` — the destination topic (default `reports`);
//! * `autoflush=true` — `init` switches autoflush on (and fails with the host's error message
//!   if the host fixed the mode).
//!
//! `handle` publishes the event as the value (null key), prints `receipt partition=P offset=O`
//! when the broker had already acknowledged it (autoflush on), then takes up to 100 delivery
//! reports and prints one line per report: `report id=I topic=T partition=P offset=O` or
//! `report id=I error=MESSAGE`.
//!
//! `finish` (after the last event) flushes and prints the reports still to come, so that with
//! autoflush off every record's report is printed, the last ones included.

use wafka_guest::{set_autoflush, take_reports, Config, Plugin, Record};

struct Reporter {
    topic: String,
}

impl Plugin for Reporter {
    fn init(config: Config) -> wafka_guest::Result<Self> {
        if config.get("autoflush") == Some("true") {
            set_autoflush(true).map_err(|e| e.to_string())?;
        }
        Ok(Reporter {
            topic: config.get_or("topic", "reports").to_string(),
        })
    }

    fn handle(&mut self, event: &[u8]) -> wafka_guest::Result<()> {
        let receipt = Record::new(self.topic.as_str(), event).publish()?;
        if receipt.is_acknowledged() {
            println!(
                "receipt partition={} offset={}",
                receipt.partition, receipt.offset
            );
        }
        print_reports();
        Ok(())
    }

    fn finish(&mut self) -> wafka_guest::Result<()> {
        // A failed record shows in its report: flush's own error adds nothing here.
        let _ = wafka_guest::flush();
        print_reports();
        Ok(())
    }
}

/// Takes up to 100 delivery reports and prints one line each.
fn print_reports() {
    for report in take_reports(100) {
        match &report.outcome {
            Ok(offset) => println!(
                "report id={} topic={} partition={} offset={offset}",
                report.id, report.topic, report.partition
            ),
            Err(e) => println!("report id={} error={e}", report.id),
        }
    }
}

wafka_guest::export_plugin!(Reporter);
