# Sourced by the recipe's scripts (and by you: `. benchmarks/peers/opennmt-multi30k/env.sh`).
# Sets where everything lives, relative to this folder, and renders the OpenNMT-py configs there.
#   TGT   target language: fr (default; the side by side in docs/peers.md) or de (RESULTS.md)
#   DATA  the raw Multi30k files: the registry's copy, `attnbench data fetch multi30k-en-$TGT`
#   PEER  the working folder: venv, tokenised data, vocabularies, checkpoints, outputs (git-ignored)
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../../.." && pwd)"
export TGT="${TGT:-fr}"
export DATA="${DATA:-$REPO/data/raw/multi30k-en-$TGT}"
export PEER="${PEER:-$HERE/work/en-$TGT}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-2}"
mkdir -p "$PEER/data" "$PEER/run/attn" "$PEER/run/noattn" "$PEER/run/measure_noattn"
# the configs name $PEER and $TGT: OpenNMT-py reads no variables, so write resolved copies into $PEER
# (again only when this folder's copy is newer: chain.sh edits $PEER/rnn_noattn.yaml's train_steps)
for f in vocab.yaml rnn_attn.yaml rnn_noattn.yaml; do
  if [ "$HERE/$f" -nt "$PEER/$f" ]; then sed -e "s#\$PEER#$PEER#g" -e "s#\$TGT#$TGT#g" "$HERE/$f" > "$PEER/$f"; fi
done
if [ -f "$PEER/venv/bin/activate" ]; then . "$PEER/venv/bin/activate"; fi
