# Two entry points for a fresh machine with Python 3.10+ and make: `make demo` and `make test`.
# Both create (once) a virtualenv with the real az 2.91.0 and fetch the PostgreSQL builds they need.
PYTHON ?= python3
CACHE ?= /var/tmp/azext-pgdump
VENV ?= $(CACHE)/venv-test
REQ_KEY := $(shell cksum < requirements-test.txt | cut -d' ' -f1)
STAMP := $(VENV)/.installed-$(REQ_KEY)
PYTEST_ARGS ?=

export AZEXT_PGDUMP_CACHE := $(CACHE)

.PHONY: demo test venv clean-cache

venv: $(STAMP)

# Under a lock, and checked again inside it: two runs sharing one cache (make demo and make test at once)
# would otherwise install into the same virtualenv together.
$(STAMP): requirements-test.txt
	mkdir -p $(CACHE) && chmod 755 $(CACHE)
	flock $(VENV).lock sh -ec 'test -f $@ && exit 0; \
	  test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV); \
	  $(VENV)/bin/python -m pip install -q --disable-pip-version-check -r requirements-test.txt; \
	  touch $@'

demo: venv
	$(VENV)/bin/python scripts/demo.py

test: venv
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

clean-cache:
	rm -rf $(CACHE)
