# Benchmark (included from the main Makefile). Everything it needs is installed from here.
#   make bench-deps     wrk from Debian
#   make bench          the full run (API vs floor, A B A B), results in bench/results/<stamp>/
#   make bench-smoke    a seconds-long run of the same script, for CI (no assertion on speed)
#   make bench-profile  py-spy on a running API worker (GET /tasks/{id} and the 50-task list)
# See bench/README.md and docs/PERFORMANCE.md.

BENCH_PYTHON ?= .venv/bin/python
BENCH_VENV ?= .venv-bench
BENCH_SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
# The databases are dropped and rebuilt by the script: their names must start with tm_bench.
BENCH_DATABASE_URL ?= postgresql://postgres@127.0.0.1/tm_bench_smoke
BENCH_FULL_DATABASE_URL ?= postgresql://postgres@127.0.0.1/tm_bench
BENCH_REDIS_URL ?= redis://127.0.0.1:6379/14
BENCH_WORKERS ?= 2
BENCH_DURATION ?= 10
BENCH_CONNECTIONS ?= 32
BENCH_ROUNDS ?= 2
BENCH_ARGS ?= --scale --compare-workers
BENCH_OUT ?= bench/results

.PHONY: bench-deps bench-tools bench bench-smoke bench-profile

# apt-get update only when wrk has no install candidate (fresh image, empty package lists).
bench-deps:
	@command -v wrk >/dev/null 2>&1 || { \
		apt-cache policy wrk 2>/dev/null | grep -q 'Candidate: [0-9]' \
			|| $(BENCH_SUDO) apt-get update -qq; \
		echo "bench-deps: installing wrk"; \
		DEBIAN_FRONTEND=noninteractive $(BENCH_SUDO) apt-get install -y -qq \
			--no-install-recommends wrk >/dev/null; \
	}
	@echo "bench-deps: $$(command -v wrk)"

# Profiling tools only (py-spy): kept out of the app's .venv.
$(BENCH_VENV)/.installed: bench/requirements.txt
	python3 -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	touch $@

bench-tools: $(BENCH_VENV)/.installed

bench: bench-deps $(STAMP) ## Full benchmark: API vs floor, scaling, 1 vs 2 workers
	$(BENCH_PYTHON) bench/run.py --database-url $(BENCH_FULL_DATABASE_URL) \
		--redis-url $(BENCH_REDIS_URL) --workers $(BENCH_WORKERS) \
		--duration $(BENCH_DURATION) --connections $(BENCH_CONNECTIONS) \
		--rounds $(BENCH_ROUNDS) --out $(BENCH_OUT) $(BENCH_ARGS)

bench-smoke: bench-deps $(STAMP) ## Seconds-long run of the benchmark script (CI: it must not rot)
	$(BENCH_PYTHON) bench/run.py --smoke --database-url $(BENCH_DATABASE_URL) \
		--redis-url $(BENCH_REDIS_URL) --out $(BENCH_OUT)

bench-profile: bench-deps bench-tools $(STAMP) ## py-spy profiles of the hot read paths
	$(BENCH_PYTHON) bench/run.py --profile --py-spy $(BENCH_VENV)/bin/py-spy \
		--database-url $(BENCH_FULL_DATABASE_URL) --redis-url $(BENCH_REDIS_URL) \
		--out $(BENCH_OUT)
