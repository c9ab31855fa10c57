# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
INI    ?= development.ini
# The token `make run` creates on first start, and again whenever the database no longer
# accepts it (`make clean` deletes it with the database).
DEV_TOKEN ?= .dev-token
# Debian packages the tests run, named by their binaries (each package is named after its
# binary): tests/test_docs_page.py's browser, chromium (never a browser build of its own),
# tests/test_pgbouncer.py's pgbouncer, and curl, which docs/tour.sh calls (tests/test_tour.py).
CHROMIUM = /usr/bin/chromium
PGBOUNCER = /usr/sbin/pgbouncer
CURL = /usr/bin/curl
TEST_BINARIES = $(CHROMIUM) $(PGBOUNCER) $(CURL)
SUDO    = $(if $(filter 0,$(shell id -u)),,sudo)
AUDIT_VENV ?= .venv-audit
# Extras of setup.py for `make install`, e.g. EXTRAS=gunicorn or EXTRAS="gunicorn bench".
EXTRAS ?=

# "yes" when the venv's myservice is this checkout, installed editable; empty when it is not:
# no venv yet, or a `pip install '.[extra]'` without -e replaced the editable install with a
# copy, after which edits would be silently ignored. Empty makes $(VENV)/.installed out of
# date, so the next make (run, test, install) installs the checkout editable again.
EDITABLE := $(shell $(BIN)/python -I -c 'import importlib.util as u, os.path as p, sys; \
	s = u.find_spec("myservice"); \
	sys.exit(s is None or p.realpath(s.origin) != p.realpath(sys.argv[1]))' \
	$(CURDIR)/myservice/__init__.py 2>/dev/null && echo yes)

.PHONY: run test install migrate dev-token bench audit clean

run: $(VENV)/.installed migrate dev-token  ## create the venv, install, migrate SQLite, serve on :6543
	@echo "Development token (scopes read and write; kept in $(DEV_TOKEN)). Paste:"
	@echo "  export TOKEN=$$(cat $(DEV_TOKEN))"
	@echo "  curl -H \"Authorization: Bearer $$(cat $(DEV_TOKEN))\" http://127.0.0.1:6543/users"
	$(BIN)/pserve $(INI)

test: $(VENV)/.installed-testing  ## the whole suite (SQLite, or TEST_DATABASE_URL) and ruff
	$(BIN)/ruff check .
	$(BIN)/pytest

# The one way to add extras: editable like the rest. Never pip install '.[extra]' by hand.
install: $(VENV)/.installed $(EXTRAS:%=$(VENV)/.installed-%)  ## the venv, editable, with EXTRAS

migrate: $(VENV)/.installed
	$(BIN)/alembic -c $(INI) upgrade head

bench: $(VENV)/.installed-bench  ## myservice against a bare baseline (docs/performance.md); BENCH_ARGS=--quick
	$(BIN)/python -m bench $(BENCH_ARGS)

audit: $(AUDIT_VENV)/.installed  ## pip-audit over constraints.txt; exit 2 unless every pin was checked
	$(AUDIT_VENV)/bin/python tools/audit.py constraints.txt $(AUDIT_ARGS)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache myservice.sqlite* $(DEV_TOKEN) $(AUDIT_VENV)

# A token for trying the API, kept in $(DEV_TOKEN) (its secret is shown only when it is made):
# made when there is none, and again when the database says it knows no such token, or that it
# is revoked or expired (myservice-token check: exit status 1); a reset database, say. Any other
# failure of the check (the database unreachable: 2) stops make.
dev-token: migrate
	@status=1; \
	if [ -s $(DEV_TOKEN) ]; then $(BIN)/myservice-token check $(INI) < $(DEV_TOKEN); status=$$?; fi; \
	if [ $$status -ne 1 ]; then exit $$status; fi; \
	$(BIN)/myservice-token create $(INI) --name "development-$$(date +%Y%m%d-%H%M%S)" \
		--scope read --scope write > $(DEV_TOKEN).new && \
	mv $(DEV_TOKEN).new $(DEV_TOKEN) && \
	echo "made a new development token, in $(DEV_TOKEN)"

$(VENV)/.created:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	touch $@

$(VENV)/.installed: $(VENV)/.created setup.py constraints.txt $(if $(EDITABLE),,FORCE)
	$(BIN)/pip install --quiet -c constraints.txt -e .
	touch $@

FORCE:

# An extra of setup.py (testing, bench, gunicorn), installed editable like the service; made
# again whenever the service is (a new setup.py, or the editable install lost).
$(VENV)/.installed-%: $(VENV)/.installed
	$(BIN)/pip install --quiet -c constraints.txt -e '.[$*]'
	touch $@

$(VENV)/.installed-testing: | $(TEST_BINARIES)

# One apt-get for all of them when any is missing (a grouped target: the recipe runs once).
$(TEST_BINARIES) &:
	$(SUDO) apt-get -o DPkg::Lock::Timeout=600 update
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 \
		install -y --no-install-recommends $(notdir $(TEST_BINARIES))

$(AUDIT_VENV)/.installed: tools/audit-requirements.txt
	$(PYTHON) -m venv $(AUDIT_VENV)
	$(AUDIT_VENV)/bin/pip install --quiet -r tools/audit-requirements.txt
	touch $@
