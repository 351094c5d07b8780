"""The red-light detector the agent's light rule reads (`lmgendrive_jax/agent/red_light.py`).

  python launch/train.py --config=configs/light_detector.py:preset=small --config.data.data_dir=DATA

Trains `models/light_detector.py` on the focus view alone against `red_light_zone` (the route's
next light is red and its stop line at most 8 m ahead; `train/light_detector.py`). Build DATA
with `build_tfds --focus_camera` from a collection whose `sim.camera.views` has `focus` (the
telephoto camera, where a lamp 30 m ahead is a few pixels); the front camera's centre crop works
too, but shows a distant lamp under a pixel wide. The label needs the collection's
`light_stop_distance` (data_pipelines.collect since 2026-12-07); for older collections
`--config.label=red_light_ahead` (red at any distance) still trains, and the agent's light rule
takes either, but it stops the car at the first sight of the lamp, 20-45 m short of the line
(docs/experiments.md, 20th and 21st). Independent of the three stages: no weights come from them
and none go to them.
"""

from lmgendrive_jax import config as config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, preset="small", runlocal=False)
  config = config_lib.ConfigDict()
  config.stage = "light_detector"
  config.preset = arg.preset
  config.seed = 0
  config.runs_root = "work_dirs"
  config.run_name = f"light_detector_{arg.preset}"
  config.work_dir = ""  # default: <runs_root>/<run_name> (config.resolve_run_dirs)

  config.model = config_lib.ConfigDict()
  config.model.light_detector = config_lib.ConfigDict({
      "tiny": dict(widths=(8, 16), strides=(2, 2), hidden=16),
      # Stride 8 at the end: a 3x7 px lamp of a 64x64 view still covers a cell.
      "small": dict(widths=(16, 32, 32, 64), strides=(1, 2, 2, 2), hidden=64),
      # 224x224 focus crops of an 800x600 camera: two more stride-2 stages.
      "paper": dict(widths=(32, 32, 64, 64, 128, 128), strides=(2, 1, 2, 2, 2, 1), hidden=128),
  }[arg.preset])
  # Positives (~1 frame in 4, most of them standing at the line) count this many times.
  config.loss = config_lib.ConfigDict(dict(positive_weight=2.0))

  config.label = "red_light_zone"  # the frame label it learns (train/light_detector.py: LABELS)
  config.data = config_lib.data_preset(arg.preset, stage=1)
  config.data.views = ("focus",)  # the one view it reads
  config.data.batch_size = {"tiny": 8, "small": 64, "paper": 256}[arg.preset]
  config.train = config_lib.ConfigDict(dict(
      steps={"tiny": 10, "small": 3000, "paper": 20000}[arg.preset],
      log_every={"tiny": 5, "small": 50, "paper": 100}[arg.preset], eval_every=10 ** 9,
      checkpoint_every=500, keep_checkpoints=2,
      max_skipped_in_a_row=5))
  config.optim = config_lib.optim_config(
      lr=1e-3, warmup_steps=100, total_steps=config.train.steps, weight_decay=0.01)
  config.mesh = config_lib.mesh_config((-1, 1, 1))
  config.logical_axis_rules = config_lib.logical_axis_rules()
  if arg.runlocal:
    config.train.steps = 4
  return config


def front_view_config(arg, name: str, label: str):
  """This task on the front view against another frame label, run `<name>_<preset>`: the
  stop-sign and hazard detectors (`configs/stop_sign_detector.py`, `hazard_detector.py`)."""
  config = get_config(arg)
  config.run_name = f"{name}_{config.preset}"
  config.label = label
  config.data.views = ("front",)
  return config
