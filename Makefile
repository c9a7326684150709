# brain-mri-xai: `make demo` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.setup-stamp
ARTIFACTS ?= artifacts
SHARED_WEIGHTS ?= ../shared/weights/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5
KERAS_CACHE := $(if $(KERAS_HOME),$(KERAS_HOME),$(HOME)/.keras)/models
PYTEST_ARGS ?=
PORT ?= 8501

.PHONY: setup demo test lint train-demo weights clean-runs figures

setup: $(STAMP) weights

# Re-install only when requirements.txt changes (the stamp is newer otherwise).
$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $(STAMP)

# ImageNet weights cannot be downloaded here: put the shared copy where Keras looks first.
weights:
	@if [ -f "$(SHARED_WEIGHTS)" ] && [ ! -f "$(KERAS_CACHE)/$(notdir $(SHARED_WEIGHTS))" ]; then \
		mkdir -p "$(KERAS_CACHE)" && cp "$(SHARED_WEIGHTS)" "$(KERAS_CACHE)/" && \
		echo "Copied ImageNet MobileNetV2 weights into $(KERAS_CACHE)"; fi

# Train on the embedded synthetic default only when no complete run exists yet.
train-demo: setup
	@if [ -f "$(ARTIFACTS)/latest" ]; then echo "Using run $$(cat $(ARTIFACTS)/latest) from $(ARTIFACTS)/"; \
	else $(BIN)/python -m pipeline run --out $(ARTIFACTS) --profile quick; fi

demo: train-demo
	BRAIN_MRI_ARTIFACTS=$(ARTIFACTS) $(BIN)/streamlit run dashboard/app.py --server.port $(PORT)

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check pipeline dashboard tests

figures: setup
	$(BIN)/python -m pipeline figures --run latest --out docs/figures
