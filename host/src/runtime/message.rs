//! A guest's `message` as the host reads it: lifted as handles into guest memory, borrowed in
//! place for the producer, or copied once for the capture sink.
//!
//! Owns the lifting types, [`Outgoing`] (what the sinks read a record through, wherever its
//! bytes are: wafka's `publish` lifts them in guest memory, wasi:messaging's `send` hands over
//! bytes the host holds) and [`CapturedRecord`], the owned form. It must not decide anything
//! about a record (see `state::ProducerCtx::admit` and the sinks).

use std::borrow::Cow;

use wafka_producer::{Header, Record};
use wasmtime::component::{ComponentType, Lift, WasmList, WasmStr};
use wasmtime::StoreContextMut;

use crate::runtime::state::PluginState;

/// `wafka:producer/types.header`, lifted without copying out of guest memory.
#[derive(ComponentType, Lift)]
#[component(record)]
pub(crate) struct GuestHeader {
    key: WasmStr,
    value: Option<WasmList<u8>>,
}

/// `wafka:producer/types.message`, lifted without copying out of guest memory.
#[derive(ComponentType, Lift)]
#[component(record)]
pub(crate) struct GuestMessage {
    pub(crate) topic: WasmStr,
    key: Option<WasmList<u8>>,
    value: WasmList<u8>,
    headers: WasmList<GuestHeader>,
    pub(crate) partition: Option<i32>,
}

/// A record on its way to a sink. The sinks are generic over it, so each kind of record gets
/// its own copy of the same checks: wafka's [`GuestMessage`] path costs what it did before.
pub(crate) trait Outgoing: Send + Sync + 'static {
    /// The headers once lifted (nothing to lift for bytes the host already holds).
    type Headers: Send;

    /// The destination topic, borrowed where possible.
    fn topic<'a>(
        &'a self,
        store: &'a StoreContextMut<'_, PluginState>,
    ) -> wasmtime::Result<Cow<'a, str>>;

    /// How many headers the record has (known without lifting them).
    fn header_count(&self) -> usize;

    /// An explicit partition, if the record names one.
    fn partition(&self) -> Option<i32>;

    /// The headers, lifted while the record's bytes stay within `limit`: `Ok(Err(at_least))`
    /// once they would not.
    fn lift_headers(
        &self,
        store: &mut StoreContextMut<'_, PluginState>,
        limit: usize,
    ) -> wasmtime::Result<Result<Self::Headers, usize>>;

    /// The record's parts, borrowed for as long as the store is not used.
    fn borrow<'a>(
        &'a self,
        store: &'a StoreContextMut<'_, PluginState>,
        headers: &'a Self::Headers,
    ) -> wasmtime::Result<Borrowed<'a>>;
}

impl Outgoing for GuestMessage {
    type Headers = Vec<GuestHeader>;

    fn topic<'a>(
        &'a self,
        store: &'a StoreContextMut<'_, PluginState>,
    ) -> wasmtime::Result<Cow<'a, str>> {
        self.topic.to_str(store)
    }

    fn header_count(&self) -> usize {
        self.headers.len()
    }

    fn partition(&self) -> Option<i32> {
        self.partition
    }

    fn lift_headers(
        &self,
        store: &mut StoreContextMut<'_, PluginState>,
        limit: usize,
    ) -> wasmtime::Result<Result<Vec<GuestHeader>, usize>> {
        GuestMessage::lift_headers(self, store, limit)
    }

    fn borrow<'a>(
        &'a self,
        store: &'a StoreContextMut<'_, PluginState>,
        headers: &'a Vec<GuestHeader>,
    ) -> wasmtime::Result<Borrowed<'a>> {
        Borrowed::new(store, self, headers)
    }
}

impl GuestMessage {
    /// The headers' handles, lifted one by one while the message's bytes stay within
    /// `limit`: `Ok(Err(at_least))` once they would not. Nothing is copied, but wasmtime
    /// charges its hostcall fuel (set per instance, `plugin.rs`) for every byte a lifted string or list
    /// spans, so headers that all point at one large buffer must be refused before they
    /// exhaust it (a trap) rather than after.
    pub(crate) fn lift_headers(
        &self,
        store: &mut StoreContextMut<'_, PluginState>,
        limit: usize,
    ) -> wasmtime::Result<Result<Vec<GuestHeader>, usize>> {
        if self.headers.len() == 0 {
            // Key and value alone: the sink checks their size before copying them.
            return Ok(Ok(Vec::new()));
        }
        let mut size = self.topic.to_str(&*store)?.len()
            + self.key.as_ref().map_or(0, WasmList::len)
            + self.value.len();
        let mut headers = Vec::with_capacity(self.headers.len());
        for i in 0..self.headers.len() {
            let Some(h) = self.headers.get(&mut *store, i) else {
                break;
            };
            let h = h?;
            size += h.key.to_str(&*store)?.len() + h.value.as_ref().map_or(0, WasmList::len);
            if size > limit {
                return Ok(Err(size));
            }
            headers.push(h);
        }
        Ok(Ok(headers))
    }
}

/// A message's parts, borrowed from guest memory for as long as the store is not used.
pub(crate) struct Borrowed<'a> {
    pub(crate) topic: Cow<'a, str>,
    key: Option<&'a [u8]>,
    value: &'a [u8],
    header_keys: Vec<Cow<'a, str>>,
    header_values: Vec<Option<&'a [u8]>>,
}

impl<'a> Borrowed<'a> {
    /// Parts the host holds: a null key, string headers.
    pub(crate) fn held(topic: &'a str, value: &'a [u8], headers: &'a [(String, String)]) -> Self {
        Borrowed {
            topic: Cow::Borrowed(topic),
            key: None,
            value,
            header_keys: headers
                .iter()
                .map(|(k, _)| Cow::Borrowed(k.as_str()))
                .collect(),
            header_values: headers.iter().map(|(_, v)| Some(v.as_bytes())).collect(),
        }
    }

    pub(crate) fn new(
        store: &'a StoreContextMut<'_, PluginState>,
        msg: &GuestMessage,
        headers: &[GuestHeader],
    ) -> wasmtime::Result<Self> {
        let mut header_keys = Vec::with_capacity(headers.len());
        for h in headers {
            header_keys.push(h.key.to_str(store)?);
        }
        Ok(Borrowed {
            topic: msg.topic.to_str(store)?,
            key: msg.key.as_ref().map(|k| k.as_le_slice(store)),
            value: msg.value.as_le_slice(store),
            header_keys,
            header_values: headers
                .iter()
                .map(|h| h.value.as_ref().map(|v| v.as_le_slice(store)))
                .collect(),
        })
    }

    /// The headers as the producer takes them.
    pub(crate) fn headers(&self) -> Vec<Header<'_>> {
        self.header_keys
            .iter()
            .zip(&self.header_values)
            .map(|(k, v)| Header { key: k, value: *v })
            .collect()
    }

    /// The record, pointing into guest memory.
    pub(crate) fn record<'r>(
        &'r self,
        headers: &'r [Header<'r>],
        partition: Option<i32>,
    ) -> Record<'r> {
        Record {
            topic: &self.topic,
            partition,
            key: self.key,
            value: Some(self.value),
            headers,
            timestamp: None,
        }
    }
}

/// One record a plugin published in test mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedRecord {
    /// Topic.
    pub topic: String,
    /// Partition it would go to.
    pub partition: i32,
    /// Offset within the captured partition.
    pub offset: i64,
    /// Key (`None` for a null key).
    pub key: Option<Vec<u8>>,
    /// Value.
    pub value: Vec<u8>,
    /// Headers in order.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl CapturedRecord {
    /// The one copy of a record out of guest memory.
    pub(crate) fn copy(record: &Record<'_>, partition: i32, offset: i64) -> Self {
        CapturedRecord {
            topic: record.topic.to_string(),
            partition,
            offset,
            key: record.key.map(<[u8]>::to_vec),
            value: record.value.unwrap_or_default().to_vec(),
            headers: record
                .headers
                .iter()
                .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                .collect(),
        }
    }
}
