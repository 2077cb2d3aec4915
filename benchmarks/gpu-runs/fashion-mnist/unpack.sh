#!/bin/bash
# Unpack a chunk call's results.tgz (argument) into leaderboard/results/, keeping only finished cells
# (done.json): a cell cut by a call's deadline has no checkpoint here and starts again in the next cold call.
set -eu
tar xzf "$1" -C leaderboard/
cd leaderboard/results/fashion-mnist/fashion-mnist
for d in */seed*; do [ -f "$d/done.json" ] || rm -rf "$d"; done
find . -type d -empty -delete
echo "$(find . -name done.json | wc -l) finished cells in leaderboard/results/fashion-mnist"
