#!/usr/bin/env bash
# The main job on the embedded default, end to end on this machine's CPU.
# Creates or reuses .venv, then runs every part of LMGenDrive that exists so far (see README).
#   ./launch/quickstart.sh            # default preset (small)
#   PRESET=tiny ./launch/quickstart.sh  # seconds, for a smoke test
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh" ""
PRESET="${PRESET:-small}"
RUN_DIR="${RUN_DIR:-work_dirs/quickstart_${PRESET}}"
mkdir -p "$RUN_DIR"
export JAX_PLATFORMS="${JAX_PLATFORMS:-cpu}"

echo "== 1. tokenizer: byte-level BPE on the LangAuto instruction vocabulary"
if [ ! -f assets/tokenizer/tokenizer.json ]; then
  python -m data_pipelines.train_tokenizer --out assets/tokenizer
else
  echo "   reusing assets/tokenizer"
fi

echo "== 2. language model: the ${PRESET} LLM trained on the instruction-text corpus"
python launch/train.py --config="configs/llm_text.py:preset=${PRESET}" \
  --config.work_dir="$RUN_DIR/llm_text"

echo
echo "Done. Training curves: tensorboard --logdir $RUN_DIR"
echo "Still to come in this job (open issues): data collection with the expert in the embedded"
echo "simulator, the TFDS build, the three training stages, closed-loop evaluation, video"
echo "generation, and the HTML report."
