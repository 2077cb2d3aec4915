#!/bin/bash
# One device call (~9 minutes): which CUDA default trains a grid faster with CUDA graphs on, a plain `run` (packs of
# pack_size's k, stacked evaluation) or `--pack 1` (lone cells, one process)? The same 8 variants of the protocol grid,
# seed 0, 1200 steps, 200 samples a setting, back to back in one call (ONLY=default or lone: that one alone); summary.txt has each command's wall time and
# each cell's train.json (pack, graphs, img/s, wall). Run from the repository root with .whl carried.
set -u
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
W=/tmp/dvl; rm -rf $W; mkdir -p $W; cp -r leaderboard/results/cache $W/cache
V=(--variant 'rf/lognorm(*' --variant 'rf/mode(1.29)' --variant 'rf/mode(1.75)')
A="--seeds 0 --max-steps ${STEPS:-1200} --num-samples 200 --no-leaderboard --cache-dir $W/cache"
{ date -u +%FT%TZ; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; } > $OUT/summary.txt
for cfg in default:"" lone:"--pack 1"; do
  tag=${cfg%%:*}; extra=${cfg#*:}; t0=$SECONDS
  [[ -n "${ONLY:-}" && "$tag" != "$ONLY" ]] && continue
  timeout ${RUN_S:-250} python3 -m ablate run grids/fashion-mnist.yaml "${V[@]}" $A $extra --results $W/$tag > $OUT/$tag.log 2>&1
  rc=$?; echo "$tag ($extra) rc=$rc wall_s=$((SECONDS - t0))" >> $OUT/summary.txt
  for f in $W/$tag/fashion-mnist/*/*/seed0/train.json; do python3 -c "
import json, sys; d = json.load(open(sys.argv[1]))
print(' ', d.get('variant'), {k: d.get(k) for k in ('pack', 'cuda_graphs', 'train_img_per_s', 'wall_s', 'train_s')})" "$f"; done >> $OUT/summary.txt 2>&1
  echo "  records: $(ls $W/$tag/fashion-mnist/*/*/seed0/records/*.json 2>/dev/null | wc -l)" >> $OUT/summary.txt
done
cat $OUT/summary.txt
