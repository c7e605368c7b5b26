//! Deterministic workloads shared by the benches and the `bench` binary: log lines,
//! push requests, encoded push bodies and pre-filled fake-loki stores.

use bytes::Bytes;
use fake_loki::ingest::{IngestContext, PushOutcome};
use fake_loki::store::Store;
use fake_loki::State;
use loki_wire::proto::{EntryRef, PushEncoder};
use loki_wire::{EntryAdapter, LabelSet, PushRequest, StreamAdapter, Timestamp};

/// One line in `needle_every` carries the word `needle` (0 = never).
pub fn make_line(seq: u64, len: usize, needle_every: u64) -> Vec<u8> {
    let word = if needle_every > 0 && seq.is_multiple_of(needle_every) {
        "needle"
    } else {
        "hay"
    };
    let mut s = format!(
        "level=info caller=handler.go:{} msg=\"request served\" word={word} seq={seq} path=/api/v1/items/{} pad=",
        seq % 997,
        seq % 7919
    )
    .into_bytes();
    let filler = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut i = seq as usize;
    while s.len() < len {
        s.push(filler[i % filler.len()]);
        i += 7;
    }
    s.truncate(len);
    s
}

/// The label string of stream `i`: `{app="x", namespace="bench", pod="pod-<i>"}`.
pub fn stream_labels(i: usize) -> String {
    format!("{{app=\"x\", namespace=\"bench\", pod=\"pod-{i:04}\"}}")
}

/// Shape of a generated push.
#[derive(Debug, Clone, Copy)]
pub struct PushShape {
    pub streams: usize,
    pub entries_per_stream: usize,
    pub line_bytes: usize,
}

impl PushShape {
    /// 100 streams x 50 entries x 200-byte lines: ~1 MiB of line bytes.
    pub const ONE_MIB: PushShape = PushShape {
        streams: 100,
        entries_per_stream: 50,
        line_bytes: 200,
    };

    pub fn entries(&self) -> usize {
        self.streams * self.entries_per_stream
    }

    pub fn line_bytes_total(&self) -> usize {
        self.entries() * self.line_bytes
    }
}

/// Nanoseconds an hour before now: far enough from the future limit, recent enough for
/// any old-sample check.
pub fn base_ts_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0) - 3_600_000_000_000
}

/// A prost `PushRequest` of `shape`; push number `round` gets timestamps after the
/// previous round's, one microsecond apart, so rounds never duplicate each other.
pub fn push_request(shape: PushShape, base_ns: i64, round: u64, needle_every: u64) -> PushRequest {
    let per_round = shape.entries() as u64;
    let streams = (0..shape.streams)
        .map(|s| StreamAdapter {
            labels: stream_labels(s),
            entries: (0..shape.entries_per_stream)
                .map(|e| {
                    let seq = round * per_round + (e * shape.streams + s) as u64;
                    EntryAdapter {
                        timestamp: Some(Timestamp::from_unix_nanos(
                            base_ns + (round * per_round + e as u64) as i64 * 1000,
                        )),
                        line: Bytes::from(make_line(seq, shape.line_bytes, needle_every)),
                        structured_metadata: vec![],
                        parsed: vec![],
                    }
                })
                .collect(),
            hash: 0,
        })
        .collect();
    PushRequest {
        streams,
        format: String::new(),
    }
}

/// Encodes `req` with the direct encoder (no structured metadata support needed here).
pub fn encode_direct(req: &PushRequest) -> Vec<u8> {
    let mut enc = PushEncoder::new();
    let mut refs = Vec::new();
    for s in &req.streams {
        refs.clear();
        refs.extend(s.entries.iter().map(|e| EntryRef {
            ts_ns: e.timestamp.and_then(|t| t.to_unix_nanos()).unwrap_or(0),
            line: &e.line,
            structured_metadata: &[],
        }));
        enc.push_stream(&s.labels, &refs);
    }
    enc.finish()
}

/// A protobuf + snappy push body, as an agent sends it.
pub fn push_body(shape: PushShape, base_ns: i64, round: u64, needle_every: u64) -> Vec<u8> {
    loki_wire::snappy::compress(&encode_direct(&push_request(
        shape,
        base_ns,
        round,
        needle_every,
    )))
}

/// What `POST /loki/api/v1/push` does with a protobuf body after reading it, through
/// fake-loki's public API: snappy-decode, prost-decode, validate and store under the
/// store and limiter locks. Errors (which a benchmark treats as fatal) are strings.
pub fn decode_and_ingest(state: &State, tenant: &str, body: &[u8]) -> Result<PushOutcome, String> {
    let plain = loki_wire::snappy::decompress(body, state.config.max_decompressed_size)
        .map_err(|e| e.to_string())?;
    let req = <PushRequest as prost::Message>::decode(Bytes::from(plain))
        .map_err(|e| format!("proto: {e}"))?;
    Ok(ingest(state, tenant, req))
}

/// Ingests an already decoded request the way fake-loki's push handler does.
pub fn ingest(state: &State, tenant: &str, req: PushRequest) -> PushOutcome {
    let ctx = IngestContext {
        tenant,
        limits: state.config.limits.for_tenant(tenant),
        metrics: &state.metrics,
        now_ns: chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX),
        now: std::time::Instant::now(),
        max_chunk_age_ns: state.config.max_chunk_age_ns,
    };
    let mut store = state.store.write();
    let mut limiters = state.limiters.lock();
    fake_loki::ingest::ingest(&ctx, &mut store, &mut limiters, req, &mut |_, _| {})
}

/// A store holding `streams` streams of `{app="x"}` with `total` entries of
/// `line_bytes`-byte lines between them (filled directly, not through validation).
pub fn filled_store(
    tenant: &str,
    streams: usize,
    total: usize,
    line_bytes: usize,
    needle_every: u64,
) -> Result<Store, String> {
    let mut store = Store::default();
    let t = store.tenant_mut(tenant);
    let base = base_ts_ns();
    let mut idx = Vec::with_capacity(streams);
    for s in 0..streams {
        let labels = LabelSet::parse(&stream_labels(s)).map_err(|e| e.to_string())?;
        idx.push(t.create(labels));
    }
    for seq in 0..total {
        let line = make_line(seq as u64, line_bytes, needle_every);
        let line = std::str::from_utf8(&line).map_err(|e| e.to_string())?;
        t.insert(idx[seq % streams], base + seq as i64 * 1000, line, &[]);
    }
    Ok(store)
}

/// Formats timestamps as CRI's RFC3339Nano (`2024-01-02T03:04:05.123456789Z`), caching
/// the per-second prefix so generating millions of lines stays cheap.
#[derive(Debug, Default)]
pub struct TsFormatter {
    secs: Option<i64>,
    prefix: String,
}

impl TsFormatter {
    pub fn write(&mut self, out: &mut Vec<u8>, ts_ns: i64) {
        let secs = ts_ns.div_euclid(1_000_000_000);
        let nanos = ts_ns.rem_euclid(1_000_000_000);
        if self.secs != Some(secs) {
            self.prefix = chrono::DateTime::from_timestamp(secs, 0)
                .map(|t| t.format("%Y-%m-%dT%H:%M:%S").to_string())
                .unwrap_or_else(|| "1970-01-01T00:00:00".into());
            self.secs = Some(secs);
        }
        out.extend_from_slice(self.prefix.as_bytes());
        out.push(b'.');
        let mut digits = [b'0'; 9];
        let mut n = nanos;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (n % 10) as u8;
            n /= 10;
        }
        out.extend_from_slice(&digits);
        out.push(b'Z');
    }
}

/// `count` CRI lines (`<ts> stdout F <msg>\n`) of exactly `line_bytes` bytes each,
/// newline included, one microsecond apart.
pub fn cri_lines(count: usize, line_bytes: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(count * line_bytes);
    let mut fmt = TsFormatter::default();
    let base = base_ts_ns();
    for i in 0..count {
        let start = out.len();
        fmt.write(&mut out, base + i as i64 * 1000);
        out.extend_from_slice(b" stdout F ");
        let room = line_bytes.saturating_sub(out.len() - start + 1);
        out.extend_from_slice(&make_line(i as u64, room, 0));
        out.push(b'\n');
    }
    out
}

/// `count` docker json-file lines with the same messages as [`cri_lines`].
pub fn docker_lines(count: usize, msg_bytes: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(count * (msg_bytes + 80));
    let mut fmt = TsFormatter::default();
    let base = base_ts_ns();
    for i in 0..count {
        out.extend_from_slice(b"{\"log\":\"");
        // make_line's only character that needs JSON escaping is `"`.
        for &b in &make_line(i as u64, msg_bytes, 0) {
            if b == b'"' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.extend_from_slice(b"\\n\",\"stream\":\"stdout\",\"time\":\"");
        fmt.write(&mut out, base + i as i64 * 1000);
        out.extend_from_slice(b"\"}\n");
    }
    out
}

/// `(start, end)` of every line of `buf`, newline excluded.
pub fn line_ranges(buf: &[u8]) -> Vec<(usize, usize)> {
    let mut v = Vec::new();
    let mut start = 0;
    for nl in memchr::memchr_iter(b'\n', buf) {
        v.push((start, nl));
        start = nl + 1;
    }
    v
}
