//! e2e: did every log line arrive, exactly once, in the right tenant, and how late?
//!
//! The pieces, in pipeline order:
//! - [`gen`]: the load generator (`e2e loadgen`). Writes kubelet-layout CRI log files for simulated
//!   clusters, with rotation, copytruncate and pod churn, and a [`manifest`] of what it wrote.
//! - [`marker`]: the `run=<id> src=<source> seq=<n>` marker every entry carries.
//! - [`loki`]: a query-API client that paginates `query_range` as a real client must.
//! - [`check`]: the completeness checker (`e2e check`): gaps, duplicates, order, lag, tenant leaks.
//! - [`fresh`]: freshness (`check --max-lag`): late and silent sources, per source and stream.
//! - [`procs`]: locating, spawning and measuring the `agent` and `fake-loki` processes.
//! - [`cost`]: the pure cost engine (`e2e cost`): usage + prices → report by day/week/month/tenant/cluster, budgets.
//! - [`emit`]: the kind e2e's in-cluster generator (`e2e emit`) and manifest assembler.
//! - [`usage`]: reading fake-loki's usage ledger and agents' `/metrics` for [`cost`].
//! - [`pipeline`]: the whole run (`e2e local` and the scenario tests): fake-loki + one agent per
//!   cluster + generator + checker, with timed actions (faults, `kill -9`).
//! - [`soak`]: the long run (`e2e soak`): a repeating fault cycle and the memory-trend verdict.

pub mod check;
pub mod content;
pub mod cost;
pub mod cri;
pub mod emit;
pub mod error;
pub mod fresh;
pub mod gen;
pub mod loki;
pub mod manifest;
pub mod marker;
pub mod pipeline;
pub mod procs;
pub mod report;
pub mod soak;
pub mod usage;

pub use error::Error;
