//! The inotify watch of the pods root: file events wake the tailer; creates, removes and
//! renames also ask for a rescan. Without a watcher the tailer still polls and rescans.
//!
//! Paced: a thread woken per write would cost a context switch per log line at everyday
//! rates. When an event arrives after a quiet spell, the watcher thread wakes the tailer and
//! then sleeps `pace` (the tailer's `min_read_interval`) so the kernel gathers the writes of
//! that time; on waking it handles them back to back (no sleep within `pace / 10` of the
//! last one), so both threads wake about once per interval however many writes there were.
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

/// Watches `root` recursively; `None` (with a WARN) when inotify is unavailable.
pub fn start(
    root: &Path,
    wake: SyncSender<()>,
    rescan: Arc<AtomicBool>,
    pace: Duration,
) -> Option<notify::RecommendedWatcher> {
    let mut slept_until = Instant::now();
    let handler = move |res: notify::Result<notify::Event>| {
        let a = ask(&res);
        if a == Ask::Rescan {
            rescan.store(true, Ordering::Relaxed);
        }
        if a == Ask::Nothing {
            return;
        }
        let _ = wake.try_send(());
        // Events queued during the last sleep are handled without another one.
        if slept_until.elapsed() >= pace / 10 {
            std::thread::sleep(pace);
            slept_until = Instant::now();
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
