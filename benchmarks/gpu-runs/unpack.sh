#!/bin/bash
# Unpack a device call's results.tgz (argument; from chunk.sh in this folder) into
# leaderboard/results/, keeping only finished cells (done.json) of every grid in it: a cell cut by a call's
# deadline has no checkpoint here and starts again in the next cold call.
set -eu
tar xzf "$1" -C leaderboard/
cd leaderboard/results
for d in */*/*/seed*; do [ -f "$d/done.json" ] || rm -rf "$d"; done
find . -type d -empty -delete
for g in */; do [ "$g" = cache/ ] || echo "${g%/}: $(find "$g" -name done.json | wc -l) finished cells"; done
