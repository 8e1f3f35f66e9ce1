# Two commands for users: `make demo` and `make test`. Both create .venv when it is
# missing, install the package into it, and are safe to run again.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
SVGAN  := $(VENV)/bin/svgan
STAMP  := $(VENV)/.svgan-installed
DEMO   := demo_data

.PHONY: install demo test benchmarks clean-demo

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# Synthetic raw data in the challenges' own layouts (deterministic; written once).
$(DEMO)/raw/brats/.complete: | $(STAMP)
	$(SVGAN) synth brats $(DEMO)/raw/brats --patients 24 --seed 0 --shape 96 96 62
	touch $@

$(DEMO)/raw/acdc/.complete: | $(STAMP)
	$(SVGAN) synth acdc $(DEMO)/raw/acdc --patients 24 --seed 0 --shape 96 96 8 --frames 20
	touch $@

# prepare skips patients that are already prepared, so this is quick the second time.
# Training runs once (about 5 minutes on 2 CPU cores); `make clean-demo` starts over.
demo: $(STAMP) $(DEMO)/raw/brats/.complete $(DEMO)/raw/acdc/.complete
	$(SVGAN) prepare brats $(DEMO)/raw/brats $(DEMO)/prepared/brats --config configs/demo_brats.yaml --workers 2 --summary
	$(SVGAN) prepare acdc $(DEMO)/raw/acdc $(DEMO)/prepared/acdc --config configs/demo_acdc.yaml --workers 2 --summary
	test -f $(DEMO)/runs/brats/generator.keras || $(SVGAN) train --config configs/demo_brats.yaml --data $(DEMO)/prepared/brats --run-dir $(DEMO)/runs/brats
	$(SVGAN) evaluate $(DEMO)/runs/brats --split test
	@echo "Demo run folder: $(DEMO)/runs/brats (TensorBoard logs in $(DEMO)/runs/brats/logs)"

test: $(STAMP)
	$(PY) -m pytest -n 2 -q

benchmarks: $(STAMP)
	$(PY) benchmarks/pipeline_throughput.py
	$(PY) benchmarks/model_speed.py
	$(PY) benchmarks/hd95_speed.py

clean-demo:
	rm -rf $(DEMO)
