//! Streaming decoder of Loki's v1 JSON push body, straight into a `PushRequest`.
//!
//! `loki_wire::json::parse_v1` first builds a `serde_json::Value` tree, which costs
//! ~2 KB per one-entry stream: a 50 MB body of a million streams took 2 GB (issue 14
//! item 6). Visiting the document instead allocates only what the request keeps, and
//! `max_streams`/`max_entries` refuse a body before its excess is decoded. The accepted
//! shapes and the rendered label strings are those of `parse_v1`.

use std::fmt;

use bytes::Bytes;
use loki_wire::labels::go_quote;
use loki_wire::{EntryAdapter, LabelPairAdapter, PushRequest, StreamAdapter, Timestamp};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// What one request may carry; decoding fails as soon as a count passes its bound.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub max_streams: usize,
    pub max_entries: usize,
}

/// Decodes a v1 JSON push body within `bounds`.
pub fn parse_v1(body: &[u8], bounds: Bounds) -> Result<PushRequest, String> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let mut counts = Counts {
        bounds,
        streams: 0,
        entries: 0,
    };
    let streams = (&mut de)
        .deserialize_any(RootVisitor(&mut counts))
        .and_then(|s| de.end().map(|()| s))
        .map_err(|e| match e.classify() {
            serde_json::error::Category::Data => e.to_string(),
            _ => format!("invalid JSON: {e}"),
        })?;
    Ok(PushRequest {
        streams,
        format: String::new(),
    })
}

struct Counts {
    bounds: Bounds,
    streams: usize,
    entries: usize,
}

impl Counts {
    fn stream<E: de::Error>(&mut self) -> Result<(), E> {
        self.streams += 1;
        if self.streams > self.bounds.max_streams {
            return Err(E::custom(format!(
                "the push body has more than {} streams",
                self.bounds.max_streams
            )));
        }
        Ok(())
    }

    fn entry<E: de::Error>(&mut self) -> Result<(), E> {
        self.entries += 1;
        if self.entries > self.bounds.max_entries {
            return Err(E::custom(format!(
                "the push body has more than {} entries",
                self.bounds.max_entries
            )));
        }
        Ok(())
    }
}

struct RootVisitor<'c>(&'c mut Counts);

impl<'de> Visitor<'de> for RootVisitor<'_> {
    type Value = Vec<StreamAdapter>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("the push body must be a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut streams = Vec::new();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == "streams" {
                streams = map.next_value_seed(StreamsSeed(&mut *self.0))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(streams)
    }
}

struct StreamsSeed<'c>(&'c mut Counts);

impl<'de> DeserializeSeed<'de> for StreamsSeed<'_> {
    type Value = Vec<StreamAdapter>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StreamsSeed<'_> {
    type Value = Vec<StreamAdapter>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("\"streams\" must be an array")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(s) = seq.next_element_seed(StreamSeed(&mut *self.0))? {
            if let Some(s) = s {
                out.push(s);
            }
        }
        Ok(out)
    }
}

struct StreamSeed<'c>(&'c mut Counts);

impl<'de> DeserializeSeed<'de> for StreamSeed<'_> {
    type Value = Option<StreamAdapter>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StreamSeed<'_> {
    type Value = Option<StreamAdapter>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a stream must be a JSON object")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        self.0.stream()?;
        let mut labels = None;
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "stream" => labels = map.next_value_seed(LabelsSeed)?,
                "values" => entries = map.next_value_seed(ValuesSeed(&mut *self.0))?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Some(StreamAdapter {
            labels: labels.unwrap_or_else(|| "{}".to_string()),
            entries,
            hash: 0,
        }))
    }
}

/// The `stream` object, rendered as a label string (None for `null`).
struct LabelsSeed;

impl<'de> DeserializeSeed<'de> for LabelsSeed {
    type Value = Option<String>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for LabelsSeed {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("\"stream\" must be an object of labels")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        while let Some(k) = map.next_key::<String>()? {
            let v = map.next_value_seed(LabelValueSeed(&k))?;
            // Like a JSON object read into a map: a repeated key keeps its last value.
            match pairs.iter_mut().find(|(n, _)| *n == k) {
                Some(p) => p.1 = v,
                None => pairs.push((k, v)),
            }
        }
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = String::from("{");
        for (i, (k, v)) in pairs.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(k);
            out.push('=');
            out.push_str(&go_quote(v));
        }
        out.push('}');
        Ok(Some(out))
    }
}

/// A label value: a string, a number (kept as its JSON text) or null (empty).
struct LabelValueSeed<'k>(&'k str);

impl<'de> DeserializeSeed<'de> for LabelValueSeed<'_> {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for LabelValueSeed<'_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "label {:?} must have a string value", self.0)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }

    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        Ok(String::new())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        // serde_json's own rendering of the number, as `parse_v1` keeps it.
        Ok(serde_json::Number::from_f64(v).map_or_else(|| v.to_string(), |n| n.to_string()))
    }
}

struct ValuesSeed<'c>(&'c mut Counts);

impl<'de> DeserializeSeed<'de> for ValuesSeed<'_> {
    type Value = Vec<EntryAdapter>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValuesSeed<'_> {
    type Value = Vec<EntryAdapter>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("\"values\" must be an array")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(e) = seq.next_element_seed(EntrySeed)? {
            if let Some(e) = e {
                self.0.entry()?;
                out.push(e);
            }
        }
        Ok(out)
    }
}

/// `["<ns>", "<line>", {metadata}?, ...ignored]`, or null (skipped).
struct EntrySeed;

impl<'de> DeserializeSeed<'de> for EntrySeed {
    type Value = Option<EntryAdapter>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EntrySeed {
    type Value = Option<EntryAdapter>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a value must be an array [\"<ts>\", \"<line>\"]")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let missing = || de::Error::custom("a value needs a timestamp and a line");
        let ts = seq.next_element_seed(TimestampSeed)?.ok_or_else(missing)?;
        let line = seq.next_element_seed(LineSeed)?.ok_or_else(missing)?;
        let structured_metadata = seq.next_element_seed(MetadataSeed)?.unwrap_or_default();
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Some(EntryAdapter {
            timestamp: Some(Timestamp::from_unix_nanos(ts)),
            line,
            structured_metadata,
            parsed: Vec::new(),
        }))
    }
}

struct TimestampSeed;

impl<'de> DeserializeSeed<'de> for TimestampSeed {
    type Value = i64;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<i64, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TimestampSeed {
    type Value = i64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("the timestamp must be a string of nanoseconds")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<i64, E> {
        s.parse::<i64>()
            .map_err(|e| E::custom(format!("could not parse timestamp {s:?}: {e}")))
    }
}

struct LineSeed;

impl<'de> DeserializeSeed<'de> for LineSeed {
    type Value = Bytes;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Bytes, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for LineSeed {
    type Value = Bytes;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("the log line must be a string")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Bytes, E> {
        Ok(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<Bytes, E> {
        Ok(Bytes::from(s))
    }
}

struct MetadataSeed;

impl<'de> DeserializeSeed<'de> for MetadataSeed {
    type Value = Vec<LabelPairAdapter>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for MetadataSeed {
    type Value = Vec<LabelPairAdapter>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("structured metadata must be an object of strings")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out: Vec<LabelPairAdapter> = Vec::new();
        while let Some(name) = map.next_key::<String>()? {
            let value = map.next_value::<String>().map_err(|_| {
                de::Error::custom(format!("structured metadata {name:?} must be a string"))
            })?;
            // `parse_v1` reads the object into a sorted map: same order, last value wins.
            match out.binary_search_by(|p| p.name.as_str().cmp(&name)) {
                Ok(i) => out[i].value = value,
                Err(i) => out.insert(i, LabelPairAdapter { name, value }),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const WIDE: Bounds = Bounds {
        max_streams: usize::MAX,
        max_entries: usize::MAX,
    };

    #[test]
    fn decodes_like_the_value_tree_parser() {
        let body = br#"{"x":[1,{"y":2}],"streams":[{"stream":{"job":"x","port":8080,"f":1.5,"n":null},
            "values":[["1000","a"],["2000","b",{"z":"1","trace_id":"t1"}],null,["3000","c",null,"extra"]]},
            null,{"values":[]},{"stream":null}]}"#;
        let got = parse_v1(body, WIDE).unwrap();
        assert_eq!(got, loki_wire::json::parse_v1(body).unwrap());
        assert_eq!(
            got.streams[0].labels,
            r#"{f="1.5", job="x", n="", port="8080"}"#
        );
    }

    #[test]
    fn bad_shapes_are_refused_with_the_reason() {
        for (bad, why) in [
            (&b"not json"[..], "invalid JSON"),
            (br#"[]"#, "must be a JSON object"),
            (br#"{"streams":{}}"#, "\"streams\" must be an array"),
            (
                br#"{"streams":[{"stream":"a","values":[]}]}"#,
                "\"stream\" must be an object",
            ),
            (
                br#"{"streams":[{"stream":{"a":[]}}]}"#,
                "label \"a\" must have a string value",
            ),
            (
                br#"{"streams":[{"values":[["x","y"]]}]}"#,
                "could not parse timestamp \"x\"",
            ),
            (
                br#"{"streams":[{"values":[[1000,"x"]]}]}"#,
                "string of nanoseconds",
            ),
            (
                br#"{"streams":[{"values":[["1",2]]}]}"#,
                "the log line must be a string",
            ),
            (
                br#"{"streams":[{"values":[["1"]]}]}"#,
                "needs a timestamp and a line",
            ),
            (
                br#"{"streams":[{"values":[["1","y",{"k":1}]]}]}"#,
                "\"k\" must be a string",
            ),
            (br#"{"streams":[]} x"#, "invalid JSON"),
        ] {
            let e = parse_v1(bad, WIDE).unwrap_err();
            assert!(e.contains(why), "{}: {e}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn counts_stop_decoding_at_the_bound() {
        let body = br#"{"streams":[{"values":[["1","a"],["2","b"]]},{"values":[["3","c"]]}]}"#;
        let b = |max_streams, max_entries| Bounds {
            max_streams,
            max_entries,
        };
        assert!(parse_v1(body, b(2, 3)).is_ok());
        let e = parse_v1(body, b(1, 3)).unwrap_err();
        assert!(e.contains("more than 1 streams"), "{e}");
        let e = parse_v1(body, b(2, 2)).unwrap_err();
        assert!(e.contains("more than 2 entries"), "{e}");
    }

    proptest! {
        #[test]
        fn agrees_with_parse_v1_on_any_request(
            streams in proptest::collection::vec((
                proptest::collection::btree_map("[a-z_][a-z0-9_]{0,5}", "\\PC{1,8}", 1..4),
                proptest::collection::vec((any::<i64>(), "\\PC{0,20}",
                    proptest::collection::btree_map("[a-z_]{1,5}", "\\PC{0,5}", 0..3)), 0..5),
            ), 0..4)
        ) {
            let req = PushRequest {
                streams: streams.iter().map(|(labels, entries)| StreamAdapter {
                    labels: loki_wire::LabelSet::from_pairs(labels.clone()).to_string(),
                    entries: entries.iter().map(|(ts, line, sm)| EntryAdapter {
                        timestamp: Some(Timestamp::from_unix_nanos(*ts)),
                        line: Bytes::from(line.clone()),
                        structured_metadata: sm.iter().map(|(k, v)| LabelPairAdapter {
                            name: k.clone(), value: v.clone() }).collect(),
                        parsed: vec![],
                    }).collect(),
                    hash: 0,
                }).collect(),
                format: String::new(),
            };
            let body = loki_wire::json::to_v1(&req).unwrap();
            prop_assert_eq!(parse_v1(&body, WIDE).unwrap(), loki_wire::json::parse_v1(&body).unwrap());
        }
    }
}
