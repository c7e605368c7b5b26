//! Black-box tests of the query and metadata API over real HTTP: real Loki 3.7.6's
//! recorded answers replayed, tenant isolation and time-range boundaries as properties.

mod common;

use std::collections::BTreeSet;

use common::*;
use fake_loki::{Config, FakeLoki};
use proptest::prelude::*;
use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/loki-3.7.6");

fn read_json(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(format!("{FIXTURES}/{name}")).unwrap()).unwrap()
}

fn url_with(base: &str, path: &str, params: &serde_json::Map<String, Value>) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        let v = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        q.append_pair(k, &v);
    }
    format!("{base}{path}?{}", q.finish())
}

/// Pushes the recorded dataset the way it was pushed to real Loki (one protobuf push, Loki's
/// defaults) and replays every recorded request, comparing answers (except `stats` timings).
#[tokio::test]
async fn real_loki_3_7_6_answers_are_reproduced() {
    let mut cfg = Config::for_tests_with_loki_defaults();
    // The recording is absolute in time; keep old entries instead of shifting them.
    cfg.limits.defaults.reject_old_samples = false;
    let loki = FakeLoki::start(cfg).await.unwrap();
    let dataset = read_json("dataset.json");
    type Owned = (String, Vec<(i64, String, Vec<(String, String)>)>);
    let streams: Vec<Owned> = dataset["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let entries = s["entries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    let md = e
                        .get(2)
                        .and_then(Value::as_object)
                        .map(|m| {
                            m.iter()
                                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                                .collect()
                        })
                        .unwrap_or_default();
                    (
                        e[0].as_str().unwrap().parse().unwrap(),
                        e[1].as_str().unwrap().to_string(),
                        md,
                    )
                })
                .collect();
            (s["labels"].as_str().unwrap().to_string(), entries)
        })
        .collect();
    let borrowed: Vec<TestStream<'_>> = streams
        .iter()
        .map(|(l, es)| {
            (
                l.as_str(),
                es.iter()
                    .map(|(ts, line, md)| {
                        (
                            *ts,
                            line.as_str(),
                            md.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
                        )
                    })
                    .collect(),
            )
        })
        .collect();
    let r = push(&loki.url(), "fixture", &request(&borrowed)).await;
    assert_eq!(r.status, 204, "{}", r.body);

    for req in read_json("requests.json").as_array().unwrap() {
        let name = req["name"].as_str().unwrap();
        let url = url_with(
            &loki.url(),
            req["path"].as_str().unwrap(),
            req["params"].as_object().unwrap(),
        );
        let headers: Vec<(String, String)> = req["headers"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        let h: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let got = get(&url, &h).await;
        assert_eq!(
            got.status as u64,
            req["status"].as_u64().unwrap(),
            "{name}: {}",
            got.body
        );
        let body_file = req["body_file"].as_str().unwrap();
        if body_file.ends_with(".txt") {
            let want = std::fs::read_to_string(format!("{FIXTURES}/{body_file}")).unwrap();
            assert_eq!(got.body, want, "{name}");
            continue;
        }
        let want = read_json(body_file);
        let got: Value =
            serde_json::from_str(&got.body).unwrap_or_else(|e| panic!("{name}: {e}: {}", got.body));
        assert_eq!(got["status"], want["status"], "{name}");
        match name {
            "labels" | "label_values_pod" | "series" => {
                assert_eq!(got["data"], want["data"], "{name}")
            }
            _ => {
                assert_eq!(
                    got["data"]["resultType"], want["data"]["resultType"],
                    "{name}"
                );
                assert_eq!(
                    got["data"]["encodingFlags"], want["data"]["encodingFlags"],
                    "{name}"
                );
                assert_eq!(got["data"]["result"], want["data"]["result"], "{name}");
                let keys = |v: &Value| {
                    v.as_object()
                        .map(|m| m.keys().cloned().collect::<BTreeSet<_>>())
                };
                assert_eq!(
                    keys(&got["data"]["stats"]),
                    keys(&want["data"]["stats"]),
                    "{name}: stats keys"
                );
                assert_eq!(
                    keys(&got["data"]["stats"]["summary"]),
                    keys(&want["data"]["stats"]["summary"]),
                    "{name}: stats.summary keys"
                );
            }
        }
    }
    loki.shutdown().await;
}

#[tokio::test]
async fn query_parameter_errors() {
    let loki = FakeLoki::start(Config::for_tests()).await.unwrap();
    let base = format!("{}/loki/api/v1/query_range", loki.url());
    let t = [("X-Scope-OrgID", "t")];
    let cases = [
        ("query=%7Ba%3D%22b%22%7D&limit=0", "limit must be a positive value"),
        ("query=%7Ba%3D%22b%22%7D&limit=5001", "max entries limit per query exceeded, limit > max_entries_limit_per_query (5001 > 5000)"),
        ("query=%7Ba%3D%22b%22%7D&direction=sideways", "invalid direction 'sideways'"),
        ("query=%7Ba%3D%22b%22%7D&start=20&end=10", "end timestamp must not be before or equal to start time"),
        ("query=%7Ba%3D%22b%22%7D&step=0", "zero or negative query resolution step widths are not accepted. Try a positive integer"),
    ];
    for (q, want) in cases {
        let r = get(&format!("{base}?{q}"), &t).await;
        assert_eq!((r.status, r.body.as_str()), (400, want), "{q}");
    }
    let r = get(
        &format!("{base}?query=%7Ba%3D%22b%22%7D"),
        &[("X-Scope-OrgID", "a|b")],
    )
    .await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (400, "multiple org IDs present")
    );
    // A form POST works like GET.
    let r = send(
        "POST",
        &base,
        &[
            ("X-Scope-OrgID", "t"),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        b"query=%7Ba%3D%22b%22%7D&limit=0".to_vec(),
    )
    .await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (400, "limit must be a positive value")
    );
    loki.shutdown().await;
}

#[tokio::test]
async fn multi_tenant_queries_add_tenant_id() {
    let loki = FakeLoki::start(Config {
        multi_tenant_queries_enabled: true,
        ..Config::for_tests()
    })
    .await
    .unwrap();
    let now = now_ns();
    push(
        &loki.url(),
        "a",
        &request(&[("{app=\"x\"}", vec![(now, "from a", vec![])])]),
    )
    .await;
    push(
        &loki.url(),
        "b",
        &request(&[("{app=\"x\"}", vec![(now + 1, "from b", vec![])])]),
    )
    .await;
    let url = format!(
        "{}/loki/api/v1/query_range?query=%7Bapp%3D%22x%22%7D&start={}&end={}",
        loki.url(),
        now - 10,
        now + 10
    );
    let r = get(&url, &[("X-Scope-OrgID", "b|a")]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    let tenants: BTreeSet<String> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stream"]["__tenant_id__"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(tenants, BTreeSet::from(["a".to_string(), "b".to_string()]));
    let r = get(&url, &[("X-Scope-OrgID", "a")]).await;
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert!(
        v["data"]["result"][0]["stream"]
            .get("__tenant_id__")
            .is_none(),
        "one tenant: no label"
    );
    loki.shutdown().await;
}

/// Entries returned by a forward log query of `{src=~".+"}` as tenant `t`.
async fn query_lines(
    base: &str,
    tenant: &str,
    start: i64,
    end: i64,
    limit: usize,
) -> Vec<(i64, String)> {
    let url = format!(
        "{base}/loki/api/v1/query_range?query=%7Bsrc%3D~%22.%2B%22%7D&start={start}&end={end}&limit={limit}&direction=forward"
    );
    let r = get(&url, &[("X-Scope-OrgID", tenant)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    let mut out = Vec::new();
    for s in v["data"]["result"].as_array().unwrap() {
        for e in s["values"].as_array().unwrap() {
            out.push((
                e[0].as_str().unwrap().parse().unwrap(),
                e[1].as_str().unwrap().to_string(),
            ));
        }
    }
    out.sort();
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// For any pushes to any tenants, a tenant sees exactly its own entries, through the
    /// query, labels, label values, series and stats endpoints alike.
    #[test]
    fn tenants_are_isolated(pushes in proptest::collection::vec((0usize..3, 0u8..4, 0i64..1000, "[a-z]{1,6}"), 1..30)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let loki = FakeLoki::start(Config::for_tests()).await.unwrap();
            let tenants = ["red", "green", "blue"];
            let base = 1_700_000_000_000_000_000i64;
            let mut model: Vec<BTreeSet<(i64, String)>> = vec![BTreeSet::new(); 3];
            for (t, src, ts, line) in &pushes {
                let labels = format!("{{src=\"{}-{src}\"}}", tenants[*t]);
                let r = push(&loki.url(), tenants[*t], &request(&[(&labels, vec![(base + ts, line, vec![])])])).await;
                assert_eq!(r.status, 204);
                model[*t].insert((base + ts, line.clone()));
            }
            for (i, t) in tenants.iter().enumerate() {
                let got: BTreeSet<(i64, String)> = query_lines(&loki.url(), t, base, base + 1000, 5000).await.into_iter().collect();
                assert_eq!(&got, &model[i], "query as {t}");
                let lv = get(&format!("{}/loki/api/v1/label/src/values?start={base}&end={}", loki.url(), base + 1000), &[("X-Scope-OrgID", t)]).await;
                let v: Value = serde_json::from_str(&lv.body).unwrap();
                for value in v["data"].as_array().cloned().unwrap_or_default() {
                    assert!(value.as_str().unwrap().starts_with(t), "{t} saw {value}");
                }
                let series = get(&format!("{}/loki/api/v1/series?match[]=%7Bsrc%3D~%22.%2B%22%7D&start={base}&end={}", loki.url(), base + 1000), &[("X-Scope-OrgID", t)]).await;
                let v: Value = serde_json::from_str(&series.body).unwrap();
                for s in v["data"].as_array().cloned().unwrap_or_default() {
                    assert!(s["src"].as_str().unwrap().starts_with(t), "{t} saw series {s}");
                }
                let labels = get(&format!("{}/loki/api/v1/labels?start={base}&end={}", loki.url(), base + 1000), &[("X-Scope-OrgID", t)]).await;
                let v: Value = serde_json::from_str(&labels.body).unwrap();
                assert_eq!(v.get("data").is_some(), !model[i].is_empty(), "{t}: {}", labels.body);
                let stats = get(&format!("{}/loki/api/v1/index/stats?query=%7Bsrc%3D~%22.%2B%22%7D&start={base}&end={}", loki.url(), base + 1000), &[("X-Scope-OrgID", t)]).await;
                let v: Value = serde_json::from_str(&stats.body).unwrap();
                assert_eq!(v["entries"].as_u64().unwrap(), model[i].len() as u64, "{t} index/stats");
            }
            loki.shutdown().await;
        });
    }

    /// For any start and end, every returned entry is in [start, end), and when the
    /// limit is not reached every stored entry in that range is returned.
    #[test]
    fn time_range_boundaries(ts in proptest::collection::btree_set(0i64..100, 1..40), start in 0i64..100, len in 0i64..100, limit in 1usize..50) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let loki = FakeLoki::start(Config::for_tests()).await.unwrap();
            let base = 1_700_000_000_000_000_000i64;
            let entries: Vec<(i64, String)> = ts.iter().map(|t| (base + t, format!("line {t}"))).collect();
            let refs: Vec<TestEntry<'_>> = entries.iter().map(|(t, l)| (*t, l.as_str(), vec![])).collect();
            assert_eq!(push(&loki.url(), "t", &request(&[("{src=\"s\"}", refs)])).await.status, 204);
            let (s, e) = (base + start, base + start + len);
            let got = query_lines(&loki.url(), "t", s, e, limit).await;
            let in_range: Vec<(i64, String)> = entries.iter().filter(|(t, _)| *t >= s && *t < e).cloned().collect();
            for (t, _) in &got {
                assert!(*t >= s && *t < e, "{t} outside [{s}, {e})");
            }
            // Forward: the oldest `limit` entries of the range.
            let want: Vec<(i64, String)> = in_range.iter().take(limit).cloned().collect();
            assert_eq!(got, want);
            loki.shutdown().await;
        });
    }
}
