"""Offline batch video generation (`lmgendrive_jax/generate/job.py`).

  python launch/generate.py --config=configs/generate.py:preset=small \
      --config.work_dir=work_dirs/stage3_small [--config.data.split=validation] \
      [--config.future_frames=64] [--config.out_dir=...]

For each clip of a dataset split: condition a trained stage-2/3 run on the clip's first
`observed_frames` frames and its instruction, generate `future_frames` frames of every view
autoregressively, write `<out_dir>/<clip_id>.mp4` and `<out_dir>/metrics.json`.
"""

from lmgendrive_jax import config as config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, preset="small", runlocal=False)
  preset = arg.preset
  if preset not in config_lib.PRESETS:
    raise config_lib.ConfigError(f"generate: unknown preset {preset!r}; choose one of "
                                 f"{config_lib.PRESETS}")
  config = config_lib.ConfigDict()
  config.preset = preset
  config.work_dir = ""   # the trained stage-2/3 run dir (required)
  config.out_dir = ""    # default: <work_dir>/generate/<data.split>
  config.seed = 0        # clip k's noise is fold_in(key(seed), k): independent of batching

  # Which clips. Empty / zero values take the run's own data config (the one it was trained on).
  config.data = config_lib.ConfigDict(dict(
      data_dir="",       # the TFDS build folder (build_tfds --out); "" = the run's data.data_dir
      split="validation",
      stride=0,          # source frames between consecutive frames; 0 = the run's data.stride
      fps=10.0,          # frame rate of the recorded dataset (LMDrive: 10 Hz)
      read_threads=2,
      max_clips=-1))     # -1: every clip of the split

  # The window: observed frames condition the LLM; the last `chunk.context_frames` of them
  # (the run's world preset) are the clean context of the first generated chunk.
  config.observed_frames = {"tiny": 4, "small": 8, "paper": 10}[preset]
  config.future_frames = {"tiny": 16, "small": 32, "paper": 64}[preset]
  config.batch_size = {"tiny": 2, "small": 4, "paper": 8}[preset]  # clips per call (per host)
  config.shard_batch = True  # split a batch over this host's local devices (largest divisor)

  # Sampler overrides; 0 keeps the run's `model.flow` value.
  config.sampler = config_lib.ConfigDict(dict(num_steps=0, guidance_scale=0.0))

  # Scores. Horizons in seconds after the last observed frame (frame k at k * stride / fps).
  config.horizons = (0.5, 1.0, 2.0)
  config.fvd_features = ""  # a `metrics/features.py` video_conv directory; "" = no FVD
  config.fvd_frames = 16    # FVD over the first fvd_frames generated frames (clips with GT)

  config.video = config_lib.ConfigDict(dict(
      scale={"tiny": 2, "small": 1, "paper": 1}[preset],  # integer upscaling of each view
      label_height=16, fps=0.0,  # 0 = real time (fps / stride)
      show_observed=True))       # prepend the observed frames (both rows: ground truth)
  config.progress = True
  if arg.runlocal:
    config.future_frames = 4
    config.data.max_clips = 2
  return config
