//! `loki.secretfilter`, `loki.echo` and `stage.pack` loaded from a config and run on entries
//! through the routes the loader builds; `stage.cri`'s `max_partial_line_size` as a number.

use agent::alloy::{check_source, Entry, Plan, Scope};

fn load(src: &str) -> Plan {
    check_source("small.alloy", src, Scope::with_env(|_| None))
        .unwrap_or_else(|d| panic!("{}", d.render(src)))
}

fn entry(line: &str) -> Entry {
    let mut e = Entry::new(Default::default(), 7, line);
    e.labels.insert("job".into(), "app".into());
    e.labels.insert("pod".into(), "web-1".into());
    e
}

const SOURCE: &str = r#"
local.file_match "f" {
  path_targets = [{ __path__ = "/var/log/app.log" }]
}
loki.write "default" {
  endpoint { url = "http://127.0.0.1:3100/loki/api/v1/push" }
}
"#;

#[test]
fn secretfilter_redacts_lines_on_the_way_to_the_writer() {
    let plan = load(&format!(
        r#"{SOURCE}
loki.source.file "f" {{
  targets    = local.file_match.f.targets
  forward_to = [loki.secretfilter.s.receiver]
}}
loki.secretfilter "s" {{
  forward_to      = [loki.write.default.receiver]
  include_generic = true
  allowlist       = ["EXAMPLE$"]
  redact_with     = "<$SECRET_NAME>"
}}
"#
    ));
    let mut route = plan.sources[0].routes[0].clone();
    let out = route.process(
        entry("aws=AKIAIOSFODNN7ABCDEFG demo=AKIAIOSFODNN7EXAMPLE password=hunter2hunter2"),
        0,
    );
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].line,
        "aws=<aws-access-token> demo=AKIAIOSFODNN7EXAMPLE password=<generic-api-key>"
    );
    let out = route.process(entry("nothing to see"), 0);
    assert_eq!(out[0].line, "nothing to see");
}

#[test]
fn secretfilter_rejects_a_gitleaks_config_with_a_reason() {
    let src = format!(
        r#"{SOURCE}
loki.source.file "f" {{
  targets    = local.file_match.f.targets
  forward_to = [loki.secretfilter.s.receiver]
}}
loki.secretfilter "s" {{
  forward_to      = [loki.write.default.receiver]
  gitleaks_config = "/etc/gitleaks.toml"
}}
"#
    );
    let err = check_source("small.alloy", &src, Scope::with_env(|_| None))
        .expect_err("gitleaks_config is not supported")
        .render(&src);
    assert!(
        err.contains("attribute \"gitleaks_config\" is not supported"),
        "{err}"
    );
}

#[test]
fn echo_is_a_route_of_its_own_that_sends_nothing() {
    let plan = load(&format!(
        r#"{SOURCE}
loki.source.file "f" {{
  targets    = local.file_match.f.targets
  forward_to = [loki.write.default.receiver, loki.echo.debug.receiver]
}}
loki.echo "debug" {{ }}
"#
    ));
    let routes = &plan.sources[0].routes;
    assert_eq!(routes.len(), 2);
    assert!(routes[0].steps.is_empty());
    let mut echo = routes[1].clone();
    assert!(echo.process(entry("hello"), 0).is_empty());
}

#[test]
fn pack_moves_labels_into_the_line() {
    let plan = load(&format!(
        r#"{SOURCE}
loki.source.file "f" {{
  targets    = local.file_match.f.targets
  forward_to = [loki.process.p.receiver]
}}
loki.process "p" {{
  forward_to = [loki.write.default.receiver]
  stage.pack {{
    labels           = ["pod"]
    ingest_timestamp = false
  }}
}}
"#
    ));
    let mut route = plan.sources[0].routes[0].clone();
    let out = route.process(entry("GET / 200"), 99);
    assert_eq!(out[0].line, r#"{"pod":"web-1","_entry":"GET / 200"}"#);
    assert_eq!(out[0].labels.get("pod"), None);
    assert_eq!(out[0].ts, 7);
}

#[test]
fn cri_max_partial_line_size_is_a_number_or_a_string_of_digits() {
    for value in ["26214", "\"26214\""] {
        load(&format!(
            r#"{SOURCE}
loki.source.file "f" {{
  targets    = local.file_match.f.targets
  forward_to = [loki.process.p.receiver]
}}
loki.process "p" {{
  forward_to = [loki.write.default.receiver]
  stage.cri {{
    max_partial_line_size          = {value}
    max_partial_line_size_truncate = true
  }}
}}
"#
        ));
    }
}
