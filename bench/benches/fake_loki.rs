//! fake-loki hot paths through its public API: decode + ingest of ~1 MiB protobuf+snappy
//! pushes, and a line-filter range query over 1M stored entries.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bench::data::{self, PushShape};
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fake_loki::api::TenantSource;
use fake_loki::logql::{self, Direction, QueryResult, RangeQuery};
use fake_loki::{Config, State};
use loki_wire::PushRequest;
use prost::Message;

const TENANT: &str = "bench";
/// Distinct push bodies per fresh state: every push after the first of a round appends
/// to the 100 existing streams, as a steady agent's pushes do.
const ROUNDS: u64 = 32;

fn fresh_state() -> State {
    State::new(Config::for_tests()).expect("in-memory state")
}

fn push(c: &mut Criterion) {
    let shape = PushShape::ONE_MIB;
    let base = data::base_ts_ns();
    let bodies: Vec<Vec<u8>> = (0..ROUNDS)
        .map(|r| data::push_body(shape, base, r, 0))
        .collect();
    let decoded: Vec<PushRequest> = (0..ROUNDS)
        .map(|r| data::push_request(shape, base, r, 0))
        .collect();

    let mut g = c.benchmark_group("fake_loki_push_1mib");
    g.sample_size(20);
    for (name, tp) in [
        ("entries", Throughput::Elements(shape.entries() as u64)),
        ("bytes", Throughput::Bytes(shape.line_bytes_total() as u64)),
    ] {
        g.throughput(tp);
        g.bench_function(format!("decode_ingest_{name}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut state = fresh_state();
                for i in 0..iters {
                    let round = i % ROUNDS;
                    if round == 0 && i > 0 {
                        state = fresh_state();
                    }
                    let body = &bodies[round as usize];
                    let t = Instant::now();
                    let out = data::decode_and_ingest(&state, TENANT, body).expect("valid body");
                    total += t.elapsed();
                    assert_eq!(out.stored, shape.entries() as u64, "{}", out.body);
                }
                total
            })
        });
    }
    g.throughput(Throughput::Elements(shape.entries() as u64));
    g.bench_function("decode_only_entries", |b| {
        b.iter(|| {
            let plain = loki_wire::snappy::decompress(&bodies[0], 1 << 30).expect("snappy");
            black_box(PushRequest::decode(Bytes::from(plain)).expect("proto"))
        })
    });
    g.bench_function("ingest_only_entries", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut state = fresh_state();
            for i in 0..iters {
                let round = i % ROUNDS;
                if round == 0 && i > 0 {
                    state = fresh_state();
                }
                let req = decoded[round as usize].clone();
                let t = Instant::now();
                let out = data::ingest(&state, TENANT, req);
                total += t.elapsed();
                assert_eq!(out.stored, shape.entries() as u64, "{}", out.body);
            }
            total
        })
    });
    g.finish();
}

fn query(c: &mut Criterion) {
    const TOTAL: usize = 1_000_000;
    const LINE: usize = 200;
    let store = data::filled_store(TENANT, 100, TOTAL, LINE, 1000).expect("store");
    let tenants = [TENANT.to_string()];
    let (first, last) = store
        .tenant(TENANT)
        .and_then(|t| t.time_bounds())
        .expect("entries");
    // The server's state around the filled store, so queries read it as a request would
    // (store lock, stream views, default limits).
    let state = fake_loki::State::new(fake_loki::Config::for_tests()).expect("state");
    *state.store.write() = store;
    let src = TenantSource::new(&state, &tenants);
    let mut g = c.benchmark_group("fake_loki_query_1m");
    g.sample_size(10);
    for (name, q, limit, want) in [
        ("line_filter_needle", r#"{app="x"} |= "needle""#, 5000, 1000),
        ("line_filter_nomatch", r#"{app="x"} |= "zzzz""#, 5000, 0),
        ("no_filter_limit_5000", r#"{app="x"}"#, 5000, 5000),
    ] {
        let expr = logql::parse(q).expect("valid query");
        let rq = RangeQuery {
            start: first,
            end: last + 1,
            step: 1_000_000_000,
            interval: 0,
            limit,
            direction: Direction::Forward,
        };
        match logql::exec_range(&expr, &src, &rq).expect("query runs") {
            QueryResult::Streams(entries, stats) => {
                assert_eq!(entries.len(), want, "{name}");
                eprintln!("{name}: lines_processed={}", stats.lines_processed);
            }
            _ => panic!("log query expected"),
        }
        // The filter queries scan every entry; the unfiltered one stops at the limit.
        let scanned = if want == 5000 { 5000 } else { TOTAL };
        g.throughput(Throughput::Elements(scanned as u64));
        g.bench_function(format!("{name}_entries"), |b| {
            b.iter(|| black_box(logql::exec_range(&expr, &src, &rq).expect("query runs")))
        });
    }
    g.finish();
}

criterion_group!(benches, push, query);
criterion_main!(benches);
