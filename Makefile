# fx_d2 developer entry points. `make test` and `make demo` run `make setup` first when needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.fx_d2_setup_done
DEMO_DATA ?= demo_data
DEMO_OUT ?= output/demo
DEMO_DINO_OUT ?= output/demo_dino
DINO_DEMO_DATASETS := tbx11k,node21,candid_ptx,rsna_pneumonia,chestx_det,siim_acr
DEMO_FINETUNE_OUT ?= output/demo-finetune
PYTEST_WORKERS ?= 2


.PHONY: setup setup-browser test demo demo-dino demo-finetune lint bench bench-gpu clean-venv

setup: $(STAMP)

$(STAMP): setup.py constraints.txt tools/install_detectron2.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt torch torchvision
	PIP_CONSTRAINT=constraints.txt $(PY) tools/install_detectron2.py
	$(PIP) install -q -c constraints.txt -e '.[dev]'
	$(PY) -c "import fx_d2, detectron2; print('fx_d2 ready on detectron2', detectron2.__version__)"
	touch $(STAMP)

test: setup
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) tests

demo: setup
	$(PY) tools/make_demo_data.py --out $(DEMO_DATA) --skip-existing
	FX_DATASETS=$(DEMO_DATA) $(PY) tools/train_net.py --config-file configs/demo/fx_demo.yaml \
		OUTPUT_DIR $(DEMO_OUT)

# after `make demo`: fine-tune its pretrained weights on the demo's target datasets, from scratch
# vs pretrained (head-only, full), N = 2, 5, 10, all training images (tools/demo_finetune.py)
demo-finetune: setup
	FX_DATASETS=$(DEMO_DATA) $(PY) tools/demo_finetune.py --pretrained $(DEMO_OUT) \
		--out $(DEMO_FINETUNE_OUT) --jobs 2

# optional: headless Chromium for the tests that open the HTML pages (Debian / Ubuntu; sudo when
# not root); without it those tests are skipped
SUDO ?= $(shell [ "$$(id -u)" = 0 ] || echo sudo)
setup-browser:
	$(SUDO) apt-get install -y chromium chromium-driver || \
		($(SUDO) apt-get update && $(SUDO) apt-get install -y chromium chromium-driver)

# Foundation X's DINO localization on the 6 localization datasets of the demo replica; one thread:
# its many small ops run faster on one core than on two that wait for each other
demo-dino: setup
	$(PY) tools/make_demo_data.py --out $(DEMO_DATA) --skip-existing --datasets $(DINO_DEMO_DATASETS)
	OMP_NUM_THREADS=1 FX_DATASETS=$(DEMO_DATA) $(PY) tools/train_net.py \
		--config-file configs/demo/fx_demo_dino.yaml OUTPUT_DIR $(DEMO_DINO_OUT)

lint: setup
	$(PY) -m black --check fx_d2 tools tests benchmarks setup.py
	$(PY) -m isort --check-only fx_d2 tools tests benchmarks setup.py
	$(PY) -m flake8 fx_d2 tools tests benchmarks setup.py

bench: setup
	$(PY) benchmarks/backbone.py
	$(PY) benchmarks/data.py
	$(PY) benchmarks/model.py
	$(PY) benchmarks/train.py
	$(PY) benchmarks/dino.py
	$(PY) benchmarks/predict.py

bench-gpu: setup  # one CUDA device, ~3-4 minutes; the report also goes to output/gpu_bench.json
	$(PY) benchmarks/gpu.py --out output/gpu_bench.json

clean-venv:
	rm -rf $(VENV)
