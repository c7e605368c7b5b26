//! `loki.process` hot paths in config mode: each stage alone and the whole component of each
//! named pipeline (`bench/pipelines/*.alloy`), loaded from Alloy text as the agent loads it and
//! fed entries as the router makes them (the file's shared label set, the line after the agent's
//! own CRI parsing).

use std::collections::BTreeMap;
use std::hint::black_box;

use agent::alloy::{check_source, Entry, Route, Scope, SharedLabels};
use bench::data::TsFormatter;
use bench::pipelines::{self, write_body};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const LINES: usize = 1_000;

/// Labels a `local.file_match` target gives a pod file.
fn file_labels(pod: usize, container: &str) -> SharedLabels {
    [
        ("namespace", "bench".to_string()),
        (
            "filename",
            format!("/var/log/pods/bench_pod-{pod:04}_uid/{container}/0.log"),
        ),
        ("job", format!("bench/{container}")),
        ("pod", format!("pod-{pod:04}")),
        ("container", container.to_string()),
        ("tmp_container_runtime", "containerd".to_string()),
        ("stream", "stdout".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect::<BTreeMap<_, _>>()
    .into()
}

/// `LINES` line bodies (logfmt or JSON), 180 bytes each.
fn bodies(json: bool) -> Vec<String> {
    let mut ts = TsFormatter::default();
    (0..LINES as u64)
        .map(|seq| {
            let mut out = Vec::new();
            let marker = format!("run=bench src=bench/pod/app/stdout seq={seq}");
            let t = 1_700_000_000_000_000_000 + seq as i64 * 1000;
            write_body(&mut out, json, &marker, seq, t, &mut ts, 180);
            String::from_utf8(out).expect("utf-8 body")
        })
        .collect()
}

/// The first route of a config, loaded as `agent run` would.
fn route_of(src: &str) -> Route {
    let scope = Scope::with_env(|k| {
        (k == "LOKI_URL").then(|| "http://127.0.0.1:1/loki/api/v1/push".to_string())
    });
    let mut plan = check_source("bench.alloy", src, scope)
        .unwrap_or_else(|d| panic!("bench config does not load: {}", d.render(src)));
    plan.sources.swap_remove(0).routes.swap_remove(0)
}

/// A one-component config with `stages`.
fn component(stages: &str) -> String {
    format!(
        r#"loki.source.file "s" {{
  targets    = [{{"__path__" = "/var/log/pods/*/*/*.log", namespace = "bench"}}]
  forward_to = [loki.process.p.receiver]
}}
loki.process "p" {{
  forward_to = [loki.write.w.receiver]
{stages}
}}
loki.write "w" {{
  endpoint {{ url = sys.env("LOKI_URL") }}
}}
"#
    )
}

/// Runs every body through `route` as entries of a few pods; returns what came out.
fn run(route: &mut Route, bodies: &[String], labels: &[SharedLabels]) -> usize {
    let mut out = Vec::with_capacity(4);
    let mut n = 0;
    for (i, b) in bodies.iter().enumerate() {
        let e = Entry::shared(labels[i % labels.len()].clone(), i as i64, b.as_str());
        route.process_into(e, 1_700_000_001_000_000_000, &mut out);
        n += out.len();
        out.clear();
    }
    n
}

fn bench_case(
    c: &mut Criterion,
    group: &str,
    name: &str,
    mut route: Route,
    bodies: &[String],
    labels: &[SharedLabels],
) {
    run(&mut route, bodies, labels); // warm: plans, per-stream state, memos
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(bodies.len() as u64));
    g.bench_function(name, |b| {
        b.iter(|| black_box(run(&mut route, bodies, labels)))
    });
    g.finish();
}

/// (name, stage blocks, JSON bodies); the raw-CRI stages get full CRI lines instead.
const STAGES: &[(&str, &str, bool)] = &[
    // Nothing but making the entry (labels clone + owned line) and the route call: the floor
    // every other row includes.
    ("none", "", false),
    ("logfmt", r#"stage.logfmt { mapping = { level = "" } }"#, false),
    ("json", r#"stage.json { expressions = { level = "", ts = "", caller = "" } }"#, true),
    ("json_path", r#"stage.json { expressions = { level = "level", user = "path || msg" } }"#, true),
    ("labels", "stage.static_labels { values = { level = \"info\" } }\nstage.labels { values = { lvl = \"namespace\" } }", false),
    ("regex", r#"stage.regex { expression = "level=(?P<level>\\w+) caller=(?P<caller>\\S+) .*path=(?P<path>/\\S+)" }"#, false),
    ("template", "stage.regex { expression = \"level=(?P<level>\\\\w+)\" }\nstage.template {\n source = \"route\"\n template = \"{{ .level }}:{{ ToUpper .level }}\"\n}", false),
    ("replace", r#"stage.replace {
  expression = "pad=(\\w{4})"
  replace    = "****"
}"#, false),
    ("match", r#"stage.match {
  selector = "{namespace=\"bench\", pod=~\".*[13579]\"}"
  stage.static_labels { values = { odd = "yes" } }
}"#, false),
    ("multiline", r#"stage.multiline { firstline = "^run=" }"#, false),
    ("drop", r#"stage.logfmt { mapping = { level = "" } }
stage.drop {
  source = "level"
  value  = "debug"
}"#, false),
    ("structured_metadata", r#"stage.logfmt { mapping = { caller = "" } }
stage.structured_metadata { values = { caller = "" } }"#, false),
];

fn stages_bench(c: &mut Criterion) {
    let logfmt = bodies(false);
    let json = bodies(true);
    let labels: Vec<_> = (0..4).map(|p| file_labels(p, "app")).collect();
    for (name, stages, is_json) in STAGES {
        let route = route_of(&component(stages));
        bench_case(
            c,
            "stage",
            name,
            route,
            if *is_json { &json } else { &logfmt },
            &labels,
        );
    }
    // stage.cri as a stage (not the leading one the agent lifts): full CRI lines.
    let cri: Vec<String> = logfmt
        .iter()
        .map(|b| format!("2024-05-01T10:00:00.123456789Z stdout F {b}"))
        .collect();
    let route = route_of(&component(
        "stage.static_labels { values = { a = \"b\" } }\nstage.cri {}",
    ));
    bench_case(c, "stage", "cri", route, &cri, &labels);
}

fn pipelines_bench(c: &mut Criterion) {
    for p in pipelines::PIPELINES {
        let Some(src) = p.config else { continue };
        let labels: Vec<_> = (0..10).map(|i| file_labels(i, p.container(i))).collect();
        // Mixed bodies: JSON for even pods (the `k8s` selectors), logfmt for odd ones.
        let json = bodies(true);
        let logfmt = bodies(false);
        let body: Vec<String> = (0..LINES)
            .map(|i| {
                if p.json_body(i % labels.len()) {
                    json[i].clone()
                } else {
                    logfmt[i].clone()
                }
            })
            .collect();
        // `k8s` runs stage.cri itself (it is not leading): it gets full CRI lines.
        let body: Vec<String> = if p.name == "k8s" {
            body.iter()
                .map(|b| format!("2024-05-01T10:00:00.123456789Z stdout F {b}"))
                .collect()
        } else {
            body
        };
        bench_case(c, "pipeline", p.name, route_of(src), &body, &labels);
    }
}

criterion_group!(benches, stages_bench, pipelines_bench);
criterion_main!(benches);
