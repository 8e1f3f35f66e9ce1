# Two commands for users: `make demo` and `make test` (the fast tier; `make test-all` runs every test,
# as CI does). All create .venv when it is missing, install the package into it, and are safe to run again.
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

.PHONY: install demo demo-2d test test-all benchmarks clean-demo real-acdc real-acdc-benchmark

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

# Zunair and Ben Hamza's comparison (VGG-GAP alone, with 5x / 10x augmentation, with CycleGAN minority
# images) on a synthetic 2D lesion set, 2 seeds.
$(DEMO)/raw/lesions/.complete: | $(STAMP)
	$(SVGAN) synth lesions $(DEMO)/raw/lesions --patients 480 --seed 0 --size 64
	touch $@

demo-2d: $(STAMP) $(DEMO)/raw/lesions/.complete
	$(SVGAN) oversampling --config configs/demo_lesions.yaml --data $(DEMO)/raw/lesions --out $(DEMO)/runs/oversampling --seeds 2

# The real-ACDC recipe (configs/real_acdc.yaml) trained within REAL_MINUTES of this machine, epoch
# ends included (train.budget_minutes: steps are timed first and the stages and schedule fitted to
# the budget), on every labelled patient of ACDC_DATA: the patients that matter are the ones it has
# not seen. An interrupted run resumes on its plan; a finished one is not trained again. Score
# unseen patients with: svgan evaluate $(REAL)/runs/acdc --data FOLDER
# REAL_FILTERS: the generator's width. In 30 minutes of a 2-core CPU base 16 (1,620 steps) beat
# base 32 (558 steps) on the validation patients (docs/performance.md); where a base-32 step costs
# less against a base-16 one (a GPU) or the budget is hours, measure again.
REAL_MINUTES ?= 30
REAL_FILTERS ?= 16
real-acdc: $(STAMP)
	$(SVGAN) prepare acdc $(ACDC_DATA) $(REAL)/prepared/acdc_all --config configs/real_acdc.yaml --set "prepare.split_fractions=[1.0, 0.0, 0.0]" --workers 2 --summary
	$(call train_once,$(REAL)/prepared/acdc_all,$(REAL)/runs/acdc,--minutes $(REAL_MINUTES) --set model.base_filters=$(REAL_FILTERS))
	@echo "Trained on every labelled patient of $(ACDC_DATA): $(REAL)/runs/acdc (history.csv: step rate per epoch)."
	@echo "Score patients it has not seen: $(SVGAN) evaluate $(REAL)/runs/acdc --data FOLDER"

# The same recipe on 70 / 10 / 20 patients, scored on the 20 test patients it never saw: the
# README's real-ACDC figures.
real-acdc-benchmark: $(STAMP)
	$(SVGAN) prepare acdc $(ACDC_DATA) $(REAL)/prepared/acdc --config configs/real_acdc.yaml --workers 2 --summary
	$(call train_once,$(REAL)/prepared/acdc,$(REAL)/runs/acdc_benchmark)
	$(SVGAN) evaluate $(REAL)/runs/acdc_benchmark --split test
	@echo "Run folder: $(REAL)/runs/acdc_benchmark (history.csv: validation Dice per structure and step rate per epoch)"

# $(call train_once,PREPARED,RUN[,OPTIONS]): train RUN on PREPARED with the real-ACDC recipe, resume
# it, or leave a finished one alone.
define train_once
	if [ -f $(2)/summary.json ]; then echo "Trained already: $(2)"; \
	elif [ -d $(2)/checkpoints ]; then $(SVGAN) train --resume $(2); \
	else $(SVGAN) train --config configs/real_acdc.yaml --data $(1) --run-dir $(2) $(3); fi
endef

# The fast tier: everything that does not train a model, start TensorFlow in a subprocess or run the notebook.
test: $(STAMP)
	$(PY) -m pytest -n 2 -q -m "not slow"

test-all: $(STAMP)
	$(PY) -m pytest -n 2 -q --durations=20

benchmarks: $(STAMP)
	$(PY) benchmarks/pipeline_throughput.py
	$(PY) benchmarks/model_speed.py
	$(PY) benchmarks/conv_gradients.py
	$(PY) benchmarks/hd95_speed.py
	$(PY) benchmarks/cyclegan_speed.py

clean-demo:
	rm -rf $(DEMO)
