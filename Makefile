# Two commands for users: `make demo` and `make test`. Both create .venv when it is
# missing, install the package into it, and are safe to run again.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
SVGAN  := $(VENV)/bin/svgan
STAMP  := $(VENV)/.svgan-installed
DEMO   := demo_data
# Real ACDC: the training cohort beside the project, or a user's own copy of the official
# download (`make real-acdc ACDC_DATA=/path/to/ACDC/training`).
ACDC_DATA ?= ../shared/data/acdc-training
REAL      ?= real_data

.PHONY: install demo demo-2d test benchmarks clean-demo real-acdc

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
# Training runs once (about 10 minutes on 2 CPU cores); `make clean-demo` starts over.
demo: $(STAMP) $(DEMO)/raw/brats/.complete $(DEMO)/raw/acdc/.complete
	$(SVGAN) prepare brats $(DEMO)/raw/brats $(DEMO)/prepared/brats --config configs/demo_brats.yaml --workers 2 --summary
	$(SVGAN) prepare acdc $(DEMO)/raw/acdc $(DEMO)/prepared/acdc --config configs/demo_acdc.yaml --workers 2 --summary
	test -f $(DEMO)/runs/brats/generator.keras || $(SVGAN) train --config configs/demo_brats.yaml --data $(DEMO)/prepared/brats --run-dir $(DEMO)/runs/brats
	$(SVGAN) evaluate $(DEMO)/runs/brats --split test
	@echo "Demo run folder: $(DEMO)/runs/brats (TensorBoard logs in $(DEMO)/runs/brats/logs)"

# Prepare, train once (at most 30 minutes on 2 CPU cores; an interrupted run resumes), then score
# the held-out test split on each patient's native grid. Running it again does not retrain.
# Zunair and Ben Hamza's comparison (VGG-GAP alone, with 5x / 10x augmentation, with CycleGAN minority
# images) on a synthetic 2D lesion set, 2 seeds.
$(DEMO)/raw/lesions/.complete: | $(STAMP)
	$(SVGAN) synth lesions $(DEMO)/raw/lesions --patients 480 --seed 0 --size 64
	touch $@

demo-2d: $(STAMP) $(DEMO)/raw/lesions/.complete
	$(SVGAN) oversampling --config configs/demo_lesions.yaml --data $(DEMO)/raw/lesions --out $(DEMO)/runs/oversampling --seeds 2

real-acdc: $(STAMP)
	$(SVGAN) prepare acdc $(ACDC_DATA) $(REAL)/prepared/acdc --config configs/real_acdc.yaml --workers 2 --summary
	if [ -f $(REAL)/runs/acdc/summary.json ]; then echo "Trained already: $(REAL)/runs/acdc"; \
	elif [ -d $(REAL)/runs/acdc/checkpoints ]; then $(SVGAN) train --resume $(REAL)/runs/acdc; \
	else $(SVGAN) train --config configs/real_acdc.yaml --data $(REAL)/prepared/acdc --run-dir $(REAL)/runs/acdc; fi
	$(SVGAN) evaluate $(REAL)/runs/acdc --split test
	@echo "Run folder: $(REAL)/runs/acdc (history.csv: validation Dice per structure and step rate per epoch)"

test: $(STAMP)
	$(PY) -m pytest -n 2 -q

benchmarks: $(STAMP)
	$(PY) benchmarks/pipeline_throughput.py
	$(PY) benchmarks/model_speed.py
	$(PY) benchmarks/hd95_speed.py
	$(PY) benchmarks/cyclegan_speed.py

clean-demo:
	rm -rf $(DEMO)
