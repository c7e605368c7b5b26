//! fake-loki: a multi-tenant Loki test double that answers Loki's push, query and
//! metadata HTTP API with Loki's tenant isolation, time-range semantics, limits and
//! error responses, plus fault injection, per-tenant stats and an optional durable
//! data directory.
//!
//! Embedding in Rust tests:
//! ```no_run
//! # async fn demo() -> Result<(), fake_loki::Error> {
//! let loki = fake_loki::FakeLoki::start(fake_loki::Config::for_tests()).await?;
//! let push_url = format!("{}/loki/api/v1/push", loki.url());
//! // ... push, then inspect:
//! let entries = loki.entries("tenant-a");
//! loki.shutdown().await;
//! # Ok(()) }
//! ```

pub mod alloc_trim;
pub mod api;
pub mod clock;
pub mod config;
pub mod error;
pub mod faults;
pub mod ingest;
pub mod levels;
pub mod limits;
pub mod logql;
pub mod metrics;
pub mod persist;
pub mod ratelimit;
pub mod retention;
pub mod server;
pub mod store;
pub mod tenant;
pub mod usage;

use std::net::SocketAddr;
use std::sync::Arc;

use loki_wire::LabelSet;
use parking_lot::{Mutex, RwLock};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use clock::Clock;
pub use config::Config;
pub use error::Error;
pub use faults::{FaultAction, FaultRule, Faults};
pub use metrics::Metrics;
pub use server::run;

/// Shared server state.
pub struct State {
    pub config: Config,
    pub store: RwLock<store::Store>,
    pub limiters: Mutex<ingest::Limiters>,
    pub metrics: Metrics,
    pub faults: Faults,
    pub data_dir: Option<Mutex<persist::DataDir>>,
    pub usage: Mutex<usage::Ledger>,
    /// Permits for push bodies in flight (see `Config::max_concurrent_pushes`).
    pub push_slots: tokio::sync::Semaphore,
    /// Points where tests can pause the server (none set in production).
    pub hooks: Hooks,
}

/// A callback run at a fixed point of request handling.
pub type Hook = Arc<dyn Fn() + Send + Sync>;

/// Test hooks: tests use them to hold a request at a known point instead of timing it.
#[derive(Default)]
pub struct Hooks {
    on_query_scan: RwLock<Option<Hook>>,
}

impl Hooks {
    /// Runs `f` whenever a query starts scanning the streams it selected.
    pub fn set_on_query_scan(&self, f: Option<Hook>) {
        *self.on_query_scan.write() = f;
    }

    pub(crate) fn query_scan(&self) {
        let hook = self.on_query_scan.read().clone();
        if let Some(h) = hook {
            h();
        }
    }
}

impl State {
    /// Builds the state, replaying the data directory when one is configured.
    pub fn new(config: Config) -> Result<State, Error> {
        let faults = Faults::new(config.fault_seed);
        for r in &config.faults {
            faults.add(r.clone()).map_err(Error::Config)?;
        }
        let metrics = Metrics::new();
        let mut store = store::Store::default();
        let now = config.clock.now_ns();
        let data_dir = match &config.data_dir {
            None => None,
            Some(dir) => {
                let (dd, replayed) = persist::DataDir::open(dir)?;
                for r in replayed {
                    metrics.data_dir_replayed(&r.tenant, r.corrupt_bytes, r.truncated_bytes);
                    let t = store.tenant_mut(&r.tenant);
                    let limits = config.limits.for_tenant(&r.tenant);
                    let mut expired = 0u64;
                    for req in r.requests {
                        for s in req.streams {
                            let labels = LabelSet::parse(&s.labels)
                                .map_err(|e| Error::DataDir(format!("{}: {e}", r.tenant)))?;
                            // Records past retention are not brought back.
                            let keep_from =
                                retention::cutoff(now, retention::period_for(limits, &labels));
                            let i = match t.find(&s.labels) {
                                Some(i) => i,
                                None => t.create(labels),
                            };
                            for e in s.entries {
                                let ts = e.timestamp.and_then(|t| t.to_unix_nanos()).unwrap_or(0);
                                if ts < keep_from {
                                    expired += 1;
                                    continue;
                                }
                                let md: Vec<(String, String)> = e
                                    .structured_metadata
                                    .into_iter()
                                    .map(|p| (p.name, p.value))
                                    .collect();
                                t.insert(i, ts, &String::from_utf8_lossy(&e.line), &md);
                            }
                        }
                    }
                    if expired > 0 {
                        tracing::info!(
                            tenant = %r.tenant,
                            entries = expired,
                            "replay skipped entries past retention"
                        );
                    }
                }
                Some(Mutex::new(dd))
            }
        };
        let ledger = usage::Ledger::open(&config.usage_label, config.data_dir.as_deref())?;
        Ok(State {
            usage: Mutex::new(ledger),
            push_slots: tokio::sync::Semaphore::new(config.max_concurrent_pushes.max(1)),
            hooks: Hooks::default(),
            metrics,
            faults,
            store: RwLock::new(store),
            limiters: Mutex::new(ingest::Limiters::default()),
            data_dir,
            config,
        })
    }
}

/// One stored entry, as tests inspect them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    pub labels: LabelSet,
    pub ts: i64,
    pub line: String,
    pub metadata: Vec<(String, String)>,
}

/// A running fake-loki.
pub struct FakeLoki {
    addr: SocketAddr,
    state: Arc<State>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeLoki {
    /// Binds `config.listen` and serves in the background.
    pub async fn start(config: Config) -> Result<FakeLoki, Error> {
        let listener = TcpListener::bind(config.listen).await?;
        let state = Arc::new(State::new(config)?);
        Self::serve(listener, state)
    }

    /// Serves an already bound listener with the given state.
    pub fn serve(listener: TcpListener, state: Arc<State>) -> Result<FakeLoki, Error> {
        let addr = listener.local_addr()?;
        let (tx, rx) = watch::channel(false);
        if let Some(every) = state.config.retention_sweep_interval {
            tokio::spawn(retention::run(state.clone(), every, rx.clone()));
        }
        let task = tokio::spawn(run(listener, state.clone(), rx));
        Ok(FakeLoki {
            addr,
            state,
            shutdown: tx,
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    pub fn faults(&self) -> &Faults {
        &self.state.faults
    }

    /// Every entry of `tenant`, grouped by stream (sorted by label string), each stream
    /// in time order (ties in arrival order).
    pub fn entries(&self, tenant: &str) -> Vec<StoredEntry> {
        let store = self.state.store.read();
        let Some(t) = store.tenant(tenant) else {
            return Vec::new();
        };
        let mut streams: Vec<&store::Stream> = t.streams().iter().collect();
        streams.sort_by(|a, b| a.labels_string.cmp(&b.labels_string));
        streams
            .into_iter()
            .flat_map(|s| {
                s.iter().map(move |e| StoredEntry {
                    labels: s.labels.clone(),
                    ts: e.ts,
                    line: e.line.to_string(),
                    metadata: e.metadata.to_vec(),
                })
            })
            .collect()
    }

    /// Accepted push requests of `tenant` (those that stored at least one entry).
    pub fn push_count(&self, tenant: &str) -> u64 {
        self.state
            .store
            .read()
            .tenant(tenant)
            .map_or(0, |t| t.pushes)
    }

    /// Stops accepting, lets in-flight requests finish (up to 5 s), and returns.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
        if let Some(dd) = &self.state.data_dir {
            if let Err(e) = dd.lock().sync() {
                tracing::warn!(error = %e, "syncing the data dir at shutdown");
            }
        }
        if let Err(e) = self.state.usage.lock().save() {
            tracing::warn!(error = %e, "saving the usage ledger at shutdown");
        }
    }
}

/// Returned by the service to make hyper drop the connection unanswered.
#[derive(Debug)]
pub(crate) struct ResetConnection;

impl std::fmt::Display for ResetConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset by fault injection")
    }
}

impl std::error::Error for ResetConnection {}
