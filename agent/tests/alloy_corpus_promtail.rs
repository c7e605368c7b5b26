//! The Promtail-migration corpus (`alloy-corpus/promtail/`): configs in the shapes `alloy
//! convert` writes for Promtail configs. Each must pass `agent check` unchanged.

use std::path::Path;

use agent::alloy::{check_source, Scope};

fn env(k: &str) -> Option<String> {
    match k {
        "HOSTNAME" => Some("node-1".into()),
        "LOKI_PASSWORD" => Some("secret".into()),
        _ => None,
    }
}

#[test]
fn every_promtail_corpus_config_is_accepted() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/alloy-corpus/promtail");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("corpus dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "alloy"))
        .collect();
    files.sort();
    assert!(files.len() >= 6, "corpus is missing files: {files:?}");
    let mut failures = Vec::new();
    for f in &files {
        let src = std::fs::read_to_string(f).expect("read corpus file");
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("?");
        if let Err(d) = check_source(name, &src, Scope::with_env(env)) {
            failures.push(d.render(&src));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
