//! A soak of `wafka serve` (issue 19, item 13), not part of CI (ignored; `scripts/soak` runs
//! it): N tenants, each with its own token and one instance of the Rust `hello` (every other
//! tenant with autoflush on), each posting a request of 10 events at a steady rate to a
//! broker of the test's own, for a while. `wafka serve` runs as a child process (the binary
//! `WAFKA_SOAK_BIN`, default the one cargo built with this test), so that what is sampled
//! is the host alone: once a minute its resident memory (`/proc/PID/status`), open
//! descriptors (`/proc/PID/fd`), threads (`/proc/PID/task`), the tokio tasks alive
//! (`wafka_runtime_tasks` on `/metrics`) and the requests' p50 and p99 latency in that
//! minute. At the end: the drift after the warm-up (the first minute) against the goals (RSS
//! within 5 %, p99 within 2× of the first minute's, descriptors, threads and tasks flat), then
//! SIGTERM, and the drain must exit 0 with no request failed and no record failed.
//!
//! | variable | meaning | default |
//! | --- | --- | --- |
//! | `WAFKA_SOAK_TENANTS` | tenants | 1,000 |
//! | `WAFKA_SOAK_MINUTES` | length, minutes (the first is the warm-up) | 30 |
//! | `WAFKA_SOAK_INTERVAL_MS` | each tenant's gap between the starts of its requests | 1,000 |
//! | `WAFKA_SOAK_EVENTS` | events (records of 100 bytes) a request | 10 |
//! | `WAFKA_SOAK_BIN` | the `wafka` binary to soak | cargo's |
//!
//! One line per minute, `soak: minute …`, and a summary, `soak: drift …`, on stderr.

use std::io::BufRead;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wafka_tests::{create_topic_named, guest, LocalBroker};

const ADMIN: &str = "soak-admin";

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number")),
        _ => default,
    }
}

fn sha(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// One sample of the host.
#[derive(Debug, Clone, Copy)]
struct Sample {
    rss_kib: u64,
    fds: u64,
    threads: u64,
    tasks: Option<u64>,
    requests: u64,
    p50_ms: f64,
    p99_ms: f64,
}

/// `VmRSS` of `pid`, KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

fn entries(dir: String) -> u64 {
    std::fs::read_dir(dir).unwrap().count() as u64
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p) as usize).min(sorted.len() - 1);
    sorted[i] as f64 / 1000.0
}

/// `wafka_runtime_tasks` from `/metrics`, when the host exposes it.
async fn tasks(http: &reqwest::Client, base: &str) -> Option<u64> {
    let text = http
        .get(format!("{base}/metrics"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.starts_with("wafka_runtime_tasks "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a soak of many minutes: scripts/soak runs it"]
async fn soak() {
    let tenants = env_u64("WAFKA_SOAK_TENANTS", 1000) as usize;
    let minutes = env_u64("WAFKA_SOAK_MINUTES", 30).max(2);
    let interval = Duration::from_millis(env_u64("WAFKA_SOAK_INTERVAL_MS", 1000));
    let events = env_u64("WAFKA_SOAK_EVENTS", 10) as usize;
    let bin =
        std::env::var("WAFKA_SOAK_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_wafka").into());

    let broker = LocalBroker::start("memory");
    let topic = "soak";
    create_topic_named(&broker.addr, topic, 6);
    let dir = std::env::temp_dir().join(format!("wafka-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let hello = guest("hello");
    // Every client comes from one address: no cap per address. Records of 1 KiB at most, so
    // that 1,000 tenants' buffer shares fit in the default buffer.memory.
    let mut text = format!(
        "[kafka]\nbootstrap.servers = \"{}\"\nlinger.ms = 5\n[http]\nlisten = \"127.0.0.1:0\"\n\
         admin_token_sha256 = \"{}\"\nmax_connections_per_address = 10000\n",
        broker.addr,
        sha(ADMIN)
    );
    for t in 0..tenants {
        text.push_str(&format!(
            "[tenants.t{t}]\ntoken_sha256 = \"{}\"\ntopics = [\"{topic}\"]\nmax_instances = 1\n\
             max_record_bytes = 1024\nautoflush = \"{}\"\n[[tenants.t{t}.plugins]]\nname = \"hello\"\n\
             path = \"{}\"\nconfig = {{ topic = \"{topic}\", key-delimiter = \":\" }}\n",
            sha(&format!("t{t}-token")),
            if t % 2 == 0 { "on" } else { "off" },
            hello.display()
        ));
    }
    std::fs::write(dir.join("serve.toml"), text).unwrap();

    let mut child = std::process::Command::new(&bin)
        .args(["serve", "--config"])
        .arg(dir.join("serve.toml"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {bin}: {e}"));
    let pid = child.id();
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let reader = {
        let (pipe, log) = (child.stderr.take().unwrap(), log.clone());
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut log = log.lock().unwrap();
                if log.len() < 1000 {
                    log.push(line);
                }
            }
        })
    };
    let started = Instant::now();
    let base = loop {
        if let Some(l) = log.lock().unwrap().iter().find(|l| l.contains("serving ")) {
            break format!("http://{}", l.rsplit("http://").next().unwrap().trim());
        }
        assert!(
            child.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(600),
            "wafka serve did not start:\n{}",
            log.lock().unwrap().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!(
        "soak: {tenants} tenants started in {:.1} s (pid {pid}, {bin}); {} events a request every {} ms each, {minutes} minutes",
        started.elapsed().as_secs_f64(),
        events,
        interval.as_millis()
    );

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(tenants + 8)
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicU64::new(0));
    // The first failures' status and answer.
    let reasons = Arc::new(Mutex::new(Vec::<String>::new()));
    let latencies = Arc::new(Mutex::new(Vec::<u64>::new()));
    let mut clients = Vec::new();
    for t in 0..tenants {
        let (http, base, stop, failed, latencies, reasons) = (
            http.clone(),
            base.clone(),
            stop.clone(),
            failed.clone(),
            latencies.clone(),
            reasons.clone(),
        );
        clients.push(tokio::spawn(async move {
            let url = format!("{base}/v1/tenants/t{t}/plugins/hello/events");
            let token = format!("t{t}-token");
            // Spread the tenants' starts over one interval: a steady rate, not waves.
            let first = interval.mul_f64(t as f64 / tenants as f64);
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + first, interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let body: String = (0..events)
                    .map(|_| {
                        seq += 1;
                        format!("k{}:{:0>100}\n", seq % 16, seq)
                    })
                    .collect();
                let t0 = Instant::now();
                let r = http.post(&url).bearer_auth(&token).body(body).send().await;
                let why = match r {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let text = r.text().await.unwrap_or_default();
                        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                        (status != 200 || v["failed"].as_u64() != Some(0))
                            .then(|| format!("{status} {text}"))
                    }
                    Err(e) => Some(format!("{e:?}")),
                };
                match why {
                    None => latencies
                        .lock()
                        .unwrap()
                        .push(t0.elapsed().as_micros() as u64),
                    Some(why) if !stop.load(Ordering::Relaxed) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        let mut reasons = reasons.lock().unwrap();
                        if reasons.len() < 5 {
                            reasons.push(format!(
                                "t{t}: {}",
                                why.chars().take(300).collect::<String>()
                            ));
                        }
                    }
                    Some(_) => {}
                }
            }
        }));
    }

    let mut samples: Vec<Sample> = Vec::new();
    let load = Instant::now();
    for minute in 1..=minutes {
        let due = load + Duration::from_secs(60 * minute);
        tokio::time::sleep_until(due.into()).await;
        let mut lat = std::mem::take(&mut *latencies.lock().unwrap());
        lat.sort_unstable();
        let s = Sample {
            rss_kib: rss_kib(pid),
            fds: entries(format!("/proc/{pid}/fd")),
            threads: entries(format!("/proc/{pid}/task")),
            tasks: tasks(&http, &base).await,
            requests: lat.len() as u64,
            p50_ms: percentile(&lat, 0.50),
            p99_ms: percentile(&lat, 0.99),
        };
        eprintln!(
            "soak: minute {minute:>3} rss {:>8.1} MiB fds {:>5} threads {:>4} tasks {:>6} requests {:>7} p50 {:>7.2} ms p99 {:>8.2} ms failed {}",
            s.rss_kib as f64 / 1024.0,
            s.fds,
            s.threads,
            s.tasks.map_or("-".to_string(), |t| t.to_string()),
            s.requests,
            s.p50_ms,
            s.p99_ms,
            failed.load(Ordering::Relaxed)
        );
        samples.push(s);
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }

    // Drift after the warm-up: minute 1 against the last.
    let (first, last) = (samples[0], *samples.last().unwrap());
    let after = &samples[1..];
    let range = |f: fn(&Sample) -> u64| {
        (
            after.iter().map(f).min().unwrap(),
            after.iter().map(f).max().unwrap(),
        )
    };
    let rss_drift = (last.rss_kib as f64 - first.rss_kib as f64) / first.rss_kib as f64 * 100.0;
    let p99_ratio = last.p99_ms / first.p99_ms.max(0.001);
    let (fd_lo, fd_hi) = range(|s| s.fds);
    let (th_lo, th_hi) = range(|s| s.threads);
    let tasks_range = after
        .iter()
        .map(|s| s.tasks)
        .collect::<Option<Vec<u64>>>()
        .map(|t| (*t.iter().min().unwrap(), *t.iter().max().unwrap()));
    let max_p99_ratio = after
        .iter()
        .map(|s| s.p99_ms / first.p99_ms.max(0.001))
        .fold(0.0, f64::max);
    eprintln!(
        "soak: drift after minute 1: rss {:+.1} % ({:.1} → {:.1} MiB; goal < 5 %), p99 {:.2}× at the end, {:.2}× at most ({:.2} → {:.2} ms; goal ≤ 2×), \
         fds {fd_lo}..{fd_hi}, threads {th_lo}..{th_hi}, tasks {} (goal: flat); requests failed {}",
        rss_drift,
        first.rss_kib as f64 / 1024.0,
        last.rss_kib as f64 / 1024.0,
        p99_ratio,
        max_p99_ratio,
        first.p99_ms,
        last.p99_ms,
        tasks_range.map_or("not exposed".to_string(), |(lo, hi)| format!("{lo}..{hi}")),
        failed.load(Ordering::Relaxed)
    );

    for why in reasons.lock().unwrap().iter() {
        eprintln!("soak: failed request: {why}");
    }

    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "wafka serve did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    reader.join().unwrap();
    let log = log.lock().unwrap().join("\n");
    let drained = log
        .lines()
        .find(|l| l.contains("drained in"))
        .unwrap_or("no drain line")
        .to_string();
    eprintln!("soak: {drained}");
    assert!(status.success(), "the drain exits 0 ({status}):\n{log}");
    assert!(drained.ends_with(" 0 failed"), "{drained}");
    assert_eq!(failed.load(Ordering::Relaxed), 0, "requests failed");
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
}
