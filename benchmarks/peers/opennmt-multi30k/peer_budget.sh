#!/bin/bash
# usage: peer_budget.sh [MINUTES] [NAME]
# OpenNMT-py's general-attention model (rnn_attn.yaml) trained for MINUTES wall-clock minutes (default 25) on
# THREADS threads (default 1), saving a checkpoint every 200 updates; the last checkpoint saved within the budget
# is scored with score.sh. Everything goes to $PEER/run/NAME/ (default budget-<MINUTES>m). Run it beside
# attnbench_budget.sh, started together, for the side by side of docs/peers.md.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
. "$HERE/env.sh"
MINUTES=${1:-25}
OUT="$PEER/run/${2:-budget-${MINUTES}m}"
export OMP_NUM_THREADS=${THREADS:-1} MKL_NUM_THREADS=${THREADS:-1}
mkdir -p "$OUT"
sed -e "s#^save_model: .*#save_model: $OUT/model#" -e 's/^train_steps: .*/train_steps: 1000000/' \
    -e 's/^valid_steps: .*/valid_steps: 1000000/' -e 's/^save_checkpoint_steps: .*/save_checkpoint_steps: 200/' \
    -e 's/^keep_checkpoint: .*/keep_checkpoint: 2/' "$PEER/rnn_attn.yaml" > "$OUT/config.yaml"
date +%s > "$OUT/start"
timeout "${MINUTES}m" onmt_train -config "$OUT/config.yaml" > "$OUT/train.log" 2>&1 || true
date +%s > "$OUT/end"
last=$(ls -t "$OUT"/model_step_*.pt | head -1)
echo "scoring $last" > "$OUT/score.txt"
"$HERE/score.sh" "$last" "$OUT/test" >> "$OUT/score.txt" 2>&1
echo "$OUT/score.txt"
