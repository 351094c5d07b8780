"""Q-Former alignment: between stage 1 and stage 2, on single frames with the frozen encoder.

  python launch/train.py --config=configs/qformer.py:preset=small --config.data.data_dir=DATA

Trains only the Q-Former and the probes that read its tokens (the visual probe's waypoints and the
layout probe's per-view road layout) on the stage-1 encoder's tokens of up to `data.cache_frames`
frames, computed once (`lmgendrive_jax/train/qformer_align.py` says why and how). Stage 2 restores
the Q-Former and the probes from this run. BLIP-2 likewise aligns its Q-Former with a frozen image
encoder before connecting it to the LLM; the paper preset imports BLIP-2's Q-Former instead
(convert/hf_qformer.py) and has no such run.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from stage2 import stage_config  # noqa: E402

from lmgendrive_jax import config as config_lib  # noqa: E402


def get_config(arg=None):
  runlocal = config_lib.parse_arg(arg, preset="small", runlocal=False, qformer=True).runlocal
  config = stage_config(2, arg)
  preset = config.preset
  if preset == "paper":
    raise config_lib.ConfigError("the paper preset imports BLIP-2's Q-Former "
                                 "(convert/hf_qformer.py); it has no Q-Former alignment run")
  config.stage = "qformer"
  config.run_name = f"qformer_{preset}"
  # Frames as in stage 1 (the pipeline's frame examples), with the layout probe's labels.
  data = config_lib.data_preset(preset, stage=1)
  data.view_layout_size = tuple(config.data.view_layout_size)
  data.tokenizer = config.data.tokenizer
  data.batch_size = {"tiny": 8, "small": 64}[preset]
  with data.unlocked():
    # 0: every frame of the split. Tokens + labels take ~35 kB a frame for `small` (56 x 128 f32
    # tokens; 0.7 GB for 20000), held in host memory. The bigger run's Q-Former on all its ~21k
    # frames (5000 steps) let its planner steer back from a lane offset 2x better than on 8000
    # frames (3000 steps): bench/lane_response.py, README.
    data.cache_frames = {"tiny": 32, "small": 20000}[preset]
  config.data = data
  config.init_from = [entry for entry in config.init_from if entry["run"].startswith("stage1_")]
  config.train.steps = {"tiny": 4, "small": 3000}[preset]
  config.train.sample_every = 0
  config.train.checkpoint_every = 1000
  # AdamW on the Q-Former and the probes; everything else frozen (no optimizer state).
  config.optim = config_lib.optim_config(
      lr=1e-3, warmup_steps=min(100, config.train.steps // 10), total_steps=config.train.steps,
      weight_decay=0.01, frozen=(r"(?!(qformer|visual_probe|layout_probe)/).*",))
  if runlocal:
    config.train.steps = 4
  return config
