# make repro: set up .venv (when missing or older than requirements.txt), then run the pipeline.
# make test:  same environment plus the optional Ray extra (requirements-ray.txt), then the test suite
#             (make test-slow: the long checks it leaves out).
# make bench: same environment, then the CPU benchmarks (BENCH_ARGS=--quick for a smoke run).
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1

.PHONY: repro test test-slow bench clean

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	touch $@

repro: $(VENV)/.installed
	dvc repro

$(VENV)/.installed-ray: $(VENV)/.installed requirements-ray.txt
	$(PY) -m pip install -q -r requirements-ray.txt
	touch $@

test: $(VENV)/.installed $(VENV)/.installed-ray
	$(PY) -m pytest -q

test-slow: $(VENV)/.installed
	$(PY) -m pytest -q -m slow

bench: $(VENV)/.installed
	$(PY) -m bench.run $(BENCH_ARGS)

clean:
	rm -rf checkpoints
