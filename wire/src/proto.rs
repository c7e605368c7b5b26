//! The `logproto` push messages (`pkg/push/push.proto` in Loki), with Loki's field numbers.
//!
//! The gogoproto options in Loki's `.proto` only shape the Go bindings, so plain prost
//! messages produce and accept the same bytes. Lines are `bytes` here rather than
//! `string`: Go does not validate UTF-8 when it decodes, so Loki accepts invalid UTF-8
//! in a line and so must we. Decoding from [`bytes::Bytes`] slices lines without copying.

use bytes::Bytes;

/// `logproto.PushRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PushRequest {
    #[prost(message, repeated, tag = "1")]
    pub streams: Vec<StreamAdapter>,
    /// Internal to Loki ("loki" or "otlp"); clients leave it empty.
    #[prost(string, tag = "2")]
    pub format: String,
}

/// `logproto.StreamAdapter`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StreamAdapter {
    /// The label string, e.g. `{app="x", env="prod"}`.
    #[prost(string, tag = "1")]
    pub labels: String,
    #[prost(message, repeated, tag = "2")]
    pub entries: Vec<EntryAdapter>,
    /// Ignored by Loki; clients send 0.
    #[prost(uint64, tag = "3")]
    pub hash: u64,
}

/// `logproto.EntryAdapter`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EntryAdapter {
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<Timestamp>,
    #[prost(bytes = "bytes", tag = "2")]
    pub line: Bytes,
    #[prost(message, repeated, tag = "3")]
    pub structured_metadata: Vec<LabelPairAdapter>,
    /// Only set in query responses; pushes leave it empty.
    #[prost(message, repeated, tag = "4")]
    pub parsed: Vec<LabelPairAdapter>,
}

/// `logproto.LabelPairAdapter`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct LabelPairAdapter {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `google.protobuf.Timestamp`.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// Seconds of `0001-01-01T00:00:00Z`, the lower bound Go's protobuf timestamp accepts.
pub const MIN_TIMESTAMP_SECONDS: i64 = -62_135_596_800;
/// Seconds of `10000-01-01T00:00:00Z`, the (exclusive) upper bound.
pub const MAX_TIMESTAMP_SECONDS: i64 = 253_402_300_800;

impl Timestamp {
    /// Splits nanoseconds since the Unix epoch into seconds and non-negative nanos.
    pub fn from_unix_nanos(ns: i64) -> Self {
        Timestamp {
            seconds: ns.div_euclid(1_000_000_000),
            // rem_euclid of 1e9 always fits in i32.
            nanos: ns.rem_euclid(1_000_000_000) as i32,
        }
    }

    /// Nanoseconds since the Unix epoch, or `None` when the timestamp is outside the range
    /// Go's `timestamppb` accepts or does not fit an `i64` of nanoseconds.
    pub fn to_unix_nanos(self) -> Option<i64> {
        if !(MIN_TIMESTAMP_SECONDS..MAX_TIMESTAMP_SECONDS).contains(&self.seconds)
            || !(0..1_000_000_000).contains(&self.nanos)
        {
            return None;
        }
        self.seconds
            .checked_mul(1_000_000_000)?
            .checked_add(i64::from(self.nanos))
    }
}

/// One entry to encode without building a prost struct.
#[derive(Debug, Clone, Copy)]
pub struct EntryRef<'a> {
    pub ts_ns: i64,
    pub line: &'a [u8],
    pub structured_metadata: &'a [(&'a str, &'a str)],
}

/// Writes a `PushRequest` straight into a byte buffer, stream by stream.
///
/// The output is byte-identical to prost's encoding of the same request (tested), but
/// costs no allocation per entry: the agent's hot path.
#[derive(Debug, Default)]
pub struct PushEncoder {
    buf: Vec<u8>,
}

impl PushEncoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reuses `buf` (cleared) as the output buffer.
    pub fn with_buffer(mut buf: Vec<u8>) -> Self {
        buf.clear();
        PushEncoder { buf }
    }

    /// Appends one stream with its entries.
    pub fn push_stream(&mut self, labels: &str, entries: &[EntryRef<'_>]) {
        let mut stream_len = 0usize;
        if !labels.is_empty() {
            stream_len += field_len(labels.len());
        }
        for e in entries {
            stream_len += field_len(entry_len(e));
        }
        put_key(&mut self.buf, 1, WIRE_LEN);
        put_varint(&mut self.buf, stream_len as u64);
        if !labels.is_empty() {
            put_bytes_field(&mut self.buf, 1, labels.as_bytes());
        }
        for e in entries {
            put_key(&mut self.buf, 2, WIRE_LEN);
            put_varint(&mut self.buf, entry_len(e) as u64);
            let ts = Timestamp::from_unix_nanos(e.ts_ns);
            put_key(&mut self.buf, 1, WIRE_LEN);
            put_varint(&mut self.buf, timestamp_len(ts) as u64);
            if ts.seconds != 0 {
                put_key(&mut self.buf, 1, WIRE_VARINT);
                put_varint(&mut self.buf, ts.seconds as u64);
            }
            if ts.nanos != 0 {
                put_key(&mut self.buf, 2, WIRE_VARINT);
                put_varint(&mut self.buf, i64::from(ts.nanos) as u64);
            }
            if !e.line.is_empty() {
                put_bytes_field(&mut self.buf, 2, e.line);
            }
            for (name, value) in e.structured_metadata {
                put_key(&mut self.buf, 3, WIRE_LEN);
                put_varint(&mut self.buf, pair_len(name, value) as u64);
                if !name.is_empty() {
                    put_bytes_field(&mut self.buf, 1, name.as_bytes());
                }
                if !value.is_empty() {
                    put_bytes_field(&mut self.buf, 2, value.as_bytes());
                }
            }
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The encoded `PushRequest`.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// The encoded size of one entry as a `StreamAdapter` field, label string excluded:
/// what a batcher adds to its byte count for this entry.
pub fn encoded_entry_size(e: &EntryRef<'_>) -> usize {
    field_len(entry_len(e))
}

const WIRE_VARINT: u8 = 0;
const WIRE_LEN: u8 = 2;

fn put_key(buf: &mut Vec<u8>, field: u8, wire: u8) {
    buf.push((field << 3) | wire);
}

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn put_bytes_field(buf: &mut Vec<u8>, field: u8, bytes: &[u8]) {
    put_key(buf, field, WIRE_LEN);
    put_varint(buf, bytes.len() as u64);
    buf.extend_from_slice(bytes);
}

fn varint_len(v: u64) -> usize {
    // 1 byte per started group of 7 bits; 0 still takes one byte.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Key byte + length prefix + payload of a length-delimited field.
fn field_len(payload: usize) -> usize {
    1 + varint_len(payload as u64) + payload
}

fn timestamp_len(ts: Timestamp) -> usize {
    let mut n = 0;
    if ts.seconds != 0 {
        n += 1 + varint_len(ts.seconds as u64);
    }
    if ts.nanos != 0 {
        n += 1 + varint_len(i64::from(ts.nanos) as u64);
    }
    n
}

fn pair_len(name: &str, value: &str) -> usize {
    let mut n = 0;
    if !name.is_empty() {
        n += field_len(name.len());
    }
    if !value.is_empty() {
        n += field_len(value.len());
    }
    n
}

fn entry_len(e: &EntryRef<'_>) -> usize {
    let mut n = field_len(timestamp_len(Timestamp::from_unix_nanos(e.ts_ns)));
    if !e.line.is_empty() {
        n += field_len(e.line.len());
    }
    for (name, value) in e.structured_metadata {
        n += field_len(pair_len(name, value));
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use prost::Message;

    /// A request built by hand, byte by byte, from the protobuf encoding rules.
    #[test]
    fn golden_bytes_for_one_stream_one_entry() {
        let req = PushRequest {
            streams: vec![StreamAdapter {
                labels: "{a=\"b\"}".into(),
                entries: vec![EntryAdapter {
                    timestamp: Some(Timestamp {
                        seconds: 1,
                        nanos: 2,
                    }),
                    line: Bytes::from_static(b"hi"),
                    structured_metadata: vec![LabelPairAdapter {
                        name: "k".into(),
                        value: "v".into(),
                    }],
                    parsed: vec![],
                }],
                hash: 0,
            }],
            format: String::new(),
        };
        #[rustfmt::skip]
        let golden: &[u8] = &[
            0x0a, 0x1d,                                     // streams, len 29
              0x0a, 0x07, b'{', b'a', b'=', b'"', b'b', b'"', b'}', // labels
              0x12, 0x12,                                   // entries, len 18
                0x0a, 0x04, 0x08, 0x01, 0x10, 0x02,         // timestamp {1, 2}
                0x12, 0x02, b'h', b'i',                     // line
                0x1a, 0x06, 0x0a, 0x01, b'k', 0x12, 0x01, b'v', // structured metadata
        ];
        assert_eq!(req.encode_to_vec(), golden);
        let mut enc = PushEncoder::new();
        enc.push_stream(
            "{a=\"b\"}",
            &[EntryRef {
                ts_ns: 1_000_000_002,
                line: b"hi",
                structured_metadata: &[("k", "v")],
            }],
        );
        assert_eq!(enc.finish(), golden);
        assert_eq!(PushRequest::decode(golden).unwrap(), req);
    }

    #[test]
    fn zero_timestamp_is_still_written_as_an_empty_message() {
        let mut enc = PushEncoder::new();
        enc.push_stream(
            "{}",
            &[EntryRef {
                ts_ns: 0,
                line: b"",
                structured_metadata: &[],
            }],
        );
        assert_eq!(
            enc.finish(),
            [0x0a, 0x08, 0x0a, 0x02, b'{', b'}', 0x12, 0x02, 0x0a, 0x00]
        );
    }

    #[test]
    fn negative_timestamps_split_into_positive_nanos() {
        let ts = Timestamp::from_unix_nanos(-1);
        assert_eq!(
            ts,
            Timestamp {
                seconds: -1,
                nanos: 999_999_999
            }
        );
        assert_eq!(ts.to_unix_nanos(), Some(-1));
    }

    #[test]
    fn out_of_range_timestamps_are_rejected() {
        let too_big = Timestamp {
            seconds: MAX_TIMESTAMP_SECONDS,
            nanos: 0,
        };
        assert_eq!(too_big.to_unix_nanos(), None);
        let bad_nanos = Timestamp {
            seconds: 0,
            nanos: 1_000_000_000,
        };
        assert_eq!(bad_nanos.to_unix_nanos(), None);
    }

    fn arb_entry() -> impl Strategy<Value = (i64, Vec<u8>, Vec<(String, String)>)> {
        (
            any::<i64>(),
            proptest::collection::vec(any::<u8>(), 0..64),
            proptest::collection::vec(("[a-z_]{0,6}", ".{0,6}"), 0..3),
        )
    }

    proptest! {
        #[test]
        fn direct_encoder_matches_prost_and_round_trips(
            streams in proptest::collection::vec(
                (".{0,20}", proptest::collection::vec(arb_entry(), 0..6)), 0..5)
        ) {
            let mut enc = PushEncoder::new();
            let mut req = PushRequest::default();
            for (labels, entries) in &streams {
                let sm: Vec<Vec<(&str, &str)>> = entries
                    .iter()
                    .map(|(_, _, sm)| sm.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect())
                    .collect();
                let refs: Vec<EntryRef> = entries
                    .iter()
                    .zip(&sm)
                    .map(|((ts, line, _), sm)| EntryRef { ts_ns: *ts, line, structured_metadata: sm })
                    .collect();
                enc.push_stream(labels, &refs);
                req.streams.push(StreamAdapter {
                    labels: labels.clone(),
                    entries: entries
                        .iter()
                        .map(|(ts, line, sm)| EntryAdapter {
                            timestamp: Some(Timestamp::from_unix_nanos(*ts)),
                            line: Bytes::from(line.clone()),
                            structured_metadata: sm
                                .iter()
                                .map(|(k, v)| LabelPairAdapter { name: k.clone(), value: v.clone() })
                                .collect(),
                            parsed: vec![],
                        })
                        .collect(),
                    hash: 0,
                });
            }
            let direct = enc.finish();
            prop_assert_eq!(&direct, &req.encode_to_vec());
            let back = PushRequest::decode(direct.as_slice()).unwrap();
            prop_assert_eq!(&back, &req);
            for (s, (_, entries)) in back.streams.iter().zip(&streams) {
                for (e, (ts, _, _)) in s.entries.iter().zip(entries) {
                    prop_assert_eq!(e.timestamp.and_then(|t| t.to_unix_nanos()), Some(*ts));
                }
            }
        }
    }
}
