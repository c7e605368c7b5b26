//! Push bodies captured from real agents decode to what was independently decoded.

use loki_wire::{json, snappy, PushRequest};
use prost::Message;
use serde_json::Value;

fn fixture(agent: &str, file: &str) -> Vec<u8> {
    let path = format!(
        "{}/testdata/push/{agent}/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn decoded_as_json(req: &PushRequest) -> Value {
    let streams: Vec<Value> = req
        .streams
        .iter()
        .map(|s| {
            let entries: Vec<Value> = s
                .entries
                .iter()
                .map(|e| {
                    let ts = e.timestamp.and_then(|t| t.to_unix_nanos()).unwrap();
                    let mut v = vec![
                        Value::String(ts.to_string()),
                        Value::String(String::from_utf8(e.line.to_vec()).unwrap()),
                    ];
                    if !e.structured_metadata.is_empty() {
                        v.push(
                            e.structured_metadata
                                .iter()
                                .map(|p| (p.name.clone(), Value::String(p.value.clone())))
                                .collect::<serde_json::Map<_, _>>()
                                .into(),
                        );
                    }
                    Value::Array(v)
                })
                .collect();
            serde_json::json!({"labels": s.labels, "entries": entries})
        })
        .collect();
    serde_json::json!({ "streams": streams })
}

#[test]
fn promtail_and_vector_protobuf_bodies_decode_exactly() {
    for agent in ["promtail-3.6.15", "vector-0.57.0"] {
        let body = fixture(agent, "push.body");
        let raw = snappy::decompress(&body, 1 << 20).unwrap();
        let req = PushRequest::decode(raw.as_slice()).unwrap();
        let want: Value = serde_json::from_slice(&fixture(agent, "push.decoded.json")).unwrap();
        assert_eq!(decoded_as_json(&req), want, "{agent}");
    }
}

#[test]
fn fluent_bit_json_body_parses() {
    let body = fixture("fluent-bit-5.1.1", "push.body");
    let req = json::parse_v1(&body).unwrap();
    assert_eq!(req.streams.len(), 1);
    assert_eq!(req.streams[0].labels, "{job=\"bench\"}");
    assert_eq!(req.streams[0].entries.len(), 6);
    let want: Value =
        serde_json::from_slice(&fixture("fluent-bit-5.1.1", "push.decoded.json")).unwrap();
    let first_line = want["streams"][0]["values"][0][1].as_str().unwrap();
    assert_eq!(&req.streams[0].entries[0].line[..], first_line.as_bytes());
}
