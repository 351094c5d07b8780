#!/usr/bin/env bash
# The main job on the embedded default, end to end on this machine's CPU:
#   collect a dataset with the expert -> build TFDS -> train the text LLM and stages 1-3
#   -> evaluate closed-loop (ours, the expert, two baselines) -> generate videos -> HTML report.
# Creates or reuses .venv. Every step resumes: re-running skips finished work.
#
#   ./launch/quickstart.sh                 # default: small preset, ~20 min on 2 CPU cores
#   PRESET=tiny ./launch/quickstart.sh     # minutes, a smoke run (the agent will not drive well)
#   STEPS_SCALE=4 RUN_DIR=work_dirs/quickstart_big ./launch/quickstart.sh   # the bigger run: 4x the steps, ~50 min
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh" ""
PRESET="${PRESET:-small}"
STEPS_SCALE="${STEPS_SCALE:-1}"
RUN="${RUN_DIR:-work_dirs/quickstart_${PRESET}}"
EVAL_ROUTES="${EVAL_ROUTES:-}"
mkdir -p "$RUN"
export JAX_PLATFORMS="${JAX_PLATFORMS:-cpu}"
export TF_CPP_MIN_LOG_LEVEL=3
# One persistent XLA compilation cache for every step: the eval processes, the generation job
# and reruns reuse what the first process compiled (the model's step, the simulator's step).
export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-$RUN/jax_compile_cache}"
START=$(date +%s)
stamp() { echo "[quickstart $(( $(date +%s) - START ))s] $*"; }

# Per preset: collection camera size, training steps (x STEPS_SCALE) of the text LLM, stage 1,
# the Q-Former alignment, stage 2 and stage 3, the Q-Former's cached frames (x STEPS_SCALE),
# eval route set.
case "$PRESET" in
  tiny)  CAMERA=64x64;   STEPS=(20 40 40 40 20);      QFORMER_FRAMES=32;   ROUTES="${EVAL_ROUTES:-tiny_2}" ;;
  small) CAMERA=64x64;   STEPS=(300 100 1500 80 20);  QFORMER_FRAMES=5000; ROUTES="${EVAL_ROUTES:-tiny_4}" ;;
  *) echo "PRESET must be tiny or small (paper runs on a pod: see README)"; exit 2 ;;
esac
scale() { echo $(( $1 * STEPS_SCALE )); }

stamp "1/8 tokenizer (byte-level BPE on the LangAuto instruction vocabulary)"
if [ ! -f assets/tokenizer/tokenizer.json ]; then
  python -m data_pipelines.train_tokenizer --out assets/tokenizer
fi

stamp "2/8 collect: the expert drives the ${PRESET} route sets, LMDrive format"
python -m data_pipelines.collect --config="configs/collect.py:preset=${PRESET}" \
  --config.out_dir="$RUN/data/raw"

stamp "3/8 build TFDS (array_record) from the collected routes"
python -m data_pipelines.build_tfds --data_dir "$RUN/data/raw" --out "$RUN/data/tfds" \
  --camera_size "$CAMERA"

train() {  # train <config> <steps> [overrides...]
  local name=$1 steps=$2; shift 2
  local log_every=$(( steps / 20 > 0 ? steps / 20 : 1 ))  # ~20 points per training curve
  python launch/train.py --config="configs/${name}.py:preset=${PRESET}" \
    --config.runs_root="$RUN" --config.train.steps="$steps" \
    --config.optim.total_steps="$steps" --config.train.log_every="$log_every" "$@"
}
stamp "4/8 train: text LLM, stage 1 (vision + VAE), Q-Former alignment, stage 2, stage 3"
train llm_text "$(scale ${STEPS[0]})"
train stage1 "$(scale ${STEPS[1]})" --config.data.data_dir="$RUN/data/tfds"
# The Q-Former's frames scale with the steps: caching them takes ~1 min per 2500 on 2 cores.
train qformer "$(scale ${STEPS[2]})" --config.data.data_dir="$RUN/data/tfds" \
  --config.data.cache_frames="$(scale ${QFORMER_FRAMES})"
train stage2 "$(scale ${STEPS[3]})" --config.data.data_dir="$RUN/data/tfds"
train stage3 "$(scale ${STEPS[4]})" --config.data.data_dir="$RUN/data/tfds"

stamp "5/8 closed-loop evaluation on route set ${ROUTES}: ours, expert, baselines"
evaluate() {  # evaluate <agent>: one eval process, its log in $RUN/eval/<agent>.log
  mkdir -p "$RUN/eval"
  if python launch/eval.py --config="configs/eval.py:preset=${PRESET},agent=$1" \
      --config.agent.work_dir="$RUN/stage3_${PRESET}" \
      --config.route_set="$ROUTES" --config.out_dir="$RUN/eval/$1" > "$RUN/eval/$1.log" 2>&1; then
    tail -n 1 "$RUN/eval/$1.log"
  else
    cat "$RUN/eval/$1.log"; return 1
  fi
}
# Two agents at a time: a batch-1 model step leaves most of the second core idle.
for PAIR in "lmgendrive blank_instruction" "expert lane_keeping"; do
  PIDS=()
  for AGENT in $PAIR; do evaluate "$AGENT" & PIDS+=($!); done
  for PID in "${PIDS[@]}"; do wait "$PID"; done
done

stamp "6/8 offline video generation on the collected clips"
python launch/generate.py --config="configs/generate.py:preset=${PRESET}" \
  --config.work_dir="$RUN/stage3_${PRESET}" --config.data.split=train \
  --config.data.max_clips=4 --config.out_dir="$RUN/generate"

stamp "7/8 HTML report"
python launch/report.py --out "$RUN/report" --train_dir "$RUN" \
  --eval_results "$RUN"/eval/*/results.json --videos "$RUN/generate" \
  --extra preset="$PRESET" steps_scale="$STEPS_SCALE"

stamp "8/8 done. Report: $(cd "$RUN/report" && pwd)/report.html"
