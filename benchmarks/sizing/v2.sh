#!/bin/bash
# Device calls (any kind: the grids are dealt over the GPUs it has) for issue 26's sizing:
# benchmarks/sizing/fashion-mnist-sizing-v2.yaml at (peak lr, steps) points of a cosine decay, POINTS (default
# the two that v2's budget allows, 2026-12-07: 2 GPU-hours at a pack's ~30k img/s are ~216M images, so 3 seeds
# x 24 variants at 12k steps or 5 seeds at 7k):
#   cos1e-3-12k  lr 1e-3, 12k steps   (3 seeds fit)
#   cos1e-3-6k   lr 1e-3, 6k steps    (5 seeds fit)
# Each point is a plain `run` (packs of 8 on CUDA, graphs): 8 cells x 18k steps x 256 = 37M images, ~21 minutes at
# ~30k img/s, so several calls: cells cut by DEADLINE resume from their checkpoints in /tmp (a machine taken back
# loses them). On one GPU the points' two processes share it (time-sliced); on several each gets its own.
# SIZING=<file> runs another sizing file the same way (its name line must read `name: sizing-v2`).
# Then benchmarks/sizing/criteria.py on the records. Results in /tmp/sizing-v2: run it again until criteria.md
# lists every cell. Cost: ~37M images, ~0.35 GPU-hours at ~30k img/s (the published run's constant-rate 16k-step
# records are the baseline, criteria.py on leaderboard/results).
set -u
DEADLINE=${DEADLINE:-570}
OUT=${OUT:-/tmp/sizing-v2-out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
S=${SIZING:-benchmarks/sizing/fashion-mnist-sizing-v2.yaml}
GPUS=$(nvidia-smi -L | wc -l)
i=0
for point in ${POINTS:-cos1e-3-12k:1.0e-3:12000 cos1e-3-6k:1.0e-3:6000}; do
  IFS=: read -r tag lr steps <<< "$point"
  sed "s/^name: sizing-v2/name: sizing-v2-$tag/; s/^  lr: 1.0e-3/  lr: $lr/; s/^  max_steps: 16000/  max_steps: $steps/" \
    $S > /tmp/sizing-v2-$tag.yaml
  CUDA_VISIBLE_DEVICES=$((i % GPUS)) timeout -s TERM "$DEADLINE" python3 -m ablate run /tmp/sizing-v2-$tag.yaml \
    --results /tmp/sizing-v2 --no-leaderboard > "$OUT/sizing-v2-$tag.log" 2>&1 &
  i=$((i + 1))
done
wait
python3 benchmarks/sizing/criteria.py /tmp/sizing-v2 > "$OUT/criteria.md" 2>&1
tar czf "$OUT/sizing-v2.tgz" --exclude='*.ckpt' --exclude='*.png' --exclude='*.sqlite3' --exclude='events.out*' \
  -C /tmp sizing-v2
