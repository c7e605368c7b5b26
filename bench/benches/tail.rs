//! The agent's whole read path with no network: the tailer reads a pre-written kubelet
//! tree (10 pods x 20,000 CRI lines of 200 bytes) through parsing and chunking into the
//! per-tenant batcher, and each batch is encoded and snappy-compressed as for a push.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::batch::{run_batcher, Batch};
use agent::config::Settings;
use agent::discovery::PodLogs;
use agent::metrics::Metrics;
use agent::tail::positions::Positions;
use agent::tail::{SinkFactory, Tailer};
use bench::data;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tokio::sync::mpsc;

const PODS: usize = 10;
const LINES_PER_POD: usize = 20_000;
const LINE_BYTES: usize = 200;

/// Writes the pods tree; returns the total file bytes.
fn write_tree(root: &Path) -> u64 {
    let body = data::cri_lines(LINES_PER_POD, LINE_BYTES);
    for p in 0..PODS {
        let dir = root.join(format!("bench_pod{p}_uid{p:04}/app"));
        std::fs::create_dir_all(&dir).expect("create pod dir");
        std::fs::write(dir.join("0.log"), &body).expect("write log");
    }
    (body.len() * PODS) as u64
}

/// One full read of the tree; returns how long the tailer took to deliver every line.
fn read_all(rt: &tokio::runtime::Runtime, root: &Path, scratch: &Path) -> Duration {
    let positions_path = scratch.join("positions.yaml");
    let _ = std::fs::remove_file(&positions_path);
    let settings = Arc::new(Settings {
        pods_root: root.to_path_buf(),
        positions_path: positions_path.clone(),
        ..Settings::default()
    });
    let positions = Arc::new(Positions::load(&positions_path).expect("positions"));
    let metrics = Arc::new(Metrics::new("bench"));
    let (batch_tx, mut batch_rx) = mpsc::channel::<Batch>(16);
    let (wake_tx, wake_rx) = std_mpsc::sync_channel::<()>(1);
    let handle = rt.handle().clone();
    let batch_bytes = settings.batch_bytes;
    let factory: SinkFactory = Box::new(move |_tenant| {
        let (tx, rx) = mpsc::channel(64);
        handle.spawn(run_batcher(
            rx,
            batch_tx.clone(),
            batch_bytes,
            Duration::from_millis(50),
            wake_tx.clone(),
        ));
        tx
    });
    let tailer = Tailer::new(
        settings,
        Box::new(PodLogs::new(root, false)),
        positions,
        metrics,
        factory,
    );
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let thread = {
        let stop = stop.clone();
        std::thread::spawn(move || tailer.run(wake_rx, Arc::new(AtomicBool::new(false)), stop))
    };
    let want = PODS * LINES_PER_POD;
    let got = rt.block_on(async {
        let mut n = 0usize;
        while n < want {
            let Some(batch) = batch_rx.recv().await else {
                break;
            };
            let body = loki_wire::snappy::compress(&batch.encode());
            std::hint::black_box(body);
            n += batch.entries;
        }
        n
    });
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let _ = thread.join();
    assert_eq!(got, want, "every line reached a batch");
    took
}

fn tail_bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("pods");
    let scratch = dir.path().join("scratch");
    std::fs::create_dir_all(&scratch).expect("scratch");
    let bytes = write_tree(&root);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let mut g = c.benchmark_group("agent_tail_to_batch");
    g.sample_size(10);
    for (name, tp) in [
        (
            "entries",
            Throughput::Elements((PODS * LINES_PER_POD) as u64),
        ),
        ("bytes", Throughput::Bytes(bytes)),
    ] {
        g.throughput(tp);
        g.bench_function(format!("read_parse_batch_encode_{name}"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| read_all(&rt, &root, &scratch)).sum());
        });
    }
    g.finish();
}

criterion_group!(benches, tail_bench);
criterion_main!(benches);
