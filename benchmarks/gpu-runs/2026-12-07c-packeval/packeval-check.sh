#!/bin/bash
# One device call (~9 minutes): a pack's validation and sampling through the stacked call on the GPU (issue 25).
# Run from the repository root with .whl carried; logs under $OUT.
# 1) ablate bench --model grid --no-eval: the training and packing tables, the packing table now followed by
#    "a pack's validation and sampling": one validation of the pack of K (1000 items, raw and EMA) and one
#    setting's sampling (the grid's first, 1000 samples a cell) through the stacked call against the K members
#    alone, same modules, same run; and the CUDA graphs that fell back (none expected);
# 2) a pack of two short cells through `run` (graphs on): its validation and evaluation now go through the
#    stacked calls; summary.txt: each train.json's graphs flag and losses, each record's eval.pack, every graph
#    warning of the logs.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
M=$OUT/machine.txt
{ date -u +%FT%TZ; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c 'import torch, lightning; print("torch", torch.__version__, "lightning", lightning.__version__)'; } > $M 2>&1
timeout ${BENCH_S:-400} python3 -m ablate bench --model grid --no-eval --steps 30 --warmup 6 --json $OUT/bench.json \
  > $OUT/bench.log 2>&1; echo "bench rc=$? $(date -u +%T)" >> $M
sed 's/^  val_every: 1000/  val_every: 250/' grids/fashion-mnist.yaml > /tmp/fm.yaml
cp -r leaderboard/results/cache /tmp/cache
timeout ${PACK_S:-150} python3 -m ablate run /tmp/fm.yaml --variant 'rf/lognorm(*' --seeds 0 --max-steps 500 \
  --num-samples 200 --no-leaderboard --cache-dir /tmp/cache --pack 2 --results /tmp/c > $OUT/c.log 2>&1
echo "c (pack of 2, graphs) rc=$? $(date -u +%T)" >> $M
for f in /tmp/c/fashion-mnist/*/*/seed0/train.json; do echo "$f"; python3 -c "
import json, sys; d = json.load(open(sys.argv[1])); v = d.get('final_val') or {}
print({k: d.get(k) for k in ('cuda_graphs', 'compiled', 'pack', 'train_img_per_s', 'wall_s', 'best_step')},
      {k: round(x, 5) for k, x in v.items() if k in ('val/ema_loss', 'val/raw_loss', 'val/ema_x0_mse', 'val/raw_x0_mse')})" "$f"; done > $OUT/summary.txt 2>&1
for f in /tmp/c/fashion-mnist/*/*/seed0/records/*.json; do
  python3 -c "import json,sys; r=json.load(open(sys.argv[1])); m=r['metrics']; e=r['eval']; print(r['variant'], r['steps'], r['cfg'], r['weights'], e.get('pack'), round(e['sample_s'], 2), round(e['wall_s'], 2), {k: round(m[k], 4) for k in ('fd_effnet','fd_probe') if k in m})" "$f"; done >> $OUT/summary.txt 2>&1
grep -h -i "cuda graph\|cudagraph\|Traceback\|Error\|pack" $OUT/*.log | sort | uniq -c | head -40 >> $OUT/summary.txt
cat $M $OUT/summary.txt; sed -n '/a pack.s validation/,/fell back/p' $OUT/bench.log
