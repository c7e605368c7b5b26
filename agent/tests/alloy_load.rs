//! Loading Alloy configs: the reference DaemonSet config (spec §2.9) on a simulated node,
//! graph errors, rejected components, and the print → parse round trip on generated trees.

use std::collections::BTreeMap;

use agent::alloy::ast::{Attribute, Block, Expr, ExprKind, Field, File, Ident, Lit, Stmt};
use agent::alloy::diag::Pos;
use agent::alloy::{check_source, fmt, parser, printer, Entry, Scope};
use agent::discovery::Discovery;
use proptest::prelude::*;

const REFERENCE: &str = r#"discovery.kubernetes "pods" {
  role = "pod"
  selectors {
    role  = "pod"
    field = "spec.nodeName=" + coalesce(sys.env("HOSTNAME"), constants.hostname)
  }
}

discovery.relabel "pods" {
  targets = discovery.kubernetes.pods.targets
  rule {
    source_labels = ["__meta_kubernetes_namespace"]
    target_label  = "namespace"
  }
  rule {
    source_labels = ["__meta_kubernetes_pod_uid", "__meta_kubernetes_pod_container_name"]
    separator     = "/"
    target_label  = "__path__"
    replacement   = "/var/log/pods/*$1/*.log"
  }
}

loki.source.file "pods" {
  targets    = discovery.relabel.pods.output
  forward_to = [loki.process.pods.receiver]
  file_match { enabled = true }
}

loki.process "pods" {
  forward_to = [loki.write.default.receiver]
  stage.cri {}
}

loki.write "default" {
  endpoint {
    url = sys.env("LOKI_URL")
  }
  external_labels = { cluster = "dev" }
}
"#;

fn env(k: &str) -> Option<String> {
    (k == "LOKI_URL").then(|| "http://127.0.0.1:3100/loki/api/v1/push".to_string())
}

#[test]
fn reference_daemonset_config_tails_the_nodes_pod_files() {
    let plan = check_source("ref.alloy", REFERENCE, Scope::with_env(env))
        .unwrap_or_else(|d| panic!("{}", d.render(REFERENCE)));
    assert_eq!(
        plan.settings.format,
        agent::config::LineFormat::Cri,
        "leading stage.cri is done by the agent's parser"
    );
    assert!(plan.sources[0].routes[0].steps.iter().all(
        |s| matches!(s, agent::alloy::Step::Process { pipeline, .. } if pipeline.stages.is_empty())
    ));

    let node = tempfile::tempdir().expect("tempdir");
    let cdir = node.path().join("shop_web-7d9_0b1c/app");
    std::fs::create_dir_all(&cdir).expect("mkdir");
    std::fs::write(cdir.join("0.log"), "2024-05-01T10:00:00Z stdout F hi\n").expect("write");
    let mut plan = plan;
    plan.settings.pods_root = node.path().to_path_buf();
    let mut d = plan.discovery();
    let files = d.scan();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0].path, cdir.join("0.log"));
    assert_eq!(files[0].namespace, "shop");
    let labels: BTreeMap<_, _> = files[0].labels.iter().cloned().collect();
    assert_eq!(labels.get("namespace").map(String::as_str), Some("shop"));
    assert!(labels.keys().all(|k| !k.starts_with("__")), "{labels:?}");
}

#[test]
fn clustering_on_loki_source_kubernetes_is_accepted_with_a_note() {
    let src = r#"discovery.kubernetes "pods" {
  role = "pod"
}
loki.source.kubernetes "pods" {
  targets    = discovery.kubernetes.pods.targets
  forward_to = [loki.write.default.receiver]
  clustering {
    enabled = true
  }
}
loki.write "default" {
  endpoint {
    url = sys.env("LOKI_URL")
  }
}
"#;
    let plan = check_source("c.alloy", src, Scope::with_env(env))
        .unwrap_or_else(|d| panic!("{}", d.render(src)));
    assert!(
        plan.notes.iter().any(|n| n
            == "loki.source.kubernetes.pods: clustering has no effect: each DaemonSet pod reads only its own node's files, so no target is read twice or left out"),
        "{:?}",
        plan.notes
    );
    // `enabled` is required, as in Alloy.
    let bad = src.replace("    enabled = true\n", "");
    let d = check_source("c.alloy", &bad, Scope::with_env(env)).unwrap_err();
    assert!(
        d.render(&bad)
            .contains("c.alloy:7:3: missing required attribute \"enabled\""),
        "{}",
        d.render(&bad)
    );
}

#[test]
fn declaration_order_is_irrelevant_and_cycles_are_errors() {
    // The reference config with its blocks reversed loads the same.
    let mut blocks: Vec<&str> = REFERENCE.split("\n\n").collect();
    blocks.reverse();
    let reversed = blocks.join("\n\n") + "\n";
    check_source("rev.alloy", &reversed, Scope::with_env(env))
        .unwrap_or_else(|d| panic!("{}", d.render(&reversed)));

    let cyclic = r#"discovery.relabel "a" {
  targets = discovery.relabel.b.output
}
discovery.relabel "b" {
  targets = discovery.relabel.a.output
}
"#;
    let d = check_source("c.alloy", cyclic, Scope::with_env(env)).expect_err("cycle");
    assert!(
        d.iter().any(|d| d.message.starts_with(
            "cycle detected: discovery.relabel.a -> discovery.relabel.b -> discovery.relabel.a"
        )),
        "{d:?}"
    );
}

#[test]
fn unsupported_and_unknown_names_are_errors_with_positions() {
    let src = r#"prometheus.scrape "x" {
}
loki.source.fil "y" {
}
loki.write "w" {
  endpoint {
    url = "http://l/loki/api/v1/push"
    oauth2 {
      client_id = "x"
    }
  }
}
loki.write "w" {
  endpoint { url = "http://x" }
}
"#;
    let d = check_source("u.alloy", src, Scope::with_env(env)).expect_err("rejected");
    let got: Vec<String> = d
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
    let has = |s: &str| got.iter().any(|g| g.starts_with(s));
    assert!(
        has("u.alloy:1:1 component \"prometheus.scrape\" is not supported by this agent"),
        "{got:#?}"
    );
    assert!(has("u.alloy:3:1 unrecognized block name \"loki.source.fil\" | did you mean loki.source.file?"), "{got:#?}");
    assert!(
        has("u.alloy:8:5 block \"oauth2\" is not supported by this agent"),
        "{got:#?}"
    );
    assert!(
        has("u.alloy:13:1 block loki.write.w already declared at u.alloy:5:1"),
        "{got:#?}"
    );
}

#[test]
fn routes_run_process_and_relabel_in_forward_to_order() {
    let src = r#"local.file_match "f" {
  path_targets = [{"__path__" = "/var/log/app/*.log", job = "app"}]
}
loki.source.file "f" {
  targets    = local.file_match.f.targets
  forward_to = [loki.process.p.receiver]
}
loki.process "p" {
  forward_to = [loki.relabel.r.receiver]
  stage.regex {
    expression = `^(?P<level>\w+) `
  }
  stage.labels {
    values = { level = "" }
  }
  stage.drop {
    expression = "^DEBUG"
  }
}
loki.relabel "r" {
  forward_to = [loki.write.w.receiver]
  rule {
    action = "labeldrop"
    regex  = "job"
  }
}
loki.write "w" {
  endpoint { url = "http://l:3100" }
}
"#;
    let mut plan = check_source("r.alloy", src, Scope::with_env(env))
        .unwrap_or_else(|d| panic!("{}", d.render(src)));
    assert_eq!(plan.settings.format, agent::config::LineFormat::Plain);
    let route = &mut plan.sources[0].routes[0];
    let mut labels = BTreeMap::new();
    labels.insert("job".to_string(), "app".to_string());
    let out = route.process(Entry::new(labels.clone(), 1, "INFO started"), 1);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].labels.get("level").map(String::as_str), Some("INFO"));
    assert!(!out[0].labels.contains_key("job"));
    assert!(route
        .process(Entry::new(labels, 1, "DEBUG noise"), 1)
        .is_empty());
}

#[test]
fn stage_template_rewrites_extracted_values_and_refuses_what_it_cannot_run() {
    let src = r##"local.file_match "f" {
  path_targets = [{"__path__" = "/var/log/app/*.log", job = "app"}]
}
loki.source.file "f" {
  targets    = local.file_match.f.targets
  forward_to = [loki.process.p.receiver]
}
loki.process "p" {
  forward_to = [loki.write.w.receiver]
  stage.regex {
    expression = `^(?P<level>\w+) (?P<user>\S+)`
  }
  stage.template {
    source   = "level"
    template = "{{ ToLower .Value }}"
  }
  stage.template {
    source   = "svc"
    template = "{{ .job }}-{{ .level }}"
  }
  stage.template {
    source   = "user"
    template = `{{ regexReplaceAll "[0-9]" .Value "#" }}`
  }
  stage.labels {
    values = { level = "", svc = "", user = "" }
  }
}
loki.write "w" {
  endpoint { url = "http://l:3100" }
}
"##;
    let mut plan = check_source("t.alloy", src, Scope::with_env(env))
        .unwrap_or_else(|d| panic!("{}", d.render(src)));
    let route = &mut plan.sources[0].routes[0];
    let labels = BTreeMap::from([("job".to_string(), "app".to_string())]);
    let out = route.process(Entry::new(labels, 1, "WARN bob42 did x"), 1);
    assert_eq!(out.len(), 1);
    let got: Vec<(&str, &str)> = ["level", "svc", "user"]
        .iter()
        .map(|k| (*k, out[0].labels.get(*k).map_or("", String::as_str)))
        .collect();
    assert_eq!(
        got,
        [("level", "warn"), ("svc", "app-warn"), ("user", "bob##")]
    );

    let bad = |template: &str, source: &str| {
        let cfg = src.replacen(
            "    source   = \"level\"\n    template = \"{{ ToLower .Value }}\"",
            &format!("    source   = \"{source}\"\n    template = {template}"),
            1,
        );
        let d = check_source("t.alloy", &cfg, Scope::with_env(env)).unwrap_err();
        d.render(&cfg)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(
        bad(r#""{{ if .Value }}x{{ end }}""#, "level"),
        "Error: t.alloy:15:5: attribute \"template\": \"if\": template variables, parentheses and control structures are not supported by this agent"
    );
    assert_eq!(
        bad(r#""{{ Hash \"salt\" .Value }}""#, "level"),
        "Error: t.alloy:15:5: attribute \"template\": template function \"Hash\" is not supported by this agent (supported: ToLower, ToUpper, TrimSpace, Trim, TrimLeft, TrimRight, TrimPrefix, TrimSuffix, Replace, regexReplaceAll, regexReplaceAllLiteral)"
    );
    assert_eq!(
        bad(r#""x""#, ""),
        "Error: t.alloy:13:3: template source value is required"
    );
}

#[test]
fn extracted_values_start_from_the_labels_in_each_loki_process() {
    let src = r#"local.file_match "f" {
  path_targets = [{"__path__" = "/var/log/app/*.log", namespace = "shop"}]
}
loki.source.file "f" {
  targets    = local.file_match.f.targets
  forward_to = [loki.process.first.receiver]
}
loki.process "first" {
  forward_to = [loki.process.second.receiver]
  stage.regex {
    expression = "^(?P<word>\\w+)"
  }
  stage.tenant {
    source = "namespace"
  }
}
loki.process "second" {
  forward_to = [loki.write.w.receiver]
  stage.labels {
    values = { word = "" }
  }
}
loki.write "w" {
  endpoint { url = "http://l:3100" }
}
"#;
    let mut plan = check_source("x.alloy", src, Scope::with_env(env))
        .unwrap_or_else(|d| panic!("{}", d.render(src)));
    let route = &mut plan.sources[0].routes[0];
    let labels = BTreeMap::from([("namespace".to_string(), "shop".to_string())]);
    let out = route.process(Entry::new(labels, 1, "hello world"), 1);
    assert_eq!(out.len(), 1);
    // The label was a value for stage.tenant; `word` stayed in the first component.
    assert_eq!(
        out[0].labels,
        BTreeMap::from([
            ("__tenant_id__".to_string(), "shop".to_string()),
            ("namespace".to_string(), "shop".to_string()),
        ])
    );
}

// ---- print → parse round trip on generated trees ----

fn ident() -> impl Strategy<Value = String> {
    "[a-z_][a-z0-9_]{0,6}".prop_filter("keywords", |s| {
        !matches!(s.as_str(), "true" | "false" | "null")
    })
}

fn expr() -> impl Strategy<Value = Expr> {
    let leaf = prop_oneof![
        (0u32..100000).prop_map(|n| ExprKind::Literal(Lit::Number(n.to_string()))),
        "[ -~]{0,8}".prop_map(|s| ExprKind::Literal(Lit::String(agent::alloy::scanner::quote(&s)))),
        "[a-z]{0,5}".prop_map(|s| ExprKind::Literal(Lit::String(format!("`{s}`")))),
        any::<bool>().prop_map(|b| ExprKind::Literal(Lit::Bool(b))),
        Just(ExprKind::Literal(Lit::Null)),
        ident().prop_map(ExprKind::Ident),
    ]
    .prop_map(Expr::new);
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| Expr::new(ExprKind::Array(v))),
            prop::collection::vec((ident(), any::<bool>(), inner.clone()), 0..3).prop_map(|fs| {
                Expr::new(ExprKind::Object(
                    fs.into_iter()
                        .map(|(n, q, v)| Field {
                            name: Ident {
                                name: n,
                                pos: Pos::default(),
                            },
                            quoted: q,
                            value: v,
                        })
                        .collect(),
                ))
            }),
            (inner.clone(), ident()).prop_map(|(e, n)| Expr::new(ExprKind::Access(
                Box::new(Expr::new(ExprKind::Paren(Box::new(e)))),
                Ident {
                    name: n,
                    pos: Pos::default()
                }
            ))),
            (inner.clone(), prop::collection::vec(inner.clone(), 0..3)).prop_map(|(f, a)| {
                Expr::new(ExprKind::Call(
                    Box::new(Expr::new(ExprKind::Paren(Box::new(f)))),
                    a,
                ))
            }),
            inner.clone().prop_map(|e| Expr::new(ExprKind::Unary(
                agent::alloy::scanner::Tok::Not,
                Box::new(Expr::new(ExprKind::Paren(Box::new(e))))
            ))),
            (
                inner.clone(),
                inner.clone(),
                prop::sample::select(vec![
                    agent::alloy::scanner::Tok::Add,
                    agent::alloy::scanner::Tok::Mul,
                    agent::alloy::scanner::Tok::Eq,
                    agent::alloy::scanner::Tok::Or,
                    agent::alloy::scanner::Tok::Pow,
                ])
            )
                .prop_map(|(a, b, op)| Expr::new(ExprKind::Binary(
                    op,
                    Box::new(Expr::new(ExprKind::Paren(Box::new(a)))),
                    Box::new(Expr::new(ExprKind::Paren(Box::new(b))))
                ))),
        ]
    })
}

fn stmts(depth: u32) -> BoxedStrategy<Vec<Stmt>> {
    let attr = (ident(), expr()).prop_map(|(n, v)| {
        Stmt::Attr(Attribute {
            name: Ident {
                name: n,
                pos: Pos::default(),
            },
            value: v,
        })
    });
    if depth == 0 {
        return prop::collection::vec(attr, 0..4).boxed();
    }
    let block = (
        prop::collection::vec(ident(), 1..3),
        prop::option::of(ident()),
        stmts(depth - 1),
    )
        .prop_map(|(name, label, body)| {
            Stmt::Block(Block {
                name,
                name_pos: Pos::default(),
                label_pos: label.as_ref().map(|_| Pos::default()),
                label,
                body,
                lcurly: Pos::default(),
                rcurly: Pos::default(),
            })
        });
    prop::collection::vec(prop_oneof![attr, block], 0..4).boxed()
}

proptest! {
    #[test]
    fn print_then_parse_round_trips(body in stmts(2)) {
        let file = File { name: String::new(), body, comments: Vec::new() };
        let printed = printer::print_file(&file);
        let (mut back, diags) = parser::parse_file("gen", &printed);
        prop_assert!(diags.is_empty(), "{}\n{}", printed, diags.render(&printed));
        agent::alloy::ast::strip_positions(&mut back);
        prop_assert_eq!(&back, &file, "{}", printed);
        // Formatting the printed text is a fixed point.
        prop_assert_eq!(fmt(&printed).expect("fmt"), printed);
    }
}

#[test]
fn leading_docker_stage_keeps_the_records_newline_like_alloy() {
    let src = r#"local.file_match "f" {
  path_targets = [{"__path__" = "/var/lib/docker/containers/*/*-json.log"}]
}
loki.source.file "f" {
  targets    = local.file_match.f.targets
  forward_to = [loki.process.p.receiver]
}
loki.process "p" {
  forward_to = [loki.write.w.receiver]
  stage.docker {}
}
loki.write "w" {
  endpoint { url = "http://127.0.0.1:3100/loki/api/v1/push" }
}
"#;
    let plan = check_source("d.alloy", src, Scope::with_env(env))
        .unwrap_or_else(|d| panic!("{}", d.render(src)));
    assert_eq!(plan.settings.format, agent::config::LineFormat::Docker);
    assert!(plan.settings.docker_keep_newline);
    let cri = check_source("ref.alloy", REFERENCE, Scope::with_env(env))
        .unwrap_or_else(|d| panic!("{}", d.render(REFERENCE)));
    assert!(!cri.settings.docker_keep_newline);
}
