"""Stage 2: single-step planning and generation on instruction clips.

Trains the Q-Former, the action/generation queries, LoRA adapters of the LLM, the action head and
the world generator; the vision encoder and VAE come frozen from stage 1, the LLM base from the
text run (embedded default) or a Hugging Face LLaMA (paper). The small preset also trains the
encoder and the whole LLM (`stage_config` says why).

  python launch/train.py --config=configs/stage2.py:preset=small --config.data.data_dir=DATA
"""

from lmgendrive_jax import config as config_lib


def stage_config(stage: int, arg) -> config_lib.ConfigDict:
  """The shared body of stages 2 and 3."""
  arg = config_lib.parse_arg(arg, preset="small", runlocal=False)
  preset = arg.preset
  config = config_lib.ConfigDict()
  config.stage = f"stage{stage}"
  config.preset = preset
  config.seed = 0
  config.runs_root = "work_dirs"
  config.run_name = f"stage{stage}_{preset}"
  config.work_dir = ""  # default: <runs_root>/<run_name> (config.resolve_run_dirs)

  config.model = config_lib.ConfigDict()
  config.model.lmgendrive = config_lib.lmgendrive_preset(preset)
  if preset == "tiny":
    config.model.lmgendrive.llm.lora_rank = 4
  world = config_lib.world_preset(preset)
  config.model.flow = world.flow
  config.model.chunk = world.chunk

  # world_clip_stride k: the world loss on every k-th clip of the batch (planning on all). On CPU
  # the VAE encode and the DiT are ~2/3 of a small step; k = 2 makes the step ~1/3 faster.
  # visual_probe_weight: the waypoint L1 of a head reading the Q-Former's tokens alone
  # (models/lmgendrive.py: visual_probe), so the random-init Q-Former learns to pass on what the
  # cameras show; the paper's Q-Former starts from BLIP-2's image-text pretraining instead.
  # waypoint_lateral_weight: the lateral (x) waypoint errors count this many times in the
  # planning loss and the probe's (the logged `waypoint_l1` stays the plain L1). The L1 is mostly
  # forward error (the future speed); the lateral part, what keeps the car in its lane, is ~1/4
  # of it (bigger run's stage 2: 0.36 m lateral, ~1.0 m forward), so a planner that holds its
  # heading whatever the cameras show loses little loss but drifts off the lane in closed loop.
  config.loss = config_lib.ConfigDict(dict(
      completed_weight=0.2, world_weight=1.0, world_anchors=1 if stage == 2 else 3,
      world_clip_stride={"tiny": 2, "small": 2, "paper": 1}[preset],
      visual_probe_weight={"tiny": 1.0, "small": 1.0, "paper": 0.0}[preset],
      waypoint_lateral_weight={"tiny": 1.0, "small": 5.0, "paper": 1.0}[preset]))
  config.model.lmgendrive.visual_probe = config.loss.visual_probe_weight > 0
  config.data = config_lib.data_preset(preset, stage=stage)

  # Where the previous stage's weights come from: a run under runs_root (or an explicit
  # run_dir), a root of its saved state, and {our subtree: theirs}; `skip` keeps ours fresh.
  stage1 = f"stage1_{preset}"
  if stage == 2:
    config.init_from = [
        dict(run=stage1, run_dir="", root="params",
             subtrees={"vision": "perception/encoder", "vae": "vae"}, skip=""),
        dict(run=stage1, run_dir="", root="model_state/batch_stats",
             subtrees={"vision": "perception/encoder"}, skip=""),
        dict(run=f"llm_text_{preset}", run_dir="", root="params", subtrees={"llm": ""},
             skip="/lora/"),
    ]
  else:
    previous = f"stage2_{preset}"
    config.init_from = [
        dict(run=previous, run_dir="", root="params", subtrees={"": ""}, skip=""),
        dict(run=previous, run_dir="", root="model_state/batch_stats",
             subtrees={"vision": "vision"}, skip=""),
    ]
  config.train = config_lib.ConfigDict(dict(
      steps={"tiny": 6, "small": 600, "paper": 50000}[preset] // (1 if stage == 2 else 2),
      log_every=10, eval_every=10 ** 9, checkpoint_every=200, keep_checkpoints=2,
      max_skipped_in_a_row=5,
      # World-generator samples (TensorBoard + <work_dir>/samples/*.png); 0 = never.
      sample_every={"tiny": 20, "small": 40, "paper": 2000}[preset]))
  lr = {"tiny": 1e-3, "small": 5e-4, "paper": 1e-4}[preset] * (1.0 if stage == 2 else 0.5)
  # What stages 2-3 train. LMDrive keeps its perception-pretrained encoder frozen and adapts the
  # LLM with LoRA (paper; tiny too, for the curriculum tests). The small preset's encoder and LLM
  # come from minutes of from-scratch CPU training (the text run saw only instructions), and
  # frozen they made a planner that holds its heading whatever the cameras show. On the held-out
  # tiny_8 routes the bigger run's stage 2 drove DS 46.5 frozen, 52.4 with the encoder trained
  # on the planning loss, 59.0 with the whole LLM trained too and the lateral errors x5
  # (`waypoint_lateral_weight` above; x5 alone: 47.6, within the noise of 8 routes); README:
  # bench/drive_quality.py.
  train_all = preset == "small"
  config.model.lmgendrive.freeze_vision = not train_all
  config.optim = config_lib.optim_config(
      lr=lr, warmup_steps=min(50, config.train.steps // 10), total_steps=config.train.steps,
      weight_decay=0.01,
      frozen=(r"vae/.*",) if train_all else (r"vision/.*", r"vae/.*", r"llm/(?!.*/lora/).*"))
  config.mesh = config_lib.mesh_config((-1, 1, 1))
  config.logical_axis_rules = config_lib.logical_axis_rules()
  if arg.runlocal:
    config.train.steps = 4
  return config


def get_config(arg=None):
  return stage_config(2, arg)
