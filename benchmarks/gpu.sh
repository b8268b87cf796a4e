#!/usr/bin/env bash
# The GPU check (issue 22): the CUDA-only tests, one representative run per task at `full` scale,
# the attention kernel benchmark at long lengths, and translation on a real corpus under a
# wall-clock budget -- on one device, results in one folder. Run it with DEVICE=cpu first on the
# same checkout, so that only the hardware differs between the two results files.
#
#   benchmarks/gpu.sh                          # DEVICE=cuda, results in benchmarks/out/<device>/
#   DEVICE=cpu OUT_DIR=/tmp/cpu benchmarks/gpu.sh
#   RUN_MINUTES=0.3 MT_MINUTES=1 EPOCHS=2 benchmarks/gpu.sh
#   SKIP_TESTS=1 SCALE=smoke RUNS="load:gru" benchmarks/gpu.sh       # a quick try of the script itself
#
# Each training run is bounded by EPOCHS (default 2) and RUN_MINUTES of wall clock (the runs'
# train.max_minutes; default 0.3), so the figures are throughput and memory, not converged
# metrics; the real-corpus translation runs get MT_MINUTES each (default 1) and are evaluated
# (greedy and beam BLEU, chrF). Every step is time-boxed (STEP_TIMEOUT, seconds) and the summary
# is rewritten after each, so a step that fails or runs out of time leaves the others' figures.
# Needs attnbench on PATH; the translation step needs data/raw/multi30k-en-fr (or the mirror).
# Writes: env.json, tests.log, runs.csv (one row per run), gpu_samples.csv (nvidia-smi, CUDA only),
# attention.csv (+ .json), logs.tar.gz (every step's log), summary.json (runs.csv + env: what the
# report reads once copied to benchmarks/results/<name>/).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEVICE="${DEVICE:-cuda}"
OUT_DIR="${OUT_DIR:-$ROOT/benchmarks/out/$DEVICE}"
SCALE="${SCALE:-full}"
EPOCHS="${EPOCHS:-2}"
RUN_MINUTES="${RUN_MINUTES:-0.3}"
MT_MINUTES="${MT_MINUTES:-1}"
MT_DATASET="${MT_DATASET:-multi30k-en-fr}"
STEP_TIMEOUT="${STEP_TIMEOUT:-240}"
PREPARE_TIMEOUT="${PREPARE_TIMEOUT:-600}"   # full-scale ships data took over 150 s on the H200 machine's CPU
BENCH_LENGTHS="${BENCH_LENGTHS:-}"   # default: 1024..16384 on CUDA, 256..1024 on CPU
BENCH_TIMEOUT="${BENCH_TIMEOUT:-150}"
THREADS="${THREADS:-1}"
DEADLINE="${DEADLINE:-}"             # seconds after the start: later steps are skipped, the benchmark shortened
# task, run: one representative run per task (an attention run of the task's own paper)
RUNS="${RUNS:-translation:rnn-general intent:transformer documents:han load:feature-attention captioning:soft-attend glimpse:ram-cluttered ships:task-partition recsys:afm}"

mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
LOGS="$OUT_DIR/logs"; mkdir -p "$LOGS"
cd "$ROOT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
[[ "$DEVICE" == cpu ]] && export CUDA_VISIBLE_DEVICES=""
T_START=$SECONDS

log() { printf '[gpu.sh %s +%ss] %s\n' "$(date -u +%H:%M:%S)" "$((SECONDS - T_START))" "$*" | tee -a "$LOGS/gpu.sh.log" >&2; }

sampler_start() {  # nvidia-smi every 200 ms, labelled with the run; no-op without nvidia-smi or on CPU
    SAMPLER=""
    if [[ "$DEVICE" == cuda ]] && command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader,nounits -lms 200 \
            | sed -u "s#^#$1,#" >> "$OUT_DIR/gpu_samples.csv" &
        SAMPLER=$!
    fi
}
sampler_stop() { [[ -n "${SAMPLER:-}" ]] && { kill "$SAMPLER" 2>/dev/null; pkill -f "nvidia-smi --query-gpu" 2>/dev/null; wait "$SAMPLER" 2>/dev/null; }; SAMPLER=""; }

summarise() { python3 "$ROOT/benchmarks/gpu_summary.py" "$OUT_DIR" "$DEVICE" "$SCALE" >> "$LOGS/summary.log" 2>&1 || log "summary failed (see logs/summary.log)"; }

# 1. where it runs
python3 - "$OUT_DIR/env.json" "$DEVICE" <<'PY' || log "env.json failed"
import json, os, platform, sys, torch
dev = sys.argv[2]
info = {"device": dev, "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
        "cpu_count": os.cpu_count(), "machine": platform.machine()}
if dev == "cuda" and torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    info.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1), multiprocessors=p.multi_processor_count)
json.dump(info, open(sys.argv[1], "w"), indent=1)
print(info)
PY
: > "$LOGS/runs.jsonl"
[[ "$DEVICE" == cuda ]] && echo "run,timestamp,utilization_gpu_pct,memory_used_mib" > "$OUT_DIR/gpu_samples.csv"

# 2. full-scale data for every representative run, prepared in parallel in the background (CPU work)
for spec in $RUNS; do
    task=${spec%%:*}
    ( timeout "$PREPARE_TIMEOUT" attnbench --scale "$SCALE" --threads 1 prepare --task "$task" --dataset synthetic \
        > "$LOGS/$task.prepare.log" 2>&1 || echo "prepare $task failed: exit $?" >> "$LOGS/gpu.sh.log" ) &
done
( timeout "$PREPARE_TIMEOUT" attnbench --threads 1 prepare --task translation --dataset "$MT_DATASET" \
    > "$LOGS/translation-$MT_DATASET.prepare.log" 2>&1 || echo "prepare $MT_DATASET failed" >> "$LOGS/gpu.sh.log" ) &
# 3. the CUDA-only tests (they skip on CPU), and the decoding/device tests as a whole, while the data is prepared
if [[ "${SKIP_TESTS:-0}" == 1 ]]; then echo "skipped (SKIP_TESTS=1)" > "$OUT_DIR/tests.log"; else
log "tests"
timeout "$STEP_TIMEOUT" python3 -m pytest -q -p no:cacheprovider -rs tests/test_device_data.py tests/test_decoding.py \
    > "$OUT_DIR/tests.log" 2>&1; log "tests: exit $? ($(tail -1 "$OUT_DIR/tests.log"))"
fi


left() { [[ -z "$DEADLINE" ]] && echo 100000 || echo $((DEADLINE - (SECONDS - T_START))); }

train_one() {  # task dataset run scale minutes epochs-key evaluate(0|1)
    if (( $(left) < 60 )); then log "$1/$2/$3: skipped, less than 60 s left before DEADLINE"; return; fi
    local task=$1 ds=$2 run=$3 scale=$4 minutes=$5 epochs_key=$6 evaluate=$7 label="$1/$2/$3"
    local sets=(--set "$epochs_key=$EPOCHS" --set "tasks.$task.train.max_minutes=$minutes")
    [[ "$ds" != synthetic ]] && sets=(--set "tasks.$task.dataset_options.$ds.train.max_minutes=$minutes" --set "$epochs_key=100")
    local t0=$SECONDS status=ok
    sampler_start "$label"
    timeout "$STEP_TIMEOUT" attnbench --scale "$scale" --device "$DEVICE" --threads "$THREADS" "${sets[@]}" \
        train --task "$task" --dataset "$ds" --run "$run" --seed 0 > "$LOGS/${label//\//_}.train.log" 2>&1 || status="train failed ($?)"
    sampler_stop
    local train_wall=$((SECONDS - t0))
    if [[ "$status" == ok && "$evaluate" == 1 ]]; then
        timeout "$STEP_TIMEOUT" attnbench --scale "$scale" --device "$DEVICE" --threads "$THREADS" "${sets[@]}" \
            evaluate --task "$task" --dataset "$ds" --run "$run" --seed 0 > "$LOGS/${label//\//_}.eval.log" 2>&1 \
            || status="evaluate failed ($?)"
    fi
    printf '{"task": "%s", "dataset": "%s", "run": "%s", "scale": "%s", "budget_minutes": %s, "status": "%s", "process_wall_s": %s, "evaluated": %s}\n' \
        "$task" "$ds" "$run" "$scale" "$minutes" "$status" "$train_wall" "$evaluate" >> "$LOGS/runs.jsonl"
    log "$label: $status, ${train_wall}s"
    summarise
}

wait
log "prepared"

# 4. one representative run per task, full scale, bounded (throughput and memory; not evaluated)
for spec in $RUNS; do
    train_one "${spec%%:*}" synthetic "${spec#*:}" "$SCALE" "$RUN_MINUTES" "tasks.${spec%%:*}.scales.$SCALE.epochs" 0
done

# 5. translation on the real corpus, the same wall-clock budget for the RNN and the Transformer, evaluated
for run in rnn-general transformer; do
    train_one translation "$MT_DATASET" "$run" default "$MT_MINUTES" "tasks.translation.dataset_options.$MT_DATASET.scales.default.epochs" 1
done

# 6. the attention kernels at long lengths (what fits; a mechanism that runs out of memory is recorded as such)
if [[ -z "$BENCH_LENGTHS" ]]; then
    if [[ "$DEVICE" == cuda ]]; then BENCH_LENGTHS=1024,2048,4096,8192,16384; else BENCH_LENGTHS=256,512,1024; fi
fi
log "bench-attention at $BENCH_LENGTHS"
BENCH_TIMEOUT=$(( $(left) - 20 < BENCH_TIMEOUT ? $(left) - 20 : BENCH_TIMEOUT ))
(( BENCH_TIMEOUT > 10 )) && timeout "$BENCH_TIMEOUT" attnbench --device "$DEVICE" --threads "$THREADS" bench-attention --lengths "$BENCH_LENGTHS" \
    --out "$OUT_DIR/attention.csv" > "$LOGS/bench-attention.log" 2>&1; log "bench-attention: exit $?"

summarise
log "done in $((SECONDS - T_START))s: $OUT_DIR"
tar -czf "$OUT_DIR/logs.tar.gz" -C "$OUT_DIR" logs && rm -rf "$LOGS"
