#!/usr/bin/env bash
# Soak run (issue 11): the smoke pipeline N times in a row, each from a clean copy of the checkout,
# then the default-scale translation grid M times, also from clean; the metrics of every repeat
# must equal the first one's. Too long for CI (the default translation grid takes tens of minutes
# on a laptop); a maintainer runs it before a release:
#
#   benchmarks/soak.sh                  # 3 smoke pipelines, then 2 default translation grids
#   benchmarks/soak.sh --smoke-only     # only the smoke part
#   SMOKE_RUNS=2 DEFAULT_RUNS=2 CORES=4 WORK=/tmp/soak benchmarks/soak.sh
#   SMOKE_TARGETS=data/summary/translation.csv benchmarks/soak.sh --smoke-only   # one task's smoke grid
#
# Needs attnbench, snakemake on PATH (the project's .venv/bin). CPU only: CUDA is hidden so that
# the comparison is of CPU runs. Metrics are compared after dropping timing fields (wall time,
# throughput, memory), which legitimately differ; everything else must be identical.
# Exit status 0: every repeat matched; 1: a difference (printed); other: a pipeline failed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SMOKE_RUNS="${SMOKE_RUNS:-3}"
DEFAULT_RUNS="${DEFAULT_RUNS:-2}"
CORES="${CORES:-2}"
SMOKE_TARGETS="${SMOKE_TARGETS:-}"  # default: the whole smoke pipeline up to reports/index.html
WORK="${WORK:-$(mktemp -d -t attnbench-soak.XXXXXX)}"
[[ "${1:-}" == "--smoke-only" ]] && DEFAULT_RUNS=0
export CUDA_VISIBLE_DEVICES="" OMP_NUM_THREADS=1 PYTHONHASHSEED=0

log() { printf '[soak %s] %s\n' "$(date -u +%H:%M:%S)" "$*" | tee -a "$WORK/soak.log" >&2; }

fresh_copy() {  # a checkout's pipeline files, no outputs
    local dest="$1"
    rm -rf "$dest" && mkdir -p "$dest"
    for f in Snakefile dvc.yaml params.yaml workflow src; do
        cp -r "$ROOT/$f" "$dest/"
    done
    find "$dest" -name __pycache__ -prune -exec rm -rf {} +
}

metrics_digest() {  # every metrics.json of a tree, timing fields dropped, as one canonical JSON
    python3 - "$1" <<'PY'
import json, re, sys
from pathlib import Path
root = Path(sys.argv[1])
TIMING = re.compile(r"seconds|per_s|wall|rss|time|throughput|latency")
def clean(x):
    if isinstance(x, dict):
        return {k: clean(v) for k, v in x.items() if not TIMING.search(k)}
    if isinstance(x, list):
        return [clean(v) for v in x]
    return x
out = {str(p.relative_to(root)): clean(json.loads(p.read_text())) for p in sorted(root.glob("data/results/**/metrics.json"))}
for p in sorted(root.glob("data/summary/*.json")):
    out[str(p.relative_to(root))] = json.loads(p.read_text())
print(json.dumps(out, sort_keys=True, indent=1))
PY
}

run_pipeline() {  # name, scale, targets... (targets before the options that take several values)
    local name="$1" scale="$2"; shift 2
    local dir="$WORK/$name"
    fresh_copy "$dir"
    log "$name: start (load: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || uptime))"
    local t0=$SECONDS
    if ! (cd "$dir" && PYTHONPATH="$dir/src" snakemake "$@" --cores "$CORES" --resources gpu=1 --config scale="$scale" > "$WORK/$name.out" 2>&1); then
        log "$name: FAILED after $((SECONDS - t0))s, see $WORK/$name.out"
        exit 2
    fi
    metrics_digest "$dir" > "$WORK/$name.metrics.json"
    local n; n=$(grep -c '"data/results/' "$WORK/$name.metrics.json" || true)
    log "$name: done in $((SECONDS - t0))s, $n metrics files (load: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || uptime))"
}

compare() {  # reference name, other name
    if cmp -s "$WORK/$1.metrics.json" "$WORK/$2.metrics.json"; then
        log "$2: metrics identical to $1"
    else
        log "$2: METRICS DIFFER from $1:"
        diff "$WORK/$1.metrics.json" "$WORK/$2.metrics.json" | head -40 | tee -a "$WORK/soak.log" >&2
        STATUS=1
    fi
}

STATUS=0
mkdir -p "$WORK"
log "work folder $WORK; smoke x$SMOKE_RUNS (${SMOKE_TARGETS:-whole pipeline}), default translation x$DEFAULT_RUNS, $CORES cores"
for i in $(seq 1 "$SMOKE_RUNS"); do
    # shellcheck disable=SC2086  # SMOKE_TARGETS is a space-separated list
    run_pipeline "smoke-$i" smoke $SMOKE_TARGETS
    if [[ $i -gt 1 ]]; then compare smoke-1 "smoke-$i"; fi
done
for i in $(seq 1 "$DEFAULT_RUNS"); do
    run_pipeline "default-translation-$i" default data/summary/translation.csv
    if [[ $i -gt 1 ]]; then compare default-translation-1 "default-translation-$i"; fi
done
if [[ $STATUS -eq 0 ]]; then log "PASS: every repeat gave identical metrics"; else log "FAIL: metrics differ (above)"; fi
exit $STATUS
