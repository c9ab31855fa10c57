# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
INI    ?= development.ini
AUDIT_VENV ?= .venv-audit

.PHONY: run test test-sqlite test-postgres lint migrate bench audit clean

run: $(VENV)/.installed migrate  ## create the venv, install, migrate SQLite, serve on :6543
	$(BIN)/pserve $(INI)

test: $(VENV)/.installed-testing  ## the whole suite (SQLite, or TEST_DATABASE_URL) and ruff
	$(BIN)/ruff check .
	$(BIN)/pytest

migrate: $(VENV)/.installed
	$(BIN)/alembic -c $(INI) upgrade head

bench: $(VENV)/.installed-bench  ## myservice against a bare baseline (see README); BENCH_ARGS=--quick
	$(BIN)/python -m bench $(BENCH_ARGS)

audit: $(AUDIT_VENV)/.installed  ## pip-audit over constraints.txt; exit 2 unless every pin was checked
	$(AUDIT_VENV)/bin/python tools/audit.py constraints.txt $(AUDIT_ARGS)

clean:
	rm -rf $(VENV) $(AUDIT_VENV) *.egg-info .pytest_cache .ruff_cache myservice.sqlite*

$(VENV)/.created:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	touch $@

$(VENV)/.installed: $(VENV)/.created setup.py constraints.txt
	$(BIN)/pip install --quiet -c constraints.txt -e .
	touch $@

$(VENV)/.installed-testing: $(VENV)/.installed
	$(BIN)/pip install --quiet -c constraints.txt -e '.[testing]'
	touch $@

$(VENV)/.installed-bench: $(VENV)/.installed
	$(BIN)/pip install --quiet -c constraints.txt -e '.[bench]'
	touch $@

$(AUDIT_VENV)/.installed: tools/audit-requirements.txt
	$(PYTHON) -m venv $(AUDIT_VENV)
	$(AUDIT_VENV)/bin/pip install --quiet -r tools/audit-requirements.txt
	touch $@
