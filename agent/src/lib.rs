//! agent: a node-level Kubernetes log agent that tails kubelet pod log files and ships them to
//! Loki without losing a line.
//!
//! The data flows top to bottom through small modules:
//! [`discovery`] (which files) → [`tail`] (read complete lines, survive rotation) →
//! [`parse`] (CRI, docker, plain) → [`batch`] (per tenant, by bytes and age) →
//! [`push`] (protobuf + snappy, retry/drop) → [`tail::positions`] (acknowledged offsets).
//! Stages are joined by bounded channels, so a slow Loki stops the reading and the log files
//! themselves are the buffer.
//!
//! Shutdown order: stop reading → flush batches → last pushes under `drain_timeout` → save
//! positions → return.

pub mod alloy;
pub mod batch;
pub mod chunk;
pub mod config;
pub mod discovery;
pub mod error;
#[cfg(feature = "kube")]
pub mod k8s;
pub mod metrics;
pub mod parse;
pub mod push;
pub mod server;
pub mod source;
pub mod tail;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinHandle};

pub use config::Settings;
pub use error::AgentError;

use discovery::{Discovery, PodLogs};
use metrics::Metrics;
use push::fanout::{self, Lane};
use push::SenderCtx;
use tail::positions::Positions;
use tail::{SinkFactory, Tailer};

/// Batches queued between a tenant's batcher and its sender (one is being built meanwhile).
const BATCH_QUEUE: usize = 2;
/// How often the lag gauges are refreshed when no acknowledgement arrives.
const LAG_REFRESH: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs the agent on the kubelet layout under `settings.pods_root` until `shutdown` resolves.
pub async fn run(settings: Settings, shutdown: impl Future<Output = ()>) -> Result<(), AgentError> {
    let discovery = PodLogs::new(settings.pods_root.clone(), settings.pod_uid_label);
    run_with(settings, Box::new(discovery), None, shutdown).await
}

/// Runs the agent with any file discovery. When `bound` is given, the HTTP listener's actual
/// address is sent there once bound (tests listen on port 0).
pub async fn run_with(
    settings: Settings,
    discovery: Box<dyn Discovery>,
    bound: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    run_inner(
        settings,
        discovery,
        None,
        Vec::new(),
        Live::default(),
        bound,
        shutdown,
    )
    .await
}

/// Runs an Alloy config: `plan.settings` (with the caller's overrides already applied), the
/// given discovery (usually [`alloy::Plan::discovery`]) and every entry through the plan's
/// routes (`loki.process` / `loki.relabel`) before it is batched by the `loki.write` its
/// route ends at. The tenant may come from `stage.tenant`; `__*` labels are removed before
/// pushing.
pub async fn run_plan(
    plan: &alloy::Plan,
    discovery: Box<dyn Discovery>,
    bound: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    run_plan_with(plan, discovery, Live::default(), bound, shutdown).await
}

/// What can feed or change a running plan besides its files.
#[derive(Default)]
pub struct Live {
    /// Chunk sources besides the tailer (the plan's `loki.source.kubernetes_events`); their
    /// chunks run through the same routes.
    pub sources: Vec<Arc<dyn source::ChunkSource>>,
    /// New values of every writer's endpoints, indexed like `plan.writers` (the config
    /// evaluated again with new `remote.kubernetes.*` data): their headers, auth and
    /// `tenant_id` apply to every later request.
    pub endpoints: Option<tokio::sync::watch::Receiver<Vec<Vec<config::Endpoint>>>>,
}

/// Like [`run_plan`], with [`Live`] inputs.
pub async fn run_plan_with(
    plan: &alloy::Plan,
    discovery: Box<dyn Discovery>,
    live: Live,
    bound: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    let mut settings = plan.settings.clone();
    // The first writer is the one the settings describe (so the caller's overrides of the
    // settings apply to it); the others come from the plan.
    let mut writers = vec![Writer {
        endpoints: settings.endpoint_list(),
        external_labels: std::mem::take(&mut settings.external_labels),
    }];
    writers.extend(plan.writers.iter().skip(1).map(|w| Writer {
        endpoints: w.endpoints.clone(),
        external_labels: w.external_labels.clone(),
    }));
    // External labels belong to each writer and are added after the stages (Alloy adds them
    // in loki.write), so the tailer adds none.
    run_inner(
        settings,
        discovery,
        Some(plan.routes()),
        writers,
        live,
        bound,
        shutdown,
    )
    .await
}

/// One `loki.write`: where its entries go and the labels it adds.
struct Writer {
    endpoints: Vec<config::Endpoint>,
    external_labels: std::collections::BTreeMap<String, String>,
}

async fn run_inner(
    settings: Settings,
    discovery: Box<dyn Discovery>,
    routes: Option<Vec<Vec<alloy::Route>>>,
    writers: Vec<Writer>,
    live: Live,
    bound: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    let Live {
        sources,
        endpoints: endpoint_updates,
    } = live;
    if settings.batch_bytes == 0 || settings.read_bytes == 0 || settings.max_line_bytes == 0 {
        return Err(AgentError::Settings(
            "batch_bytes, read_bytes and max_line_bytes must be > 0".into(),
        ));
    }
    let writers = if writers.is_empty() {
        vec![Writer {
            endpoints: settings.endpoint_list(),
            external_labels: Default::default(),
        }]
    } else {
        writers
    };
    let endpoints = || writers.iter().flat_map(|w| w.endpoints.iter());
    if endpoints().any(|e| e.batch_bytes == 0) {
        return Err(AgentError::Settings("batch_size must be > 0".into()));
    }
    // Without a router nothing waits for every endpoint before acknowledging a position.
    if routes.is_none() && endpoints().count() > 1 {
        return Err(AgentError::Settings(
            "several endpoints need an Alloy config (agent run CONFIG_FILE)".into(),
        ));
    }
    let settings = Arc::new(settings);
    let positions = Arc::new(Positions::open(
        &settings.positions_path,
        settings.positions_reset_on_corrupt,
    )?);
    let metrics = Arc::new(Metrics::new(
        &endpoints().next().map(|e| e.host()).unwrap_or_default(),
    ));
    let loki_urls: Vec<&str> = endpoints().map(|e| e.url.as_str()).collect();
    let loki_urls = loki_urls.join(", ");
    let mut external_labels = Vec::with_capacity(writers.len());
    // Per writer: a sender context per endpoint, and whether it needs a fan-out stage (one
    // endpoint that blocks when full does not: its batcher queue is the buffer, as before).
    let mut outputs: Vec<(Vec<SenderCtx>, bool)> = Vec::with_capacity(writers.len());
    for w in writers {
        let senders = w
            .endpoints
            .into_iter()
            .map(|e| SenderCtx::new(e, positions.clone(), metrics.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        let fan_out = senders.len() > 1 || senders.iter().any(|s| !s.endpoint.block_on_overflow);
        outputs.push((senders, fan_out));
        external_labels.push(w.external_labels);
    }
    let updater = endpoint_updates.map(|rx| {
        let clients: Vec<Vec<push::client::LokiClient>> = outputs
            .iter()
            .map(|(senders, _)| senders.iter().map(|c| c.client.clone()).collect())
            .collect();
        tokio::spawn(apply_endpoint_updates(rx, clients))
    });
    let ready = Arc::new(AtomicBool::new(false));

    let server = match settings.listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| AgentError::Listen { addr, source })?;
            if let (Some(tx), Ok(a)) = (bound, listener.local_addr()) {
                let _ = tx.send(a);
            }
            let state = Arc::new(server::ServerState {
                metrics: metrics.clone(),
                ready: ready.clone(),
            });
            Some(tokio::spawn(server::serve(listener, state)))
        }
        None => None,
    };

    let (wake_tx, wake_rx) = std::sync::mpsc::sync_channel::<()>(1);
    let rescan = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let _watcher = tail::watch::start(
        &discovery.watch_root(),
        wake_tx.clone(),
        rescan.clone(),
        settings.min_read_interval,
    );

    let pipelines: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
    let aborts: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
    let aborting = Arc::new(AtomicBool::new(false));
    // Batcher + sender of one writer's tenant per endpoint (behind a fan-out when there are
    // several); returns the tenant's chunk queue.
    let make_output = {
        let handle = tokio::runtime::Handle::current();
        let pipelines = pipelines.clone();
        let aborts = aborts.clone();
        let wake_tx = wake_tx.clone();
        let queue = settings.queue_chunks.max(1);
        let metrics = metrics.clone();
        let outputs = Arc::new(outputs);
        move |writer: usize, tenant: &Arc<str>| {
            // Routes only name writers of the plan; the first is the fallback.
            let Some((senders, fan_out)) = outputs.get(writer).or(outputs.first()) else {
                // No writer at all cannot be built (run_inner always has one): a closed
                // queue makes the caller stop.
                return mpsc::channel(1).0;
            };
            let fan_out = *fan_out;
            let mut lanes = Vec::with_capacity(senders.len());
            let mut tasks = Vec::new();
            for ctx in senders {
                let ep = &ctx.endpoint;
                let (ctx_tx, ctx_rx) = mpsc::channel(queue);
                let (batch_tx, batch_rx) = mpsc::channel(BATCH_QUEUE);
                tasks.push(handle.spawn(batch::run_batcher(
                    ctx_rx,
                    batch_tx,
                    ep.batch_bytes,
                    ep.batch_wait,
                    wake_tx.clone(),
                )));
                tasks.push(handle.spawn(push::run_sender(ctx.clone(), tenant.clone(), batch_rx)));
                lanes.push(Lane {
                    out: ctx_tx,
                    capacity: ep.queue_capacity,
                    block_on_overflow: ep.block_on_overflow,
                    host: ctx.host.clone(),
                    tenant: ep.tenant_for(tenant).to_string(),
                });
            }
            let tx = match (fan_out, lanes.pop()) {
                (false, Some(only)) => only.out,
                (_, last) => {
                    lanes.extend(last);
                    let (tx, t) = fanout::spawn(&handle, lanes, queue, metrics.clone());
                    tasks.extend(t);
                    tx
                }
            };
            aborts
                .lock()
                .extend(tasks.iter().map(JoinHandle::abort_handle));
            pipelines.lock().extend(tasks);
            tx
        }
    };
    let has_routes = routes.is_some();
    let mut factory: SinkFactory = match routes {
        None => Box::new(move |tenant: &Arc<str>| make_output(0, tenant)),
        Some(routes) => {
            // Alloy mode: each tailer queue feeds a router that runs the config's stages and
            // makes its own output pipelines per resulting tenant.
            let handle = tokio::runtime::Handle::current();
            let pipelines = pipelines.clone();
            let aborts = aborts.clone();
            let wake_tx = wake_tx.clone();
            let settings = settings.clone();
            let positions = positions.clone();
            let metrics = metrics.clone();
            let aborting = aborting.clone();
            let sources = sources.clone();
            Box::new(move |tenant: &Arc<str>| {
                let (tx, rx) = mpsc::channel(settings.queue_chunks.max(1));
                let ctx = alloy::router::RouterCtx {
                    tenant: tenant.clone(),
                    routes: routes.clone(),
                    external_labels: external_labels.clone(),
                    ack: {
                        let positions = positions.clone();
                        let sources = sources.clone();
                        Arc::new(move |id, offset| {
                            if id < source::ID_BASE || !sources.iter().any(|s| s.ack(id, offset)) {
                                positions.ack(id, offset)
                            }
                        })
                    },
                    metrics: metrics.clone(),
                    outputs: Box::new(make_output.clone()),
                    wake: wake_tx.clone(),
                    aborting: aborting.clone(),
                };
                let r = handle.spawn(alloy::router::run_router(ctx, rx));
                aborts.lock().push(r.abort_handle());
                pipelines.lock().push(r);
                tx
            })
        }
    };

    // Chunk sources share one router queue of the default tenant; their tasks hold it open.
    let source_tasks: Vec<JoinHandle<()>> = match (has_routes, sources.is_empty()) {
        (true, false) => {
            let tx = factory(&Arc::from(settings.tenant.as_str()));
            sources.iter().flat_map(|s| s.start(tx.clone())).collect()
        }
        _ => Vec::new(),
    };

    let tailer = Tailer::new(
        settings.clone(),
        discovery,
        positions.clone(),
        metrics.clone(),
        factory,
    );
    let tailer_thread = {
        let stop = stop.clone();
        let rescan = rescan.clone();
        std::thread::Builder::new()
            .name("tailer".into())
            .spawn(move || tailer.run(wake_rx, rescan, stop))
            .map_err(|e| AgentError::io("spawn tailer thread", "", e))?
    };

    let saver = {
        let positions = positions.clone();
        let metrics = metrics.clone();
        let every = settings.positions_sync_interval;
        // Group commit: wait for a change, write it (with every change that came meanwhile),
        // then let at least `every` pass; a crash re-sends at most about that much.
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = positions.changed() => {}
                    // The lag gauges follow file growth even when nothing is acknowledged.
                    _ = tokio::time::sleep(LAG_REFRESH) => {}
                }
                save_positions(&positions, &metrics);
                tokio::time::sleep(every).await;
            }
        })
    };

    ready.store(true, Ordering::Relaxed);
    tracing::info!(pods_root = %settings.pods_root.display(), loki = %loki_urls, "agent started");
    shutdown.await;
    tracing::info!("shutting down: stop reading, flush, push, save positions");
    ready.store(false, Ordering::Relaxed);

    stop.store(true, Ordering::Relaxed);
    let _ = wake_tx.try_send(());
    // Chunk sources stop reading too: their router queue closes once the tasks are gone.
    for t in &source_tasks {
        t.abort();
    }
    for t in source_tasks {
        let _ = t.await;
    }
    // The tailer owns the chunk senders: when it ends, the batchers flush and the senders drain.
    let _ = tokio::task::spawn_blocking(move || tailer_thread.join()).await;
    // Routers may still start output pipelines while they drain: wait until none is left.
    let drained = tokio::time::timeout(settings.drain_timeout, async {
        loop {
            let handles: Vec<JoinHandle<()>> = std::mem::take(&mut *pipelines.lock());
            if handles.is_empty() {
                break;
            }
            for h in handles {
                let _ = h.await;
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(timeout = ?settings.drain_timeout, "drain timeout: unacknowledged data will be re-read after restart");
        aborting.store(true, Ordering::SeqCst);
        for a in std::mem::take(&mut *aborts.lock()) {
            a.abort();
        }
    }
    saver.abort();
    if let Some(s) = server {
        s.abort();
    }
    if let Some(u) = updater {
        u.abort();
    }
    positions.save()?;
    for s in &sources {
        s.save();
    }
    tracing::info!("positions saved; bye");
    Ok(())
}

fn save_positions(positions: &Positions, metrics: &Metrics) {
    if let Err(e) = positions.save() {
        metrics.positions_saves_failed.inc();
        tracing::error!(error = %e, "saving positions failed");
    }
    metrics.set_lags(&positions.lags());
}

/// Hands each new endpoint value to its client until the sender is gone.
async fn apply_endpoint_updates(
    mut rx: tokio::sync::watch::Receiver<Vec<Vec<config::Endpoint>>>,
    clients: Vec<Vec<push::client::LokiClient>>,
) {
    while rx.changed().await.is_ok() {
        let writers = rx.borrow_and_update().clone();
        for (w, endpoints) in clients.iter().zip(&writers) {
            for (client, ep) in w.iter().zip(endpoints) {
                match client.update(ep) {
                    Ok(()) => {
                        tracing::info!(url = %ep.url, "endpoint headers, credentials and tenant updated; later pushes use them")
                    }
                    Err(e) => {
                        tracing::warn!(url = %ep.url, error = %e, "new endpoint values refused; keeping the previous ones")
                    }
                }
            }
        }
    }
}
