#!/bin/bash
# NEXT.md's call 1 (~8 minutes, every part's timeout inside 540 s): 1) the 8-cell plain run of call 3 again with
# packs evaluating in turn (EVAL_MODE), against call 3's 230 s (packs, stacked evaluation) and 216 s (--pack 1) on
# another H100, so run the lone one too if time allows (LONE=1); 2) benchmarks/cell_step_profile.py: where a cell's
# step loses half the plain graphed step's rate. Everything is written straight under $OUT (at most 8 files), so a
# call cut by its limit still brings back what was done.
set -u
ONLY=default RUN_S=${RUN_S:-230} bash benchmarks/gpu-runs/2026-12-07e/default-vs-lone.sh > /dev/null 2>&1
if [[ -n "${LONE:-}" ]]; then
  ONLY=lone RUN_S=${RUN_S:-230} OUT=$OUT/lone bash benchmarks/gpu-runs/2026-12-07e/default-vs-lone.sh > /dev/null 2>&1
fi
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
timeout ${PROFILE_S:-240} python3 benchmarks/cell_step_profile.py --steps 300 --warmup 60 --cprofile 200 \
  --json $OUT/profile.json > $OUT/profile.txt 2>&1
echo "profile rc=$?" >> $OUT/summary.txt
cat $OUT/summary.txt; sed -n '/^| what/,/^$/p' $OUT/profile.txt
