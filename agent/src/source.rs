//! Sources of entries besides the file tailer (`loki.source.kubernetes_events`): they send
//! chunks into an Alloy router like the tailer does, under file ids of their own, and take
//! back the acknowledgements of those ids instead of the positions store.

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::chunk::Chunk;

/// File ids from here up belong to chunk sources; the tailer's ids count up from 1 and the
/// router's output chunks use `u64::MAX`.
pub const ID_BASE: u64 = 1 << 62;

/// A source of chunks that keeps its own record of what was delivered.
pub trait ChunkSource: Send + Sync {
    /// Starts sending chunks to `tx`; the tasks run until aborted.
    fn start(&self, tx: mpsc::Sender<Chunk>) -> Vec<JoinHandle<()>>;
    /// Takes the acknowledgement of `(file id, commit offset)` if the id is this source's;
    /// returns whether it was.
    fn ack(&self, id: u64, offset: u64) -> bool;
    /// Persists what was acknowledged (at shutdown, after the last acknowledgement).
    fn save(&self);
}
