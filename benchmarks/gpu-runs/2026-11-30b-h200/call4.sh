#!/bin/bash
# Device call 4 (nvidia-h200-x2): issue-12 sizing, small DiT (d8, w256, patch 4), lr 1e-3.
#   GPU 0: batch 128, 16k steps, three formulations (three processes): is batch 128 as good per step?
#   GPU 1: batch 256, four formulations in four processes (v/cos added): aggregate throughput with 4 per GPU.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
S=benchmarks/sizing/fashion-mnist-sizing-small.yaml
sed 's/^name: sizing-small/name: sizing-small-b128/; s/^  batch_size: 256/  batch_size: 128/; s/^  max_steps: 30000/  max_steps: 16000/' $S > /tmp/b128.yaml
sed 's/^name: sizing-small/name: sizing-small-4p/; s/^  - "edm(-1.20, 1.20)"/  - "edm(-1.20, 1.20)"\n  - "v\/cos"/' $S > /tmp/4p.yaml
CUDA_VISIBLE_DEVICES=0 taskset -c 0-15 timeout 370 python3 -m ablate run /tmp/b128.yaml --results /tmp/sizing --workers 3 \
  --workers-per-gpu 3 --no-leaderboard > $OUT/sizing-b128.log 2>&1 &
CUDA_VISIBLE_DEVICES=1 taskset -c 16-31 timeout 370 python3 -m ablate run /tmp/4p.yaml --results /tmp/sizing --workers 4 \
  --workers-per-gpu 4 --no-leaderboard > $OUT/sizing-4p.log 2>&1 &
wait
tar czf $OUT/sizing.tgz --exclude='*.ckpt' --exclude='*.png' --exclude='*.sqlite3' -C /tmp sizing
