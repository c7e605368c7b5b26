//! The descriptor budget: the soft `RLIMIT_NOFILE` is raised to the hard limit at start, and
//! the tailer keeps at most a budget of log files open — the limit minus a reserve for the
//! Loki connections, the positions file, the HTTP server and the runtime — so that many
//! files can never starve a push or a positions save of descriptors.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Descriptors always left for everything but tailed files (at least; an eighth of the limit
/// up to [`RESERVE_MAX`]).
pub const RESERVE_MIN: u64 = 64;
/// The reserve stops growing here: a large limit is all budget.
pub const RESERVE_MAX: u64 = 1024;
/// The budget never goes below this, however low the limit.
pub const BUDGET_MIN: usize = 4;

/// Where the kernel caps a soft limit asked to be "unlimited".
const NR_OPEN: &str = "/proc/sys/fs/nr_open";

/// The soft `RLIMIT_NOFILE` now (`None`: unlimited).
pub fn soft_limit() -> Option<u64> {
    getrlimit(Resource::Nofile).current
}

/// Raises the soft limit to the hard one. Returns the soft limit before and after.
pub fn raise_soft_limit() -> std::io::Result<(Option<u64>, Option<u64>)> {
    let lim = getrlimit(Resource::Nofile);
    // An unlimited hard limit is refused for descriptors: the kernel's nr_open is the ceiling.
    let target = lim.maximum.or_else(|| {
        std::fs::read_to_string(NR_OPEN)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
    });
    if target.is_none() || lim.current >= target {
        return Ok((lim.current, lim.current));
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: target,
            maximum: lim.maximum,
        },
    )?;
    Ok((lim.current, soft_limit()))
}

/// Open log files allowed under a soft limit of `limit` descriptors.
pub fn budget(limit: Option<u64>) -> usize {
    let Some(limit) = limit else {
        return usize::MAX;
    };
    let reserve = (limit / 8).clamp(RESERVE_MIN, RESERVE_MAX);
    usize::try_from(limit.saturating_sub(reserve))
        .unwrap_or(usize::MAX)
        .max(BUDGET_MIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_leaves_a_reserve_for_sockets_and_positions() {
        assert_eq!(budget(Some(1024)), 1024 - 128);
        assert_eq!(budget(Some(256)), 256 - 64);
        assert_eq!(budget(Some(1 << 20)), (1 << 20) - 1024);
        assert_eq!(budget(Some(10)), BUDGET_MIN);
        assert_eq!(budget(None), usize::MAX);
    }
}
