#!/bin/bash
# One device call: issue 25's "whole plain run of at least 24 cells", scaled down to fit a call. The protocol grid's
# 24 variants, seed 0, as a newcomer runs it (`ablate run grids/fashion-mnist.yaml`, the leaderboard printed at the
# end) with two scale-downs, both a fifth of the protocol: 1,200 steps a cell (validations at 500, 1000, 1200) and
# 200 samples a setting (12 settings). EXTRA='--pack 1' runs the same cells lone, one process. The probe comes from
# leaderboard/results/cache (a fresh machine would train it first). summary.txt: the wall time, and each cell's
# train.json (pack, graphs, img/s, wall). Run from the repository root with .whl carried.
set -u
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
TAG=${TAG:-default}; W=/tmp/whole; mkdir -p $W; rm -rf $W/$TAG; [ -d $W/cache ] || cp -r leaderboard/results/cache $W/cache
{ date -u +%FT%TZ; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; lscpu | grep -E "Model name|^CPU\(s\)"; } > $OUT/summary.txt
nvidia-smi dmon -s u -d 5 > $OUT/dmon-$TAG.log 2>&1 &
DMON=$!
t0=$(date +%s.%N)
timeout ${RUN_S:-520} python3 -m ablate run grids/fashion-mnist.yaml --seeds 0 --max-steps ${STEPS:-1200} \
  --num-samples ${SAMPLES:-200} --cache-dir $W/cache --results $W/$TAG ${EXTRA:-} > $OUT/run-$TAG.log 2>&1
rc=$?; t1=$(date +%s.%N)
kill $DMON
echo "$TAG (${EXTRA:-no flags}) rc=$rc wall_s=$(python3 -c "print(round($t1 - $t0, 1))")" >> $OUT/summary.txt
python3 - "$W/$TAG" >> $OUT/summary.txt 2>&1 <<'PY'
import json, sys, pathlib
rows = sorted(pathlib.Path(sys.argv[1]).glob("fashion-mnist/*/*/seed0/train.json"))
for f in rows:
    d = json.loads(f.read_text())
    print(" ", f.parent.parent.name, {k: d.get(k) for k in ("pack", "cuda_graphs", "train_img_per_s", "wall_s", "total_wall_s", "best_step")})
print("  cells with train.json:", len(rows), " records:", len(list(pathlib.Path(sys.argv[1]).glob("fashion-mnist/*/*/seed0/records/*.json"))))
PY
cat $OUT/summary.txt
