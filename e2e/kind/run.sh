#!/usr/bin/env bash
# The kind e2e: a real cluster, the agent DaemonSet and fake-loki from our charts,
# generator Jobs writing sequence-numbered lines on every node, then the checker's
# verdict on what fake-loki received. See e2e/kind/README.md.
#
#   e2e/kind/run.sh                      # single-node cluster, created and deleted here
#   TOPOLOGY=multi e2e/kind/run.sh       # 1 control-plane + 2 workers
#   SKIP_CREATE=1 e2e/kind/run.sh        # cluster already made (helm/kind-action)
#   KEEP_CLUSTER=1 e2e/kind/run.sh       # leave the cluster for debugging
#
# Exit status: the checker's (0 all checks pass, 1 a check failed, 2 the run failed),
# or non-zero from the first failing step. On failure, diagnostics land in $ARTIFACTS.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"

CLUSTER="${CLUSTER:-lagent-e2e}"
TOPOLOGY="${TOPOLOGY:-single}"              # single | multi
# The node image kind v0.31.0 was released with (kind-config/*.yaml pin the same).
KIND_NODE_IMAGE="${KIND_NODE_IMAGE:-kindest/node:v1.35.0@sha256:452d707d4862f52530247495d180205e029056831160e22870e37e3f6c1ac31f}"
KIND_VERSION="${KIND_VERSION:-v0.31.0}"     # expected `kind version`; a mismatch is a warning
KEEP_CLUSTER="${KEEP_CLUSTER:-0}"
SKIP_CREATE="${SKIP_CREATE:-0}"
SKIP_BUILD="${SKIP_BUILD:-0}"               # images already built and tagged $IMAGE_TAG
NAMESPACE="${NAMESPACE:-e2e}"               # agent and fake-loki releases
GEN_NAMESPACES="${GEN_NAMESPACES:-e2e-gen-a e2e-gen-b}"
LINES_PER_GENERATOR="${LINES_PER_GENERATOR:-20000}"
RATE="${RATE:-1000}"                        # lines/s per generator
GEN_TIMEOUT_SECS="${GEN_TIMEOUT_SECS:-600}"
CHECK_WATCH="${CHECK_WATCH:-180s}"          # checker polls until complete or this long
TENANT="${TENANT:-e2e}"
LOKI_ACCESS="${LOKI_ACCESS:-port-forward}"  # port-forward | nodeport (kind-config maps 30310 -> 127.0.0.1:3100)
LOKI_LOCAL_PORT="${LOKI_LOCAL_PORT:-13100}" # port-forward's local port (3100 may be taken by the node port mapping)
ARTIFACTS="${ARTIFACTS:-$repo/artifacts/kind}"
sha="${GITHUB_SHA:-$(git rev-parse HEAD 2>/dev/null || echo dev)}"
IMAGE_TAG="${IMAGE_TAG:-e2e-${sha:0:12}}"
AGENT_IMAGE="lagent:$IMAGE_TAG"
LOKI_IMAGE="fake-loki:$IMAGE_TAG"
TOOLS_IMAGE="lagent-e2e-tools:$IMAGE_TAG"
RUN_ID="${RUN_ID:-r$(date +%s)}"
CONTEXT="kind-$CLUSTER"                     # the kubeconfig context kind creates

created=0
pf_pid=""
loki_url=""

log() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 2; }
k() { kubectl --context "$CONTEXT" "$@"; }
h() { helm --kube-context "$CONTEXT" "$@"; }

# Fills the ${...} placeholders of generator-job.yaml: instantiate TEMPLATE JOB NAMESPACE NODE.
# shellcheck disable=SC2016  # the patterns are the literal ${...} placeholders
instantiate() {
    local doc="$1"
    doc="${doc//'${JOB_NAME}'/$2}"
    doc="${doc//'${NAMESPACE}'/$3}"
    doc="${doc//'${NODE}'/$4}"
    doc="${doc//'${RUN_ID}'/$RUN_ID}"
    doc="${doc//'${CLUSTER}'/$CLUSTER}"
    doc="${doc//'${IMAGE}'/$TOOLS_IMAGE}"
    doc="${doc//'${COUNT}'/$LINES_PER_GENERATOR}"
    doc="${doc//'${RATE}'/$RATE}"
    printf '%s\n' "$doc"
}

# shellcheck disable=SC2317  # invoked from the EXIT trap
diagnostics() {
    set +e
    log "collecting diagnostics in $ARTIFACTS"
    mkdir -p "$ARTIFACTS"
    k get nodes -o wide >"$ARTIFACTS/nodes.txt" 2>&1
    k get pods,daemonsets,deployments,jobs,services -A -o wide >"$ARTIFACTS/objects.txt" 2>&1
    k get events -A --sort-by=.lastTimestamp >"$ARTIFACTS/events.txt" 2>&1
    { k -n "$NAMESPACE" describe daemonset/agent; k -n "$NAMESPACE" describe deployment/fake-loki; } \
        >"$ARTIFACTS/describe.txt" 2>&1
    # With a selector kubectl logs defaults to --tail=10; ask for everything.
    k -n "$NAMESPACE" logs -l app.kubernetes.io/name=agent --all-containers --prefix --tail=-1 \
        --max-log-requests=10 >"$ARTIFACTS/agent.log" 2>&1
    k -n "$NAMESPACE" logs -l app.kubernetes.io/name=agent --all-containers --prefix --tail=-1 \
        --max-log-requests=10 --previous >"$ARTIFACTS/agent-previous.log" 2>&1
    k -n "$NAMESPACE" logs deployment/fake-loki --all-containers --tail=-1 >"$ARTIFACTS/fake-loki.log" 2>&1
    if [[ -n "$loki_url" ]]; then
        curl -sS --max-time 10 "$loki_url/fake-loki/api/v1/stats" >"$ARTIFACTS/fake-loki-stats.json" 2>&1
    fi
    h list -A >"$ARTIFACTS/helm.txt" 2>&1
    kind export logs "$ARTIFACTS/kind-logs" --name "$CLUSTER" >/dev/null 2>&1
    set -e
}

# shellcheck disable=SC2317  # the EXIT trap
cleanup() {
    local rc=$?
    trap - EXIT
    if (( rc != 0 )); then
        diagnostics
    fi
    if [[ -n "$pf_pid" ]]; then
        kill "$pf_pid" 2>/dev/null || true
        wait "$pf_pid" 2>/dev/null || true
    fi
    if (( created )) && [[ "$KEEP_CLUSTER" != 1 ]]; then
        log "deleting cluster $CLUSTER"
        kind delete cluster --name "$CLUSTER" || true
    elif (( created )); then
        log "keeping cluster $CLUSTER (kubectl --context $CONTEXT ...; kind delete cluster --name $CLUSTER)"
    fi
    exit "$rc"
}
trap cleanup EXIT

# --- 1. tools ---------------------------------------------------------------------------------
log "checking tools"
for tool in docker kind kubectl helm cargo curl git; do
    command -v "$tool" >/dev/null || die "$tool not found on PATH"
done
[[ "$TOPOLOGY" == single || "$TOPOLOGY" == multi ]] || die "TOPOLOGY must be single or multi, not $TOPOLOGY"
[[ "$LOKI_ACCESS" == port-forward || "$LOKI_ACCESS" == nodeport ]] || die "LOKI_ACCESS must be port-forward or nodeport"
kind_version="$(kind version)"
[[ "$kind_version" == "kind $KIND_VERSION "* ]] || echo "warning: expected kind $KIND_VERSION, got: $kind_version" >&2
helm version --short
kubectl version --client
docker version --format 'docker {{.Server.Version}}'
mkdir -p "$ARTIFACTS"

# --- 2. host limits: every node shares the runner's kernel inotify limits ------------------------
if [[ "$TOPOLOGY" == multi ]]; then
    log "raising inotify limits (kind known issue for multi-node clusters)"
    sudo_cmd=()
    (( EUID == 0 )) || sudo_cmd=(sudo -n)
    "${sudo_cmd[@]}" sysctl -w fs.inotify.max_user_watches=524288 fs.inotify.max_user_instances=512 \
        || echo "warning: could not raise inotify limits; agents may fail with 'too many open files'" >&2
fi

# --- 3-4. cluster -----------------------------------------------------------------------------
if [[ "$SKIP_CREATE" == 1 ]]; then
    kind get clusters | grep -qx "$CLUSTER" || die "SKIP_CREATE=1 but kind has no cluster named $CLUSTER"
else
    log "creating kind cluster $CLUSTER ($TOPOLOGY)"
    kind create cluster --name "$CLUSTER" --config "kind-config/$TOPOLOGY-node.yaml" \
        --image "$KIND_NODE_IMAGE" --wait 120s
    created=1
fi
# kind's --wait watches only the control plane and exits 0 on timeout: wait for every node.
k wait --for=condition=Ready nodes --all --timeout=180s
node_count="$(k get nodes --no-headers | wc -l)"
mapfile -t gen_nodes < <(k get nodes -l e2e.lagent.dev/generator=true \
    -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}')
(( ${#gen_nodes[@]} == node_count )) || die "expected the e2e.lagent.dev/generator label on all $node_count nodes, found ${#gen_nodes[@]}"

# --- 5-6. images ------------------------------------------------------------------------------
if [[ "$SKIP_BUILD" != 1 ]]; then
    log "building images ($IMAGE_TAG)"
    docker build -t "$AGENT_IMAGE" -f Dockerfile .
    docker build -t "$LOKI_IMAGE" -f fake-loki/Dockerfile .
    docker build -t "$TOOLS_IMAGE" -f e2e/kind/Dockerfile .
fi
log "loading images into $CLUSTER"
kind load docker-image "$AGENT_IMAGE" "$LOKI_IMAGE" "$TOOLS_IMAGE" --name "$CLUSTER"
log "building the checker"
cargo build --release --locked -p e2e --bin e2e
e2e_bin="$repo/target/release/e2e"

# --- 7-8. charts ------------------------------------------------------------------------------
log "installing fake-loki"
h upgrade --install fake-loki charts/fake-loki --namespace "$NAMESPACE" --create-namespace \
    -f e2e/kind/values-fake-loki.yaml --set "image.tag=$IMAGE_TAG" --wait --timeout 3m
log "installing the agent"
h upgrade --install agent charts/agent --namespace "$NAMESPACE" \
    -f e2e/kind/values-agent.yaml --set "image.tag=$IMAGE_TAG" --set "agent.cluster=$CLUSTER" \
    --set "agent.tenant=$TENANT" --set "agent.lokiUrl=http://fake-loki.$NAMESPACE.svc.cluster.local:3100" \
    --wait --timeout 3m
k -n "$NAMESPACE" rollout status daemonset/agent --timeout=180s
read -r desired ready < <(k -n "$NAMESPACE" get daemonset agent \
    -o jsonpath='{.status.desiredNumberScheduled} {.status.numberReady}{"\n"}')
echo "agent DaemonSet: desired=$desired ready=$ready nodes=$node_count"
(( desired == node_count && ready == node_count )) \
    || die "agent must run on every node (control-plane toleration): desired=$desired ready=$ready nodes=$node_count"

# --- 9. reach fake-loki from the runner -------------------------------------------------------
if [[ "$LOKI_ACCESS" == nodeport ]]; then
    loki_url="http://127.0.0.1:3100"
else
    k -n "$NAMESPACE" port-forward service/fake-loki "$LOKI_LOCAL_PORT:3100" --address 127.0.0.1 \
        >"$ARTIFACTS/port-forward.log" 2>&1 &
    pf_pid=$!
    loki_url="http://127.0.0.1:$LOKI_LOCAL_PORT"
fi
curl -fsS --retry 30 --retry-delay 1 --retry-connrefused --max-time 5 "$loki_url/ready"
echo

# --- 10. generators: one Job per node and namespace -------------------------------------------
log "starting generators (run $RUN_ID: ${#gen_nodes[@]} nodes x namespaces $GEN_NAMESPACES, $LINES_PER_GENERATOR lines each at $RATE/s)"
template="$(cat e2e/kind/generator-job.yaml)"
jobs_yaml=""
job_count=0
for ns in $GEN_NAMESPACES; do
    k create namespace "$ns" --dry-run=client -o yaml | k apply -f -
    for node in "${gen_nodes[@]}"; do
        doc="$(instantiate "$template" "gen-$node" "$ns" "$node")"
        jobs_yaml+="$doc"$'\n---\n'
        job_count=$((job_count + 1))
    done
done
printf '%s' "$jobs_yaml" >"$ARTIFACTS/generator-jobs.yaml"
k apply -f "$ARTIFACTS/generator-jobs.yaml"

# Poll instead of `kubectl wait --for=condition=complete`, which would sit out its timeout on a
# failed Job.
deadline=$((SECONDS + GEN_TIMEOUT_SECS))
while :; do
    succeeded=0
    for ns in $GEN_NAMESPACES; do
        while read -r name ok failed; do
            if [[ -z "$name" ]]; then continue; fi
            if (( ${failed:-0} > 0 )); then die "generator Job $ns/$name failed"; fi
            if (( ${ok:-0} >= 1 )); then succeeded=$((succeeded + 1)); fi
        done < <(k -n "$ns" get jobs -l "e2e.lagent.dev/run=$RUN_ID" \
            -o jsonpath='{range .items[*]}{.metadata.name} {.status.succeeded} {.status.failed}{"\n"}{end}')
    done
    if (( succeeded == job_count )); then break; fi
    (( SECONDS < deadline )) || die "generators not done after ${GEN_TIMEOUT_SECS}s ($succeeded/$job_count)"
    sleep 2
done
echo "$succeeded/$job_count generator Jobs complete"

# --- 11. the manifest: each generator left its record in its termination message ---------------
records="$ARTIFACTS/records.jsonl"
: >"$records"
for ns in $GEN_NAMESPACES; do
    k -n "$ns" get pods -l "e2e.lagent.dev/run=$RUN_ID" \
        -o jsonpath='{range .items[*]}{.status.containerStatuses[0].state.terminated.message}{"\n"}{end}' >>"$records"
done
n_records="$(grep -c . "$records" || true)"
(( n_records == job_count )) || die "expected $job_count generator records, got $n_records ($records)"
"$e2e_bin" manifest --run-id "$RUN_ID" --cluster "$CLUSTER=$TENANT" --records "$records" \
    --out "$ARTIFACTS/manifest.json"

# --- 12. verdict --------------------------------------------------------------------------------
# Lag is measured from the checker's first sighting and the generators finished before it
# started, so the lag alert is off here; completeness, duplicates, labels and leaks are judged.
log "checking fake-loki against the manifest (watch $CHECK_WATCH)"
set +e
"$e2e_bin" check --manifest "$ARTIFACTS/manifest.json" --loki-url "$loki_url" \
    --watch "$CHECK_WATCH" --max-lag-p99 off --min-rate 100 --verbose | tee "$ARTIFACTS/verdict.txt"
check_rc=${PIPESTATUS[0]}
set -e

restarts="$(k -n "$NAMESPACE" get pods -l app.kubernetes.io/name=agent \
    -o jsonpath='{range .items[*]}{.status.containerStatuses[0].restartCount}{"\n"}{end}' | awk '{s+=$1} END {print s+0}')"
echo "agent restarts: $restarts"
if (( check_rc == 0 && restarts > 0 )); then
    echo "FAIL: agent pods restarted $restarts time(s) during the run" >&2
    check_rc=1
fi
if (( check_rc == 0 )); then
    log "PASS: every line arrived exactly once ($job_count generators x $LINES_PER_GENERATOR lines)"
else
    log "FAIL (checker exit $check_rc); see $ARTIFACTS"
fi
exit "$check_rc"
