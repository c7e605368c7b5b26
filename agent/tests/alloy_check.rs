//! `agent check` on Alloy configs: the design-doc config is rejected with every problem at
//! file:line:col with its fix, and the corrected example loads.

use std::path::PathBuf;

use agent::alloy::{check, check_source, fmt, Scope};

fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/testdata")
        .join(name)
}

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
}

#[test]
fn design_doc_config_is_rejected_with_every_problem_and_fix() {
    let path = testdata("design-doc.alloy");
    let diags = check(&path).expect_err("the design-doc config must be rejected");
    let file = path.display().to_string();
    let src = std::fs::read_to_string(&path).expect("read fixture");
    let rendered = diags.render(&src);
    println!("{rendered}");
    let got: Vec<String> = diags
        .iter()
        .map(|d| {
            format!(
                "{} {} | {}",
                d.location(),
                d.message,
                d.hint.clone().unwrap_or_default()
            )
        })
        .collect();
    // Both `#` comments (lines 5 and 8) are illegal characters with
    // the fix; the renamed backoff attributes get a suggestion.
    let want = [
        format!("{file}:5:35 illegal character U+0023 '#' | use // for comments"),
        format!("{file}:8:36 illegal character U+0023 '#' | use // for comments"),
        format!("{file}:10:5 unrecognized attribute name \"max_backoff\" | did you mean max_backoff_period?"),
        format!("{file}:14:5 unrecognized attribute name \"min_backoff\" | did you mean min_backoff_period?"),
    ];
    for w in &want {
        assert!(got.contains(w), "missing {w:?} in:\n{}", got.join("\n"));
    }
    assert_eq!(
        got.len(),
        want.len(),
        "unexpected extra diagnostics:\n{}",
        got.join("\n")
    );
    // The CLI rendering shows the line and a caret under the `#`.
    assert!(
        rendered.contains(&format!("Error: {file}:5:35: illegal character U+0023 '#'")),
        "{rendered}"
    );
    assert!(rendered.contains("5 |     tenant_id = \"<cluster-name>\"  # ops, dev, or prod\n  |                                   ^\n"), "{rendered}");
}

#[test]
fn corrected_design_doc_example_passes_check() {
    let src = std::fs::read_to_string(example("design-doc.alloy")).expect("read example");
    let env = |k: &str| match k {
        "CLUSTER_NAME" => Some("dev".to_string()),
        "LOKI_URL" => Some("http://127.0.0.1:3100/loki/api/v1/push".to_string()),
        _ => None,
    };
    let plan = check_source("design-doc.alloy", &src, Scope::with_env(env))
        .unwrap_or_else(|d| panic!("{}", d.render(&src)));
    let s = &plan.settings;
    assert_eq!(s.loki_url, "http://127.0.0.1:3100/loki/api/v1/push");
    assert_eq!(s.tenant, "dev");
    assert_eq!(
        s.external_labels.get("cluster").map(String::as_str),
        Some("dev")
    );
    assert_eq!(s.batch_bytes, 1 << 20);
    assert_eq!(s.min_backoff, std::time::Duration::from_millis(100));
    assert_eq!(s.max_backoff, std::time::Duration::from_secs(300));
    assert_eq!(
        s.format,
        agent::config::LineFormat::Cri,
        "API-style source reads CRI files"
    );
    assert_eq!(plan.sources.len(), 1);
    assert_eq!(plan.sources[0].routes.len(), 1);
    assert!(
        plan.notes.iter().any(|n| n.contains("kubelet paths")),
        "{:?}",
        plan.notes
    );
    // The real check (process environment) also passes: unset variables are "".
    check(example("design-doc.alloy")).unwrap_or_else(|d| panic!("{}", d.render(&src)));
    // And the example is already canonically formatted.
    assert_eq!(fmt(&src).expect("formats"), src);
}
