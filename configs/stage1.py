"""Stage 1: vision pretraining (+ the tiny VAE for the embedded default).

  python launch/train.py --config=configs/stage1.py:preset=small --config.data.data_dir=DATA
"""

from lmgendrive_jax import config as config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, preset="small", runlocal=False)
  config = config_lib.ConfigDict()
  config.stage = "stage1"
  config.preset = arg.preset
  config.seed = 0
  config.runs_root = "work_dirs"
  config.run_name = f"stage1_{arg.preset}"
  config.work_dir = ""  # default: <runs_root>/<run_name> (config.resolve_run_dirs)

  config.model = config_lib.ConfigDict()
  config.model.vision = config_lib.vision_preset(arg.preset)
  config.model.vae = config_lib.vae_preset(arg.preset)
  config.model.train_vae = arg.preset != "paper"  # The paper preset imports SD's VAE instead.
  # The VAE trains on `vae_views_per_frame` random views per frame, as random `vae_crop` squares
  # (0: all views / full size; train/stage1.py says why crops).
  config.loss = config_lib.ConfigDict(dict(
      vae_weight=1.0, kl_weight=1e-6,
      vae_views_per_frame={"tiny": 2, "small": 1, "paper": 0}[arg.preset],
      vae_crop={"tiny": 0, "small": 0, "paper": 0}[arg.preset],
      # Share of examples whose target point is zeroed (train/stage1.py: drop_target_points).
      target_point_dropout={"tiny": 0.5, "small": 0.5, "paper": 0.0}[arg.preset],
      # The road-layout term (train/losses_vision.py), for models with the head
      # (model.vision.road_layout_classes > 0: tiny and small).
      road_layout_weight=0.5,
      # The per-view road layout in image space (data/view_layout.py), for models with that head
      # (model.vision.view_layout_classes > 0: tiny and small).
      view_layout_weight=1.0,
      # Its cells weigh 1 + this x their share of vehicles and pedestrians, ~0.3% of the cells
      # (train/losses_vision.py: view_layout_loss says why).
      view_object_boost={"tiny": 30.0, "small": 30.0, "paper": 0.0}[arg.preset],
      # The speed-independent red-light head on the focus view's feature map (data label
      # `red_light_ahead`; models/perception_heads.py says why LMDrive's light label is not
      # enough), for models with it (model.vision.red_ahead_head: paper; config.py says why not
      # the small presets).
      red_light_ahead_weight=0.5))

  config.data = config_lib.data_preset(arg.preset, stage=1)
  if config.model.vision.view_layout_classes > 0:
    config.data.view_layout_size = tuple(config.model.vision.view_layout_size)
  config.train = config_lib.ConfigDict(dict(
      steps={"tiny": 10, "small": 600, "paper": 100000}[arg.preset],
      log_every=10, eval_every=10 ** 9, checkpoint_every=200, keep_checkpoints=2,
      max_skipped_in_a_row=5))
  config.optim = config_lib.optim_config(
      lr={"tiny": 1e-3, "small": 5e-4, "paper": 5e-4}[arg.preset], warmup_steps=50,
      total_steps=config.train.steps, weight_decay=0.05)
  config.mesh = config_lib.mesh_config((-1, 1, 1))
  config.logical_axis_rules = config_lib.logical_axis_rules()
  if arg.runlocal:
    config.train.steps = 4
  return config
