#!/usr/bin/env bash
# The sim_crop recipe on a lent GPU machine, in one call of the device tool (issue 14): scripted demos on its CPU
# cores, the latent cache and the DiT on its GPU, the exported bundle back under $OUT. Evaluate it here afterwards
# (docs/training.md "On a lent GPU"): cosmos-aloha eval BUNDLE -n 50 --execute 25 ...; --graph --lockstep -n 10.
#
# There: Python 3.12 with torch, no internet, no ROS. What it lacks travels with the call: `bash scripts/device_fetch.sh`
# here puts the py3.12 wheels (mujoco, gym-aloha's scene) in .whl/ and the EGL libraries in .gl/; then
#   run(command="bash scripts/device_sim_crop.sh", carry=[".whl", ".gl"], timeout_s=600)
# Settings (environment): DEMOS 300, PROCS 15 (demo processes), TRAIN_MIN 5 (training time budget), STEPS 20000 (the LR
# schedule), BATCH 96, DEVICE cuda. A dry run on a CPU: DEMOS=2 PROCS=2 TRAIN_MIN=0.3 STEPS=20 BATCH=4 DEVICE=cpu.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/device_out}
W=${WORK:-/tmp/device_sim_crop}
DEMOS=${DEMOS:-300}; PROCS=${PROCS:-15}; TRAIN_MIN=${TRAIN_MIN:-5}; STEPS=${STEPS:-20000}; BATCH=${BATCH:-96}
DEVICE=${DEVICE:-cuda}
PY=${PY:-python3}
mkdir -p "$OUT" "$W"
SITE=$PWD
if [ "$DEVICE" = cuda ]; then   # the lent machine only: the libraries unpack into / (never on a dry run here)
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    SITE=/tmp/site:$PWD
fi
export PYTHONPATH=$SITE MUJOCO_GL=${MUJOCO_GL:-egl} PYTHONUNBUFFERED=1
A="$PY -m cosmos_policy_ros.cli"
{ date -u; git rev-parse HEAD 2>/dev/null || true; nvidia-smi -L 2>/dev/null || true
  $PY -c "import torch, mujoco; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'mujoco', mujoco.__version__)"
  echo "DEMOS=$DEMOS PROCS=$PROCS TRAIN_MIN=$TRAIN_MIN STEPS=$STEPS BATCH=$BATCH DEVICE=$DEVICE"; } > "$OUT/run_info.txt"

# the recipe as run: sim_crop.yaml with this machine's batch, schedule and threads
$PY - "$W/recipe.yaml" "$STEPS" "$BATCH" <<'EOF'
import sys, yaml
r = yaml.safe_load(open("config/train/sim_crop.yaml"))
r["train"].update(steps=int(sys.argv[2]), batch_size=int(sys.argv[3]), threads=4, checkpoint_every_s=120)
yaml.safe_dump(r, open(sys.argv[1], "w"), sort_keys=False)
EOF
cp "$W/recipe.yaml" "$OUT/recipe.yaml"

echo "== demos: $DEMOS seeds from 1000 in $PROCS processes"
t0=$(date +%s)
per=$(( (DEMOS + PROCS - 1) / PROCS ))
for ((i = 0; i < PROCS; i++)); do
    n=$(( DEMOS - i * per < per ? DEMOS - i * per : per ))
    (( n > 0 )) || break
    $A gen-demos "$W/demos/p$i" -n $n --first-seed $((1000 + i * per)) --recipe config/train/sim_crop.yaml \
        > "$W/demos_$i.log" 2>&1 &
done
wait
tail -qn 1 "$W"/demos_*.log > "$OUT/demos.log"
echo "demos: $(( $(date +%s) - t0 )) s" | tee -a "$OUT/run_info.txt"

echo "== train on $DEVICE for at most $TRAIN_MIN min"
t0=$(date +%s)
$A train --config "$W/recipe.yaml" --data "$W"/demos/p* --run "$W/run" --device "$DEVICE" --minutes "$TRAIN_MIN" \
    --no-progress 2>&1 | grep -v "DEBUG" | tee "$OUT/train.log"
$A train --run "$W/run" --export "$W/policy" --execute 25 | tee -a "$OUT/train.log"
echo "train + export: $(( $(date +%s) - t0 )) s" | tee -a "$OUT/run_info.txt"
tar -C "$W" -cf "$OUT/policy.tar" policy
ls -la "$OUT"
