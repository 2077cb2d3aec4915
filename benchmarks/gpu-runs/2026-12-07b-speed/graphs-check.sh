#!/bin/bash
# One device call (~8 minutes): do CUDA graphs (train.cuda_graphs: auto) capture, replay and pay on the GPU,
# and does a cell trained with them match one trained without? Run from the repository root with .whl carried;
# logs under $OUT. 1) pack_steps.py: the lone step and 8 flat-stacked networks, compiled vs compiled + graphs;
# 2) one short cell (rf/lognorm(0.00, 1.00), seed 0, 1000 steps, validation every 250, 200 samples a setting)
# with graphs (a) and without (b), same seed: their validation losses and metrics should agree within GPU
# nondeterminism; 3) a pack of two cells with graphs (c). summary.txt: each train.json's graphs flag, speed and
# losses, and every graph warning of the logs.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
M=$OUT/machine.txt
{ date -u +%FT%TZ; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c 'import torch, lightning; print("torch", torch.__version__, "lightning", lightning.__version__)'; } > $M 2>&1
timeout ${STEPS_S:-120} python3 benchmarks/pack_steps.py --modes ${MODES:-flat-compiled,flat-graphs} --steps 40 \
  --json $OUT/steps.json > $OUT/steps.log 2>&1; echo "steps rc=$? $(date -u +%T)" >> $M
sed 's/^  val_every: 1000/  val_every: 250/' grids/fashion-mnist.yaml > /tmp/fm.yaml
A="--seeds 0 --max-steps 1000 --num-samples 200 --no-leaderboard --cache-dir /tmp/cache"
cp -r leaderboard/results/cache /tmp/cache
timeout ${CELL_S:-110} python3 -m ablate run /tmp/fm.yaml --variant 'rf/lognorm(0.00,*' $A --pack 1 --results /tmp/a > $OUT/a.log 2>&1
echo "a (graphs) rc=$? $(date -u +%T)" >> $M
timeout ${CELL_S:-110} python3 -m ablate run /tmp/fm.yaml --variant 'rf/lognorm(0.00,*' $A --pack 1 --cuda-graphs false --results /tmp/b > $OUT/b.log 2>&1
echo "b (no graphs) rc=$? $(date -u +%T)" >> $M
timeout ${PACK_S:-120} python3 -m ablate run /tmp/fm.yaml --variant 'rf/lognorm(*' $A --pack 2 --results /tmp/c > $OUT/c.log 2>&1
echo "c (pack of 2, graphs) rc=$? $(date -u +%T)" >> $M
for f in /tmp/[abc]/fashion-mnist/*/*/seed0/train.json; do echo "$f"; python3 -c "
import json, sys; d = json.load(open(sys.argv[1])); v = d.get('final_val') or {}
print({k: d.get(k) for k in ('cuda_graphs', 'compiled', 'pack', 'train_img_per_s', 'wall_s', 'best_step')},
      {k: round(x, 5) for k, x in v.items() if k in ('val/ema_loss', 'val/raw_loss', 'val/ema_x0_mse', 'val/raw_x0_mse')})" "$f"; done > $OUT/summary.txt 2>&1
for d in a b c; do for f in /tmp/$d/fashion-mnist/*/*/seed0/records/50steps-cfg5.0-*.json /tmp/$d/fashion-mnist/*/*/seed0/records/5steps-cfg5.0-*.json; do
  python3 -c "import json,sys; r=json.load(open(sys.argv[1])); m=r['metrics']; print('$d', r['variant'], r['steps'], r['cfg'], r['weights'], r['git_commit'], {k: round(m[k], 4) for k in ('fd_effnet','ckid_effnet','fd_probe') if k in m})" "$f"; done; done >> $OUT/summary.txt 2>&1
grep -h -i "cuda graph\|cudagraph\|Traceback\|Error" $OUT/*.log | sort | uniq -c | head -30 >> $OUT/summary.txt
cat $M $OUT/summary.txt
