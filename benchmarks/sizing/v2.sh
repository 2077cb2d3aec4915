#!/bin/bash
# One device call (nvidia-h200-x4, or any kind: the three grids are dealt over the GPUs it has) for issue 26's
# sizing: benchmarks/sizing/fashion-mnist-sizing-v2.yaml at three (peak lr, steps) points of a cosine decay,
#   cos1e-3      lr 1e-3, 16k steps   (the published peak rate, now decayed)
#   cos5e-4      lr 5e-4, 16k steps   (a lower peak)
#   cos1e-3-12k  lr 1e-3, 12k steps   (is a shorter run enough once the rate decays?)
# then benchmarks/sizing/criteria.py on the records. Results in /tmp/sizing-v2 (kept between calls made back to
# back, so cells cut by DEADLINE resume from their checkpoints: run it again until criteria.md lists every cell).
# Cost: see the grid file's header (~0.6 GPU-hours, one or two 10-minute calls on nvidia-h200-x4).
set -u
DEADLINE=${DEADLINE:-570}
OUT=${OUT:-/tmp/sizing-v2-out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
S=benchmarks/sizing/fashion-mnist-sizing-v2.yaml
GPUS=$(nvidia-smi -L | wc -l)
i=0
for point in cos1e-3:1.0e-3:16000 cos5e-4:5.0e-4:16000 cos1e-3-12k:1.0e-3:12000; do
  IFS=: read -r tag lr steps <<< "$point"
  sed "s/^name: sizing-v2/name: sizing-v2-$tag/; s/^  lr: 1.0e-3/  lr: $lr/; s/^  max_steps: 16000/  max_steps: $steps/" \
    $S > /tmp/sizing-v2-$tag.yaml
  CUDA_VISIBLE_DEVICES=$((i % GPUS)) timeout -s TERM "$DEADLINE" python3 -m ablate run /tmp/sizing-v2-$tag.yaml \
    --results /tmp/sizing-v2 --workers 8 --workers-per-gpu 8 --no-leaderboard > "$OUT/sizing-v2-$tag.log" 2>&1 &
  i=$((i + 1))
done
wait
python3 benchmarks/sizing/criteria.py /tmp/sizing-v2 > "$OUT/criteria.md" 2>&1
tar czf "$OUT/sizing-v2.tgz" --exclude='*.ckpt' --exclude='*.png' --exclude='*.sqlite3' --exclude='events.out*' \
  -C /tmp sizing-v2
