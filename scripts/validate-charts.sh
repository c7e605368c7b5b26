#!/usr/bin/env bash
# Offline validation of charts/, kind-config/ and e2e/kind/ manifests; no cluster, no helm binary.
#
#   scripts/validate-charts.sh            # render, compare with goldens, validate, lint
#   scripts/validate-charts.sh --update   # rewrite the goldens under charts/tests/
#
# Env: VENV (default <repo>/.venv-charts), PYTHON (default python3, needs >= 3.10),
# KUBE_VERSION (default 1.35.0, the pinned kind node). See scripts/charts_check.py.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${VENV:-$repo/.venv-charts}"
python="${PYTHON:-python3}"
req="$repo/scripts/requirements-charts.txt"

if [[ ! -x "$venv/bin/python" ]]; then
    "$python" -m venv "$venv"
    # Keep the venv out of git without touching the repository's .gitignore.
    printf '*\n' > "$venv/.gitignore"
fi
# Reinstall only when the requirements changed (pip is slow even when nothing is to do).
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
    printf '%s\n' "$want" > "$stamp"
fi

exec "$venv/bin/python" "$repo/scripts/charts_check.py" --kube-version "${KUBE_VERSION:-1.35.0}" "$@"
