//! The inotify watch of the pods root: file events wake the tailer; creates, removes and
//! renames also ask for a rescan. Without a watcher the tailer still polls and rescans.
//!
//! Paced: a thread woken per write would cost a context switch per log line at everyday
//! rates. When an event arrives after a quiet spell, the watcher thread wakes the tailer and
//! then sleeps `pace` (the tailer's `min_read_interval`) so the kernel gathers the writes of
//! that time; on waking it handles them back to back (see [`Pacer`]), so both threads wake
//! about once per interval however many writes there were.
//! A queue overflow while it sleeps is an event like any other: a rescan.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify::event::{EventKind, ModifyKind};
use notify::Watcher;

/// What a watcher event asks of the tailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// Nothing: opens and closes without a write (the agent's own reads and scans among
    /// them, which would otherwise wake the tailer after each of its own scans).
    Nothing,
    /// A pass: a file was written to.
    Pass,
    /// A rescan (and a pass): a file or directory came, went or was renamed, or events were
    /// lost.
    Rescan,
}

/// What `event` asks for.
pub fn ask(event: &notify::Result<notify::Event>) -> Ask {
    match event {
        Ok(ev) if ev.need_rescan() => Ask::Rescan,
        Ok(ev) => match ev.kind {
            EventKind::Create(_)
            | EventKind::Remove(_)
            | EventKind::Modify(ModifyKind::Name(_)) => Ask::Rescan,
            EventKind::Access(_) => Ask::Nothing,
            _ => Ask::Pass,
        },
        // Overflow or error: a rescan finds whatever was missed.
        Err(_) => Ask::Rescan,
    }
}

/// Events closer together than this are a queue being drained (read back to back), not new
/// writes.
const BACKLOG_GAP: Duration = Duration::from_micros(200);

/// When the watcher thread sleeps: at an event after a quiet spell (a new write), or once
/// it has been awake for a tenth of `pace` under a steady stream; never in the middle of
/// the backlog that built up while it slept.
#[derive(Debug)]
pub struct Pacer {
    pace: Duration,
    last_event: Instant,
    awake_since: Instant,
}

impl Pacer {
    pub fn new(pace: Duration) -> Self {
        let now = Instant::now();
        Pacer {
            pace,
            last_event: now,
            awake_since: now,
        }
    }

    /// An event at `now`: whether to sleep `pace` after handling it.
    pub fn event(&mut self, now: Instant) -> bool {
        let quiet = now.saturating_duration_since(self.last_event) >= BACKLOG_GAP;
        self.last_event = now;
        quiet || now.saturating_duration_since(self.awake_since) >= self.pace / 10
    }

    /// The sleep ended at `now`.
    pub fn slept(&mut self, now: Instant) {
        self.last_event = now;
        self.awake_since = now;
    }
}

/// Watches `root` recursively; `None` (with a WARN) when inotify is unavailable.
pub fn start(
    root: &Path,
    wake: SyncSender<()>,
    rescan: Arc<AtomicBool>,
    pace: Duration,
) -> Option<notify::RecommendedWatcher> {
    let mut pacer = Pacer::new(pace);
    let handler = move |res: notify::Result<notify::Event>| {
        let a = ask(&res);
        if a == Ask::Rescan {
            rescan.store(true, Ordering::Relaxed);
        }
        if a == Ask::Nothing {
            return;
        }
        let _ = wake.try_send(());
        if pacer.event(Instant::now()) {
            std::thread::sleep(pace);
            pacer.slept(Instant::now());
        }
    };
    let mut w = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "inotify unavailable; polling only");
            return None;
        }
    };
    if let Err(e) = w.watch(root, notify::RecursiveMode::Recursive) {
        tracing::warn!(root = %root.display(), error = %e, "cannot watch pods root; polling only");
        return None;
    }
    Some(w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{AccessKind, AccessMode, CreateKind, DataChange, RenameMode};

    fn ev(kind: EventKind) -> notify::Result<notify::Event> {
        Ok(notify::Event::new(kind))
    }

    #[test]
    fn the_watcher_sleeps_at_a_new_write_not_inside_the_backlog_of_its_sleep() {
        let pace = Duration::from_millis(50);
        let t0 = Instant::now();
        let mut p = Pacer::new(pace);
        let at = |us: u64| t0 + Duration::from_micros(us);
        // A write after a quiet spell: wake the tailer, then sleep.
        assert!(p.event(at(10_000)));
        p.slept(at(60_000));
        // The events queued meanwhile come back to back: no sleep between them.
        assert!(!p.event(at(60_010)));
        assert!(!p.event(at(60_020)));
        // The next write, a millisecond later: sleep again.
        assert!(p.event(at(61_000)));
        p.slept(at(111_000));
        // A steady stream (every 100 µs) still sleeps once awake for pace / 10.
        let mut t = 111_000;
        let mut slept = false;
        while t < 111_000 + 6_000 {
            t += 100;
            if p.event(at(t)) {
                slept = true;
                break;
            }
        }
        assert!(slept && t >= 116_000, "slept at {t}");
    }

    #[test]
    fn the_agents_own_opens_wake_nobody_writes_wake_the_tailer_and_renames_rescan() {
        let open = EventKind::Access(AccessKind::Open(AccessMode::Any));
        let closed = EventKind::Access(AccessKind::Close(AccessMode::Write));
        assert_eq!(ask(&ev(open)), Ask::Nothing);
        assert_eq!(ask(&ev(closed)), Ask::Nothing);
        let write = EventKind::Modify(ModifyKind::Data(DataChange::Any));
        assert_eq!(ask(&ev(write)), Ask::Pass);
        assert_eq!(ask(&ev(EventKind::Create(CreateKind::File))), Ask::Rescan);
        let rename = EventKind::Modify(ModifyKind::Name(RenameMode::Both));
        assert_eq!(ask(&ev(rename)), Ask::Rescan);
        assert_eq!(ask(&Err(notify::Error::generic("overflow"))), Ask::Rescan);
        let overflow = notify::Event::new(EventKind::Other).set_flag(notify::event::Flag::Rescan);
        assert_eq!(ask(&Ok(overflow)), Ask::Rescan);
    }
}
