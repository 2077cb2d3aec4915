#!/bin/bash
# Device call 2 (nvidia-h200-x2), run from the repository root with the wheels of .whl carried:
#   GPU 0: nox -s gpu (the GPU check, one seed, then bench);
#   GPU 1: the issue-12 sizing curves of a small DiT (d8, w256, patch 4) at lr 1e-3, three processes;
#   CPUs 30-31: benchmarks/contention.py on 8 variants of the smoke grid (alone, then with one busy process).
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
CUDA_VISIBLE_DEVICES=1 taskset -c 16-29 timeout 520 python3 -m ablate run benchmarks/sizing/fashion-mnist-sizing-small.yaml \
  --results /tmp/sizing --workers 3 --workers-per-gpu 3 --no-leaderboard > $OUT/sizing-small.log 2>&1 &
taskset -c 30,31 timeout 550 python3 benchmarks/contention.py --variants 8 > $OUT/contention.log 2>&1 &
CUDA_VISIBLE_DEVICES=0 taskset -c 0-15 timeout 550 python3 -m nox -s gpu > $OUT/gpu.log 2>&1
wait
tar czf $OUT/sizing.tgz --exclude='*.ckpt' --exclude='*.png' --exclude='*.sqlite3' -C /tmp sizing
cp .nox/gpu-results/*.json $OUT/ 2>/dev/null
ls -la $OUT
