#!/bin/bash
# One device call (any nvidia-h200 kind, run from the repository root with the wheels of .whl carried:
# optuna and its needs) of long GPU jobs, as whole cells, for `unpack.sh <files_at>/results.tgz`
# afterwards. Each argument is a step, run in turn while the call has more than a minute left; a step
# of jobs joined by "+" runs them at once on all the GPUs (`chunk.sh grid+scaling+search`: the GPUs,
# time-sliced, stay busy while one job waits on its last cells). With G GPUs (nvidia-smi -L):
#   grid      grids/fashion-mnist.yaml with PER_GPU (default 4) workers per GPU on every GPU (how v1 ran; v2 runs `plain`)
#   scaling   issue 13: 4 G `ablate scale --shard k/4G` (4 per GPU, each training SCALE_WORKERS cells of a grid at
#             once, default 1), then each the extrapolation cells of the formulations already complete; once
#             all are done, a second round of shards trains the remaining extrapolation cells (shard<k>b.log),
#             then `ablate scale` fits and reports
#   plain     `ablate run $GRID $PLAIN_ARGS` with no worker or pack flags, as a newcomer runs it (issue 25: run
#             packs cells by itself), timed (plain.log ends with its wall time); e.g. GRID=grids/rescore-fashion-mnist.yaml
#   search    issue 14: `ablate search --workers 4G` (no more workers than a round's trials, dealt over
#             the GPUs; warm-started from the committed fashion-mnist grid), then its report
# Results live in /tmp/results, seeded from leaderboard/results (committed, without checkpoints) on a cold
# machine and kept between calls made back to back (within the 30 s a machine stays warm), so a cell cut by
# a call resumes from its checkpoint; the probe is leaderboard/results/cache's (the one that scored every
# GPU record). The job gets a SIGTERM at DEADLINE seconds (default 570) so that finished cells always come
# back. CLAIM_FOR=SECONDS (grid only): no new cell is started after that many seconds, for a session's
# last call, whose cut cells would be lost with the machine; SEARCH_TRIALS=N (search only): stop after N
# trials in all (`--trials N`), so a session's last call starts no round it cannot finish. What comes back: the call's
# logs, also in logs.tgz (a call returns at most 8 files; `tar xzf logs.tgz` into the call's folder); every grid's records and
# logs, no checkpoints or TensorBoard files, and of the sample sheets only seed 0's at 5 and 50 steps
# (cfg 5, EMA), as leaderboard/results/README.md says.
# The device takes a working tree of at most 64 MiB (.whl carried included, 23.6 MB): the tracked tree is ~65 MB, ~41 MB
# without leaderboard/archive/fashion-mnist-v1/results, leaderboard/results/fashion-mnist, search-fashion-mnist,
# reports and scaling-fashion-mnist.*: move those out of the tree for a call and back after (before unpack.sh); a
# plain run of v2's grid then gets the unfinished cells by name (unfinished.py, NEXT.md).
set -u
[ $# -gt 0 ] || { echo "usage: chunk.sh STEP [STEP...], a step: grid, scaling, search or jobs joined by +" >&2; exit 2; }
DEADLINE=${DEADLINE:-570}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
export ABLATE_CHECKPOINT_EVERY_S=${ABLATE_CHECKPOINT_EVERY_S:-60}  # a cell cut by the call loses at most a minute
T=${CHUNK_TMP:-/tmp}  # the machine's scratch (a test points it elsewhere)
R=$T/results
[ -d $R/cache ] || { mkdir -p $R; cp -r leaderboard/results/. $R/ 2>/dev/null; }
touch $T/call.stamp  # what changes after this is what the call brings back
{ date -u +%FT%TZ; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; lscpu | grep -E "Model name|^CPU\(s\)"; \
  python3 -c 'import torch, lightning; print("torch", torch.__version__, "lightning", lightning.__version__)'; } > $OUT/machine.txt 2>&1
nvidia-smi dmon -s u -d 15 > $OUT/dmon.log 2>&1 &
DMON=$!
stamp() { while IFS= read -r line; do printf '%s %s\n' "$(date -u +%T)" "$line"; done; }
left() { echo $((DEADLINE - SECONDS)); }
G=$(nvidia-smi -L | grep -c '^GPU')
S=$((4 * G))  # scaling shards
echo "$G GPUs" >> $OUT/chunk.log
grid() {
  timeout -k 15 $(left) python3 -m ablate run grids/fashion-mnist.yaml --results $R --cache-dir $R/cache \
    --workers $((G * ${PER_GPU:-4})) --workers-per-gpu ${PER_GPU:-4} --no-leaderboard \
    ${CLAIM_FOR:+--stop-claiming-after $CLAIM_FOR} 2>&1 | stamp > $OUT/run.log
}
plain() {
  local t0=$SECONDS
  timeout -k 15 $(left) python3 -m ablate run ${GRID:?plain needs GRID=grids/....yaml} --results $R --cache-dir $R/cache \
    ${PLAIN_ARGS:-} 2>&1 | stamp > $OUT/plain.log
  echo "plain run: exit ${PIPESTATUS[0]}, wall $((SECONDS - t0)) s" >> $OUT/plain.log
}
SCALING=grids/scaling-fashion-mnist.yaml
shards() {  # one round of the S shards, each training its grids with SCALE_WORKERS cells at once; logs shard<k><$1>.log
  local k W=${SCALE_WORKERS:-1}
  local TH=$(( $(nproc) / (S * W) )); [ $TH -ge 1 ] || TH=1
  for k in $(seq 1 $S); do
    CUDA_VISIBLE_DEVICES=$(( (k - 1) % G )) OMP_NUM_THREADS=$TH timeout -k 15 $(left) python3 -m ablate scale $SCALING \
      --results $R --cache-dir $R/cache --out $R/reports --shard $k/$S --workers-per-gpu $W 2>&1 | stamp > $OUT/shard$k$1.log &
  done
  wait
  [ "$(for k in $(seq 1 $S); do grep -l "grids done" $OUT/shard$k$1.log; done | wc -l)" = $S ] && [ $(left) -gt 60 ]
}
scaling() {  # the isoFLOP and quality cells and the extrapolation cells of complete formulations; a second round
  # the extrapolation cells of the formulations completed meanwhile (the shards' fits agree); the report
  shards "" && shards b && timeout -k 15 $(left) python3 -m ablate scale $SCALING \
    --results $R --cache-dir $R/cache --out $R/reports --workers-per-gpu ${SCALE_WORKERS:-1} 2>&1 | stamp > $OUT/report.log
}
search() {
  timeout -k 15 $(left) python3 -m ablate search grids/search-fashion-mnist.yaml --results $R --cache-dir $R/cache \
    --out $R/reports --workers $S ${SEARCH_TRIALS:+--trials $SEARCH_TRIALS} 2>&1 | stamp > $OUT/search.log
}
for STEP in "$@"; do
  [ $(left) -gt 60 ] || { echo "no time left for $STEP" >> $OUT/chunk.log; break; }
  echo "$(date -u +%T) $STEP: $(left) s left" >> $OUT/chunk.log
  PIDS=()
  for MODE in ${STEP//+/ }; do
    case $MODE in
    grid|plain|scaling|search) $MODE & PIDS+=($!) ;;
    *) echo "unknown job $MODE: grid, plain, scaling or search" >&2; kill $DMON; exit 2 ;;
    esac
  done
  wait "${PIDS[@]}"  # not the dmon
  echo "$(date -u +%T) $STEP ended: $(left) s left" >> $OUT/chunk.log
done
kill $DMON 2>/dev/null
rm -rf $T/pack && mkdir -p $T/pack/results
# only the grids this call changed: the device's copy of leaderboard/results may hold every published grid, and a
# call returns files of at most 16 MiB (2026-12-07: an 18 MB results.tgz of mostly unchanged grids did not come back)
# (never the cache: a run writes into it, and 2026-12-07g's results.tgz of 18 MB was mostly the probe's cache)
for d in $R/*/; do
  [ "$(basename "$d")" != cache ] && [ -n "$(find "$d" -type f -newer $T/call.stamp -print -quit)" ] || continue
  tar cf - --exclude='*.ckpt' --exclude='tb' -C $R "$(basename "$d")" | tar xf - -C $T/pack/results
done
find $T/pack -name '*.png' -path '*/samples/*' ! \( -path '*/seed0/*' \( -name '50steps-cfg5.0-own-ema.png' -o -name '5steps-cfg5.0-own-ema.png' \) \) -delete
tar czf $OUT/results.tgz -C $T/pack results
[ $(stat -c %s $OUT/results.tgz) -lt 16777216 ] || echo "results.tgz is over 16 MiB and will not come back: fetch its grids one by one" >> $OUT/chunk.log
(cd $OUT && tar czf logs.tgz *.log)  # a call returns at most 8 files: the shards' logs travel in one
tail -n 20 $OUT/*.log | tail -n 60
ls -la $OUT; echo "call took ${SECONDS} s"
