# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
INI    ?= development.ini

.PHONY: run test test-sqlite test-postgres lint migrate bench clean

run: $(VENV)/.installed migrate  ## create the venv, install, migrate SQLite, serve on :6543
	$(BIN)/pserve $(INI)

test: $(VENV)/.installed-testing  ## the whole suite (SQLite, or TEST_DATABASE_URL) and ruff
	$(BIN)/ruff check .
	$(BIN)/pytest

migrate: $(VENV)/.installed
	$(BIN)/alembic -c $(INI) upgrade head

bench: $(VENV)/.installed-bench  ## myservice against a bare baseline (see README); BENCH_ARGS=--quick
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache myservice.sqlite*

$(VENV)/.created:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	touch $@

$(VENV)/.installed: $(VENV)/.created setup.py constraints.txt
	$(BIN)/pip install --quiet -c constraints.txt -e .
	touch $@

# Debian packages the tests run (pgbouncer: tests/test_pgbouncer.py), installed when missing.
TEST_DEBS = pgbouncer

$(VENV)/.installed-testing: $(VENV)/.installed
	$(BIN)/pip install --quiet -c constraints.txt -e '.[testing]'
	@missing=$$(for deb in $(TEST_DEBS); do \
	  [ "$$(dpkg-query -W -f='$${db:Status-Status}' $$deb 2>/dev/null)" = installed ] || echo $$deb; \
	done); \
	if [ -n "$$missing" ]; then \
	  echo "apt-get install $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	touch $@

$(VENV)/.installed-bench: $(VENV)/.installed
	$(BIN)/pip install --quiet -c constraints.txt -e '.[bench]'
	touch $@
