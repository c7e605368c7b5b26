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
    // the fix; the renamed backoff attributes get a suggestion; a bare number is not a size
    // for Alloy (its decoder turns 1048576 into the string "1048576" and
    // units.ParseBase2Bytes finds no unit).
    let want = [
        format!("{file}:5:35 illegal character U+0023 '#' | use // for comments"),
        format!("{file}:8:5 attribute \"batch_size\": units: unknown unit  in 1048576 | a size needs a unit: write \"1048576B\" or \"1MiB\""),
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

/// A config that computes its endpoint, tenant and labels with the standard library loads
/// with the values Alloy would compute; a bad input names the function, the reason and the
/// position.
#[test]
fn stdlib_functions_feed_component_arguments() {
    let src = r#"local.file_match "pods" {
	path_targets = [{"__path__" = "/var/log/pods/*/*/*.log"}]
}

loki.source.file "pods" {
	targets    = local.file_match.pods.targets
	forward_to = [loki.write.default.receiver]
}

loki.write "default" {
	endpoint {
		url       = encoding.from_base64(sys.env("LOKI_URL_B64"))
		tenant_id = json_path(sys.env("TENANT_JSON"), ".tenant")[0]
	}
	external_labels = {
		cluster = encoding.from_yaml(sys.env("CLUSTER_YAML")).name,
		team    = string.format("%s-%03d", "t", 7),
		query   = encoding.url_encode("a b&c"),
		groups  = array.group_by([{"k" = "x"}, {"k" = "y"}], "k", true)[1].items[0].k,
	}
}
"#;
    let env = |k: &str| match k {
        // base64 of http://127.0.0.1:3100/loki/api/v1/push
        "LOKI_URL_B64" => Some("aHR0cDovLzEyNy4wLjAuMTozMTAwL2xva2kvYXBpL3YxL3B1c2g=".to_string()),
        "TENANT_JSON" => Some(r#"{"tenant": "team-a"}"#.to_string()),
        "CLUSTER_YAML" => Some("name: prod-eu\nregion: eu\n".to_string()),
        _ => None,
    };
    let plan = check_source("stdlib.alloy", src, Scope::with_env(env))
        .unwrap_or_else(|d| panic!("{}", d.render(src)));
    let s = &plan.settings;
    assert_eq!(s.loki_url, "http://127.0.0.1:3100/loki/api/v1/push");
    assert_eq!(s.tenant, "team-a");
    let label = |k: &str| s.external_labels.get(k).map(String::as_str);
    assert_eq!(label("cluster"), Some("prod-eu"));
    assert_eq!(label("team"), Some("t-007"));
    assert_eq!(label("query"), Some("a+b%26c"));
    assert_eq!(label("groups"), Some("y"));

    let bad = |k: &str| (k == "LOKI_URL_B64").then(|| "aHR0cDovL!".to_string());
    let diags = check_source("stdlib.alloy", src, Scope::with_env(bad)).expect_err("bad base64");
    let got: Vec<String> = diags
        .iter()
        .map(|d| format!("{} {}", d.location(), d.message))
        .collect();
    assert!(
        got.contains(
            &"stdlib.alloy:12:15 encoding.from_base64 illegal base64 data at input byte 9"
                .to_string()
        ),
        "{got:?}"
    );
}

#[test]
fn check_cli_exits_1_with_the_diagnostics_and_no_backtrace() {
    let path = testdata("design-doc.alloy");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_agent"))
        .arg("check")
        .arg(&path)
        // Even with backtraces asked for, a config problem is not a crash.
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run agent check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.matches("\nhint: ").count(), 5, "{stderr}");
    assert!(
        stderr.ends_with(&format!("Error: 5 problem(s) in {}\n", path.display())),
        "{stderr}"
    );
    assert!(!stderr.contains("backtrace"), "{stderr}");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_agent"))
        .arg("check")
        .arg(example("design-doc.alloy"))
        .env("CLUSTER_NAME", "ops")
        .output()
        .expect("run agent check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.ends_with("design-doc.alloy: ok\n"), "{stderr}");
}

#[test]
fn check_cli_names_an_unreadable_file_without_a_snippet() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_agent"))
        .args(["check", "/nonexistent/config.alloy"])
        .output()
        .expect("run agent check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("Error: /nonexistent/config.alloy: cannot read config: "),
        "{stderr}"
    );
    assert!(!stderr.contains(" | "), "{stderr}");
}
