//! fake-loki's settings: one plain struct, defaults in one place.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::clock::Clock;
use crate::faults::FaultRule;
use crate::ingest::DEFAULT_MAX_CHUNK_AGE_NS;
use crate::limits::LimitsConfig;

/// Everything fake-loki needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// Loki's `auth_enabled` (default true): without a tenant header requests get 401.
    pub auth_enabled: bool,
    /// The tenant used when auth is off (Loki's `no_auth_tenant`, default `fake`).
    pub no_auth_tenant: String,
    pub limits: LimitsConfig,
    pub data_dir: Option<PathBuf>,
    /// Loki's `querier.multi_tenant_queries_enabled` (default false).
    pub multi_tenant_queries_enabled: bool,
    /// Largest compressed push body (Loki's `distributor.max_recv_msg_size`, 100 MiB).
    pub max_recv_msg_size: usize,
    /// Largest decompressed push body. Loki's `max_decompressed_size` is 5000 MiB;
    /// fake-loki uses `max_recv_msg_size`'s 100 MiB so a bomb cannot take GBs.
    pub max_decompressed_size: usize,
    /// Push bodies read and decoded at once; more wait their turn, so parallel bombs
    /// cannot multiply memory.
    pub max_concurrent_pushes: usize,
    /// Most streams one push may carry; a JSON body is refused (400) while it is being
    /// decoded, before the excess is allocated. Not a Loki limit (Loki bounds only the
    /// body size): a hardening bound far above what agents send in one batch.
    pub max_push_streams: usize,
    /// Most entries one push may carry (as `max_push_streams`).
    pub max_push_entries: usize,
    /// The ingester's `max_chunk_age` (2h): entries more than half of it behind a
    /// stream's newest entry are `too_far_behind`.
    pub max_chunk_age_ns: i64,
    /// Seed of the fault-injection probability draws.
    pub fault_seed: u64,
    /// Fault rules active from the start.
    pub faults: Vec<FaultRule>,
    /// The stream label the usage ledger groups by (besides tenant and day).
    pub usage_label: String,
    /// Longest wait for a request's headers, including the wait for the next request on
    /// a keep-alive connection (None: no limit).
    pub header_read_timeout: Option<Duration>,
    /// A connection with no request in flight and no bytes moved for this long is closed.
    pub idle_timeout: Option<Duration>,
    /// Most connections open at once; past it, accepting waits for one to close.
    pub max_connections: usize,
    /// Whether `/metrics` carries per-stream series (whose `stream` label is the full
    /// label set of every tenant's streams). Off by default: they leak tenants' labels.
    pub metrics_stream_labels: bool,
    /// When set, `/fake-loki/api/v1/*` answers only requests with
    /// `Authorization: Bearer <token>`.
    pub admin_token: Option<String>,
    /// "Now" for old-sample checks, default query windows, retention and the ingester
    /// model (tests use [`Clock::manual`]).
    pub clock: Clock,
    /// How often expired entries are deleted (Loki's `compaction_interval`, 10m;
    /// None: never, though expired entries are still hidden from reads).
    pub retention_sweep_interval: Option<Duration>,
    /// Loki's `query_ingesters_within` (3h): metadata queries whose window ends this
    /// close to now also list the streams the ingester model holds, whatever the window.
    pub query_ingesters_within_ns: i64,
    /// Loki's `chunk_idle_period` (30m): the ingester model holds a stream until this
    /// long after its last push.
    pub chunk_idle_period_ns: i64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 3100)),
            auth_enabled: true,
            no_auth_tenant: "fake".into(),
            limits: LimitsConfig::default(),
            data_dir: None,
            multi_tenant_queries_enabled: false,
            max_recv_msg_size: 100 << 20,
            max_decompressed_size: 100 << 20,
            max_concurrent_pushes: 8,
            max_push_streams: 100_000,
            max_push_entries: 1_000_000,
            max_chunk_age_ns: DEFAULT_MAX_CHUNK_AGE_NS,
            fault_seed: 0,
            faults: Vec::new(),
            usage_label: "cluster".into(),
            header_read_timeout: Some(Duration::from_secs(10)),
            idle_timeout: Some(Duration::from_secs(120)),
            max_connections: 4096,
            metrics_stream_labels: false,
            admin_token: None,
            clock: Clock::system(),
            retention_sweep_interval: Some(crate::retention::DEFAULT_SWEEP_INTERVAL),
            query_ingesters_within_ns: 3 * 3600 * 1_000_000_000,
            chunk_idle_period_ns: 30 * 60 * 1_000_000_000,
        }
    }
}

impl Config {
    /// For tests: an ephemeral port on 127.0.0.1, auth on, and the limits Loki's own
    /// integration tests use: no service-name or level discovery, no old-sample
    /// rejection, and ingestion rates high enough not to throttle a test.
    pub fn for_tests() -> Self {
        let mut c = Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..Config::default()
        };
        let l = &mut c.limits.defaults;
        l.discover_service_name.clear();
        l.discover_log_levels = false;
        l.reject_old_samples = false;
        l.ingestion_rate_mb = 1024.0;
        l.ingestion_burst_size_mb = 1024.0;
        l.per_stream_rate_limit = 1 << 30;
        l.per_stream_rate_limit_burst = 1 << 30;
        l.max_global_streams_per_user = 0;
        c
    }

    /// Like [`Config::for_tests`] but with every Loki 3.x default in force (discovery
    /// of `service_name` and `detected_level`, 7d old-sample rejection, 4 MB/s rate).
    pub fn for_tests_with_loki_defaults() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..Config::default()
        }
    }
}
