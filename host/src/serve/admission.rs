//! Which connections `wafka serve` takes, decided as each is accepted, before anything is
//! read from it: the descriptor line (a reserve stays for the producer and reloads),
//! `http.max_connections`, `http.max_connections_per_address`, and the share of connections
//! kept for clients that have authenticated (`http.authenticated_share`). A connection over
//! any of them is answered 503 with `Retry-After` and closed.
//!
//! Owns the counts and the record of the addresses that authenticated lately. It must not read
//! HTTP nor decide who is authenticated: the routes say so through
//! [`Admitted::authenticated`]; the answer it writes to a refused connection is a fixed one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::serve::fds::Budget;

/// How long an address that authenticated counts as a client's: its new connections may take
/// the share kept for authenticated clients.
pub const AUTHENTICATED_FOR: Duration = Duration::from_secs(600);

/// Addresses remembered as authenticated, at most (a few MB); past it the oldest are forgotten.
const REMEMBERED: usize = 65_536;

/// How long a refused connection waits for its client's request, at most.
const PATIENCE: Duration = Duration::from_secs(1);

/// What a host admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Connections at once (`http.max_connections`, or fewer if the descriptors are fewer).
    pub(crate) connections: usize,
    /// Connections at once from one address (an IPv6 /64 counts as one).
    pub(crate) per_address: usize,
    /// Connections at once from clients that have not authenticated: the rest is kept for
    /// those that have.
    pub(crate) anonymous: usize,
    /// Connections may not hold a descriptor numbered this or higher.
    pub(crate) descriptor_line: usize,
    /// Refused connections that may wait for their client's request before the answer, at
    /// once: an HTTP client reads an answer that comes before its request as a broken
    /// connection. Past these, the answer is written at once.
    pub(crate) patient: usize,
}

impl Limits {
    /// Within `budget`'s connections and descriptors, at most `per_address` from one
    /// address, and `share` of them (a fraction) kept for authenticated clients.
    pub(crate) fn new(budget: &Budget, per_address: usize, share: f64) -> Limits {
        let connections = budget.connections;
        let kept = (connections as f64 * share).round() as usize;
        Limits {
            connections,
            per_address,
            anonymous: connections.saturating_sub(kept).max(1),
            descriptor_line: budget.line(),
            patient: budget.refusing,
        }
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Its descriptor was past the line: the rest is the producer's and the reloads'.
    Descriptors,
    /// `http.max_connections` are open.
    Connections,
    /// `http.max_connections_per_address` are open from its address.
    PerAddress,
    /// As many connections as may be are open from clients that have not authenticated, and
    /// its address has not authenticated lately.
    Anonymous,
}

impl Refusal {
    const ALL: [Refusal; 4] = [
        Refusal::Descriptors,
        Refusal::Connections,
        Refusal::PerAddress,
        Refusal::Anonymous,
    ];

    /// Its label in `wafka_http_connections_refused_total`.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Refusal::Descriptors => "descriptors",
            Refusal::Connections => "max-connections",
            Refusal::PerAddress => "per-address",
            Refusal::Anonymous => "not-authenticated",
        }
    }

    /// What the client is told.
    fn message(self) -> &'static str {
        match self {
            Refusal::PerAddress => "too many connections from this address",
            _ => "too many connections: try again later",
        }
    }
}

/// A key per client: an IPv4 address, or an IPv6 /64 (what one subscriber is given).
fn source(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
        v4 => v4,
    }
}

#[derive(Default)]
struct Counts {
    total: usize,
    anonymous: usize,
    per_address: HashMap<IpAddr, usize>,
    /// When each address last authenticated.
    authenticated: HashMap<IpAddr, Instant>,
}

/// The connections a host holds, by client.
pub(crate) struct Admission {
    limits: Limits,
    counts: Mutex<Counts>,
    /// When each refusal was last logged (one warning a second at most, per reason).
    warned: Mutex<[Option<Instant>; 4]>,
    /// Refused connections that may wait for their request (see [`Limits::patient`]).
    patient: Arc<tokio::sync::Semaphore>,
}

impl Admission {
    pub(crate) fn new(limits: Limits) -> Arc<Admission> {
        Arc::new(Admission {
            limits,
            counts: Mutex::new(Counts::default()),
            warned: Mutex::new([None; 4]),
            patient: Arc::new(tokio::sync::Semaphore::new(limits.patient)),
        })
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a connection from `peer` that holds descriptor `fd`, or says why not (and logs
    /// it, once a second at most).
    pub(crate) fn admit(self: &Arc<Self>, peer: IpAddr, fd: usize) -> Result<Admitted, Refusal> {
        let from = source(peer);
        let l = &self.limits;
        let decided = {
            let mut c = self.counts();
            let here = c.per_address.get(&from).copied().unwrap_or(0);
            if fd >= l.descriptor_line {
                Err(Refusal::Descriptors)
            } else if c.total >= l.connections {
                Err(Refusal::Connections)
            } else if here >= l.per_address {
                Err(Refusal::PerAddress)
            } else {
                let anonymous = c.anonymous < l.anonymous;
                let known = || {
                    c.authenticated
                        .get(&from)
                        .is_some_and(|t| t.elapsed() < AUTHENTICATED_FOR)
                };
                if anonymous || known() {
                    c.total += 1;
                    *c.per_address.entry(from).or_insert(0) += 1;
                    if anonymous {
                        c.anonymous += 1;
                    }
                    Ok(Admitted {
                        admission: self.clone(),
                        from,
                        anonymous: AtomicBool::new(anonymous),
                    })
                } else {
                    Err(Refusal::Anonymous)
                }
            }
        };
        if let Err(why) = decided {
            self.warn(why, peer);
        }
        decided
    }

    fn warn(&self, why: Refusal, peer: IpAddr) {
        let i = Refusal::ALL.iter().position(|r| *r == why).unwrap_or(0);
        let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
        if warned[i].is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            return;
        }
        warned[i] = Some(Instant::now());
        drop(warned);
        let l = &self.limits;
        match why {
            Refusal::Descriptors => tracing::warn!(
                "new connections refused: descriptors from {} on are kept for the producer and reloads (RLIMIT_NOFILE)",
                l.descriptor_line
            ),
            Refusal::Connections => tracing::warn!(
                "{} connections open (http.max_connections, or what the descriptors allow): more are refused",
                l.connections
            ),
            Refusal::PerAddress => tracing::warn!(
                "{} connections open from {peer} (http.max_connections_per_address): more are refused",
                l.per_address
            ),
            Refusal::Anonymous => tracing::warn!(
                "{} connections open from clients that have not authenticated: more are refused (the rest is kept for those that have, http.authenticated_share)",
                l.anonymous
            ),
        }
    }

    /// Notes that a request from `from` authenticated.
    fn authenticated(&self, from: IpAddr, was_anonymous: bool) {
        let mut c = self.counts();
        if was_anonymous {
            c.anonymous -= 1;
        }
        let now = Instant::now();
        if c.authenticated.len() >= REMEMBERED && !c.authenticated.contains_key(&from) {
            c.authenticated
                .retain(|_, t| now.duration_since(*t) < AUTHENTICATED_FOR);
            if c.authenticated.len() >= REMEMBERED {
                // Every one is recent: forget the older half.
                let mut times: Vec<Instant> = c.authenticated.values().copied().collect();
                let (_, middle, _) = times.select_nth_unstable(REMEMBERED / 2);
                let middle = *middle;
                c.authenticated.retain(|_, t| *t > middle);
            }
        }
        c.authenticated.insert(from, now);
    }

    fn release(&self, from: IpAddr, anonymous: bool) {
        let mut c = self.counts();
        c.total -= 1;
        if anonymous {
            c.anonymous -= 1;
        }
        if let Some(n) = c.per_address.get_mut(&from) {
            *n -= 1;
            if *n == 0 {
                c.per_address.remove(&from);
            }
        }
    }
}

/// An admitted connection, counted until it is dropped.
pub(crate) struct Admitted {
    admission: Arc<Admission>,
    from: IpAddr,
    /// Whether it still counts against the share of clients that have not authenticated.
    anonymous: AtomicBool,
}

impl Admitted {
    /// A request on this connection authenticated: the connection leaves the count of those
    /// that have not, and its address may take the share kept for authenticated clients for
    /// [`AUTHENTICATED_FOR`].
    pub(crate) fn authenticated(&self) {
        let was = self.anonymous.swap(false, Ordering::AcqRel);
        self.admission.authenticated(self.from, was);
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.admission
            .release(self.from, self.anonymous.load(Ordering::Acquire));
    }
}

impl Admission {
    /// Answers a refused connection 503 with `Retry-After` and closes it. The answer waits
    /// for the client's request (up to [`PATIENCE`]; [`Limits::patient`] connections at once,
    /// none past the descriptor line), so that the client reads it as the answer to its
    /// request; otherwise it is written at once.
    pub(crate) fn refuse(&self, stream: tokio::net::TcpStream, why: Refusal) {
        let permit = match why {
            Refusal::Descriptors => None,
            _ => self.patient.clone().try_acquire_owned().ok(),
        };
        match permit {
            Some(permit) => {
                tokio::spawn(async move {
                    // (`readable` may say so before any byte is there: peek waits for one.)
                    let mut first = [0u8; 1];
                    let _ = tokio::time::timeout(PATIENCE, stream.peek(&mut first)).await;
                    answer(stream, why);
                    drop(permit);
                });
            }
            None => answer(stream, why),
        }
    }
}

/// Writes the 503 and closes, without waiting: the answer is small enough for any socket
/// buffer, and what the client already sent is read first (closing on unread bytes would
/// reset the connection, and the answer with it).
fn answer(stream: tokio::net::TcpStream, why: Refusal) {
    use std::io::{Read, Write};
    let body = format!("{{\"error\":\"{}\"}}", why.message());
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    // (Still non-blocking, out of the runtime's hands.)
    let Ok(mut s) = stream.into_std() else {
        return;
    };
    let mut sink = [0u8; 4096];
    let mut drain = |s: &mut std::net::TcpStream| {
        for _ in 0..16 {
            match s.read(&mut sink) {
                Ok(n) if n > 0 => continue,
                _ => break,
            }
        }
    };
    drain(&mut s);
    let _ = s.write(answer.as_bytes());
    let _ = s.shutdown(std::net::Shutdown::Write);
    drain(&mut s);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(connections: usize, per_address: usize, share: f64) -> Limits {
        let budget = Budget {
            limit: crate::serve::fds::NoFile {
                soft: 2000,
                hard: 2000,
                raised_from: None,
            },
            open: 10,
            reserve: 1000,
            refusing: 8,
            connections,
        };
        Limits::new(&budget, per_address, share)
    }

    fn admission(connections: usize, per_address: usize, share: f64) -> Arc<Admission> {
        Admission::new(limits(connections, per_address, share))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn each_cap_refuses_in_turn_and_a_closed_connection_frees_its_place() {
        let a = admission(8, 3, 0.25);
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(a.admit(ip("10.0.0.1"), 10).unwrap());
        }
        assert_eq!(a.admit(ip("10.0.0.1"), 10).err(), Some(Refusal::PerAddress));
        for _ in 0..3 {
            held.push(a.admit(ip("10.0.0.2"), 10).unwrap());
        }
        // Six of eight: the other two are kept for clients that authenticated.
        assert_eq!(a.admit(ip("10.0.0.3"), 10).err(), Some(Refusal::Anonymous));
        held[0].authenticated();
        // One left the count of those not authenticated: a stranger fits again.
        held.push(a.admit(ip("10.0.0.3"), 10).unwrap());
        assert_eq!(a.admit(ip("10.0.0.4"), 10).err(), Some(Refusal::Anonymous));
        // A descriptor past the line, whoever asks.
        assert_eq!(
            a.admit(ip("10.0.0.9"), 1000).err(),
            Some(Refusal::Descriptors)
        );
        drop(held);
        let c = a.counts();
        assert_eq!((c.total, c.anonymous, c.per_address.len()), (0, 0, 0));
    }

    #[test]
    fn the_kept_share_takes_only_addresses_that_authenticated_until_the_total() {
        let a = admission(4, 10, 0.5);
        let first = a.admit(ip("10.0.0.1"), 10).unwrap();
        first.authenticated();
        let _b = a.admit(ip("10.0.0.2"), 10).unwrap();
        let _c = a.admit(ip("10.0.0.2"), 10).unwrap();
        assert_eq!(a.admit(ip("10.0.0.2"), 10).err(), Some(Refusal::Anonymous));
        // 10.0.0.1 authenticated: it takes the kept share, up to max_connections.
        let _d = a.admit(ip("10.0.0.1"), 10).unwrap();
        assert_eq!(
            a.admit(ip("10.0.0.1"), 10).err(),
            Some(Refusal::Connections)
        );
    }

    #[test]
    fn an_ipv6_client_is_its_64() {
        assert_eq!(source(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(source(ip("::ffff:10.1.2.3")), ip("10.1.2.3"));
        assert_eq!(source(ip("10.1.2.3")), ip("10.1.2.3"));
    }

    #[test]
    fn the_share_kept_is_a_fraction_of_the_connections() {
        let l = limits(1000, 100, 0.25);
        assert_eq!((l.anonymous, l.connections), (750, 1000));
        assert_eq!(limits(1000, 100, 0.0).anonymous, 1000);
    }
}
