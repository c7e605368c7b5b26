//! Loki's JSON push bodies.
//!
//! v1 (`/loki/api/v1/push`):
//! `{"streams":[{"stream":{"k":"v"},"values":[["<ns>","<line>",{"sm":"v"}]]}]}`.
//! The timestamp must be a JSON *string* of integer nanoseconds, the line a string and
//! the optional third element a flat object of strings; further elements are ignored and
//! `null` entries are skipped. Label values may be numbers (kept as their text). The
//! `stream` object is rendered to a label string and later parsed like any other, so
//! keys such as `a.b` fail there, as in Loki.
//!
//! Legacy (`/api/prom/push`):
//! `{"streams":[{"labels":"{a=\"b\"}","entries":[{"ts":"<RFC3339Nano>","line":".."}]}]}`.

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::labels::{go_quote, LabelSet};
use crate::proto::{EntryAdapter, LabelPairAdapter, PushRequest, StreamAdapter, Timestamp};
use crate::WireError;

fn err(msg: impl Into<String>) -> WireError {
    WireError::Json(msg.into())
}

/// Parses a v1 JSON push body.
pub fn parse_v1(body: &[u8]) -> Result<PushRequest, WireError> {
    let root: Value =
        serde_json::from_slice(body).map_err(|e| err(format!("invalid JSON: {e}")))?;
    let mut req = PushRequest::default();
    for stream in streams_of(&root)? {
        let Some(stream) = stream.as_object() else {
            if stream.is_null() {
                continue;
            }
            return Err(err("a stream must be a JSON object"));
        };
        let labels = match stream.get("stream") {
            None | Some(Value::Null) => "{}".to_string(),
            Some(Value::Object(m)) => render_label_object(m)?,
            Some(_) => return Err(err("\"stream\" must be an object of labels")),
        };
        let mut entries = Vec::new();
        match stream.get("values") {
            None | Some(Value::Null) => {}
            Some(Value::Array(values)) => {
                for v in values {
                    if let Some(e) = parse_v1_entry(v)? {
                        entries.push(e);
                    }
                }
            }
            Some(_) => return Err(err("\"values\" must be an array")),
        }
        req.streams.push(StreamAdapter {
            labels,
            entries,
            hash: 0,
        });
    }
    Ok(req)
}

fn streams_of(root: &Value) -> Result<&[Value], WireError> {
    let obj = root
        .as_object()
        .ok_or_else(|| err("the push body must be a JSON object"))?;
    match obj.get("streams") {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(err("\"streams\" must be an array")),
    }
}

fn render_label_object(m: &Map<String, Value>) -> Result<String, WireError> {
    let mut pairs: Vec<(&str, String)> = Vec::with_capacity(m.len());
    for (k, v) in m {
        let v = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Null => String::new(),
            _ => return Err(err(format!("label {k:?} must have a string value"))),
        };
        pairs.push((k, v));
    }
    pairs.sort_by(|a, b| a.0.cmp(b.0));
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
    Ok(out)
}

fn parse_v1_entry(v: &Value) -> Result<Option<EntryAdapter>, WireError> {
    let arr = match v {
        Value::Null => return Ok(None),
        Value::Array(a) => a,
        _ => return Err(err("a value must be an array [\"<ts>\", \"<line>\"]")),
    };
    let ts = match arr.first() {
        Some(Value::String(s)) => s
            .parse::<i64>()
            .map_err(|e| err(format!("could not parse timestamp {s:?}: {e}")))?,
        Some(_) => return Err(err("the timestamp must be a string of nanoseconds")),
        None => return Err(err("a value needs a timestamp and a line")),
    };
    let line = match arr.get(1) {
        Some(Value::String(s)) => Bytes::from(s.clone()),
        Some(_) => return Err(err("the log line must be a string")),
        None => return Err(err("a value needs a timestamp and a line")),
    };
    let structured_metadata = match arr.get(2) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(m)) => {
            let mut out = Vec::with_capacity(m.len());
            for (k, v) in m {
                let Value::String(s) = v else {
                    return Err(err(format!("structured metadata {k:?} must be a string")));
                };
                out.push(LabelPairAdapter {
                    name: k.clone(),
                    value: s.clone(),
                });
            }
            out
        }
        Some(_) => return Err(err("structured metadata must be an object of strings")),
    };
    Ok(Some(EntryAdapter {
        timestamp: Some(Timestamp::from_unix_nanos(ts)),
        line,
        structured_metadata,
        parsed: Vec::new(),
    }))
}

/// Parses a legacy (`/api/prom/push`) JSON push body.
pub fn parse_legacy(body: &[u8]) -> Result<PushRequest, WireError> {
    let root: Value =
        serde_json::from_slice(body).map_err(|e| err(format!("invalid JSON: {e}")))?;
    let mut req = PushRequest::default();
    for stream in streams_of(&root)? {
        let Some(stream) = stream.as_object() else {
            return Err(err("a stream must be a JSON object"));
        };
        let labels = match stream.get("labels") {
            Some(Value::String(s)) => s.clone(),
            _ => return Err(err("\"labels\" must be a string")),
        };
        let mut entries = Vec::new();
        if let Some(Value::Array(es)) = stream.get("entries") {
            for e in es {
                let Some(e) = e.as_object() else { continue };
                let ts = match e.get("ts").or_else(|| e.get("timestamp")) {
                    Some(Value::String(s)) => chrono::DateTime::parse_from_rfc3339(s)
                        .map_err(|x| err(format!("could not parse timestamp {s:?}: {x}")))?
                        .timestamp_nanos_opt()
                        .ok_or_else(|| err(format!("timestamp {s:?} is out of range")))?,
                    _ => return Err(err("an entry needs a \"ts\" string")),
                };
                let line = match e.get("line") {
                    Some(Value::String(s)) => Bytes::from(s.clone()),
                    _ => return Err(err("an entry needs a \"line\" string")),
                };
                let mut structured_metadata = Vec::new();
                if let Some(Value::Object(m)) = e.get("structuredMetadata") {
                    for (k, v) in m {
                        if let Value::String(s) = v {
                            structured_metadata.push(LabelPairAdapter {
                                name: k.clone(),
                                value: s.clone(),
                            });
                        }
                    }
                }
                entries.push(EntryAdapter {
                    timestamp: Some(Timestamp::from_unix_nanos(ts)),
                    line,
                    structured_metadata,
                    parsed: Vec::new(),
                });
            }
        }
        req.streams.push(StreamAdapter {
            labels,
            entries,
            hash: 0,
        });
    }
    Ok(req)
}

/// Renders a request as a v1 JSON push body. Stream label strings must parse; lines that
/// are not UTF-8 are replaced lossily (JSON carries text only).
pub fn to_v1(req: &PushRequest) -> Result<Vec<u8>, WireError> {
    let mut streams = Vec::with_capacity(req.streams.len());
    for s in &req.streams {
        let labels = LabelSet::parse(&s.labels)?;
        let stream: Map<String, Value> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect();
        let values: Vec<Value> = s
            .entries
            .iter()
            .map(|e| {
                let ts = e.timestamp.and_then(|t| t.to_unix_nanos()).unwrap_or(0);
                let mut v = vec![
                    Value::String(ts.to_string()),
                    Value::String(String::from_utf8_lossy(&e.line).into_owned()),
                ];
                if !e.structured_metadata.is_empty() {
                    v.push(Value::Object(
                        e.structured_metadata
                            .iter()
                            .map(|p| (p.name.clone(), Value::String(p.value.clone())))
                            .collect(),
                    ));
                }
                Value::Array(v)
            })
            .collect();
        streams.push(serde_json::json!({"stream": stream, "values": values}));
    }
    serde_json::to_vec(&serde_json::json!({ "streams": streams }))
        .map_err(|e| err(format!("could not encode JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_v1_with_metadata_and_numbers() {
        let body = br#"{"streams":[{"stream":{"job":"x","port":8080},"values":[
            ["1000","a"],["2000","b",{"trace_id":"t1"}],null,["3000","c",null,"extra"]]}]}"#;
        let req = parse_v1(body).unwrap();
        assert_eq!(req.streams.len(), 1);
        let s = &req.streams[0];
        assert_eq!(s.labels, r#"{job="x", port="8080"}"#);
        assert_eq!(s.entries.len(), 3);
        assert_eq!(s.entries[1].structured_metadata[0].value, "t1");
        assert_eq!(s.entries[2].timestamp.unwrap().to_unix_nanos(), Some(3000));
    }

    #[test]
    fn numeric_timestamp_is_rejected() {
        assert!(parse_v1(br#"{"streams":[{"stream":{"a":"b"},"values":[[1000,"x"]]}]}"#).is_err());
    }

    #[test]
    fn bad_shapes_are_rejected() {
        for bad in [
            &b"not json"[..],
            br#"[]"#,
            br#"{"streams":{}}"#,
            br#"{"streams":[{"stream":"a","values":[]}]}"#,
            br#"{"streams":[{"stream":{"a":"b"},"values":[["x","y"]]}]}"#,
            br#"{"streams":[{"stream":{"a":"b"},"values":[["1",2]]}]}"#,
            br#"{"streams":[{"stream":{"a":"b"},"values":[["1","y",{"k":1}]]}]}"#,
        ] {
            assert!(parse_v1(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn parses_legacy() {
        let body = br#"{"streams":[{"labels":"{a=\"b\"}","entries":[{"ts":"1970-01-01T00:00:01.5Z","line":"x"}]}]}"#;
        let req = parse_legacy(body).unwrap();
        assert_eq!(
            req.streams[0].entries[0].timestamp.unwrap().to_unix_nanos(),
            Some(1_500_000_000)
        );
    }

    proptest! {
        #[test]
        fn v1_round_trips(
            streams in proptest::collection::vec((
                proptest::collection::btree_map("[a-z_][a-z0-9_]{0,5}", "\\PC{1,8}", 1..4),
                proptest::collection::vec((any::<i64>(), "\\PC{0,20}", proptest::collection::btree_map("[a-z_]{1,5}", "\\PC{0,5}", 0..3)), 0..5),
            ), 0..4)
        ) {
            let req = PushRequest {
                streams: streams.iter().map(|(labels, entries)| StreamAdapter {
                    labels: LabelSet::from_pairs(labels.clone()).to_string(),
                    entries: entries.iter().map(|(ts, line, sm)| EntryAdapter {
                        timestamp: Some(Timestamp::from_unix_nanos(*ts)),
                        line: Bytes::from(line.clone()),
                        structured_metadata: sm.iter().map(|(k, v)| LabelPairAdapter { name: k.clone(), value: v.clone() }).collect(),
                        parsed: vec![],
                    }).collect(),
                    hash: 0,
                }).collect(),
                format: String::new(),
            };
            let body = to_v1(&req).unwrap();
            prop_assert_eq!(parse_v1(&body).unwrap(), req);
        }
    }
}
