"""Stage 2: single-step planning and generation on instruction clips.

Trains the Q-Former, the action/generation queries, LoRA adapters of the LLM, the action head and
the world generator; the vision encoder and VAE come frozen from stage 1, the LLM base from the
text run (embedded default) or a Hugging Face LLaMA (paper). The small preset trains the whole
LLM (`stage_config` says why).

  python launch/train.py --config=configs/stage2.py:preset=small --config.data.data_dir=DATA
"""

from lmgendrive_jax import config as config_lib


def whole_model_from(run: str) -> list[dict]:
  """init_from entries restoring all of a stage-2/3 run's parameters and batch statistics. Of its
  parameters only the training-only probes may be left behind (a fine-tune without them)."""
  where = dict(run="", run_dir=run) if "/" in run else dict(run=run, run_dir="")
  return [dict(where, root="params", subtrees={"": ""}, skip="",
               droppable=f"^({'|'.join(config_lib.TRAINING_ONLY_HEADS)})/"),
          dict(where, root="model_state/batch_stats", subtrees={"vision": "vision"}, skip="")]


def stage_config(stage: int, arg) -> config_lib.ConfigDict:
  """The shared body of stages 2 and 3."""
  arg = config_lib.parse_arg(arg, preset="small", runlocal=False, qformer=True, from_run="")
  preset = arg.preset
  arg.qformer = arg.qformer and preset != "paper"  # paper: BLIP-2's pretrained Q-Former
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
      waypoint_lateral_weight={"tiny": 1.0, "small": 5.0, "paper": 1.0}[preset],
      layout_probe_weight={"tiny": 1.0, "small": 1.0, "paper": 0.0}[preset],
      layout_probe_object_boost={"tiny": 30.0, "small": 30.0, "paper": 0.0}[preset],
      instruction_probe_weight=0.0))
  config.model.lmgendrive.visual_probe = config.loss.visual_probe_weight > 0
  config.data = config_lib.data_preset(preset, stage=stage)
  # layout_probe_weight: the KL of a head drawing every view's road layout (data/view_layout.py)
  # at layout_probe_size from the Q-Former's tokens alone (models/layout_probe.py says why);
  # layout_probe_object_boost weighs its cells as stage 1's view_object_boost does, so the
  # tokens must carry where the cars are (train/losses_vision.py: view_layout_loss says why).
  if config.loss.layout_probe_weight > 0:
    size = {"tiny": (4, 4), "small": (8, 8)}[preset]
    config.model.lmgendrive.layout_probe_size = size
    config.data.view_layout_size = size

  # Where the previous stage's weights come from: a run under runs_root (or an explicit
  # run_dir), a root of its saved state, and {our subtree: theirs}; `skip` keeps ours fresh.
  # With `qformer` (tiny, small), the Q-Former and its probes come from the Q-Former alignment
  # run (configs/qformer.py, which shares this config and keeps only the stage-1 entries).
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
    if arg.qformer:
      probes = {name: name for name in ("visual_probe", "layout_probe")
                if name != "layout_probe" or config.loss.layout_probe_weight > 0}
      config.init_from.append(dict(run=f"qformer_{preset}", run_dir="", root="params",
                                   subtrees={"qformer": "qformer", **probes}, skip=""))
  else:
    config.init_from = whole_model_from(f"stage2_{preset}")
  # from_run: start from every weight of a trained stage-2/3 run instead (a run name under
  # runs_root, or a run directory): fine-tuning it on new data, e.g. a DAgger round's
  # (data_pipelines/collect.py: learner) mixed with the data it was trained on.
  if arg.from_run:
    config.init_from = whole_model_from(arg.from_run)
  config.train = config_lib.ConfigDict(dict(
      steps={"tiny": 6, "small": 600, "paper": 50000}[preset] // (1 if stage == 2 else 2),
      log_every=10, eval_every=10 ** 9, checkpoint_every=200, keep_checkpoints=2,
      max_skipped_in_a_row=5,
      # World-generator samples (TensorBoard + <work_dir>/samples/*.png); 0 = never.
      sample_every={"tiny": 20, "small": 40, "paper": 2000}[preset]))
  lr = {"tiny": 1e-3, "small": 5e-4, "paper": 1e-4}[preset] * (1.0 if stage == 2 else 0.5)
  # What stages 2-3 train. LMDrive keeps its perception-pretrained encoder frozen and adapts the
  # LLM with LoRA (paper; tiny too, for the curriculum tests). `small` keeps the encoder frozen
  # too but trains the whole LLM: its text run saw only instructions. Trained on the planning
  # loss (an earlier small recipe), Adam's normalised steps on the encoder's weak, noisy
  # gradients wiped out what stage 1 taught it: with the per-view road-layout target of stage 1
  # (data/view_layout.py) the frozen encoder's visual probe read 0.87 m with the cameras vs
  # 1.04 m with them zeroed, the trained one 0.862 vs 0.864 (bench/planner_inputs.py, README).
  train_llm = preset == "small"
  config.model.lmgendrive.freeze_vision = True
  config.optim = config_lib.optim_config(
      lr=lr, warmup_steps=min(50, config.train.steps // 10), total_steps=config.train.steps,
      weight_decay=0.01,
      frozen=(r"vision/.*", r"vae/.*") + (() if train_llm else (r"llm/(?!.*/lora/).*",)))
  config.mesh = config_lib.mesh_config((-1, 1, 1))
  config.logical_axis_rules = config_lib.logical_axis_rules()
  if arg.runlocal:
    config.train.steps = 4
  return config


def get_config(arg=None):
  return stage_config(2, arg)
