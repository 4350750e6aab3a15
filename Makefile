# Set-up happens on first use: every target creates what it needs.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PY312 := $(shell ls -d /root/.pyenv/versions/3.12*/bin 2>/dev/null | head -1)

.PHONY: venv run test upstream-client test-fast lint validate build bench soak keygen demo clean

$(STAMP): requirements-dev.txt layers/mail_proxy/requirements.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(STAMP)

# make run PORT=8080 SMTP_PORT=2526 VERBOSE=1 (or MAIL_PROXY_PORT / MAIL_PROXY_SMTP_PORT in the environment);
# a PORT inherited from the environment is ignored: only one given on the command line counts.
run: $(STAMP) ## the whole application locally: API on 127.0.0.1:8000, SMTP sink on 127.0.0.1:2525 unless told otherwise
	exec env MAIL_PROXY_LOCAL_VIA=make \
	  $(if $(filter command line,$(origin PORT)),MAIL_PROXY_PORT=$(PORT)) \
	  $(if $(filter command line,$(origin SMTP_PORT)),MAIL_PROXY_SMTP_PORT=$(SMTP_PORT)) \
	  $(BIN)/python -m local $(if $(VERBOSE),--verbose) $(ARGS)

# The suite runs in parallel (pytest-xdist), a test file per worker at a time, one worker more than the cores
# (many tests wait on a local stack or a socket part of the time; on 2 cores 3 workers took 3:02, 4 took 3:25):
# TEST_WORKERS=1 runs it in one process (TEST_WORKERS=0: no workers at all).
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); echo $$((n + 1)))
# --no-loadscope-reorder: files go out in the order tests/conftest.py sets (slow ones first, the whole-suite IAM
# check last); xdist would otherwise hand out the files with the most tests first.
XDIST = -n $(TEST_WORKERS) $(if $(filter 0,$(TEST_WORKERS)),,--dist loadfile --no-loadscope-reorder)

# genro-mail-proxy's own client, in its own virtualenv (.cache/upstream-venv), for tests/compat: set-up, made
# once; without a package index the compat tests skip.
upstream-client: $(STAMP)
	-$(BIN)/python -m tests.compat.upstream

test: $(STAMP) upstream-client ## every test (unit, integration against moto, end-to-end through the local stack), in parallel
	$(BIN)/python -m pytest -q $(XDIST) --durations=15 $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q $(XDIST) -m "not e2e" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy layers/mail_proxy/mail_proxy local clients/python/mail_proxy_client demo
	PYTHONPATH=layers/mail_proxy $(BIN)/lint-imports --no-cache

validate: ## sam validate --lint (SAM CLI lives in its own virtualenv)
	bash scripts/sam-venv.sh
	AWS_DEFAULT_REGION=us-east-1 SAM_CLI_TELEMETRY=0 .venv-sam/bin/sam validate --lint --region us-east-1

build: ## sam build for arm64 / python3.12
	bash scripts/sam-venv.sh
	PATH="$(PY312):$$PATH" AWS_DEFAULT_REGION=us-east-1 SAM_CLI_TELEMETRY=0 .venv-sam/bin/sam build --region us-east-1

bench: $(STAMP) ## issue 14's performance table, each figure with its same-run baseline, then one JSON line (ARGS=--only latency)
	$(BIN)/python -m bench $(ARGS)

soak: $(STAMP) ## 10,000 messages through the local stack under SMTP and report faults (bench/soak.py; ARGS=--messages N)
	$(BIN)/python -m bench.soak $(ARGS)

demo: $(STAMP) ## a guided tour through the local stack: tenant, account, four messages, their fate and reports
	$(BIN)/python -m demo $(ARGS)

keygen: $(STAMP) ## print a new base64 encryption key
	@PYTHONPATH=layers/mail_proxy $(BIN)/python -m mail_proxy keygen

clean:
	rm -rf .aws-sam .local-stack .pytest_cache .mypy_cache .ruff_cache
