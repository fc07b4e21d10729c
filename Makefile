# CardVend — see README.md. `make run` starts the counter, `make test` runs the whole suite.
# Both set up what is missing first: the Python packages into .venv and, when run as root on
# Debian, the system packages the real parts in the tests need.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Qt's xcb platform plugin (screenshots under Xvfb) needs these X libraries beside xvfb
QT_XCB_PACKAGES := libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 libxcb-image0 libxcb-render-util0 libxkbcommon-x11-0
DEB_PACKAGES := pcscd vsmartcard-vpcd socat xvfb poppler-utils fonts-wqy-microhei libpcsclite-dev swig $(QT_XCB_PACKAGES)
export PYTHONDONTWRITEBYTECODE := 1
export HYPOTHESIS_STORAGE_DIRECTORY ?= $(CURDIR)/.hypothesis

.PHONY: run test bench bench-quick lint sysdeps venv clean screenshots dist dist-smoke

run: sysdeps venv
	$(PY) main.py

# the suite on a pytest worker per core (pytest-xdist), then the tests on the real pcscd (marked
# `vpcd` by tests/conftest.py) in one process, since the virtual card slots are machine-wide.
# --durations names the slowest tests, to keep the suite near 15 minutes.
# TEST_ARGS adds to both, e.g. `make test TEST_ARGS="-x"`
# The suite starts the application as a process thousands of times: its modules are compiled
# once and kept (__pycache__, ignored by git) even where PYTHONDONTWRITEBYTECODE is set, which
# would otherwise compile them from source at every start (about 0.15 s each).
TEST_ARGS ?=
TEST_ENV = QT_QPA_PLATFORM=offscreen PYTHONDONTWRITEBYTECODE=
test: sysdeps venv
	$(PY) -m compileall -q -j 0 app cardio sync printing ui tests main.py > /dev/null
	$(TEST_ENV) $(PY) -m pytest -q -n auto -m "not vpcd" --durations=30 $(TEST_ARGS)
	$(TEST_ENV) $(PY) -m pytest -q -m vpcd $(TEST_ARGS)

bench: sysdeps venv
	$(PY) -m tests.bench.run

bench-quick: sysdeps venv
	$(PY) -m tests.bench.run --quick

# every page of the counter window in Chinese and English, under Xvfb, at the two screen sizes
# counter PCs run, into resources/screenshots/<size>/ (each run also checks that they fit)
SCREEN_SIZES := 1366x768 1920x1080
screenshots: sysdeps venv
	@for size in $(SCREEN_SIZES); do \
	  QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 $${size}x24" $(PY) -m tests.screenshots --out resources/screenshots/$$size || exit 1; \
	  QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 $${size}x24" $(PY) -m tests.screenshots --check || exit 1; \
	done

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy app cardio sync printing ui main.py

venv: $(STAMP)

# pyscard builds from source on Linux: it needs swig and the PC/SC headers (sysdeps).
$(STAMP): pyproject.toml setup.cfg
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

sysdeps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else \
	  echo "warning: missing Debian packages:$$missing (install them as root; tests that need them are skipped)"; \
	fi

clean:
	rm -rf $(VENV) .hypothesis *.egg-info build dist

# the one-folder application dist/cardvend/ (packaging/cardvend.spec); PyInstaller is installed
# here only, not with the dev extras, so `make venv` and `make test` do not need it
PYINSTALLER := pyinstaller>=6.10,<7
dist: venv
	@$(PY) -c "import PyInstaller" 2>/dev/null || $(PY) -m pip install -q '$(PYINSTALLER)'
	$(PY) -m PyInstaller --noconfirm --clean --log-level WARN \
	  --distpath dist --workpath build/pyinstaller packaging/cardvend.spec

# build it and start the built bundle: --version, a CLI sale on an emulated card, the window
dist-smoke: sysdeps
	bash .ci/dist-smoke
