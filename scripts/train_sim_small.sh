#!/usr/bin/env bash
# Reproduce the bundled sim checkpoints end to end (issue 8), on CPU, in about 2.5 hours on 2 cores:
#   scripted demos -> policy (sim_small) -> in-process + through-the-graph evaluation
#   -> policy rollouts (successes and failures) -> planning model (world model + V(s')) -> planning evaluation.
# Usage: bash scripts/train_sim_small.sh [WORK_DIR]   (default runs/sim_small; `make checkpoint`)
# Copy WORK_DIR/policy and WORK_DIR/planning to checkpoints/ to replace the bundled ones.
set -euo pipefail
cd "$(dirname "$0")/.."
W=${1:-runs/sim_small}
export MUJOCO_GL=${MUJOCO_GL:-egl}
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST   # the --graph evaluation starts ROS nodes: loopback only
A=.venv/bin/cosmos-aloha
mkdir -p "$W"

echo "== 1/6 scripted demonstrations: 60 transfer-cube episodes, seeds 1000-1059, cam_high 64x64 (two processes)"
$A gen-demos "$W/demos/a" -n 30 --first-seed 1000 > "$W/demos_a.log" &
$A gen-demos "$W/demos/b" -n 30 --first-seed 1030 > "$W/demos_b.log"
wait
tail -n 1 "$W"/demos_*.log

echo "== 2/6 policy: config/train/sim_small.yaml (5000 steps; resumable with: $A train --run $W/policy_run --resume)"
$A train --config config/train/sim_small.yaml --data "$W/demos" --run "$W/policy_run"
$A train --run "$W/policy_run" --export "$W/policy"

echo "== 3/6 policy evaluation: 50 seeded episodes in-process (seeds 0-49, disjoint from the demos)"
$A eval "$W/policy" -n 50 --out "$W/eval_policy"

echo "== 4/6 policy rollouts for the planning model: 40 episodes, seeds 2000-2039, recorded as HDF5"
$A eval "$W/policy" -n 40 --first-seed 2000 --record "$W/rollouts" --out "$W/eval_rollouts"

echo "== 5/6 planning model: world model + V(s') fine-tuned from the policy on demos + rollouts"
$A train --config config/train/sim_small_planning.yaml --init-from "$W/policy" --data "$W/demos" "$W/rollouts" \
    --run "$W/planning_run"
$A train --run "$W/planning_run" --export "$W/planning"

echo "== 6/6 best-of-N planning in-process, and the policy through the ROS node graph"
$A eval "$W/policy" -n 50 --planning "$W/planning" --candidates 4 --value-steps 1,2,3 --out "$W/eval_planning"
$A eval "$W/policy" -n 10 --graph --out "$W/eval_graph"
