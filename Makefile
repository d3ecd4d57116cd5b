# The two front-door commands: `make run` and `make test`. Both set up what
# they need (venv, pinned requirements, the embedded data set) and are quick
# when that is already done.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-installed
HOST ?= 127.0.0.1
PORT ?= 8501
# Host names that may reach the app (DNS-rebinding guard; default: loopback only, .streamlit/config.toml).
ALLOWED_HOSTS ?=
export TI_SKIP_VERSION_CHECK := ON

.PHONY: run test setup data browser sconv bench gpu-check clean

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Fashion-MNIST from Debian's dataset-fashion-mnist, unpacked once into the workspace.
data: $(STAMP)
	@if [ ! -d /usr/share/datasets/fashion-mnist ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's dataset-fashion-mnist"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null; \
	fi
	@$(PY) -m designer prepare-data

# Headless Chromium + chromedriver for the real-browser app test (tests/app/test_browser.py).
browser:
	@if { [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; } && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's chromium and chromium-driver"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	fi

# The sconv C++ CPU kernel (kernels_taichi/sconv.cpp), built once into ~/.cache/kernel-studio (about 10 s with
# g++; cached by source, compiler and CPU). Optional: without g++ or AVX2/AVX-512 it says why, in one line, and
# its backends run their torch forms.
sconv: $(STAMP)
	@$(PY) -m kernels_taichi.sconv

run: data sconv
	@echo "Kernel Studio: http://$(HOST):$(PORT)"
	$(PY) -m streamlit run app.py --server.address $(HOST) --server.port $(PORT) --server.headless true \
		$(foreach h,$(ALLOWED_HOSTS),--server.allowedHosts $(h))

test: data browser sconv
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m designer bench --arch vgg --depth 16 --anycfg ASK_5a --batch-size 32 --backend all

# The backend and kernel tests on CUDA, then VGG-16 ASK_5a and HetConv P=4 against cuDNN (under 5 minutes);
# without a GPU it says so and exits 0.
gpu-check: $(STAMP)
	PYTHONPATH=. $(PY) benchmarks/gpu_check.py

clean:
	rm -rf $(VENV) workspace
