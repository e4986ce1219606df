#!/usr/bin/env bash
# Reproduce the sim_crop policy end to end (issue 14), on CPU, in about 8 hours on 2 cores:
#   scripted demos (cam_high + cam_right_wrist, 240 px renders) -> policy (config/train/sim_crop.yaml, 23,052 steps)
#   -> 80 more demos at the edges of the cube's x spawn range -> fine-tune (config/train/sim_crop_edges.yaml)
#   -> 50 seeded episodes in-process through the executor's SafetyFilter -> 10 through the ROS graph in lockstep.
# Usage: bash scripts/train_sim_crop.sh [WORK_DIR]   (default runs/sim_crop; `make checkpoint-crop`)
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

echo "== 1/5 scripted demonstrations: 120 transfer-cube episodes, seeds 1000-1119 (two processes, ~8 min)"
$A gen-demos "$W/demos/a" -n 60 --first-seed 1000 --recipe $R > "$W/demos_a.log" &
$A gen-demos "$W/demos/b" -n 60 --first-seed 1060 --recipe $R > "$W/demos_b.log"
wait
tail -n 1 "$W"/demos_*.log

# The schedule as the measured checkpoint ran it (docs/training.md "Smoothing the chunk"): the recipe's 8,000-step
# LR schedule to step 6,550, stretched to 10,000 until 9,269, to 18,000 until 15,993, then to 24,000 until FINAL_STEP
# (where the measured run's 100-minute stage ended). Each stage resumes the previous one's checkpoint (optimizer,
# EMA, data order); the thread count changed between the stages of the measured run, so a rerun matches it in its
# statistics, not bit for bit.
FINAL_STEP=${FINAL_STEP:-23052}
echo "== 2/5 policy: $R (latent cache ~19 min, then $FINAL_STEP steps at ~0.7 s; resumable with: $A train --run $W/run --resume)"
if [ ! -e "$W/run/latest" ]; then
  $A train --config $R --data "$W/demos/a" "$W/demos/b" --run "$W/run" --stop-at 6550 --no-progress ${DEVICE:+--device $DEVICE}
fi
$A train --run "$W/run" --resume --steps 10000 --stop-at 9269 --no-progress ${DEVICE:+--device $DEVICE}
$A train --run "$W/run" --resume --steps 18000 --stop-at 15993 --no-progress ${DEVICE:+--device $DEVICE}
$A train --run "$W/run" --resume --steps 24000 --stop-at "$FINAL_STEP" --no-progress ${DEVICE:+--device $DEVICE}
$A train --run "$W/run" --export "$W/policy23052" --execute 25   # policy.json: chunk mode synchronous, 25 actions a chunk

# The 23,052-step policy fails where the cube spawns at the edges of its x range (docs/training.md "Edge demos"):
# 80 more demos there (seeds outside [LO, HI] are passed over), then a fine-tune on all 200 from its weights.
# As the measured run: the recipe's 5,000-step schedule, then resumed with it stretched to FT_FINAL (the bundled
# checkpoint is step 9,000; docs/training.md "4,000 more steps of the edge fine-tune").
FT_STEP=${FT_STEP:-5000}
FT_FINAL=${FT_FINAL:-9000}
echo "== 3/5 edge demos and fine-tune: config/train/sim_crop_edges.yaml (latent cache of 200 demos ~26 min, then $FT_FINAL steps)"
$A gen-demos "$W/demos/edge_hi" -n 40 --first-seed 3000 --spawn-x 0.16 0.2 --recipe $R > "$W/edge_hi.log" &
$A gen-demos "$W/demos/edge_lo" -n 40 --first-seed 2000 --spawn-x 0 0.04 --recipe $R > "$W/edge_lo.log"
wait
tail -n 1 "$W"/edge_*.log
if [ ! -e "$W/ft/latest" ]; then
  $A train --config config/train/sim_crop_edges.yaml --init-from "$W/policy23052" \
    --data "$W/demos/a" "$W/demos/b" "$W/demos/edge_hi" "$W/demos/edge_lo" --run "$W/ft" --stop-at "$FT_STEP" \
    --no-progress ${DEVICE:+--device $DEVICE}
else
  $A train --run "$W/ft" --resume --stop-at "$FT_STEP" --no-progress ${DEVICE:+--device $DEVICE}
fi
$A train --run "$W/ft" --resume --steps "$FT_FINAL" --stop-at "$FT_FINAL" --no-progress ${DEVICE:+--device $DEVICE}
$A train --run "$W/ft" --export "$W/policy" --action-smoothing 15 --execute 25

echo "== 4/5 3 x 50 seeded episodes in-process (seeds 0-49, 100-149, 200-249, disjoint from the demos), every action through the SafetyFilter"
# one thread per process, as the stored evaluations ran (the thread count can change single episodes, docs/sim.md)
$A eval "$W/policy" -n 50 --first-seed 0 --threads 1 --execute 25 --out "$W/eval_policy" --no-media &
$A eval "$W/policy" -n 50 --first-seed 100 --threads 1 --execute 25 --out "$W/eval_policy_100" --no-media
wait
$A eval "$W/policy" -n 50 --first-seed 200 --threads 1 --execute 25 --out "$W/eval_policy_200" --no-media

echo "== 5/5 the same policy through the ROS node graph in lockstep, seeds 0-9"
$A eval "$W/policy" -n 10 --first-seed 0 --execute 25 --graph --lockstep --out "$W/eval_graph"
