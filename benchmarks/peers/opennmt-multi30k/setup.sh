#!/bin/bash
# Creates the peer's own virtual environment in $PEER/venv (OpenNMT-py 3.5.1 with this project's torch).
# OpenNMT-py 3.5.1 pins torch<2.3, so it is installed without its dependencies, which follow by hand;
# spacy and fasttext-wheel are imported by onmt's transforms at start-up, though not used (RESULTS.md).
set -euo pipefail
. "$(dirname "$0")/env.sh"
python3 -m venv "$PEER/venv"
. "$PEER/venv/bin/activate"
pip install torch==2.13.0
pip install --no-deps OpenNMT-py==3.5.1
pip install configargparse pyyaml sacrebleu==2.6.0 sacremoses==0.2.0 six rapidfuzz pyahocorasick "pyonmttok>=1.37,<2" \
  "ctranslate2>=4,<5" tensorboard flask waitress numpy spacy
pip install --only-binary=:all: fasttext-wheel
