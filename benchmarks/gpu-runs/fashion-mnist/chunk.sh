#!/bin/bash
# One device call of the issue-12 Fashion-MNIST grid (nvidia-h200-x2, run from the repository root with
# the wheels of .whl carried: optuna and its needs). The grid's results live in leaderboard/results/ (committed without
# checkpoints): what earlier calls finished travels with the working tree and is skipped, the queue
# (optuna.sqlite3 there) re-queues what a call's deadline interrupted. Four workers per GPU; the run
# gets a SIGTERM at DEADLINE seconds into the call so that finished cells always come back. Calls made
# back to back (within the 30 s a machine stays warm) find /tmp/results again: the cut cells resume from
# their checkpoints, ahead of new ones. After each call: unpack.sh <files_at>/results.tgz.
set -u
DEADLINE=${DEADLINE:-570}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
R=/tmp/results   # kept on a warm machine between calls: a cell cut by the deadline resumes from its checkpoint
[ -d $R/fashion-mnist ] || { mkdir -p $R; cp -r leaderboard/results/. $R/ 2>/dev/null; }
{ date -u +%FT%TZ; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; lscpu | grep -E "Model name|^CPU\(s\)"; \
  python3 -c 'import torch, lightning; print("torch", torch.__version__, "lightning", lightning.__version__)'; } > $OUT/machine.txt 2>&1
nvidia-smi dmon -s u -d 15 > $OUT/dmon.log 2>&1 &
DMON=$!
timeout -k 15 $((DEADLINE - SECONDS)) python3 -m ablate run grids/fashion-mnist.yaml --results $R --cache-dir $R/cache \
  --workers 8 --workers-per-gpu 4 --no-leaderboard 2>&1 | while IFS= read -r line; do printf '%s %s\n' "$(date -u +%T)" "$line"; done > $OUT/run.log
kill $DMON 2>/dev/null
# what is committed (leaderboard/results/README.md): no checkpoints or TensorBoard files; sample sheets of
# seed 0 at 5 and 50 steps (cfg 5, EMA) only; unpack into leaderboard/
rm -rf /tmp/pack && mkdir -p /tmp/pack && tar cf - --exclude='*.ckpt' --exclude='tb' -C /tmp results | tar xf - -C /tmp/pack
find /tmp/pack -name '*.png' ! \( -path '*/seed0/*' \( -name '50steps-cfg5.0-own-ema.png' -o -name '5steps-cfg5.0-own-ema.png' \) \) -delete
tar czf $OUT/results.tgz -C /tmp/pack results
tail -n 30 $OUT/run.log
ls -la $OUT; echo "call took ${SECONDS} s"
