//! Agent hot paths: CRI and docker json-file line parsing, alone and through the
//! per-file `LineParser` (line splitting included), on 200-byte lines.

use std::hint::black_box;

use agent::config::LineFormat;
use agent::parse::{cri, docker, LineParser, Out};
use bench::data;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const LINES: usize = 10_000;

fn cri_bench(c: &mut Criterion) {
    let buf = data::cri_lines(LINES, 200);
    let ranges = data::line_ranges(&buf);
    assert!(ranges
        .iter()
        .all(|&(s, e)| cri::parse(&buf[s..e]).is_some_and(|r| !r.partial)));
    let mut g = c.benchmark_group("agent_cri_200b");
    for (name, tp) in [
        ("entries", Throughput::Elements(LINES as u64)),
        ("bytes", Throughput::Bytes(buf.len() as u64)),
    ] {
        g.throughput(tp);
        g.bench_function(format!("cri_parse_{name}"), |b| {
            b.iter(|| {
                let mut n = 0usize;
                for &(s, e) in &ranges {
                    if let Some(r) = cri::parse(black_box(&buf[s..e])) {
                        n += r.content_start;
                    }
                }
                black_box(n)
            })
        });
        let mut parser = LineParser::new(LineFormat::Cri, 256 * 1024);
        let mut out = Out::default();
        g.bench_function(format!("line_parser_split_cri_{name}"), |b| {
            b.iter(|| {
                out.entries.clear();
                out.extra.clear();
                out.line_bytes = 0;
                let mut start = 0;
                for nl in memchr::memchr_iter(b'\n', &buf) {
                    parser.line(&buf, start, nl, start as u64, 0, &mut out);
                    start = nl + 1;
                }
                black_box(out.entries.len())
            })
        });
    }
    g.finish();
}

fn docker_bench(c: &mut Criterion) {
    let buf = data::docker_lines(LINES, 130);
    let ranges = data::line_ranges(&buf);
    assert!(ranges
        .iter()
        .all(|&(s, e)| docker::parse(&buf[s..e]).is_some()));
    let mut g = c.benchmark_group("agent_docker");
    for (name, tp) in [
        ("entries", Throughput::Elements(LINES as u64)),
        ("bytes", Throughput::Bytes(buf.len() as u64)),
    ] {
        g.throughput(tp);
        g.bench_function(format!("docker_parse_{name}"), |b| {
            b.iter(|| {
                let mut n = 0usize;
                for &(s, e) in &ranges {
                    if let Some(r) = docker::parse(black_box(&buf[s..e])) {
                        n += r.log.len();
                    }
                }
                black_box(n)
            })
        });
        let mut parser = LineParser::new(LineFormat::Docker, 256 * 1024);
        let mut out = Out::default();
        g.bench_function(format!("line_parser_split_docker_{name}"), |b| {
            b.iter(|| {
                out.entries.clear();
                out.extra.clear();
                out.line_bytes = 0;
                let mut start = 0;
                for nl in memchr::memchr_iter(b'\n', &buf) {
                    parser.line(&buf, start, nl, start as u64, 0, &mut out);
                    start = nl + 1;
                }
                black_box(out.entries.len())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, cri_bench, docker_bench);
criterion_main!(benches);
