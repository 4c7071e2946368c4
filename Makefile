# Two entry points for a fresh machine (both idempotent):
#   make run   - set up .venv and open the annotation window (or the CLI demo without a display)
#   make test  - set up .venv (with test extras) and run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PIP     = $(PY) -m pip --disable-pip-version-check -q
STAMP   = $(VENV)/.installed

.PHONY: run test setup system-deps bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first: served from this machine's disk; otherwise pip resolves a CUDA build from PyPI.
	$(PIP) install torch==2.14.1 torchvision==0.29.1
	$(PIP) install -e '.[test]'
	$(PIP) install --no-deps pysodmetrics==1.6.2
	touch $(STAMP)

setup: $(STAMP)

system-deps:
	@bash scripts/ensure_system_deps.sh

# With a display: the annotation window on the bundled photos, best engine installed
# (classic when no checkpoint). Without one: the command-line segmentation demo.
run: setup system-deps
	@if [ -n "$$DISPLAY$$WAYLAND_DISPLAY" ]; then \
		$(VENV)/bin/annotator gui; \
	else \
		echo "no display (DISPLAY is unset): running the command-line demo instead"; \
		$(VENV)/bin/annotator segment resources/samples/coffee.png --box 170,15,410,290 \
			--point 290,150 --out mask.png --overlay mask_overlay.png; \
	fi

test: setup system-deps
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q

# Benchmarks (minutes; not part of the tests): each writes its table into docs/benchmarks.md.
bench: setup
	$(PY) bench/engine_latency.py
	QT_QPA_PLATFORM=offscreen $(PY) bench/click_latency.py
	$(PY) bench/formats.py

clean:
	rm -rf $(VENV)
