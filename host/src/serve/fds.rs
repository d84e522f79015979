//! The process's descriptor limit (`RLIMIT_NOFILE`) for `wafka serve`: raising the soft limit
//! to the hard one, and the budget it leaves for client connections once a reserve is kept
//! for the producer's broker connections and the files a reload reads.
//!
//! Owns the limit and that arithmetic only; it must not accept, refuse or close anything (see
//! `admission`).

/// Descriptors kept for the producer and reloads, at most: a quarter of the limit below
/// 4,096. The reserve is headroom for growth (a reload starting producer cores for new
/// identities, the files it reads, a broker reconnecting); what they hold at start is counted
/// apart.
pub const MAX_RESERVE: usize = 1024;

/// Fewest connections a budget may leave: below this a host cannot serve.
pub const MIN_CONNECTIONS: usize = 16;

/// Refused connections that may wait for their client's request before the 503, at most (an
/// eighth of what is left below that).
pub const MAX_REFUSING: usize = 128;

/// The descriptor limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoFile {
    /// The soft limit in force (what `open` and `accept` are held to).
    pub soft: u64,
    /// The hard limit (the most the soft one may be raised to).
    pub hard: u64,
    /// The soft limit before [`raise`] raised it.
    pub raised_from: Option<u64>,
}

/// Reads the limit.
// (`rlim_t` is not `u64` on every target.)
#[allow(clippy::unnecessary_cast)]
pub fn limit() -> std::io::Result<NoFile> {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(NoFile {
        soft: l.rlim_cur as u64,
        hard: l.rlim_max as u64,
        raised_from: None,
    })
}

/// Raises the soft limit to the hard one (a usual soft limit is 1,024, far below what
/// `http.max_connections` asks). On an error the limit stays as it was.
pub fn raise() -> std::io::Result<NoFile> {
    let now = limit()?;
    if now.soft >= now.hard {
        return Ok(now);
    }
    let l = libc::rlimit {
        rlim_cur: now.hard as libc::rlim_t,
        rlim_max: now.hard as libc::rlim_t,
    };
    // SAFETY: setrlimit(2) reads the struct it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &l) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(NoFile {
        soft: now.hard,
        hard: now.hard,
        raised_from: Some(now.soft),
    })
}

/// Descriptors open now (`/proc/self/fd`); `None` where that cannot be read.
pub fn open_now() -> Option<usize> {
    // (The directory's own descriptor is among those listed.)
    std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count().saturating_sub(1))
}

/// What the descriptor limit leaves for client connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// The limit, as raised.
    pub limit: NoFile,
    /// Descriptors open when the host started (the listener, the producer's connections, the
    /// runtime's, the compile cache's…).
    pub open: usize,
    /// Descriptors kept for the producer and reloads: connections never hold one numbered at
    /// or above `limit - reserve` (descriptors are handed out lowest first, so that many stay
    /// free for them whatever the clients do).
    pub reserve: usize,
    /// Refused connections that may wait for their request before they are answered (each
    /// holds a descriptor meanwhile): counted apart, so that they cannot take the places of
    /// the connections served.
    pub refusing: usize,
    /// Connections the host may hold: `http.max_connections`, or fewer when the descriptors
    /// left after those open, the reserve and those being refused are fewer.
    pub connections: usize,
}

impl Budget {
    /// The budget under `limit` with `open` descriptors open, for at most `max_connections`.
    /// `Err` (with the budget) when it leaves fewer than [`MIN_CONNECTIONS`].
    pub fn new(limit: NoFile, open: usize, max_connections: usize) -> Result<Budget, Budget> {
        // Descriptors are C ints: a limit above that (RLIM_INFINITY) is no limit.
        let soft = limit.soft.min(i32::MAX as u64) as usize;
        let reserve = (soft / 4).min(MAX_RESERVE);
        let left = soft.saturating_sub(reserve).saturating_sub(open);
        let refusing = (left / 8).clamp(1, MAX_REFUSING);
        let b = Budget {
            limit,
            open,
            reserve,
            refusing,
            connections: max_connections.min(left.saturating_sub(refusing)),
        };
        if b.connections < MIN_CONNECTIONS.min(max_connections) {
            Err(b)
        } else {
            Ok(b)
        }
    }

    /// The lowest descriptor number a connection may not hold (see [`Budget::reserve`]).
    pub fn line(&self) -> usize {
        let soft = self.limit.soft.min(i32::MAX as u64) as usize;
        soft - self.reserve
    }
}

impl std::fmt::Display for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "descriptors: limit {}", self.limit.soft)?;
        if let Some(before) = self.limit.raised_from {
            write!(f, " (raised from {before})")?;
        }
        write!(
            f,
            ", {} open, {} kept for the producer and reloads: at most {} connections",
            self.open, self.reserve, self.connections
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nofile(soft: u64) -> NoFile {
        NoFile {
            soft,
            hard: soft,
            raised_from: None,
        }
    }

    #[test]
    fn the_budget_keeps_a_reserve_and_counts_what_is_open() {
        // A usual soft limit: a quarter kept, the rest less what is open.
        // An eighth of what is left for refusals waiting for their request.
        let b = Budget::new(nofile(1024), 40, 10_000).unwrap();
        assert_eq!(
            (b.reserve, b.refusing, b.connections, b.line()),
            (256, 91, 637, 768)
        );
        // A large one: the reserve and the refusals are capped, max_connections binds.
        let b = Budget::new(nofile(1 << 20), 40, 10_000).unwrap();
        assert_eq!(
            (b.reserve, b.refusing, b.connections),
            (MAX_RESERVE, MAX_REFUSING, 10_000)
        );
        // No limit at all.
        let b = Budget::new(nofile(u64::MAX), 40, 10_000).unwrap();
        assert_eq!(b.connections, 10_000);
        // Too low to serve.
        let e = Budget::new(nofile(64), 40, 10_000).unwrap_err();
        assert_eq!(e.connections, 7);
        let shown = Budget::new(
            NoFile {
                soft: 512,
                hard: 512,
                raised_from: Some(256),
            },
            44,
            10_000,
        )
        .unwrap()
        .to_string();
        assert_eq!(
            shown,
            "descriptors: limit 512 (raised from 256), 44 open, 128 kept for the producer and reloads: at most 298 connections"
        );
    }

    #[test]
    fn the_limit_reads_and_the_open_descriptors_count() {
        let l = limit().unwrap();
        assert!(l.soft <= l.hard && l.soft > 0, "{l:?}");
        // At least stdin, stdout and stderr (other tests open and close files meanwhile).
        assert!(open_now().unwrap() >= 3);
    }
}
