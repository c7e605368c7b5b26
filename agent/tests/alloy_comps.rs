//! Components and attributes that real Alloy configs (k8s-monitoring chart output, Promtail
//! conversions) use: how each is accepted, noted or rejected by `agent check` semantics.

use agent::alloy::stages::Stage;
use agent::alloy::{check_source, Plan, Step};

fn check(src: &str) -> Result<Plan, Vec<String>> {
    check_source("c.alloy", src, agent::alloy::system_scope()).map_err(|d| {
        d.iter()
            .map(|d| {
                format!(
                    "{} {} | {}",
                    d.location(),
                    d.message,
                    d.hint.clone().unwrap_or_default()
                )
            })
            .collect()
    })
}

/// A file source feeding `loki.process "p"` (whose body is `stages`) feeding a writer.
fn with_process(stages: &str) -> String {
    format!(
        r#"loki.source.file "f" {{
  targets    = [{{"__path__" = "/var/log/x.log"}}]
  forward_to = [loki.process.p.receiver]
}}
loki.process "p" {{
  forward_to = [loki.write.w.receiver]
  stage.static_labels {{
    values = {{ a = "b" }}
  }}
{stages}
}}
loki.write "w" {{
  endpoint {{ url = "http://127.0.0.1:3100/loki/api/v1/push" }}
}}
"#
    )
}

fn cri_of(plan: &Plan) -> (usize, usize, bool) {
    let Some(Step::Process { pipeline, .. }) = plan.sources[0].routes[0].steps.first() else {
        panic!("no process step");
    };
    pipeline
        .stages
        .iter()
        .find_map(|s| match s {
            Stage::Cri(c) => Some((
                c.max_partial_lines,
                c.max_partial_line_size,
                c.max_partial_line_size_truncate,
            )),
            _ => None,
        })
        .expect("a stage.cri")
}

#[test]
fn stage_cri_max_partial_line_size_is_a_number_as_in_alloy() {
    // The k8s-monitoring chart renders this exact shape.
    let plan = check(&with_process(
        "  stage.cri {\n    max_partial_line_size = 26214\n    max_partial_line_size_truncate = true\n  }",
    ))
    .unwrap_or_else(|d| panic!("{d:#?}"));
    assert_eq!(cri_of(&plan), (100, 26214, true));

    // A string of digits converts like any Alloy number.
    let plan = check(&with_process(
        "  stage.cri {\n    max_partial_lines = \"7\"\n    max_partial_line_size = \"4096\"\n  }",
    ))
    .unwrap_or_else(|d| panic!("{d:#?}"));
    assert_eq!(cri_of(&plan), (7, 4096, false));

    // Not a byte-size string, and max_partial_lines must be positive (Alloy's Validate).
    let got = check(&with_process(
        "  stage.cri {\n    max_partial_lines = 0\n    max_partial_line_size = \"1MiB\"\n  }",
    ))
    .expect_err("rejected");
    assert_eq!(
        got,
        vec![
            "c.alloy:11:5 attribute \"max_partial_lines\": must be greater than 0 | ".to_string(),
            "c.alloy:12:5 attribute \"max_partial_line_size\": cannot convert \"1MiB\" to number | ".to_string(),
        ]
    );
}

/// A pod-logs pipeline and a Loki destination as the k8s-monitoring chart lays them out,
/// followed by `extra`.
fn destination_with(extra: &str) -> String {
    format!(
        r#"loki.source.file "pods" {{
  targets    = [{{"__path__" = "/var/log/pods/*/*/*.log", "job" = "pods"}}]
  forward_to = [loki.process.pods.receiver]
}}

loki.process "pods" {{
  stage.cri {{}}
  forward_to = [loki.write.default.receiver]
}}

otelcol.exporter.loki "default" {{
  forward_to = [loki.write.default.receiver]
}}

loki.write "default" {{
  endpoint {{
    url = "http://127.0.0.1:3100/loki/api/v1/push"
  }}
  external_labels = {{ cluster = "c1" }}
}}
{extra}"#
    )
}

#[test]
fn inert_otelcol_components_are_accepted_with_a_note() {
    // Exports of inert otelcol blocks are referenceable by other inert otelcol blocks, and
    // their attributes are not validated beyond syntax.
    let src = destination_with(
        r#"
otelcol.processor.batch "default" {
  send_batch_size = 8192
  whatever_it_is  = otelcol.auth.basic.creds.handler
  output {
    logs = [otelcol.exporter.loki.default.input]
  }
}

otelcol.auth.basic "creds" {
  username = "u"
  password = "p"
}
"#,
    );
    let plan = check(&src).unwrap_or_else(|d| panic!("{d:#?}"));
    assert_eq!(plan.writers.len(), 1);
    assert_eq!(plan.writers[0].id, "loki.write.default");
    let note = plan
        .notes
        .iter()
        .find(|n| n.contains("inert"))
        .unwrap_or_else(|| panic!("no inert note in {:#?}", plan.notes));
    assert_eq!(
        note,
        "otelcol.auth.basic.creds, otelcol.exporter.loki.default, otelcol.processor.batch.default: accepted but inert: this agent runs no OpenTelemetry Collector components, and no log path of this config feeds or reads them"
    );
}

#[test]
fn a_loki_component_feeding_otelcol_is_rejected_at_its_forward_to() {
    let src = destination_with(
        r#"
loki.relabel "to_otel" {
  forward_to = [loki.write.default.receiver, otelcol.receiver.loki.otel.receiver]
}

otelcol.receiver.loki "otel" {
  output {
    logs = [otelcol.exporter.loki.default.input]
  }
}
"#,
    );
    let got = check(&src).expect_err("rejected");
    assert_eq!(
        got,
        vec!["c.alloy:23:3 attribute \"forward_to\": otelcol.receiver.loki.otel is an otelcol component, which this agent does not run: logs sent there would be lost | forward to a loki.process, loki.relabel or loki.write receiver".to_string()]
    );
}

#[test]
fn otelcol_output_reaching_a_loki_component_is_rejected_naming_the_component() {
    // An OTLP receiver's logs would reach loki.write through the exporter: not inert.
    let src = destination_with(
        r#"
otelcol.receiver.otlp "apps" {
  http {}
  output {
    logs = [otelcol.processor.batch.default.input]
  }
}

otelcol.processor.batch "default" {
  output {
    logs = [otelcol.exporter.loki.default.input]
  }
}
"#,
    );
    let got = check(&src).expect_err("rejected");
    assert_eq!(
        got,
        vec!["c.alloy:11:1 otelcol.exporter.loki.default would carry logs from otelcol.receiver.otlp.apps into loki.write.default: otelcol components are not run by this agent | otelcol components are accepted only when no log path uses them; ship OpenTelemetry logs with another collector".to_string()]
    );
}

#[test]
fn loki_source_journal_is_rejected_with_what_to_use_instead() {
    let src = destination_with(
        r#"
loki.source.journal "node" {
  forward_to = [loki.write.default.receiver]
  labels     = { job = "integrations/kubernetes/journal" }
}
"#,
    );
    let got = check(&src).expect_err("rejected");
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(
        got[0].starts_with("c.alloy:22:1 component \"loki.source.journal\" is not supported by this agent | node logs from the systemd journal are not supported yet: "),
        "{got:#?}"
    );
    assert!(got[0].contains("loki.source.file"), "{got:#?}");
}

#[test]
fn alloy_attributes_we_lack_say_not_supported_and_typos_stay_unrecognized() {
    let src = destination_with(
        r#"
discovery.kubernetes "pods" {
  role                   = "pod"
  proxy_from_environment = true
  no_proxy               = "10.0.0.0/8"
  proxy_conect_header    = {}
}
"#,
    );
    let got = check(&src).expect_err("rejected");
    let hint = "the agent's Kubernetes client is configured from the in-cluster service account or $KUBECONFIG (with $NODE_NAME), not from the config; pod files come from the kubelet's log directories on this node";
    assert_eq!(
        got,
        vec![
            format!("c.alloy:24:3 attribute \"proxy_from_environment\" is not supported by this agent | {hint}"),
            format!("c.alloy:25:3 attribute \"no_proxy\" is not supported by this agent | {hint}"),
            "c.alloy:26:3 unrecognized attribute name \"proxy_conect_header\" | did you mean proxy_connect_header?".to_string(),
        ]
    );
}

/// Every config under `tests/alloy-corpus/<group>/` (and its `modules/` subfolder: configs
/// wrapped in declare/argument/export as the k8s-monitoring chart renders them) passes
/// `agent check` unchanged. The `modules` group itself needs `LOKI_URL` and is checked by
/// tests/alloy_modules.rs.
#[test]
fn corpus_configs_pass_agent_check() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/alloy-corpus");
    let alloy_files = |dir: &std::path::Path| -> Vec<std::path::PathBuf> {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut files: Vec<_> = rd
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "alloy"))
            .collect();
        files.sort();
        files
    };
    let mut checked = Vec::new();
    for group in std::fs::read_dir(&root).expect("corpus dir") {
        let group = group.expect("entry").path();
        if group.file_name().is_some_and(|n| n == "modules") {
            continue;
        }
        let mut files = alloy_files(&group);
        files.extend(alloy_files(&group.join("modules")));
        for f in files {
            if let Err(d) = agent::alloy::check(&f) {
                let src = std::fs::read_to_string(&f).unwrap_or_default();
                panic!("{}:\n{}", f.display(), d.render(&src));
            }
            checked.push(f);
        }
    }
    assert!(
        checked
            .iter()
            .any(|f| f.ends_with("k8s-monitoring/modules/pod-logs-declare.alloy")),
        "the declare-wrapped chart config was not checked: {checked:?}"
    );
}
