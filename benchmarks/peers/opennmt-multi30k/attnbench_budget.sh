#!/bin/bash
# usage: attnbench_budget.sh RUN [MINUTES] [KEY=VALUE ...]
# attnbench's translation run RUN on multi30k-en-fr with a wall-clock training budget of MINUTES (default 25) on
# THREADS threads (default 1), then evaluated (greedy and beam 5 test BLEU, chrF, tokens/s in train_info.json).
# The remaining arguments are --set overrides, e.g. a run defined on the command line:
#   attnbench_budget.sh rnn-general-lstm 25 'tasks.translation.runs.rnn-general-lstm={model: rnn, attention: general, model_options: {cell: lstm}}'
# Run from a folder holding params.yaml (the repository root, or a copy): results go to its data/results/.
set -euo pipefail
RUN=$1; MINUTES=${2:-25}; shift 2 || shift $#
ATTNBENCH=${ATTNBENCH:-attnbench}
SETS=(--set "tasks.translation.dataset_options.multi30k-en-fr.train.max_minutes=$MINUTES"
      --set "tasks.translation.dataset_options.multi30k-en-fr.scales.default.epochs=100")
for kv in "$@"; do SETS+=(--set "$kv"); done
STEP=(--task translation --dataset multi30k-en-fr --run "$RUN" --seed 0)
mkdir -p logs/budget
$ATTNBENCH --threads "${THREADS:-1}" "${SETS[@]}" prepare --task translation --dataset multi30k-en-fr > "logs/budget/$RUN.prepare.log" 2>&1
$ATTNBENCH --threads "${THREADS:-1}" "${SETS[@]}" train "${STEP[@]}" > "logs/budget/$RUN.train.log" 2>&1
$ATTNBENCH --threads "${THREADS:-1}" "${SETS[@]}" evaluate "${STEP[@]}" > "logs/budget/$RUN.evaluate.log" 2>&1
echo "data/results/translation/multi30k-en-fr/$RUN/seed0/metrics.json"
