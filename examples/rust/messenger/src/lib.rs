//! `messenger`: a plugin written against the wasi:messaging proposal only (the `messaging-core`
//! world of `wasi:messaging@0.2.0-draft`, vendored in `wit/wasi-messaging`), with nothing of
//! wafka in it: any host of that world can run it.
//!
//! Each incoming message's data is a line `TOPIC TEXT`. The plugin sends `TEXT` to `TOPIC` as
//! a new message with the content-type `text/plain; charset=utf-8` and the metadata
//! `source=messenger`, `seq=N` (the messages this instance sent before, counting from 0) and
//! `bytes=N` (the data's length). `TOPIC *N` sends N bytes of `x` with the content-type
//! `application/octet-stream` instead. The incoming message's own metadata, content-type and
//! topic (as `received-on`), where it has them, are carried over. A line without a space, or
//! a send that fails, fails the incoming message with the proposal's `error` (the send's own
//! error, as the host gave it).
//!
//! The client is connected on the first message and kept; the line `!disconnect` disconnects
//! it (which reports what the host says about the messages sent through it), and the next
//! message connects a new one. A line starting with `!keep` keeps the incoming message itself
//! for the instance's lifetime, sending nothing (a plugin that holds on to what it is given).

use std::cell::{Cell, RefCell};

wit_bindgen::generate!({
    world: "messaging-core",
    path: "../../../wit/wasi-messaging",
});

use exports::wasi::messaging::incoming_handler::Guest;
use wasi::messaging::producer;
use wasi::messaging::types::{Client, Error, Message};

thread_local! {
    static CLIENT: RefCell<Option<Client>> = const { RefCell::new(None) };
    static SENT: Cell<u64> = const { Cell::new(0) };
    static KEPT: RefCell<Vec<Message>> = const { RefCell::new(Vec::new()) };
}

struct Messenger;

impl Guest for Messenger {
    fn handle(message: Message) -> Result<(), Error> {
        let line = message.data();
        let line = String::from_utf8_lossy(&line);
        if line.starts_with("!keep") {
            KEPT.with(|kept| kept.borrow_mut().push(message));
            return Ok(());
        }
        if line == "!disconnect" {
            return match CLIENT.with(|c| c.borrow_mut().take()) {
                Some(client) => client.disconnect(),
                None => Ok(()),
            };
        }
        let Some((topic, text)) = line.split_once(' ') else {
            return Err(Error::Other(format!(
                "expected `TOPIC TEXT`, got `{line}` (no space)"
            )));
        };
        let out = match text.strip_prefix('*').map(str::parse::<usize>) {
            Some(Ok(n)) => {
                let m = Message::new(&vec![b'x'; n]);
                m.set_content_type("application/octet-stream");
                m
            }
            _ => {
                let m = Message::new(text.as_bytes());
                m.set_content_type("text/plain; charset=utf-8");
                m
            }
        };
        let seq = SENT.get();
        // Metadata through every setter: a list, an overwrite, an addition and a removal.
        out.set_metadata(&[
            ("source".to_string(), "unset".to_string()),
            ("draft".to_string(), "0.2.0".to_string()),
        ]);
        out.add_metadata("source", "messenger");
        out.add_metadata("seq", &seq.to_string());
        out.remove_metadata("draft");
        out.add_metadata("bytes", &out.data().len().to_string());
        for (k, v) in message.metadata().unwrap_or_default() {
            out.add_metadata(&k, &v);
        }
        if let Some(ct) = message.content_type() {
            out.set_content_type(&ct);
        }
        if let Some(t) = message.topic() {
            out.add_metadata("received-on", &t);
        }
        CLIENT.with(|client| {
            let mut client = client.borrow_mut();
            if client.is_none() {
                *client = Some(Client::connect("default")?);
            }
            producer::send(client.as_ref().expect("connected"), topic, out)
        })?;
        SENT.set(seq + 1);
        Ok(())
    }
}

export!(Messenger);
