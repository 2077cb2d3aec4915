#!/bin/bash
# One device call of the issue-13 scaling study or the issue-14 search on Fashion-MNIST (nvidia-h200-x2, run
# from the repository root with the wheels of .whl carried): `bash benchmarks/gpu-runs/studies/chunk.sh scaling`
# or `... search`. As benchmarks/gpu-runs/fashion-mnist/chunk.sh: results in /tmp/results (seeded from
# leaderboard/results, kept between calls made back to back while the machine is warm, so cut cells resume),
# the probe of leaderboard/results/cache (the one that scored the fashion-mnist grid), a SIGTERM at DEADLINE
# seconds, then the finished work packed for `benchmarks/gpu-runs/fashion-mnist/unpack.sh`.
#   scaling: 8 `ablate scale --shard k/8` processes (4 per GPU, 4 CPU threads each) train the isoFLOP and
#            quality cells; once all are done, one `ablate scale` fits, trains the extrapolation cells, reports.
#   search:  `ablate search --workers 4` (a round of 4 trials at a time, 2 per GPU), then its report.
set -u
STUDY=${1:?scaling or search}
DEADLINE=${DEADLINE:-570}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
R=/tmp/results
[ -d $R/cache ] || { mkdir -p $R; cp -r leaderboard/results/. $R/ 2>/dev/null; }
{ date -u +%FT%TZ; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; } > $OUT/machine.txt 2>&1
nvidia-smi dmon -s u -d 15 > $OUT/dmon.log 2>&1 &
DMON=$!
stamp() { while IFS= read -r line; do printf '%s %s\n' "$(date -u +%T)" "$line"; done; }
left() { echo $((DEADLINE - SECONDS)); }
if [ "$STUDY" = scaling ]; then
  F=grids/scaling-fashion-mnist.yaml
  for k in 1 2 3 4 5 6 7 8; do
    CUDA_VISIBLE_DEVICES=$(( (k - 1) % 2 )) OMP_NUM_THREADS=4 timeout -k 15 $(left) python3 -m ablate scale $F \
      --results $R --cache-dir $R/cache --out $R/reports --shard $k/8 2>&1 | stamp > $OUT/shard$k.log &
  done
  wait
  if grep -q "grids done" $OUT/shard*.log && [ "$(grep -l "grids done" $OUT/shard*.log | wc -l)" = 8 ] && [ $(left) -gt 60 ]; then
    timeout -k 15 $(left) python3 -m ablate scale $F --results $R --cache-dir $R/cache --out $R/reports 2>&1 | stamp > $OUT/report.log
  fi
else
  timeout -k 15 $(left) python3 -m ablate search grids/search-fashion-mnist.yaml --results $R --cache-dir $R/cache \
    --out $R/reports --workers 4 2>&1 | stamp > $OUT/search.log
fi
kill $DMON 2>/dev/null
rm -rf /tmp/pack && mkdir -p /tmp/pack && tar cf - --exclude='*.ckpt' --exclude='tb' --exclude='results/fashion-mnist' -C /tmp results | tar xf - -C /tmp/pack
find /tmp/pack -name '*.png' -path '*/samples/*' -delete
tar czf $OUT/results.tgz -C /tmp/pack results
tail -n 20 $OUT/*.log | tail -n 60
ls -la $OUT; echo "call took ${SECONDS} s"
