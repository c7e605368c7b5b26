//! Alloy modules (`declare`, `argument`, `export`, `import.string`, `import.file`): the corpus
//! under `tests/alloy-corpus/modules/` passes `agent check`; every error a module produces
//! points at the module's file:line:col and names the instantiation site; a pipeline declared
//! as a custom component ships every line from a simulated node to fake-loki.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use agent::alloy::{check_source, Entry, Scope};
use common::{AgentProcess, WAIT};
use fake_loki::{Config, FakeLoki};

mod common;

const LOKI: &str = "http://127.0.0.1:3100/loki/api/v1/push";

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/alloy-corpus/modules")
}

fn env(k: &str) -> Option<String> {
    match k {
        "LOKI_URL" => Some(LOKI.to_string()),
        "CLUSTER_NAME" => Some("ops".to_string()),
        _ => None,
    }
}

#[test]
fn corpus_passes_agent_check() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus())
        .expect("corpus dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "alloy"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "corpus missing: {files:?}");
    for f in files {
        let out = Command::new(env!("CARGO_BIN_EXE_agent"))
            .arg("check")
            .arg(&f)
            .env("LOKI_URL", LOKI)
            .env("CLUSTER_NAME", "ops")
            .output()
            .expect("agent check");
        assert!(
            out.status.success(),
            "{}: {}",
            f.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn instances_are_namespaced_and_arguments_reach_the_body() {
    let path = corpus().join("import_dir.alloy");
    let src = std::fs::read_to_string(&path).expect("read");
    let name = path.display().to_string();
    let mut plan = check_source(&name, &src, Scope::with_env(env))
        .unwrap_or_else(|d| panic!("{}", d.render(&src)));
    let ids: Vec<&str> = plan.sources.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "lib.file_logs.app/loki.source.file.files",
            "lib.file_logs.web/loki.source.file.files"
        ]
    );
    let writers: Vec<&str> = plan.writers.iter().map(|w| w.id.as_str()).collect();
    assert_eq!(
        writers,
        [
            "lib.file_logs.app/destination.out/loki.write.default",
            "lib.file_logs.web/destination.out/loki.write.default"
        ]
    );
    // Each source's route runs its own instance's nested process and reaches its own writer.
    for (i, s) in plan.sources.iter_mut().enumerate() {
        let route = &mut s.routes[0];
        assert_eq!(route.writer, i);
        let out = route.process(Entry::new(BTreeMap::new(), 1, "WARN disk"), 1);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].labels.get("level").map(String::as_str), Some("WARN"));
    }
}

/// Loads `main` with the given module files written next to it; returns the rendered errors.
fn errors(main: &str, modules: &[(&str, &str)]) -> (String, Vec<String>) {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text) in modules {
        let p = dir.path().join(name);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write module");
    }
    let main_path = dir.path().join("main.alloy");
    let main = main.replace("DIR", &dir.path().display().to_string());
    let d = check_source(
        &main_path.display().to_string(),
        &main,
        Scope::with_env(env),
    )
    .expect_err("must fail");
    let root = format!("{}/", dir.path().display());
    // Follow-on problems of the whole config (no source or writer left) are not the point.
    let lines = d
        .iter()
        .map(|x| x.to_string().replace(&root, ""))
        .filter(|l| !l.starts_with("main.alloy:1:1: no "))
        .collect();
    (d.render(&main).replace(&root, ""), lines)
}

const WRITER: &str = r#"
loki.write "w" {
  endpoint { url = "http://127.0.0.1:3100/loki/api/v1/push" }
}
local.file_match "f" {
  path_targets = [{"__path__" = "/var/log/*.log"}]
}
"#;

#[test]
fn syntax_error_in_an_imported_file_names_that_file() {
    let main = "import.file \"m\" {\n  filename = \"DIR/mods\"\n}\n".to_string() + WRITER;
    let (rendered, lines) = errors(
        &main,
        &[(
            "mods/a.alloy",
            "declare \"x\" {\n  loki.write \"w\" {\n    endpoint { url = \"u\" \n  }\n}\n",
        )],
    );
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("mods/a.alloy:6:1: "), "{lines:?}");
    // The snippet comes from the imported file (its line 5 is "}"), not from main.alloy
    // (whose line 5 opens loki.write).
    assert!(rendered.contains("5 | }\n"), "{rendered}");
    assert!(!rendered.contains("5 | loki.write"), "{rendered}");
}

const PIPE: &str = r#"declare "pipe" {
  argument "out" {
    comment = "receivers"
  }
  argument "job" {
    optional = true
  }
  loki.source.file "s" {
    targets    = local.file_match.f.targets
    forward_to = argument.out.value
  }
  local.file_match "f" {
    path_targets = [{"__path__" = "/var/log/*.log", job = coalesce(argument.job.value, "x")}]
  }
}
"#;

#[test]
fn unknown_argument_is_reported_at_the_instantiation_site() {
    let main = format!(
        "{PIPE}pipe \"a\" {{\n  out  = [loki.write.w.receiver]\n  jobb = \"y\"\n}}\n{WRITER}"
    );
    let (_, lines) = errors(&main, &[]);
    assert_eq!(
        lines,
        ["main.alloy:18:3: provided argument \"jobb\" is not defined in the module pipe (did you mean job?)"]
    );
}

#[test]
fn missing_argument_is_reported_at_the_instance_with_the_declaration() {
    let main = format!("{PIPE}pipe \"a\" {{\n  job = \"y\"\n}}\n{WRITER}");
    let (_, lines) = errors(&main, &[]);
    assert_eq!(
        lines,
        ["main.alloy:16:1: missing required argument \"out\" to module pipe (note: argument out is declared at main.alloy:2:3)"]
    );
}

#[test]
fn bad_reference_in_a_declare_body_names_the_module_file_and_the_instance() {
    // The body cannot see top-level components (loki.write.w).
    let module = "declare \"p\" {\n  local.file_match \"f\" {\n    path_targets = [{\"__path__\" = \"/x/*.log\"}]\n  }\n  loki.source.file \"s\" {\n    targets    = local.file_match.f.targets\n    forward_to = [loki.write.w.receiver]\n  }\n}\n";
    let main = "import.file \"m\" {\n  filename = \"DIR/p.alloy\"\n}\nm.p \"one\" { }\n"
        .to_string()
        + WRITER;
    let (rendered, lines) = errors(&main, &[("p.alloy", module)]);
    assert_eq!(
        lines,
        [
            // The attribute whose value failed is then missing: a follow-on of the first.
            "p.alloy:5:3: missing required attribute \"forward_to\" (note: in instance of m.p.one at main.alloy:4:1)",
            "p.alloy:7:19: identifier \"loki\" does not exist (note: in instance of m.p.one at main.alloy:4:1)"
        ]
    );
    assert!(
        rendered.contains("note: in instance of m.p.one at main.alloy:4:1"),
        "{rendered}"
    );
    assert!(
        rendered.contains("forward_to = [loki.write.w.receiver]"),
        "{rendered}"
    );
}

#[test]
fn type_error_in_an_argument_value_points_into_the_module_and_at_the_instance() {
    let main = format!("{PIPE}pipe \"a\" {{\n  out = \"loki.write.w.receiver\"\n}}\n{WRITER}");
    let (_, lines) = errors(&main, &[]);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0]
            == "main.alloy:10:5: attribute \"forward_to\": expected a list of receivers, got string (note: in instance of pipe.a at main.alloy:16:1)",
        "{lines:?}"
    );
}

#[test]
fn a_cycle_through_a_module_is_an_error() {
    let main = format!(
        "{PIPE}pipe \"a\" {{\n  out = [loki.process.p.receiver]\n}}\nloki.process \"p\" {{\n  forward_to = [loki.write.w.receiver]\n  stage.static_labels {{\n    values = {{ x = pipe.a.nothing }}\n  }}\n}}\n{WRITER}"
    );
    let (_, lines) = errors(&main, &[]);
    assert!(
        lines.iter().any(|l| l.contains("cycle detected: ")
            && l.contains("pipe.a")
            && l.contains("loki.process.p")),
        "{lines:?}"
    );
    // A declare that instantiates itself.
    let main = format!("declare \"r\" {{\n  r \"again\" {{ }}\n}}\nr \"x\" {{ }}\n{WRITER}");
    let (_, lines) = errors(&main, &[]);
    assert!(
        lines.iter().any(|l| l
            .starts_with("main.alloy:2:3: cycle detected: custom component r instantiates itself")),
        "{lines:?}"
    );
}

#[test]
fn import_git_and_http_are_rejected_with_the_way_out() {
    let main = "import.git \"g\" {\n  repository = \"https://example.invalid/m.git\"\n  path = \"m.alloy\"\n}\n".to_string() + WRITER;
    let (_, lines) = errors(&main, &[]);
    assert!(
        lines.iter().any(|l| l == "main.alloy:1:1: import.git is not supported by this agent: vendor the module and use import.file"),
        "{lines:?}"
    );
}

#[test]
fn argument_and_export_outside_a_declare_are_rejected() {
    let main = "argument \"a\" { }\n".to_string() + WRITER;
    let (_, lines) = errors(&main, &[]);
    assert!(
        lines
            .iter()
            .any(|l| l == "main.alloy:1:1: argument blocks only allowed inside a module"),
        "{lines:?}"
    );
}

fn cri_ts() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

fn append(root: &Path, ns: &str, pod: &str, container: &str, from: usize, n: usize) {
    let dir = root.join(format!("{ns}_{pod}_uid-{pod}")).join(container);
    std::fs::create_dir_all(&dir).expect("container dir");
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("0.log"))
        .expect("open log");
    let mut buf = String::new();
    for i in from..from + n {
        buf.push_str(&format!("{} stdout F {ns}/{pod} line {i}\n", cri_ts()));
    }
    f.write_all(buf.as_bytes()).expect("write log");
}

/// The chart-shaped config (`pod_logs.alloy`) run on a simulated node: every line arrives once
/// with the labels the declared pipeline sets and the destination module's tenant and
/// external label.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_pipeline_ships_every_line_to_fake_loki() {
    let loki = FakeLoki::start(Config::for_tests())
        .await
        .expect("fake-loki");
    let dir = tempfile::tempdir().expect("tempdir");
    let pods = dir.path().join("pods");
    std::fs::create_dir_all(&pods).expect("pods");
    append(&pods, "default", "web", "app", 0, 40);
    append(&pods, "kube-system", "dns", "coredns", 0, 10);
    let agent = AgentProcess::spawn(dir.path().join("agent.log"), |cmd| {
        cmd.arg("run")
            .arg(corpus().join("pod_logs.alloy"))
            .arg("--pods-root")
            .arg(&pods)
            .arg(format!(
                "--storage.path={}",
                dir.path().join("storage").display()
            ))
            .arg("--server.http.listen-addr=127.0.0.1:0")
            .env("LOKI_URL", loki.url())
            .env("CLUSTER_NAME", "ops");
    });
    let mut want: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (ns, pod, c, n) in [
        ("default", "web", "app", 40),
        ("kube-system", "dns", "coredns", 10),
    ] {
        for i in 0..n {
            want.insert(
                (
                    format!(r#"{{cluster="ops", container="{c}", instance="{ns}/{pod}:{c}", job="{ns}/{c}", namespace="{ns}", pod="{pod}"}}"#),
                    format!("{ns}/{pod} line {i}"),
                ),
                1,
            );
        }
    }
    let deadline = Instant::now() + WAIT;
    loop {
        let mut got: BTreeMap<(String, String), usize> = BTreeMap::new();
        for e in loki.entries("ops") {
            *got.entry((e.labels.to_string(), e.line)).or_default() += 1;
        }
        if got == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "got {} of {} entries; first got {:?}\nagent log:\n{}",
            got.len(),
            want.len(),
            got.iter().next(),
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
