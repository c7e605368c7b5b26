#!/usr/bin/env python3
"""Offline validation of the Helm charts, the kind configs and the kind e2e manifests.

No cluster, no helm binary: charts are rendered and linted by Helm's own Go library
(PyPI `helm-python-sdk`, Helm SDK v4), every rendered object is validated against the
Kubernetes OpenAPI schemas (PyPI `kubernetes-validate`, strict: unknown fields fail),
prometheus-operator objects and kind configs against hand-written JSON schemas in
scripts/schemas/, and a few invariants the schemas cannot express are checked in code.

Renders are compared with the goldens committed under charts/tests/<chart>/<case>/;
`--update` rewrites them. Run through scripts/validate-charts.sh, which sets up the venv.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import helm_python as helm
import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHARTS = ROOT / "charts"
GOLDENS = CHARTS / "tests"
KIND_CONFIGS = ROOT / "kind-config"
KIND_E2E = ROOT / "e2e" / "kind"
SCHEMAS = ROOT / "scripts" / "schemas"

RELEASE_NAMESPACE = "default"
ENVIRONMENTS = ("ops", "dev", "prod")
# Retention per environment, from the design documents (fake-loki applies it per tenant).
RETENTION = {"ops": "30d", "dev": "7d", "prod": "90d"}
# Extra render cases taken from outside the chart: the values the kind e2e installs with.
EXTERNAL_CASES = {
    "agent": {"kind-e2e": KIND_E2E / "values-agent.yaml"},
    "fake-loki": {"kind-e2e": KIND_E2E / "values-fake-loki.yaml"},
}
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# kubelet configuration keys the kind configs may patch (a typo would be ignored by kubeadm).
KUBELET_PATCH_KEYS = {"kind", "apiVersion", "containerLogMaxSize", "containerLogMaxFiles",
                      "containerLogMaxWorkers", "containerLogMonitorInterval", "maxPods"}


class Results:
    """Counts checks; every failure is printed with what failed and where."""

    def __init__(self) -> None:
        self.passed = 0
        self.failed: list[str] = []

    def check(self, ok: bool, what: str) -> bool:
        if ok:
            self.passed += 1
        else:
            self.failed.append(what)
            print(f"FAIL {what}", file=sys.stderr)
        return ok

    def run(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            out = fn()
        except Exception as e:  # noqa: BLE001 - every failure is reported, none is fatal
            self.check(False, f"{what}: {type(e).__name__}: {e}")
            return None
        self.check(True, what)
        return out


# ---------------------------------------------------------------------------------------------
# Render cases and goldens


def render_cases(chart_dir: Path) -> dict[str, Path | None]:
    """Case name -> values file: ci/<case>-values.yaml, values-<env>.yaml as env-<env>, externals."""
    cases: dict[str, Path | None] = {}
    for f in sorted((chart_dir / "ci").glob("*-values.yaml")):
        cases[f.name.removesuffix("-values.yaml")] = f
    for env in ENVIRONMENTS:
        f = chart_dir / f"values-{env}.yaml"
        if f.exists():
            cases[f"env-{env}"] = f
    for case, f in EXTERNAL_CASES.get(chart_dir.name, {}).items():
        cases[case] = f
    return cases


def load_values(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: values must be a mapping")
    return data


def render(chart: helm.Chart, release: str, values: dict[str, Any]) -> dict[str, str]:
    """Template path (relative to the chart, e.g. templates/x.yaml) -> golden file text."""
    out = chart.render(values, name=release, namespace=RELEASE_NAMESPACE, is_install=True)
    files: dict[str, str] = {}
    for src, text in sorted(out.items()):
        rel = src.split("/", 1)[1] if "/" in src else src
        if rel.endswith("NOTES.txt") or not text.strip():
            continue
        files[rel] = f"# Source: {src}\n{text.strip()}\n"
    return files


def compare_or_update(res: Results, where: Path, files: dict[str, str], update: bool) -> None:
    existing = {p.relative_to(where).as_posix(): p.read_text()
                for p in where.rglob("*.yaml")} if where.exists() else {}
    label = where.relative_to(ROOT)
    if update:
        if where.exists():
            shutil.rmtree(where)
        for rel, text in files.items():
            p = where / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
        changed = existing != files
        print(f"{'updated' if changed else 'unchanged'} {label}")
        res.check(True, f"golden {label}")
        return
    problems = []
    for rel in sorted(set(existing) | set(files)):
        old, new = existing.get(rel), files.get(rel)
        if old == new:
            continue
        if old is None:
            problems.append(f"  new file {rel} (not in goldens)")
        elif new is None:
            problems.append(f"  {rel} is in goldens but no longer rendered")
        else:
            diff = difflib.unified_diff(old.splitlines(), new.splitlines(),
                                        f"golden/{rel}", f"rendered/{rel}", lineterm="", n=2)
            problems.append("\n".join(list(diff)[:60]))
    if problems:
        print(f"render differs from {label}:\n" + "\n".join(problems), file=sys.stderr)
    res.check(not problems, f"golden {label} (run scripts/validate-charts.sh --update if intended)")


# ---------------------------------------------------------------------------------------------
# Schema validation of rendered objects


def load_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def validate_object(doc: dict[str, Any], kube_version: str, monitoring: dict[str, Any]) -> str:
    """Validates one object; returns what validated it."""
    api, kind = doc.get("apiVersion", ""), doc.get("kind", "")
    if api == "monitoring.coreos.com/v1":
        if kind not in monitoring["$defs"]:
            raise ValueError(f"no schema for {api} {kind}")
        schema = {"$ref": f"#/$defs/{kind}", "$defs": monitoring["$defs"]}
        jsonschema.Draft202012Validator(schema).validate(doc)
        return "monitoring.coreos.com subset schema"
    version = kubernetes_validate.validate(doc, kube_version, strict=True)
    return f"kubernetes {version} strict"


# ---------------------------------------------------------------------------------------------
# Invariants the schemas cannot express


def pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    kind = doc.get("kind")
    if kind in ("DaemonSet", "Deployment", "StatefulSet", "Job"):
        return doc["spec"]["template"]["spec"]
    if kind == "Pod":
        return doc["spec"]
    return None


def check_invariants(res: Results, label: str, docs: list[dict[str, Any]],
                     allow_external: dict[str, bool]) -> None:
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
        name = d["metadata"]["name"]
        pattern = DNS1123_LABEL if d["kind"] in ("Service", "Namespace") else DNS1123_SUBDOMAIN
        res.check(bool(pattern.match(name)) and len(name) <= (63 if pattern is DNS1123_LABEL else 253),
                  f"{label}: {d['kind']}/{name} name is DNS-1123")
    sa_names = {d["metadata"]["name"] for d in by_kind.get("ServiceAccount", [])}
    cm_names = {d["metadata"]["name"] for d in by_kind.get("ConfigMap", [])}
    pvc_names = {d["metadata"]["name"] for d in by_kind.get("PersistentVolumeClaim", [])}
    workloads = [d for d in docs if pod_spec(d) is not None]

    for w in workloads:
        wl = f"{label}: {w['kind']}/{w['metadata']['name']}"
        spec = pod_spec(w)
        assert spec is not None
        if w["kind"] != "Job":
            sel = w["spec"]["selector"].get("matchLabels", {})
            tpl = w["spec"]["template"]["metadata"].get("labels", {})
            res.check(bool(sel) and all(tpl.get(k) == v for k, v in sel.items()),
                      f"{wl}: selector matches the pod template labels")
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        mounted: set[str] = set()
        containers = spec.get("initContainers", []) + spec["containers"]
        for c in containers:
            cl = f"{wl} container {c['name']}"
            for m in c.get("volumeMounts", []):
                mounted.add(m["name"])
                res.check(m["name"] in volumes, f"{cl}: mount {m['name']} has a volume")
                vol = volumes.get(m["name"], {})
                if "hostPath" in vol and vol["hostPath"]["path"].startswith("/var/log"):
                    res.check(m.get("readOnly") is True, f"{cl}: host log mount {m['mountPath']} is read-only")
            ports = {p.get("name") for p in c.get("ports", [])} | {p["containerPort"] for p in c.get("ports", [])}
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                port = c.get(probe, {}).get("httpGet", {}).get("port")
                if port is not None:
                    res.check(port in ports, f"{cl}: {probe} port {port} is a container port")
            sc = c.get("securityContext", {})
            res.check(sc.get("allowPrivilegeEscalation") is False, f"{cl}: allowPrivilegeEscalation false")
            res.check(sc.get("readOnlyRootFilesystem") is True, f"{cl}: readOnlyRootFilesystem")
            res.check("ALL" in sc.get("capabilities", {}).get("drop", []), f"{cl}: drops ALL capabilities")
            res.check(sc.get("privileged") is not True, f"{cl}: not privileged")
            seccomp = (sc.get("seccompProfile") or spec.get("securityContext", {}).get("seccompProfile") or {})
            res.check(seccomp.get("type") == "RuntimeDefault", f"{cl}: seccomp RuntimeDefault")
            res.check(":latest" not in c["image"] and ("@" in c["image"] or ":" in c["image"].rsplit("/", 1)[-1]),
                      f"{cl}: image has an explicit tag or digest")
            names = [e["name"] for e in c.get("env", [])]
            res.check(len(names) == len(set(names)), f"{cl}: env names are unique")
        res.check(set(volumes) <= mounted, f"{wl}: every volume is mounted ({sorted(set(volumes) - mounted)})")
        for v in volumes.values():
            if "configMap" in v:
                res.check(v["configMap"]["name"] in cm_names or allow_external.get("configmap", False),
                          f"{wl}: ConfigMap {v['configMap']['name']} is rendered")
            if "persistentVolumeClaim" in v:
                res.check(v["persistentVolumeClaim"]["claimName"] in pvc_names or allow_external.get("pvc", False),
                          f"{wl}: PVC {v['persistentVolumeClaim']['claimName']} is rendered")
        sa = spec.get("serviceAccountName")
        if sa and w["kind"] != "Job":
            res.check(sa in sa_names or allow_external.get("serviceaccount", False),
                      f"{wl}: ServiceAccount {sa} is rendered")

    for ds in by_kind.get("DaemonSet", []):
        dl = f"{label}: DaemonSet/{ds['metadata']['name']}"
        ru = ds["spec"].get("updateStrategy", {}).get("rollingUpdate", {})
        res.check(ru.get("maxSurge", 0) in (0, "0", "0%"), f"{dl}: maxSurge 0 (no two agents on one node)")
        env = {e["name"]: e for e in ds["spec"]["template"]["spec"]["containers"][0].get("env", [])}
        node = env.get("NODE_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        res.check(node == "spec.nodeName", f"{dl}: NODE_NAME from the downward API spec.nodeName")

    for svc in by_kind.get("Service", []):
        sl = f"{label}: Service/{svc['metadata']['name']}"
        sel = svc["spec"].get("selector", {})
        targets = [w for w in workloads if w["kind"] != "Job" and
                   all(w["spec"]["template"]["metadata"].get("labels", {}).get(k) == v for k, v in sel.items())]
        if not res.check(bool(sel) and len(targets) == 1, f"{sl}: selects exactly one rendered workload"):
            continue
        cports = {p.get("name") for c in pod_spec(targets[0])["containers"] for p in c.get("ports", [])}
        cnums = {p["containerPort"] for c in pod_spec(targets[0])["containers"] for p in c.get("ports", [])}
        for p in svc["spec"]["ports"]:
            tp = p.get("targetPort", p["port"])
            res.check(tp in cports or tp in cnums, f"{sl}: targetPort {tp} is a container port")

    for role in by_kind.get("ClusterRole", []) + by_kind.get("Role", []):
        rl = f"{label}: {role['kind']}/{role['metadata']['name']}"
        for rule in role.get("rules", []):
            writes = set(rule.get("verbs", [])) - {"get", "list", "watch"}
            res.check(not writes and "*" not in rule.get("resources", []),
                      f"{rl}: read-only rule {rule}")
    for b in by_kind.get("ClusterRoleBinding", []) + by_kind.get("RoleBinding", []):
        for s in b.get("subjects", []):
            if s["kind"] == "ServiceAccount":
                res.check(s["name"] in sa_names or allow_external.get("serviceaccount", False),
                          f"{label}: {b['kind']}/{b['metadata']['name']} binds a rendered ServiceAccount")
        roles = {r["metadata"]["name"] for r in by_kind.get(b["roleRef"]["kind"], [])}
        res.check(b["roleRef"]["name"] in roles, f"{label}: {b['kind']} roleRef is rendered")

    for sm in by_kind.get("ServiceMonitor", []):
        svcs = by_kind.get("Service", [])
        ok = any(all(s["metadata"].get("labels", {}).get(k) == v
                     for k, v in sm["spec"]["selector"].get("matchLabels", {}).items()) and
                 {e["port"] for e in sm["spec"]["endpoints"]} <= {p.get("name") for p in s["spec"]["ports"]}
                 for s in svcs)
        res.check(ok, f"{label}: ServiceMonitor selects a rendered Service by labels and port name")


# ---------------------------------------------------------------------------------------------
# Charts


def helm_binary_render(helm_bin: str, chart_dir: Path, values_file: Path | None,
                       kube_version: str) -> list[dict[str, Any]]:
    """`helm template` with a real helm binary (GitHub CI), as parsed objects."""
    cmd = [helm_bin, "template", chart_dir.name, str(chart_dir), "--namespace", RELEASE_NAMESPACE,
           "--kube-version", kube_version]
    if values_file is not None:
        cmd += ["--values", str(values_file)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def object_key(d: dict[str, Any]) -> tuple[str, str, str]:
    return (d.get("apiVersion", ""), d.get("kind", ""), d.get("metadata", {}).get("name", ""))


def check_retention(res: Results, label: str, docs: list[dict[str, Any]]) -> None:
    """fake-loki's limits file keeps each environment's tenant (from charts/agent/values-<env>.yaml)
    for the design documents' retention, and the Deployment mounts it."""
    cms = [d for d in docs if d["kind"] == "ConfigMap" and "limits.yaml" in d.get("data", {})]
    if not res.check(len(cms) == 1, f"{label}: renders one limits ConfigMap"):
        return
    overrides = (yaml.safe_load(cms[0]["data"]["limits.yaml"]) or {}).get("overrides") or {}
    for env, period in RETENTION.items():
        tenant = (load_values(CHARTS / "agent" / f"values-{env}.yaml").get("agent") or {}).get("tenant")
        got = (overrides.get(tenant) or {}).get("retention_period")
        res.check(got == period, f"{label}: {env} tenant {tenant} keeps {period} (got {got})")
    args = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    res.check("--limits=/etc/fake-loki/limits.yaml" in args, f"{label}: passes the limits file")


def check_chart(res: Results, chart_dir: Path, kube_version: str, update: bool,
                monitoring: dict[str, Any], helm_bin: str | None = None) -> None:
    name = chart_dir.name
    chart = res.run(f"{name}: Chart.load", lambda: helm.Chart.load(str(chart_dir)))
    if chart is None:
        return
    res.check(chart.version and chart.name == name, f"{name}: Chart.yaml name matches its directory")
    lint = res.run(f"{name}: lint (default values)",
                   lambda: helm.lint(str(chart_dir), strict=True, kube_version=f"v{kube_version}",
                                     namespace=RELEASE_NAMESPACE))
    if lint is not None:
        bad = [m for m in lint.get("messages", []) if m.get("severity", 0) >= 2] + \
              [{"error": e} for e in lint.get("errors", []) or []]
        for m in bad:
            print(f"  lint {name}: {m}", file=sys.stderr)
        res.check(not bad, f"{name}: lint --strict has no warnings or errors")

    seen_cases = set()
    for case, values_file in render_cases(chart_dir).items():
        label = f"{name}/{case}"
        seen_cases.add(case)
        values = res.run(f"{label}: values parse", lambda: load_values(values_file))
        if values is None:
            continue
        res.run(f"{label}: values match values.schema.json", lambda: chart.validate_schema(values))
        if case != "default":
            lint = res.run(f"{label}: lint", lambda: helm.lint(
                str(chart_dir), values, strict=True, kube_version=f"v{kube_version}",
                namespace=RELEASE_NAMESPACE))
            if lint is not None:
                bad = [m for m in lint.get("messages", []) if m.get("severity", 0) >= 2] + \
                      [{"error": e} for e in lint.get("errors", []) or []]
                for m in bad:
                    print(f"  lint {label}: {m}", file=sys.stderr)
                res.check(not bad, f"{label}: lint --strict has no warnings or errors")
        files = res.run(f"{label}: render", lambda: render(chart, name, values))
        if files is None:
            continue
        compare_or_update(res, GOLDENS / name / case, files, update)

        docs: list[dict[str, Any]] = []
        for rel, text in files.items():
            for i, doc in enumerate(yaml.safe_load_all(text)):
                if not doc:
                    continue
                docs.append(doc)
                what = f"{label}: {rel}#{i} {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
                res.run(f"{what} validates", lambda d=doc: validate_object(d, kube_version, monitoring))
        allow = {
            "configmap": not values.get("agent", {}).get("configMap", {}).get("create", True),
            "serviceaccount": not values.get("serviceAccount", {}).get("create", True),
            "pvc": bool(values.get("persistence", {}).get("existingClaim")),
        }
        check_invariants(res, label, docs, allow)
        if helm_bin:
            theirs = res.run(f"{label}: {helm_bin} template",
                             lambda: helm_binary_render(helm_bin, chart_dir, values_file, kube_version))
            if theirs is not None:
                ours = sorted(docs, key=object_key)
                theirs = sorted(theirs, key=object_key)
                res.check(ours == theirs, f"{label}: `{helm_bin} template` renders the same objects as the SDK")
        if name == "fake-loki" and values.get("retention", {}).get("enabled", True):
            check_retention(res, label, docs)
        if name == "agent" and case.startswith("env-"):
            env = case.removeprefix("env-")
            args = next(d for d in docs if d["kind"] == "DaemonSet")["spec"]["template"]["spec"]["containers"][0]["args"]
            res.check(f"--external-label=cluster={env}" in args and any(a.startswith("--tenant=") and len(a) > 9 for a in args),
                      f"{label}: sets the tenant and cluster={env}")

    if not update:
        stale = {p.name for p in (GOLDENS / name).iterdir()} - seen_cases if (GOLDENS / name).exists() else set()
        res.check(not stale, f"{name}: no golden without a values file ({sorted(stale)})")
    else:
        for s in ({p.name for p in (GOLDENS / name).iterdir()} - seen_cases if (GOLDENS / name).exists() else set()):
            shutil.rmtree(GOLDENS / name / s)
            print(f"removed {GOLDENS / name / s}")


# ---------------------------------------------------------------------------------------------
# kind configs and the e2e generator Job


def check_kind_configs(res: Results) -> None:
    schema = load_json(SCHEMAS / "kind-cluster-v1alpha4.json")
    validator = jsonschema.Draft202012Validator(schema)
    fake_loki_nodeports = set()
    for f in [CHARTS / "fake-loki" / "ci" / "nodeport-values.yaml", KIND_E2E / "values-fake-loki.yaml"]:
        if f.exists():
            np = (load_values(f).get("service") or {}).get("nodePort")
            if np:
                fake_loki_nodeports.add(np)
    configs = sorted(KIND_CONFIGS.glob("*.yaml"))
    res.check(bool(configs), "kind-config/*.yaml exist")
    for f in configs:
        label = f"kind-config/{f.name}"
        cfg = res.run(f"{label}: parses", lambda: yaml.safe_load(f.read_text()))
        if cfg is None:
            continue
        errors = sorted(validator.iter_errors(cfg), key=lambda e: list(e.path))
        for e in errors:
            print(f"  {label}: {'/'.join(map(str, e.path))}: {e.message}", file=sys.stderr)
        res.check(not errors, f"{label}: matches the kind v1alpha4 Cluster schema")
        nodes = cfg.get("nodes", [])
        res.check(sum(n.get("role", "control-plane") == "control-plane" for n in nodes) == 1,
                  f"{label}: exactly one control-plane node")
        for i, n in enumerate(nodes):
            res.check(bool(re.match(r"^kindest/node:v[0-9.]+@sha256:[0-9a-f]{64}$", n.get("image", ""))),
                      f"{label}: node {i} image pinned by digest")
            res.check(n.get("labels", {}).get("e2e.lagent.dev/generator") == "true",
                      f"{label}: node {i} carries the e2e generator label")
        maps = [m for n in nodes for m in n.get("extraPortMappings", [])]
        res.check(any(m.get("containerPort") in fake_loki_nodeports and m.get("hostPort") == 3100
                      and m.get("listenAddress") == "127.0.0.1" for m in maps),
                  f"{label}: maps fake-loki's NodePort {sorted(fake_loki_nodeports)} to 127.0.0.1:3100")
        for p in cfg.get("kubeadmConfigPatches", []):
            patch = yaml.safe_load(p)
            ok = isinstance(patch, dict) and "kind" in patch
            if ok and patch["kind"] == "KubeletConfiguration":
                ok = set(patch) <= KUBELET_PATCH_KEYS and \
                    patch.get("apiVersion", "kubelet.config.k8s.io/v1beta1") == "kubelet.config.k8s.io/v1beta1"
            res.check(ok, f"{label}: kubeadm patch is a known kind with known keys: {patch}")


def check_generator_job(res: Results, kube_version: str) -> None:
    """The Job template run.sh instantiates per node and namespace, with sample substitutions."""
    f = KIND_E2E / "generator-job.yaml"
    if not res.check(f.exists(), "e2e/kind/generator-job.yaml exists"):
        return
    text = f.read_text()
    placeholders = set(re.findall(r"\$\{([A-Z_]+)\}", text))
    sample = {"JOB_NAME": "gen-lagent-e2e-worker", "NAMESPACE": "e2e-gen-a", "NODE": "lagent-e2e-worker",
              "RUN_ID": "r1a2b3c", "CLUSTER": "lagent-e2e", "IMAGE": "lagent-e2e-tools:e2e-abc123",
              "COUNT": "20000", "RATE": "500"}
    res.check(placeholders <= set(sample), f"generator-job.yaml placeholders known: {sorted(placeholders)}")
    for k, v in sample.items():
        text = text.replace("${" + k + "}", v)
    docs = [d for d in yaml.safe_load_all(text) if d]
    for d in docs:
        res.run(f"generator-job.yaml {d.get('kind')} validates",
                lambda d=d: validate_object(d, kube_version, {"$defs": {}}))
    check_invariants(res, "generator-job.yaml", docs, {})


# ---------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--update", action="store_true", help="rewrite the goldens under charts/tests/")
    ap.add_argument("--helm-binary", metavar="HELM",
                    help="also render with this helm binary and require the same objects (GitHub CI)")
    ap.add_argument("--kube-version", default="1.35.0",
                    help="Kubernetes version for schemas and lint (default 1.35.0, the pinned kind node)")
    a = ap.parse_args()

    started = time.monotonic()
    helm.disable_logging()
    res = Results()
    monitoring = load_json(SCHEMAS / "monitoring.coreos.com-v1.json")
    print(f"helm SDK {helm.helm_sdk_version()}, kubernetes-validate schemas for {a.kube_version} (strict)")
    charts = sorted(p.parent for p in CHARTS.glob("*/Chart.yaml"))
    res.check(bool(charts), "charts/*/Chart.yaml exist")
    for chart_dir in charts:
        check_chart(res, chart_dir, a.kube_version, a.update, monitoring, a.helm_binary)
    check_kind_configs(res)
    check_generator_job(res, a.kube_version)

    took = time.monotonic() - started
    if res.failed:
        print(f"\n{len(res.failed)} check(s) failed:", file=sys.stderr)
        for f in res.failed:
            print(f"  - {f}", file=sys.stderr)
    print(f"charts: checked in {took:.1f}s")
    print(f"charts: {res.passed} passed, {len(res.failed)} failed")
    return 1 if res.failed else 0


if __name__ == "__main__":
    sys.exit(main())
