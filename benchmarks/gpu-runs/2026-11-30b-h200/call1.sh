#!/bin/bash
# Device call 1 (nvidia-h200-x2), run from the repository root with the wheels of .whl carried:
#   GPU 0: nox -s gpu (the GPU check of the redesigned run path);
#   GPU 1: the issue-12 sizing curves, three formulations x lr {3e-4, 1e-3}, six processes on one GPU;
#   CPUs 30-31: benchmarks/contention.py on a third of the smoke grid (8 variants) (alone, then next to one busy process).
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total --format=csv | tee $OUT/machine.txt
lscpu | grep -E "Model name|^CPU\(s\)" | tee -a $OUT/machine.txt
S=benchmarks/sizing/fashion-mnist-sizing.yaml
sed 's/^name: sizing-lr3e-4/name: sizing-lr1e-3/; s/^  lr: 3.0e-4/  lr: 1.0e-3/' $S > /tmp/sizing-lr1e-3.yaml
for g in $S /tmp/sizing-lr1e-3.yaml; do
  CUDA_VISIBLE_DEVICES=1 taskset -c 16-29 timeout 520 python3 -m ablate run $g --results /tmp/sizing --workers 3 \
    --workers-per-gpu 3 --no-leaderboard > $OUT/sizing-$(basename $g .yaml).log 2>&1 &
done
taskset -c 30,31 timeout 540 python3 benchmarks/contention.py --variants 8 > $OUT/contention.log 2>&1 &
CUDA_VISIBLE_DEVICES=0 taskset -c 0-15 timeout 550 python3 -m nox -s gpu > $OUT/gpu.log 2>&1
wait
tar czf $OUT/sizing.tgz --exclude='*.ckpt' --exclude='*.png' --exclude='*.sqlite3' -C /tmp sizing
cp .nox/gpu-results/*.json $OUT/ 2>/dev/null
ls -la $OUT
