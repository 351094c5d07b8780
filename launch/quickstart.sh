#!/usr/bin/env bash
# The main job on the embedded default, end to end on this machine's CPU:
#   collect a dataset with the expert -> build TFDS -> train the text LLM and stages 1-3
#   -> evaluate closed-loop (ours, the expert, two baselines) -> generate videos -> HTML report.
# Creates or reuses .venv. Every step resumes: re-running skips finished work.
#
#   ./launch/quickstart.sh                 # default: small preset, ~20 min on 2 CPU cores
#   PRESET=tiny ./launch/quickstart.sh     # minutes, a smoke run (the agent will not drive well)
#   PRESET=big ./launch/quickstart.sh      # the bigger preset: a DAgger round and the agent's
#                                          # rules (RULES=0 leaves them out): ~2 h 15 min (README)
#   STEPS_SCALE=4 ./launch/quickstart.sh   # any preset with its training steps scaled
#   DAGGER="8 9,10 11" PRESET=big ./launch/quickstart.sh  # two on-policy rounds (seeds per round)
#   RULES=1 ./launch/quickstart.sh         # also train the red-light, stop-sign and hazard
#                                          # detectors and drive with the agent's light, stop-sign,
#                                          # hazard and stuck rules (the big preset's default)
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

# Per preset: the model preset (configs/*.py:preset=), collection camera size, training steps
# (x STEPS_SCALE) of the text LLM, stage 1, the Q-Former alignment, stage 2 and stage 3, the
# Q-Former's cached frames (x STEPS_SCALE), eval route set and its seed (0: the collection's
# routes; 1-5 are held out), the stage whose planner drives (stage3, or stage2: the last
# on-policy round's), the on-policy (DAgger) rounds' collection seeds (rounds separated by commas;
# "": none; DAGGER=... overrides), each round's fine-tuning steps and learning rate (half stage
# 2's), ours' stuck rule's seconds (0: off; the big preset and RULES=1 turn it on), whether the
# agent's rules are on by default (RULES=... overrides), and with them the red-light, stop-sign
# and hazard detectors' steps and their collection's seeds.
EVAL_SEED=0; EVAL_STAGE=stage3; DAGGER_SEEDS=""; DAGGER_STEPS=0; DAGGER_LR=0; STUCK_SECONDS=0
RULES_DEFAULT=0
# Where the stuck rule is on: its wait, and its push (InterFuser's is 0.6 s; a car pushed 0.6 s
# reaches ~1.8 m/s and our planner brakes again, one pushed 1.5 s ~3 m/s and it drives on:
# docs/experiments.md, 16th).
STUCK_RULE_SECONDS=8; STUCK_PUSH_SECONDS=1.5
# Where the hazard rule is on: the longest it holds a standing car before yielding (a false
# alarm on a standing car's view never clears; docs/experiments.md, 17th: 10 s).
HAZARD_MAX_WAIT=10
LIGHT_STEPS=0; STOP_SIGN_STEPS=0; HAZARD_STEPS=0; LIGHT_SEEDS="0 6 7"
case "$PRESET" in
  tiny)  MODEL=tiny;  CAMERA=64x64; STEPS=(20 40 40 40 20);      QFORMER_FRAMES=32;   ROUTES="${EVAL_ROUTES:-tiny_2}"
         DAGGER_SEEDS="8"; DAGGER_STEPS=10; DAGGER_LR=5e-4; LIGHT_STEPS=20; STOP_SIGN_STEPS=20
         HAZARD_STEPS=20; LIGHT_SEEDS="6" ;;
  small) MODEL=small; CAMERA=64x64; STEPS=(300 100 1500 80 20);  QFORMER_FRAMES=5000; ROUTES="${EVAL_ROUTES:-tiny_4}"
         LIGHT_STEPS=3000; STOP_SIGN_STEPS=1000; HAZARD_STEPS=3000 ;;
  # The best measured recipe as one command (docs/experiments.md, 2026-12-06 13th and 14th): the
  # small model's curriculum with a 320-step stage 2, which then drives 64 routes of its own
  # while the expert takes the wheel when it leaves its route, misses a brake or stands
  # (collection seeds 8 and 9, held out from the evaluation); those routes mixed with its 32
  # expert routes, it is fine-tuned 320 steps at half the rate and drives the evaluation
  # (stage 3 lowered DS each time it was measured), with the stuck rule:
  # the round trades leaving the route for standing (2026-12-06 14th: standing timeouts 0 -> 19.7
  # DS points), which the rule starts again; and with the light and stop-sign rules, whose
  # detectors train beside the curriculum: with the stuck rule's 1.5-s push the three rules drove
  # 64.3 on 40 routes vs 56.9 with the stuck rule's 0.6-s push alone (2026-12-07 16th: paired
  # +7.4 +- 3.8; red lights and stop signs 11.0 -> 1.8 DS points, standing 5.4 -> 1.6).
  # A second round (DAGGER="8 9,10 11") lowered DS (2026-12-06 15th: 47.6 vs 56.9, paired
  # -9.3 +- 3.0 on 40 routes; its planner drives into static objects). The hazard rule, its
  # detector trained on the lights' focus collection, brakes for a car or walker in the path:
  # paired +2.7 +- 1.9 on those 40 routes, +0.5 +- 1.1 on 48 fresh ones (seeds 12-17; the
  # oracle's +1.3 there): small, but the one rule that answers traffic (2026-12-07 19th). It also
  # reads the detector's object map on the planner's own path (the agent's default since
  # 2026-12-08 24th: +1.8 +- 1.4 on those 40 routes, +0.0 +- 0.9 on the 48 fresh ones).
  big)   MODEL=small; CAMERA=64x64; STEPS=(1200 400 6000 320 80); QFORMER_FRAMES=20000
         ROUTES="${EVAL_ROUTES:-tiny_8}"; EVAL_SEED=1; EVAL_STAGE=stage2; STUCK_SECONDS=$STUCK_RULE_SECONDS
         DAGGER_SEEDS="8 9"; DAGGER_STEPS=320; DAGGER_LR=2.5e-4; LIGHT_STEPS=3000; STOP_SIGN_STEPS=1000
         HAZARD_STEPS=3000; RULES_DEFAULT=1 ;;
  *) echo "PRESET must be tiny, small or big (paper runs on a pod: see README)"; exit 2 ;;
esac
DAGGER_SEEDS="${DAGGER-$DAGGER_SEEDS}"
if [ "${RULES:-$RULES_DEFAULT}" = 1 ]; then STUCK_SECONDS=$STUCK_RULE_SECONDS
else LIGHT_STEPS=0; STOP_SIGN_STEPS=0; HAZARD_STEPS=0; fi  # no detectors, no rules
scale() { echo $(( $1 * STEPS_SCALE )); }

stamp "1/8 tokenizer (byte-level BPE on the LangAuto instruction vocabulary)"
if [ ! -f assets/tokenizer/tokenizer.json ]; then
  python -m data_pipelines.train_tokenizer --out assets/tokenizer
fi

stamp "2/8 collect: the expert drives the ${PRESET} route sets, LMDrive format"
python -m data_pipelines.collect --config="configs/collect.py:preset=${MODEL}" \
  --config.out_dir="$RUN/data/raw"

stamp "3/8 build TFDS (array_record) from the collected routes"
python -m data_pipelines.build_tfds --data_dir "$RUN/data/raw" --out "$RUN/data/tfds" \
  --camera_size "$CAMERA"

train() {  # train <config>[,<config args>] <steps> [overrides...]
  local name=${1%%,*} args="" steps=$2
  case "$1" in *,*) args=",${1#*,}" ;; esac
  shift 2
  local log_every=$(( steps / 20 > 0 ? steps / 20 : 1 ))  # ~20 points per training curve
  python launch/train.py --config="configs/${name}.py:preset=${MODEL}${args}" \
    --config.runs_root="$RUN" --config.train.steps="$steps" \
    --config.optim.total_steps="$steps" --config.train.log_every="$log_every" "$@"
}
# The stuck rule (agent/stuck.py): a car stood STUCK_SECONDS with nothing ahead drives on.
OURS_OPTS=()
if [ "$STUCK_SECONDS" != 0 ]; then
  OURS_OPTS=(--config.agent.stuck_seconds="$STUCK_SECONDS"
             --config.agent.forced_forward_seconds="$STUCK_PUSH_SECONDS")
fi
# The red-light, stop-sign and hazard detectors share nothing with the curriculum: their
# collection (the telephoto `focus` camera added; it records the stop-sign zones and the distance
# to the next light's stop line too: the light detector learns `red_light_zone`), TFDS build
# and trainings run beside the curriculum's, on the other core. The stop-sign and hazard
# detectors read the front view.
if [ "$LIGHT_STEPS" -gt 0 ]; then
  OURS_OPTS+=(--config.agent.light_detector="$RUN/light_detector_${MODEL}"
              --config.agent.stop_sign_detector="$RUN/stop_sign_detector_${MODEL}"
              --config.agent.hazard_detector="$RUN/hazard_detector_${MODEL}"
              --config.agent.hazard_max_wait="$HAZARD_MAX_WAIT")
  light_detector() {
    for SEED in $LIGHT_SEEDS; do
      python -m data_pipelines.collect --config="configs/collect.py:preset=${MODEL}" \
        --config.out_dir="$RUN/data/raw_focus" --config.seed="$SEED" \
        --config.sim.camera.views="('front','left','right','rear','focus')"
    done
    python -m data_pipelines.build_tfds --data_dir "$RUN/data/raw_focus" \
      --out "$RUN/data/tfds_focus" --camera_size "$CAMERA" --focus_camera --no_progress
    train light_detector "$(scale ${LIGHT_STEPS})" --config.data.data_dir="$RUN/data/tfds_focus"
    # Zones are ~3% of the frames: positives x4.
    train stop_sign_detector "$(scale ${STOP_SIGN_STEPS})" \
      --config.data.data_dir="$RUN/data/tfds_focus" --config.loss.positive_weight=4.0
    train hazard_detector "$(scale ${HAZARD_STEPS})" --config.data.data_dir="$RUN/data/tfds_focus"
  }
  stamp "3b/8 red-light, stop-sign and hazard detectors (collect seeds ${LIGHT_SEEDS} with the focus camera, TFDS, train), in the background: $RUN/light_detector.log"
  light_detector > "$RUN/light_detector.log" 2>&1 &
  LIGHT_PID=$!
fi

stamp "4/8 train: text LLM, stage 1 (vision + VAE), Q-Former alignment, stage 2${DAGGER_SEEDS:+ (+ on-policy rounds)}, stage 3"
train llm_text "$(scale ${STEPS[0]})"
train stage1 "$(scale ${STEPS[1]})" --config.data.data_dir="$RUN/data/tfds"
# The Q-Former's frames scale with the steps: caching them takes ~1 min per 2500 on 2 cores.
train qformer "$(scale ${STEPS[2]})" --config.data.data_dir="$RUN/data/tfds" \
  --config.data.cache_frames="$(scale ${QFORMER_FRAMES})"
train stage2 "$(scale ${STEPS[3]})" --config.data.data_dir="$RUN/data/tfds"
STAGE2_RUN="stage2_${MODEL}"

# DAGGER_SEEDS: one round per comma-separated group of collection seeds ("8 9,10 11": two rounds).
ROUND=0; SOURCES=("$RUN/data/raw")
IFS=, read -r -a DAGGER_ROUNDS <<< "$DAGGER_SEEDS"
for ROUND_SEEDS in "${DAGGER_ROUNDS[@]}"; do
  # Behaviour cloning on the expert never shows the states our planner drives into; each round
  # does (README: on-policy data), for the planner the previous round left. One collection
  # process per seed: a batch-1 model step leaves most of the other core idle. The build masks
  # the waypoints whose future holds the learner's driving, so the targets are the expert's
  # recoveries from the planner's own mistakes. Rounds aggregate: each mixes every earlier
  # round's collections with the expert's routes (DAgger's data aggregation).
  # Round 1's names carry no number (raw_dagger, stage2_dagger_<model>); round N's carry N.
  ROUND=$(( ROUND + 1 )); SUFFIX=""; [ "$ROUND" = 1 ] || SUFFIX="$ROUND"
  DAGGER_RUN="stage2_dagger${SUFFIX}_${MODEL}"
  stamp "4b/8 on-policy round ${ROUND}: ${STAGE2_RUN} drives collection seeds ${ROUND_SEEDS} with the expert taking over, mixed with the expert's routes and earlier rounds', fine-tuned on the mix"
  PIDS=(); LOGS=()
  for SEED in $ROUND_SEEDS; do
    SOURCES+=("$RUN/data/raw_dagger_s${SEED}"); LOGS+=("$RUN/data/dagger_s${SEED}.log")
    python -m data_pipelines.collect --config="configs/collect.py:preset=${MODEL}" \
      --config.out_dir="${SOURCES[-1]}" --config.seed="$SEED" \
      --config.learner.work_dir="$RUN/${STAGE2_RUN}" > "${LOGS[-1]}" 2>&1 &
    PIDS+=($!)
  done
  for I in "${!PIDS[@]}"; do wait "${PIDS[$I]}" || { cat "${LOGS[$I]}"; exit 1; }; done
  python -m data_pipelines.mix_routes --out "$RUN/data/raw_dagger${SUFFIX}" "${SOURCES[@]}"
  python -m data_pipelines.build_tfds --data_dir "$RUN/data/raw_dagger${SUFFIX}" \
    --out "$RUN/data/tfds_dagger${SUFFIX}" --camera_size "$CAMERA" --no_progress
  # From all of the learner's weights, at half stage 2's rate, a new data order per round;
  # windows drawn where the mix has targets (the learner's own stretches have none).
  train "stage2,from_run=${STAGE2_RUN}" "$(scale ${DAGGER_STEPS})" \
    --config.run_name="$DAGGER_RUN" \
    --config.data.data_dir="$RUN/data/tfds_dagger${SUFFIX}" --config.optim.lr="$DAGGER_LR" \
    --config.data.seed="$ROUND" --config.data.labelled_windows=True
  STAGE2_RUN="$DAGGER_RUN"
done
train "stage3,from_run=${STAGE2_RUN}" "$(scale ${STEPS[4]})" --config.data.data_dir="$RUN/data/tfds"
# The planner that drives: stage 3's, or stage 2's after the last on-policy round.
if [ "$EVAL_STAGE" = stage3 ]; then EVAL_RUN="stage3_${MODEL}"; else EVAL_RUN="$STAGE2_RUN"; fi

if [ "$LIGHT_STEPS" -gt 0 ]; then
  wait "$LIGHT_PID" || { cat "$RUN/light_detector.log"; exit 1; }
fi

stamp "5/8 closed-loop evaluation on route set ${ROUTES} (seed ${EVAL_SEED}) by ${EVAL_RUN}: ours, expert, baselines"
evaluate() {  # evaluate <agent>: one eval process, its log in $RUN/eval/<agent>.log
  mkdir -p "$RUN/eval"
  local opts=()
  case "$1" in lmgendrive|blank_instruction) opts=("${OURS_OPTS[@]}") ;; esac
  if python launch/eval.py --config="configs/eval.py:preset=${MODEL},agent=$1" \
      --config.agent.work_dir="$RUN/${EVAL_RUN}" "${opts[@]}" --config.seed="$EVAL_SEED" \
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
python launch/generate.py --config="configs/generate.py:preset=${MODEL}" \
  --config.work_dir="$RUN/stage3_${MODEL}" --config.data.split=train \
  --config.data.max_clips=4 --config.out_dir="$RUN/generate"

stamp "7/8 HTML report"
python launch/report.py --out "$RUN/report" --train_dir "$RUN" \
  --eval_results "$RUN"/eval/*/results.json --videos "$RUN/generate" \
  --extra preset="$PRESET" steps_scale="$STEPS_SCALE"

stamp "8/8 done. Report: $(cd "$RUN/report" && pwd)/report.html"
