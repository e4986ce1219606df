# The two commands of the README: `make demo` and `make test`. Both set up .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
# DDS never leaves this machine in anything started from here (ROS_LOCALHOST_ONLY is ignored by Kilted).
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export MUJOCO_GL ?= egl
PYTEST_ARGS ?=

.PHONY: setup demo test test-fast test-jazzy test-humble test-distros lint bench checkpoint checkpoint-crop clean

setup:
	@bash scripts/setup_env.sh

demo: setup
	$(VENV)/bin/cosmos-aloha demo --lockstep

test: setup lint
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup lint
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

# The robot-PC stages CI runs after `make test` (scripts/ci_ros_distros.sh; own venvs in build/, no torch):
# Jazzy = Python 3.12 + ROS 2 Jazzy wheels + numpy 1.26.4; Humble = Python 3.10 + numpy 1.21.5, no ROS.
test-jazzy:
	bash scripts/ci_ros_distros.sh jazzy

test-humble:
	bash scripts/ci_ros_distros.sh humble

test-distros:
	bash scripts/ci_ros_distros.sh jazzy humble

# ruff (pyproject.toml): line length 120, import order, unused names
lint: setup
	$(VENV)/bin/ruff check .

bench: setup
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# Re-make the bundled sim checkpoints from scratch (demos -> policy -> rollouts -> planning model): ~2.5 h CPU.
checkpoint: setup
	bash scripts/train_sim_small.sh $(WORK)

# The demo's checkpoint (config/train/sim_crop.yaml + sim_crop_edges.yaml, issue 14; checkpoints/sim_crop_transfer_cube):
# 120 demos -> policy (the LR schedule as the measured 23,052-step run had it) -> 80 edge demos -> 9,000-step
# fine-tune -> 150 seeds in-process + 10 through the graph in lockstep, re-querying every 25 actions. ~8 h on
# 2 cores; DEVICE=cuda trains on a GPU (demos and evaluation stay on the CPU).
checkpoint-crop: setup
	DEVICE=$(DEVICE) bash scripts/train_sim_crop.sh $(WORK)

clean:
	rm -rf build $(VENV)
