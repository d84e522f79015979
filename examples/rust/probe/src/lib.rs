//! `probe`: a plugin for the host's tests, driven by one command per event.
//!
//! An event is UTF-8 text: a command and its arguments, separated by spaces. A command that
//! goes as asked returns `Ok(())`; otherwise `handle` returns an error whose message says why
//! (always one line). The commands:
//!
//! | command | what it does |
//! | --- | --- |
//! | `publish TOPIC KEY VALUE [PARTITION]` | publishes one record; KEY `-` is Kafka's null key; without PARTITION the partitioner chooses. Fails with the producer error's message (e.g. `not authorized: …`). |
//! | `try-publish TOPIC VALUE` | publishes one record, null key, and succeeds whatever `publish` answered (a refusal goes to stderr). |
//! | `publish-n TOPIC N` | publishes N records with null keys and the values `0`, `1`, … `N-1` (decimal text). Fails at the first error with `record I: <error>`. |
//! | `publish-size TOPIC BYTES` | publishes one record, null key, whose value is BYTES bytes of `x` (for size limits and quotas). Fails with the error's message. |
//! | `bench TOPIC N SIZE` | publishes N records with null keys whose values are SIZE bytes of `v`, for the host's benchmark: the record is built once before the loop, so each iteration is only the `publish` call. Fails at the first error with `record I: <error>`. |
//! | `flush` | flushes; fails with the error's message. |
//! | `autoflush on\|off` | switches autoflush; fails with the error's message if the host refuses (`not allowed: …`). |
//! | `receipt TOPIC KEY VALUE` | publishes like `publish` and fails unless the receipt has an offset ≥ 0, i.e. the broker acknowledged the record before `publish` returned (only with autoflush on); the message then shows the receipt: `receipt not acknowledged: id=0 partition=1 offset=-1`. |
//! | `reports N` | takes up to N+1 delivery reports and fails unless exactly N came back, all delivered; the message lists what came back. |
//! | `noop` | does nothing and succeeds (the cost of a `handle` call). |
//! | `trap` | panics: the instance traps. |
//! | `loop` | spins forever without calling the host: only an interruption (epoch, fuel) stops it. |
//! | `grow MB` | allocates MB mebibytes in 1 MiB blocks and writes to every byte, then frees them and succeeds; an allocation beyond the host's memory limit aborts (a trap). |
//! | `print TEXT` | writes TEXT (the rest of the event, spaces included) as one line to stdout and to stderr. |
//! | `env` | succeeds only if the plugin sees no environment variable and `std::fs::read_dir("/")` fails; otherwise fails listing the variables' names and what `read_dir` gave. |
//! | `sleep MS` | sleeps MS milliseconds (`std::thread::sleep`: a WASI `poll`, which epoch interruption does not stop), then succeeds. |
//! | `publish-loop TOPIC` | publishes to TOPIC forever, ignoring every error: a loop of host calls. |
//! | `recurse N` | recurses N levels deep with a 1 KiB frame each, then succeeds (a large N overflows the stack). |
//! | `aliased-headers TOPIC N KIB` | publishes one record whose N headers all point at the same KIB KiB buffer (through the raw import: the SDK would copy each). Fails with the error case's name, e.g. `record-too-large(2097152000)`. |
//! | `topics PREFIX N` | publishes one record to each of N topics `PREFIX-0` … `PREFIX-(N-1)`, going on past refusals. Fails if any was refused, with `R of N refused; first: record I: <error>; last: record J: <error>`. |
//! | `connect ADDR` | opens a TCP connection to ADDR (`host:port`); succeeds if it connected, fails with the error. |
//! | `udp ADDR` | binds a UDP socket and sends one datagram to ADDR; succeeds if it was sent, fails with the error. |
//! | `read-file PATH` | reads the file at PATH; succeeds if it could, fails with the error. |
//! | `stdout KIB` | writes KIB lines of 1 KiB each to stdout, then succeeds. |
//! | `stderr KIB` | writes KIB lines of 1 KiB each to stderr, then succeeds. |
//!
//! Configuration: with `publish-init=TOPIC`, `init` first publishes one record (value `init`)
//! to TOPIC; with `sleep-init=MS`, it then sleeps MS milliseconds; with `fail-init=MESSAGE`, it
//! then fails with MESSAGE (to test the host's handling of a failed `init`). At `finish`, with
//! `sleep-finish=MS` it first sleeps MS milliseconds, with `publish-finish=TOPIC` it publishes
//! one record (value `finish`) to TOPIC, and with `fail-finish=MESSAGE` it then fails with
//! MESSAGE. Every other setting is ignored.

use std::hint::black_box;

use wafka_guest::{Config, Plugin, Record};

/// The probe keeps no state between events, only what `finish` is to do.
struct Probe {
    /// `publish-finish`: the topic `finish` publishes one record (value `finish`) to.
    publish_finish: Option<String>,
    /// `fail-finish`: the message `finish` fails with.
    fail_finish: Option<String>,
    /// `sleep-finish`: how long `finish` sleeps first, in ms.
    sleep_finish: u64,
}

impl Plugin for Probe {
    fn init(config: Config) -> wafka_guest::Result<Self> {
        if let Some(topic) = config.get("publish-init") {
            Record::new(topic, "init").publish()?;
        }
        if let Some(ms) = config.get("sleep-init") {
            std::thread::sleep(std::time::Duration::from_millis(number(ms)?));
        }
        match config.get("fail-init") {
            Some(message) => Err(message.into()),
            None => Ok(Probe {
                publish_finish: config.get("publish-finish").map(str::to_string),
                fail_finish: config.get("fail-finish").map(str::to_string),
                sleep_finish: config
                    .get("sleep-finish")
                    .map(number::<u64>)
                    .transpose()?
                    .unwrap_or(0),
            }),
        }
    }

    fn finish(&mut self) -> wafka_guest::Result<()> {
        std::thread::sleep(std::time::Duration::from_millis(self.sleep_finish));
        if let Some(topic) = &self.publish_finish {
            Record::new(topic.as_str(), "finish").publish()?;
        }
        match &self.fail_finish {
            Some(message) => Err(message.as_str().into()),
            None => Ok(()),
        }
    }

    fn handle(&mut self, event: &[u8]) -> wafka_guest::Result<()> {
        Ok(dispatch(event)?)
    }
}

/// Runs one event's command (the table above).
fn dispatch(event: &[u8]) -> Result<(), String> {
    let line = std::str::from_utf8(event).map_err(|e| format!("event is not UTF-8: {e}"))?;
    let (command, rest) = line.split_once(' ').unwrap_or((line, ""));
    let args: Vec<&str> = rest.split_ascii_whitespace().collect();
    match (command, args.as_slice()) {
        ("publish", [topic, key, value]) => publish(topic, key, value, None),
        ("publish", [topic, key, value, partition]) => {
            publish(topic, key, value, Some(number(partition)?))
        }
        ("try-publish", [topic, value]) => {
            if let Err(e) = Record::new(*topic, *value).publish() {
                eprintln!("probe: publish refused: {e}");
            }
            Ok(())
        }
        ("publish-n", [topic, n]) => publish_n(topic, number(n)?),
        ("publish-size", [topic, bytes]) => {
            Record::new(*topic, vec![b'x'; number(bytes)?]).publish()?;
            Ok(())
        }
        ("bench", [topic, n, size]) => bench(topic, number(n)?, number(size)?),
        ("flush", []) => Ok(wafka_guest::flush()?),
        ("autoflush", ["on"]) => Ok(wafka_guest::set_autoflush(true)?),
        ("autoflush", ["off"]) => Ok(wafka_guest::set_autoflush(false)?),
        ("receipt", [topic, key, value]) => receipt(topic, key, value),
        ("reports", [n]) => reports(number(n)?),
        ("noop", []) => Ok(()),
        ("trap", []) => panic!("probe: trap requested"),
        ("loop", []) => spin(),
        ("grow", [mib]) => grow(number(mib)?),
        ("print", _) => {
            println!("{rest}");
            eprintln!("{rest}");
            Ok(())
        }
        ("env", []) => env(),
        ("sleep", [ms]) => {
            std::thread::sleep(std::time::Duration::from_millis(number(ms)?));
            Ok(())
        }
        ("publish-loop", [topic]) => loop {
            let _ = Record::new(*topic, "x").publish();
        },
        ("recurse", [n]) => {
            black_box(recurse(number(n)?));
            Ok(())
        }
        ("aliased-headers", [topic, n, kib]) => {
            raw::aliased_headers(topic, number(n)?, number(kib)?)
        }
        ("topics", [prefix, n]) => topics(prefix, number(n)?),
        ("connect", [addr]) => std::net::TcpStream::connect(addr)
            .map(drop)
            .map_err(|e| format!("cannot connect: {e}")),
        ("udp", [addr]) => std::net::UdpSocket::bind("0.0.0.0:0")
            .and_then(|s| s.send_to(b"probe", addr))
            .map(drop)
            .map_err(|e| format!("cannot send: {e}")),
        ("read-file", [path]) => std::fs::read(path)
            .map(drop)
            .map_err(|e| format!("cannot read: {e}")),
        ("stdout", [kib]) => {
            let line = "o".repeat(1023);
            for _ in 0..number::<u64>(kib)? {
                println!("{line}");
            }
            Ok(())
        }
        ("stderr", [kib]) => {
            let line = "e".repeat(1023);
            for _ in 0..number::<u64>(kib)? {
                eprintln!("{line}");
            }
            Ok(())
        }
        _ => Err(format!("unknown command or wrong arguments: {line:?}")),
    }
}

/// Parses a command's numeric argument.
fn number<T: std::str::FromStr>(word: &str) -> Result<T, String> {
    word.parse()
        .map_err(|_| format!("not a valid number: {word:?}"))
}

/// `-` is the null key.
fn record(topic: &str, key: &str, value: &str) -> Record {
    Record::new(topic, value).maybe_key((key != "-").then_some(key))
}

fn publish(topic: &str, key: &str, value: &str, partition: Option<i32>) -> Result<(), String> {
    let mut record = record(topic, key, value);
    if let Some(partition) = partition {
        record = record.partition(partition);
    }
    record.publish()?;
    Ok(())
}

fn publish_n(topic: &str, n: u64) -> Result<(), String> {
    for i in 0..n {
        Record::new(topic, i.to_string())
            .publish()
            .map_err(|e| format!("record {i}: {e}"))?;
    }
    Ok(())
}

fn topics(prefix: &str, n: u64) -> Result<(), String> {
    let (mut refused, mut first, mut last) = (0, None, None);
    for i in 0..n {
        if let Err(e) = Record::new(format!("{prefix}-{i}"), "t").publish() {
            refused += 1;
            let e = format!("record {i}: {e}");
            first.get_or_insert_with(|| e.clone());
            last = Some(e);
        }
    }
    match (first, last) {
        (Some(first), Some(last)) => Err(format!(
            "{refused} of {n} refused; first: {first}; last: {last}"
        )),
        _ => Ok(()),
    }
}

/// One record, built once, published `n` times: the loop does nothing but `publish`.
fn bench(topic: &str, n: u64, size: usize) -> Result<(), String> {
    let record = Record::new(topic, vec![b'v'; size]);
    for i in 0..n {
        record.publish().map_err(|e| format!("record {i}: {e}"))?;
    }
    Ok(())
}

fn receipt(topic: &str, key: &str, value: &str) -> Result<(), String> {
    let receipt = record(topic, key, value).publish()?;
    if receipt.is_acknowledged() {
        Ok(())
    } else {
        Err(format!("receipt not acknowledged: {receipt}"))
    }
}

fn reports(n: u32) -> Result<(), String> {
    let reports = wafka_guest::take_reports(n.saturating_add(1));
    if reports.len() == n as usize && reports.iter().all(|r| r.is_ok()) {
        return Ok(());
    }
    let listed: Vec<String> = reports.iter().map(ToString::to_string).collect();
    Err(format!(
        "expected {n} delivered reports, took {}: [{}]",
        reports.len(),
        listed.join("; ")
    ))
}

/// Spins forever without calling the host.
fn spin() -> ! {
    let mut i: u64 = 0;
    loop {
        i = black_box(i.wrapping_add(1));
    }
}

fn grow(mib: usize) -> Result<(), String> {
    const MIB: usize = 1 << 20;
    let mut blocks: Vec<Vec<u8>> = Vec::with_capacity(mib);
    for i in 0..mib {
        // A non-zero fill writes every byte (zeroed memory might be left untouched).
        blocks.push(vec![(i % 255) as u8 + 1; MIB]);
    }
    black_box(&blocks);
    Ok(())
}

/// Recursion with a 1 KiB frame per level.
fn recurse(n: u64) -> u64 {
    let frame = black_box([n as u8; 1024]);
    if n == 0 {
        return frame[0] as u64;
    }
    recurse(n - 1).wrapping_add(frame[(n % 1024) as usize] as u64)
}

fn env() -> Result<(), String> {
    let vars: Vec<String> = std::env::vars_os()
        .map(|(name, _)| name.to_string_lossy().into_owned())
        .collect();
    let read_dir = std::fs::read_dir("/").map(|entries| entries.count());
    if vars.is_empty() && read_dir.is_err() {
        return Ok(());
    }
    let read_dir = match read_dir {
        Ok(count) => format!("works ({count} entries)"),
        Err(e) => format!("fails ({e})"),
    };
    Err(format!(
        "{} environment variables [{}]; read_dir(\"/\") {read_dir}",
        vars.len(),
        vars.join(", ")
    ))
}

/// Calls the host's `publish` through the canonical ABI by hand, to send what the SDK's
/// bindings never would: many headers sharing one buffer.
mod raw {
    /// `wafka:producer/types.header` in guest memory: key (ptr, len), then an
    /// `option<list<u8>>` (discriminant, ptr, len).
    #[repr(C)]
    struct Header {
        key_ptr: *const u8,
        key_len: usize,
        has_value: u32,
        value_ptr: *const u8,
        value_len: usize,
    }

    /// Room for `result<receipt, produce-error>`, aligned for its 64-bit fields.
    #[repr(C, align(8))]
    struct Ret([u8; 64]);

    #[cfg(target_arch = "wasm32")]
    #[link(wasm_import_module = "wafka:producer/producer@0.1.0")]
    extern "C" {
        /// `publish: func(msg: message) -> result<receipt, produce-error>`, flattened: topic,
        /// key, value, headers, partition; the result through a pointer.
        #[link_name = "publish"]
        fn publish(
            topic: *const u8,
            topic_len: usize,
            has_key: u32,
            key: *const u8,
            key_len: usize,
            value: *const u8,
            value_len: usize,
            headers: *const Header,
            headers_len: usize,
            has_partition: u32,
            partition: i32,
            ret: *mut Ret,
        );
    }

    #[cfg(not(target_arch = "wasm32"))]
    #[allow(clippy::too_many_arguments)]
    unsafe fn publish(
        _: *const u8,
        _: usize,
        _: u32,
        _: *const u8,
        _: usize,
        _: *const u8,
        _: usize,
        _: *const Header,
        _: usize,
        _: u32,
        _: i32,
        _: *mut Ret,
    ) {
        panic!("the raw import exists only in wasm");
    }

    pub(crate) fn aliased_headers(topic: &str, n: usize, kib: usize) -> Result<(), String> {
        let buffer = vec![b'h'; kib << 10];
        let key = "h";
        let headers: Vec<Header> = (0..n)
            .map(|_| Header {
                key_ptr: key.as_ptr(),
                key_len: key.len(),
                has_value: 1,
                value_ptr: buffer.as_ptr(),
                value_len: buffer.len(),
            })
            .collect();
        let value = b"aliased";
        let mut ret = Ret([0; 64]);
        // SAFETY: every pointer is valid for its length during the call; the host writes the
        // result into `ret` (and may allocate strings we leak).
        unsafe {
            publish(
                topic.as_ptr(),
                topic.len(),
                0,
                std::ptr::null(),
                0,
                value.as_ptr(),
                value.len(),
                headers.as_ptr(),
                headers.len(),
                0,
                0,
                &mut ret,
            );
        }
        if ret.0[0] == 0 {
            return Ok(());
        }
        // The error's case at the payload's offset (8), a record-too-large size after it.
        let case = ret.0[8];
        let size = u64::from_le_bytes(ret.0[16..24].try_into().unwrap());
        Err(match case {
            0 => "not-authorized".to_string(),
            1 => "invalid-topic".to_string(),
            2 => format!("record-too-large({size})"),
            3 => "buffer-full".to_string(),
            4 => "quota-exceeded".to_string(),
            5 => "timed-out".to_string(),
            6 => "closed".to_string(),
            7 => "not-allowed".to_string(),
            8 => "broker".to_string(),
            other => format!("unknown error case {other}"),
        })
    }
}

wafka_guest::export_plugin!(Probe);
