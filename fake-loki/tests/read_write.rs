//! Reads do not block writes (issue 14 item 7): while a query is scanning, pushes to the
//! same tenant and to others are stored and acknowledged. The query is held mid-scan by
//! a hook, so the test does not depend on how long a scan takes.

mod common;

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use common::{now_ns, push, request};
use fake_loki::{Config, FakeLoki};
use parking_lot::Mutex;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pushes_complete_while_a_query_is_scanning() {
    let loki = FakeLoki::start(Config::for_tests()).await.unwrap();
    let ts = now_ns() - 60_000_000_000;
    let first = request(&[("{app=\"a\"}", vec![(ts, "level=info msg=one", vec![])])]);
    assert_eq!(push(&loki.url(), "t", &first).await.status, 204);

    // The hook tells the test the query is scanning, then waits for the test's go-ahead.
    let (scanning_tx, scanning_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let scanning_tx = Mutex::new(scanning_tx);
    let release_rx = Mutex::new(release_rx);
    loki.state().hooks.set_on_query_scan(Some(Arc::new(move || {
        let _ = scanning_tx.lock().send(());
        let _ = release_rx.lock().recv_timeout(Duration::from_secs(30));
    })));

    let url = format!(
        "{}/loki/api/v1/query_range?query={}&start={}&end={}&limit=100",
        loki.url(),
        "%7Bapp%3D~%22.%2B%22%7D%20%7C~%20%22(one%7Ctwo%7Cthree)%24%22",
        ts - 1,
        now_ns() + 60_000_000_000,
    );
    let query = tokio::spawn(async move { common::get(&url, &[("X-Scope-OrgID", "t")]).await });
    tokio::task::spawn_blocking(move || scanning_rx.recv_timeout(Duration::from_secs(30)))
        .await
        .unwrap()
        .expect("the query reached its scan");

    // The query is mid-scan: pushes to its tenant (new and existing stream) and another.
    for (tenant, labels, line) in [
        ("t", "{app=\"a\"}", "level=info msg=two"),
        ("t", "{app=\"b\"}", "level=info msg=three"),
        ("u", "{app=\"a\"}", "level=info msg=four"),
    ] {
        let req = request(&[(labels, vec![(ts + 1, line, vec![])])]);
        let r = tokio::time::timeout(Duration::from_secs(10), push(&loki.url(), tenant, &req))
            .await
            .unwrap_or_else(|_| panic!("a push to {tenant} waited for the query"));
        assert_eq!(r.status, 204, "{}", r.body);
    }
    assert!(!query.is_finished());
    release_tx.send(()).unwrap();
    let r = query.await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    // The query answers from what was stored when it started.
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let values: Vec<&str> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["values"].as_array().unwrap())
        .map(|e| e[1].as_str().unwrap())
        .collect();
    assert_eq!(values, ["level=info msg=one"]);
    loki.state().hooks.set_on_query_scan(None);
    assert_eq!(loki.entries("t").len(), 3);
    assert_eq!(loki.entries("u").len(), 1);
}
