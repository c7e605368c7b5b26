//! loki-wire hot paths: protobuf encode of a ~1 MiB batch (direct encoder vs prost),
//! snappy block compression, and label-string parse/print.

use std::hint::black_box;

use bench::data::{self, PushShape};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use loki_wire::proto::{EntryRef, PushEncoder};
use loki_wire::LabelSet;
use prost::Message;

fn encode(c: &mut Criterion) {
    let shape = PushShape::ONE_MIB;
    let req = data::push_request(shape, data::base_ts_ns(), 0, 0);
    // Entry refs as the agent holds them: borrowed lines, timestamps in ns.
    let streams: Vec<(String, Vec<EntryRef<'_>>)> = req
        .streams
        .iter()
        .map(|s| {
            let refs = s
                .entries
                .iter()
                .map(|e| EntryRef {
                    ts_ns: e.timestamp.and_then(|t| t.to_unix_nanos()).unwrap_or(0),
                    line: &e.line,
                    structured_metadata: &[],
                })
                .collect();
            (s.labels.clone(), refs)
        })
        .collect();
    let encoded = data::encode_direct(&req);
    assert_eq!(
        encoded,
        req.encode_to_vec(),
        "direct encoder must match prost"
    );

    let mut g = c.benchmark_group("encode_1mib");
    g.throughput(Throughput::Bytes(shape.line_bytes_total() as u64));
    let mut buf = Vec::with_capacity(encoded.len());
    g.bench_function("push_encoder_bytes", |b| {
        b.iter(|| {
            let mut enc = PushEncoder::with_buffer(std::mem::take(&mut buf));
            for (labels, refs) in &streams {
                enc.push_stream(labels, refs);
            }
            buf = enc.finish();
            black_box(buf.len())
        })
    });
    g.bench_function("prost_encode_to_vec_bytes", |b| {
        b.iter(|| black_box(req.encode_to_vec()))
    });
    g.throughput(Throughput::Elements(shape.entries() as u64));
    g.bench_function("push_encoder_entries", |b| {
        b.iter(|| {
            let mut enc = PushEncoder::with_buffer(std::mem::take(&mut buf));
            for (labels, refs) in &streams {
                enc.push_stream(labels, refs);
            }
            buf = enc.finish();
            black_box(buf.len())
        })
    });
    g.finish();

    let mut g = c.benchmark_group("snappy_1mib");
    g.throughput(Throughput::Bytes(encoded.len() as u64));
    g.bench_function("compress", |b| {
        b.iter(|| black_box(loki_wire::snappy::compress(black_box(&encoded))))
    });
    let compressed = loki_wire::snappy::compress(&encoded);
    g.bench_function("decompress", |b| {
        b.iter(|| {
            black_box(loki_wire::snappy::decompress(
                black_box(&compressed),
                1 << 30,
            ))
        })
    });
    g.finish();
    eprintln!(
        "encode_1mib: {} entries, {} line bytes, {} protobuf bytes, {} snappy bytes",
        shape.entries(),
        shape.line_bytes_total(),
        encoded.len(),
        compressed.len()
    );
}

fn labels(c: &mut Criterion) {
    let input = r#"{namespace="payments", pod="api-7d9f8c6b5-x2x7k", container="app", app="api", stream="stdout", job="payments/api", node="ip-10-0-1-23.eu-west-1.compute.internal"}"#;
    let parsed = LabelSet::parse(input).expect("valid labels");
    let printed = parsed.to_string();
    let mut g = c.benchmark_group("labels");
    g.throughput(Throughput::Bytes(input.len() as u64));
    g.bench_function("parse_bytes", |b| {
        b.iter(|| black_box(LabelSet::parse(black_box(input))))
    });
    g.throughput(Throughput::Bytes(printed.len() as u64));
    g.bench_function("display_bytes", |b| {
        b.iter(|| black_box(black_box(&parsed).to_string()))
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_sets", |b| {
        b.iter(|| black_box(LabelSet::parse(black_box(input))))
    });
    g.bench_function("display_sets", |b| {
        b.iter(|| black_box(black_box(&parsed).to_string()))
    });
    g.finish();
}

criterion_group!(benches, encode, labels);
criterion_main!(benches);
