# Two commands: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test fuzz sfu-measure lint bandit audit migrate superuser reap clean

$(BIN)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

run: $(BIN)/.installed
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py runserver $(HOST):$(PORT)

test: $(BIN)/.installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The long fuzzing run (10,000 frames per server; docs/security.md), left out of `make test`.
fuzz: $(BIN)/.installed
	$(BIN)/python -m pytest -m fuzz $(PYTEST_ARGS)

# The SFU's upload, encoder and CPU figures (docs/sfu.md), left out of `make test`.
sfu-measure: $(BIN)/.installed
	$(BIN)/python -m pytest -m measure -s tests/test_sfu_measure.py $(PYTEST_ARGS)

lint: $(BIN)/.installed
	$(BIN)/ruff check .

# Static security analysis of our code (docs/security.md): any high-severity finding fails; CI runs it.
bandit: $(BIN)/.installed
	$(BIN)/bandit -q -r accounts calls people webhooks sfu config bench --severity-level high

# Known vulnerabilities in the pinned requirements (PyPI's advisory data). --strict fails when a package could not
# be audited, so a machine that cannot reach the data (CI's and the developers' here) fails instead of passing.
audit: $(BIN)/.installed
	$(BIN)/pip-audit --strict --progress-spinner off -r requirements-dev.txt

migrate: $(BIN)/.installed
	$(BIN)/python manage.py migrate --noinput

superuser: $(BIN)/.installed
	$(BIN)/python manage.py createsuperuser

clean:
	rm -rf $(VENV) staticfiles .pytest_cache
