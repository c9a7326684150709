# brain-mri-xai: `make demo` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.setup-stamp
ARTIFACTS ?= artifacts
SHARED_WEIGHTS ?= ../shared/weights/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5
KERAS_CACHE := $(if $(KERAS_HOME),$(KERAS_HOME),$(HOME)/.keras)/models
PYTEST_ARGS ?=
# Test processes (pytest-xdist): one per core, at most 4, since each trains small models and
# holds TensorFlow (2.6 GB at the peak measured on 2026-12-06). TEST_WORKERS=0: one process.
TEST_WORKERS ?= auto
PORT ?= 8501
# Where the dashboard listens: this machine only, so a demo on a conference network is not open
# to the room (Streamlit's default is every interface). ADDRESS=0.0.0.0 to show it to others.
ADDRESS ?= localhost

.PHONY: setup demo test lint lock train-demo dashboard weights clean-runs figures

setup: $(STAMP) weights

# Every package comes from requirements.lock (exact versions and hashes), so a fresh machine gets
# what CI tested. Re-install only when the lock changes (the stamp is newer otherwise). -qq keeps
# pip's errors but not the warnings some machines' index configuration prints for every package.
$(STAMP): requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "Installing dependencies into $(VENV) from requirements.lock (about a minute on a fresh machine)..."
	@$(BIN)/python -m pip install -qq --require-hashes -r requirements.lock
	@touch $(STAMP)
	@echo "Installed $$($(BIN)/python -m pip list --format freeze 2>/dev/null | wc -l) packages into $(VENV)."

# requirements.txt is what we edit; requirements.lock pins every package it needs (any OS,
# Python 3.10+). Run after changing requirements.txt and commit both.
lock: $(STAMP)
	$(BIN)/uv pip compile requirements.txt --universal --python-version 3.10 --generate-hashes \
		--quiet --custom-compile-command "make lock" -o requirements.lock

# ImageNet weights cannot be downloaded here: put the shared copy where Keras looks first.
# Without the shared copy it says so (it printed nothing, and the dashboard's advice to run it
# looked wrong on a laptop).
weights:
	@if [ -f "$(KERAS_CACHE)/$(notdir $(SHARED_WEIGHTS))" ]; then :; \
	elif [ -f "$(SHARED_WEIGHTS)" ]; then \
		mkdir -p "$(KERAS_CACHE)" && cp "$(SHARED_WEIGHTS)" "$(KERAS_CACHE)/" && \
		echo "Copied ImageNet MobileNetV2 weights into $(KERAS_CACHE)"; \
	else echo "No ImageNet MobileNetV2 weights here: $(SHARED_WEIGHTS) is missing. The shipped runs \
	work without them; training MobileNetV2 and the T2/FLAIR hint need the file \
	$(notdir $(SHARED_WEIGHTS)) in $(KERAS_CACHE) (Keras' own download name: with internet, \
	python -m pipeline train --weights imagenet downloads it there), or BRAIN_MRI_WEIGHTS=<file>."; fi

# Train on the embedded synthetic default only when no complete run exists yet.
train-demo: setup
	@if [ -f "$(ARTIFACTS)/latest" ]; then echo "Using run $$(cat $(ARTIFACTS)/latest) from $(ARTIFACTS)/"; \
	else $(BIN)/python -m pipeline run --out $(ARTIFACTS) --profile quick; fi

demo: train-demo
	BRAIN_MRI_ARTIFACTS=$(ARTIFACTS) $(BIN)/streamlit run dashboard/app.py --server.port $(PORT) \
		--server.address $(ADDRESS)

# The dashboard on the runs already in $(ARTIFACTS) (make dashboard ARTIFACTS=myruns): never trains.
dashboard: setup
	BRAIN_MRI_ARTIFACTS=$(ARTIFACTS) $(BIN)/streamlit run dashboard/app.py --server.port $(PORT) \
		--server.address $(ADDRESS)

test: setup
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --maxprocesses 4 $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check pipeline dashboard tests

figures: setup
	$(BIN)/python -m pipeline figures --run latest --out docs/figures --replace
