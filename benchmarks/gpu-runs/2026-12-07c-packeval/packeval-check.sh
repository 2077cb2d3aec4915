#!/bin/bash
# One device call (~10 minutes): a pack's validation and sampling through the stacked call on the GPU (issue 25).
# Run from the repository root with .whl carried; logs under $OUT.
# 1) rows.json: a pack of run's K for the protocol model: one validation (1000 items, raw and EMA) and one
#    setting's sampling (the grid's first, 1000 samples a cell) through the stacked call against the K members
#    alone, same modules, same run (ablate/engine/pack_eval_bench.py; the rows `bench` prints);
# 2) a pack of two short cells through `run` (graphs on): its validation and evaluation go through the stacked
#    calls; summary.txt: each train.json's graphs flag and losses, each record's eval.pack and times, every graph
#    warning of the logs;
# 3) ablate bench --model grid --no-eval: the training and packing tables, the packing table followed by "a
#    pack's validation and sampling" (the same rows as 1, measured again in the bench's own run), and the CUDA
#    graphs that fell back (none expected). Cut by its timeout if the call runs long: 1 and 2 come first.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
M=$OUT/machine.txt
{ date -u +%FT%TZ; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c 'import torch, lightning; print("torch", torch.__version__, "lightning", lightning.__version__)'; } > $M 2>&1
timeout ${ROWS_S:-180} python3 -c "
import json, sys, torch
from ablate.commands.bench import grid_channels
from ablate.config.grid import load_grid
from ablate.engine import benchmark as B
from ablate.engine.pack_eval_bench import packed_sampling_times, packed_validation_times
from ablate.engine.train import network_config
from ablate.runs.pack_size import size_for
grid = load_grid('fashion-mnist'); info = B.synthetic_info(grid, grid_channels(grid)); cuda = torch.device('cuda')
torch.set_float32_matmul_precision('high')
k = size_for(cuda, 3 * network_config(grid.model, info).gflops_per_image() * grid.train.batch_size)
out = {'validation': packed_validation_times(grid, info, cuda, k)}; print(out, flush=True)
out['sampling'] = packed_sampling_times(grid, info, cuda, k); print(out['sampling'], flush=True)
json.dump(out, open(sys.argv[1], 'w'), indent=1)" $OUT/rows.json > $OUT/rows.log 2>&1; echo "rows rc=$? $(date -u +%T)" >> $M
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
grep -h -i "cuda graph\|cudagraph\|Traceback\|Error\|as one pack" $OUT/c.log $OUT/rows.log | sort | uniq -c | head -40 >> $OUT/summary.txt
timeout ${BENCH_S:-240} python3 -m ablate bench --model grid --no-eval --steps 30 --warmup 6 --json $OUT/bench.json \
  > $OUT/bench.log 2>&1; echo "bench rc=$? $(date -u +%T)" >> $M
cat $M $OUT/rows.log $OUT/summary.txt; sed -n '/a pack.s validation/,/fell back/p' $OUT/bench.log
