#!/usr/bin/env bash
# Reproduce the sim_crop policy end to end (issue 14), on CPU, in about 2.5 hours on 2 cores:
#   scripted demos (cam_high + cam_right_wrist, 240 px renders) -> policy (config/train/sim_crop.yaml)
#   -> 50 seeded episodes in-process through the executor's SafetyFilter -> 10 through the ROS graph in lockstep.
# Usage: bash scripts/train_sim_crop.sh [WORK_DIR]   (default runs/sim_crop; `make checkpoint`)
#        DEVICE=cuda bash scripts/train_sim_crop.sh   (train on a GPU; demos and evaluation stay on the CPU)
# Copy WORK_DIR/policy to checkpoints/sim_crop_transfer_cube to replace the bundled one.
set -euo pipefail
cd "$(dirname "$0")/.."
W=${1:-runs/sim_crop}
DEVICE=${DEVICE:-}
export MUJOCO_GL=${MUJOCO_GL:-egl}
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST   # the --graph evaluation starts ROS nodes: loopback only
A=.venv/bin/cosmos-aloha
R=config/train/sim_crop.yaml
mkdir -p "$W"

echo "== 1/4 scripted demonstrations: 120 transfer-cube episodes, seeds 1000-1119 (two processes, ~8 min)"
$A gen-demos "$W/demos/a" -n 60 --first-seed 1000 --recipe $R > "$W/demos_a.log" &
$A gen-demos "$W/demos/b" -n 60 --first-seed 1060 --recipe $R > "$W/demos_b.log"
wait
tail -n 1 "$W"/demos_*.log

echo "== 2/4 policy: $R (latent cache ~19 min, then the schedule's steps; resumable with: $A train --run $W/run --resume)"
$A train --config $R --data "$W/demos/a" "$W/demos/b" --run "$W/run" ${DEVICE:+--device $DEVICE}
$A train --run "$W/run" --export "$W/policy"

echo "== 3/4 50 seeded episodes in-process (seeds 0-49, disjoint from the demos), every action through the SafetyFilter"
$A eval "$W/policy" -n 50 --first-seed 0 --threads 2 --execute 25 --out "$W/eval_policy" --no-media

echo "== 4/4 the same policy through the ROS node graph in lockstep, seeds 0-9"
$A eval "$W/policy" -n 10 --first-seed 0 --execute 25 --graph --lockstep --out "$W/eval_graph"
