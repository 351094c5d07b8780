"""Config machinery and model presets (no model code).

Every run is declared as an ml-collections `ConfigDict` returned by `get_config(arg)` in a file
under `configs/` (big_vision style). This module holds what those files share:

- `parse_arg("preset=tiny,runlocal")` turns the `:arg` suffix of `--config=configs/x.py:arg` into a
  ConfigDict of typed values;
- `load_config(spec, overrides)` loads a config file the way the launchers do, applies
  `--config.a.b=v` style overrides, and locks the result so a typo is an error naming the key;
- `validate(config)` checks what would otherwise fail deep inside compilation (mesh vs device
  count, heads vs the tensor axis, sequence lengths vs positions) and says what to change;
- the model presets (`tiny` for tests, `small` for the CPU demo, `paper` for the 7B-scale model).
  The keys of a preset's model config are the fields of the Linen module it configures, so a
  module is built with `Module(**cfg.to_dict())`.
"""

from __future__ import annotations

import ast
import importlib.util
import math
import os
from typing import Any, Iterable, Mapping

import ml_collections

from lmgendrive_jax.data import topdown, view_layout
from lmgendrive_jax.errors import ConfigError

ConfigDict = ml_collections.ConfigDict

PRESETS = ("tiny", "small", "paper")


# ----------------------------------------------------------------------------------------------
# Parsing and loading.


def _literal(text: str) -> Any:
  """Parses `text` as a Python literal when it is one, else keeps the string."""
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def parse_arg(arg: str | None, **defaults) -> ConfigDict:
  """Parses `"preset=tiny,runlocal"` into a ConfigDict, typed like `defaults`.

  A bare word (`runlocal`) sets a boolean True. Keys not in `defaults` are an error, so a
  misspelt argument never silently falls back to a default.
  """
  result = ConfigDict(dict(defaults))
  if not arg:
    return result
  for item in arg.split(","):
    item = item.strip()
    if not item:
      continue
    key, has_value, raw = item.partition("=")
    value = _literal(raw) if has_value else True
    if key not in defaults:
      raise ConfigError(
          f"unknown config argument {key!r} in {arg!r}; known arguments: {sorted(defaults)}")
    if isinstance(defaults[key], str) and not isinstance(value, str):
      value = raw
    result[key] = value
  return result


def _set_by_path(config: ConfigDict, dotted: str, raw: str) -> None:
  """Sets `config.a.b = raw` with the type of the existing value; unknown keys are errors."""
  node = config
  parts = dotted.split(".")
  for depth, part in enumerate(parts):
    if part not in node:
      where = ".".join(parts[:depth]) or "<root>"
      raise ConfigError(f"unknown config key {dotted!r}: {where!r} has no field {part!r}; "
                        f"its fields are {sorted(node.keys())}")
    if depth < len(parts) - 1:
      node = node[part]
  old = node[parts[-1]]
  value = _literal(raw)
  if isinstance(old, str) and not isinstance(value, str):
    value = raw
  if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
    value = float(value)
  if isinstance(old, tuple) and isinstance(value, list):
    value = tuple(value)
  try:
    node[parts[-1]] = value
  except (TypeError, ValueError) as e:
    raise ConfigError(f"config key {dotted!r} holds {type(old).__name__} {old!r}; "
                      f"cannot set it to {value!r}: {e}") from e


def apply_overrides(config: ConfigDict, overrides: Mapping[str, Any] | Iterable[str]) -> ConfigDict:
  """Applies `{"a.b": v}` or `["--config.a.b=v", "a.b=v"]` overrides to a locked config."""
  items = overrides.items() if isinstance(overrides, Mapping) else (
      o.removeprefix("--").removeprefix("config.").split("=", 1) for o in overrides)
  for key, value in items:
    _set_by_path(config, key.removeprefix("config."), value if isinstance(value, str) else repr(value))
  return config


def load_config(spec: str, overrides: Mapping[str, Any] | Iterable[str] = ()) -> ConfigDict:
  """Loads `path/to/config.py:arg` like the launchers' `--config` flag, overrides, locks it, and
  resolves the probes from their weights as launch/train.py does (`resolve_probes`)."""
  path, _, arg = spec.partition(":")
  if not os.path.exists(path):
    raise ConfigError(f"config file {path!r} does not exist (from --config={spec!r})")
  module_spec = importlib.util.spec_from_file_location(
      f"_lmgendrive_config_{abs(hash(path))}", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise ConfigError(f"config file {path!r} defines no get_config(arg)")
  config = module.get_config(arg or None)
  config.lock()
  apply_overrides(config, overrides)
  return resolve_probes(config)


# ----------------------------------------------------------------------------------------------
# Validation.


def mesh_shape(mesh_config: ConfigDict, num_devices: int) -> tuple[int, ...]:
  """Resolves the mesh shape, filling one -1 so the product equals `num_devices`."""
  axes = tuple(mesh_config.axes)
  shape = list(mesh_config.shape)
  if len(axes) != len(shape):
    raise ConfigError(f"mesh.axes {axes} and mesh.shape {tuple(shape)} differ in length")
  fills = [i for i, s in enumerate(shape) if s == -1]
  if len(fills) > 1:
    raise ConfigError(f"mesh.shape {tuple(shape)} has more than one -1; at most one axis fills in")
  known = math.prod(s for s in shape if s != -1)
  if any(s == 0 or s < -1 for s in shape):
    raise ConfigError(f"mesh.shape {tuple(shape)} has a size that is not positive or -1")
  if fills:
    if num_devices % known:
      raise ConfigError(
          f"mesh.shape {tuple(shape)} cannot fill -1: {num_devices} devices are not divisible by "
          f"{known}; change mesh.shape so its product divides {num_devices}")
    shape[fills[0]] = num_devices // known
  if math.prod(shape) != num_devices:
    raise ConfigError(
        f"mesh.shape {tuple(shape)} (axes {axes}) needs {math.prod(shape)} devices but "
        f"{num_devices} are present; set --config.mesh.shape so the product is {num_devices}, "
        f"or put -1 on one axis")
  return tuple(shape)


def _mesh_axis_size(config: ConfigDict, logical: str, num_devices: int) -> int:
  """The number of shards the logical axis `logical` is split into under the config's rules."""
  sizes = dict(zip(config.mesh.axes, mesh_shape(config.mesh, num_devices)))
  for name, target in config.logical_axis_rules:
    if name == logical:
      if target is None:
        return 1
      targets = (target,) if isinstance(target, str) else tuple(target)
      return math.prod(sizes.get(t, 1) for t in targets)
  return 1


def resolve_run_dirs(config: ConfigDict) -> ConfigDict:
  """Fills `work_dir` (default `<runs_root>/<run_name>`) and each `init_from[i].run_dir` (default
  `<runs_root>/<init_from[i].run>`), so one `--config.runs_root=DIR` moves a whole curriculum."""
  if "runs_root" in config:
    if not config.work_dir:
      config.work_dir = os.path.join(config.runs_root, config.run_name)
    for entry in config.get("init_from", None) or []:
      if not entry.get("run_dir"):
        entry["run_dir"] = os.path.join(config.runs_root, entry["run"])
  return config


def resolve_probes(config: ConfigDict) -> ConfigDict:
  """Builds the training-only probes (models/lmgendrive.py) as their loss weights ask, after the
  command line: stage configs derive `visual_probe` and `layout_probe_size` from the weights when
  they load, so `--config.loss.layout_probe_weight=0` alone would still build the probe (and its
  restore would fail on a run trained without it, or with another layout). A zero weight drops
  the probe and, for the layout probe, the view-layout labels only it reads. A layout weight > 0
  with no probe size is left to the trainer's error, which names both."""
  loss = config.get("loss", {})
  model = config.get("model", {}).get("lmgendrive", None)
  if model is None:
    return config
  if "visual_probe_weight" in loss and "visual_probe" in model:
    model.visual_probe = bool(loss.visual_probe_weight > 0)
  if ("layout_probe_weight" in loss and loss.layout_probe_weight <= 0
      and "layout_probe_size" in model):
    model.layout_probe_size = (0, 0)
    if "data" in config and "view_layout_size" in config.data:
      config.data.view_layout_size = (0, 0)
  return config


def validate(config: ConfigDict, num_devices: int | None = None) -> ConfigDict:
  """Checks a run config before anything compiles; raises ConfigError saying what to change."""
  if num_devices is None:
    import jax  # Local: config files must load without initialising a backend.
    num_devices = jax.device_count()
  if "mesh" in config:
    mesh_shape(config.mesh, num_devices)
  if "mesh" in config and "llm" in config.get("model", {}):
    llm = config.model.llm
    tensor = _mesh_axis_size(config, "heads", num_devices)
    kv_tensor = _mesh_axis_size(config, "kv_heads", num_devices)
    if llm.num_heads % tensor:
      raise ConfigError(
          f"model.llm.num_heads={llm.num_heads} is not divisible by the {tensor} shards of the "
          f"'heads' axis; change mesh.shape (tensor axis) or model.llm.num_heads")
    if llm.num_kv_heads % kv_tensor:
      raise ConfigError(
          f"model.llm.num_kv_heads={llm.num_kv_heads} is not divisible by the {kv_tensor} shards "
          f"of the 'kv_heads' axis; change mesh.shape (tensor axis) or model.llm.num_kv_heads")
    if llm.num_heads % llm.num_kv_heads:
      raise ConfigError(f"model.llm.num_heads={llm.num_heads} must be a multiple of "
                        f"model.llm.num_kv_heads={llm.num_kv_heads}")
    if "data" in config and "seq_len" in config.data and config.data.seq_len > llm.max_positions:
      raise ConfigError(
          f"data.seq_len={config.data.seq_len} exceeds model.llm.max_positions="
          f"{llm.max_positions}; shorten data.seq_len or raise model.llm.max_positions")
  model = config.get("model", {}).get("lmgendrive", {})
  heads = int(model.get("view_reader_heads", 0))
  if heads > 0 and model.llm.embed_dim % heads:
    raise ConfigError(
        f"model.lmgendrive.view_reader_heads={heads} does not divide the LLM width "
        f"{model.llm.embed_dim} (the action states it reads); pick a divisor")
  for block in ("train", "data"):
    if "batch_size" in config.get(block, {}) and "mesh" in config:
      shards = _mesh_axis_size(config, "batch", num_devices)
      if config[block].batch_size % shards:
        raise ConfigError(
            f"{block}.batch_size={config[block].batch_size} is not divisible by the {shards} "
            f"shards of the 'batch' axis; make it a multiple of {shards}")
  return config


# ----------------------------------------------------------------------------------------------
# Parallelism defaults (MaxText-style: the logical -> mesh mapping is data).


def mesh_config(shape=(-1, 1, 1)) -> ConfigDict:
  """Mesh axes `data, fsdp, tensor`; one -1 fills in to the device count."""
  return ConfigDict(dict(axes=("data", "fsdp", "tensor"), shape=tuple(shape),
                         dcn_shape=(1, 1, 1)))


def logical_axis_rules() -> tuple:
  """Logical axis name -> mesh axes. Parameters shard over fsdp (and tensor), activations over
  batch. Order matters: the first rule whose mesh axes are still free wins."""
  return (
      ("batch", ("data", "fsdp")),
      ("activation_batch", ("data", "fsdp")),
      ("embed", "fsdp"),
      ("vocab", "tensor"),
      ("mlp", "tensor"),
      ("heads", "tensor"),
      ("kv_heads", "tensor"),
      ("head_dim", None),
      ("layers", None),
      ("length", None),
      ("kv_length", None),
      ("queries", None),
      ("frames", None),
      ("views", None),
      ("height", None),
      ("width", None),
      ("channels", None),
      ("conv_in", None),
      ("conv_out", "tensor"),
      ("lora_rank", None),
      ("norm", None),
  )


def optim_config(**overrides) -> ConfigDict:
  """AdamW with warmup + cosine; `frozen` holds regexes over '/'-joined parameter paths."""
  cfg = ConfigDict(dict(lr=3e-4, schedule="cosine", warmup_steps=100, total_steps=10000,
                        end_lr_ratio=0.1, weight_decay=0.0, b1=0.9, b2=0.95, grad_clip_norm=1.0,
                        accumulate_steps=1, frozen=()))
  cfg.update(overrides)
  return cfg


# ----------------------------------------------------------------------------------------------
# Model presets. Keys are the fields of the module each configures.


def llm_preset(name: str) -> ConfigDict:
  """LLaMA-family decoder (`models/llm.py: LLM`)."""
  common = dict(
      rope_theta=10000.0, rope_scaling=None, norm_eps=1e-5, tie_embeddings=False,
      lora_rank=0, lora_alpha=16.0, lora_targets=("q_proj", "k_proj", "v_proj", "o_proj"),
      dtype="float32", param_dtype="float32", scan_layers=True, remat_policy="none",
      attention_impl="xla")
  presets = {
      "tiny": dict(vocab_size=1024, embed_dim=64, num_layers=2, num_heads=4, num_kv_heads=2,
                   head_dim=16, mlp_dim=128, max_positions=256),
      "small": dict(vocab_size=1024, embed_dim=256, num_layers=4, num_heads=8, num_kv_heads=4,
                    head_dim=32, mlp_dim=688, max_positions=1024, lora_rank=8),
      # LLaMA-7B (as LMDrive/LMGenDrive): LoRA r16 on the attention projections.
      "paper": dict(vocab_size=32000, embed_dim=4096, num_layers=32, num_heads=32,
                    num_kv_heads=32, head_dim=128, mlp_dim=11008, max_positions=4096,
                    lora_rank=16, lora_alpha=32.0, dtype="bfloat16", remat_policy="full"),
  }
  if name not in presets:
    raise ConfigError(f"unknown preset {name!r} for the LLM; choose one of {sorted(presets)}")
  return ConfigDict({**common, **presets[name]})


# The parameter subtrees of LMGenDrive's training-only heads (the module names models/lmgendrive.py
# gives them): the planner never reads them, so a fine-tune built without one may leave it behind.
TRAINING_ONLY_HEADS = ("visual_probe", "layout_probe", "instruction_probe")


def lmgendrive_preset(name: str) -> ConfigDict:
  """The unified model (`models/lmgendrive.py: LMGenDrive`): sub-presets of matching widths
  (vision embed_dim -> Q-Former encoder_hidden_size; Q-Former out_dim -> LLM embed_dim)."""
  vision = vision_preset(name).encoder
  qformer = qformer_preset(name)
  llm = llm_preset(name)
  if qformer.encoder_hidden_size != vision.embed_dim or qformer.out_dim != llm.embed_dim:
    raise ConfigError(f"preset {name!r}: widths do not chain (vision {vision.embed_dim} -> "
                      f"qformer {qformer.encoder_hidden_size}/{qformer.out_dim} -> llm "
                      f"{llm.embed_dim})")
  hidden = {"tiny": 64, "small": 256, "paper": 1024}[name]
  world = world_preset(name).dit
  vae = vae_preset(name)
  if world.cond_dim != llm.embed_dim or world.latent_channels != vae.latent_channels:
    raise ConfigError(f"preset {name!r}: world generator cond_dim {world.cond_dim} / latent "
                      f"channels {world.latent_channels} do not match the LLM width "
                      f"{llm.embed_dim} / VAE latents {vae.latent_channels}")
  return ConfigDict(dict(
      vision=vision, qformer=qformer, llm=llm,
      action_head=dict(num_waypoints=5, hidden_dim=hidden, dtype=llm.dtype,
                       param_dtype=llm.param_dtype),
      world=world, vae=vae,
      num_action_queries=4, num_generation_queries=4, freeze_vision=True, speed_input=True,
      layout_probe_size=(0, 0), layout_probe_classes=len(view_layout.VIEW_LAYOUT_CLASSES),
      instruction_probe_classes=0, view_reader_heads=0, view_reader_layers=1))


# ----------------------------------------------------------------------------------------------
# Vision presets


def vision_preset(name: str) -> ConfigDict:
  """Stage-1 perception model (`models/vision.py: PerceptionModel`).

  `encoder` holds the `VisionEncoder` fields (what later stages keep, frozen); the other keys
  size the stage-1 heads. Tokens per frame: pooled_height * pooled_width + 1 + num_waypoints
  (+ V * (h * w + 1) view tokens with append_view_tokens).
  """
  heads = dict(detection_hidden=64, speed_channels=32, gru_hidden=64, target_point_scale=1.0,
               road_layout_classes=0, view_layout_classes=0, view_layout_size=(16, 16),
               view_layout_hidden=64, red_ahead_head=True)
  common = dict(backbone_kind="resnet", num_views=5, num_waypoints=5, activation="gelu",
                bev_query_init="normal", dtype="float32", param_dtype="float32")
  resnet = dict(block="bottleneck", layers=(3, 4, 6, 3), channels=(64, 128, 256, 512),
                stem_width=32, stem_type="deep", avg_down=True, frozen_batch_norm=True,
                bn_eps=1e-5, output_stride=32)
  # Trained from scratch (tiny, small), the backbone's BatchNorm must learn its statistics: with
  # frozen identity statistics and zero-initialised residual branches the stride-32 features
  # came out ~20x smaller than the view/position embeddings added to them, and the trained
  # encoder's tokens hardly depended on the image (a blind planner). `paper` imports ImageNet
  # statistics (convert/timm_resnet.py) and keeps them frozen.
  scratch = dict(frozen_batch_norm=False)
  # ... and its BEV queries start as their cells' positions (models/bev_decoder.py says why).
  scratch_decoder = dict(bev_query_init="sine")
  # The small encoders also hand the Q-Former every view's tokens (models/vision.py says why).
  encoders = {
      # 32x32 views: tests in seconds.
      "tiny": dict(backbone=dict(resnet, **scratch, block="basic", layers=(1, 1, 1, 1),
                                 channels=(8, 8, 16, 16), stem_width=8),
                   embed_dim=32, num_heads=4, mlp_dim=64, num_encoder_layers=1,
                   num_decoder_layers=1, bev_height=8, bev_width=8, pooled_height=4,
                   pooled_width=4, append_view_tokens=True, **scratch_decoder),
      # resnet18d-like, at the 64x64 views of the small data preset: the CPU demo.
      "small": dict(backbone=dict(resnet, **scratch, block="basic", layers=(2, 2, 2, 2),
                                  channels=(32, 64, 128, 256)),
                    embed_dim=128, num_heads=4, mlp_dim=512, num_encoder_layers=1,
                    num_decoder_layers=2, bev_height=20, bev_width=20, pooled_height=5,
                    pooled_width=5, append_view_tokens=True, **scratch_decoder),
      # LMDrive: resnet50d views, width 256, 50x50 BEV grid of ~1 m cells pooled to 10x10.
      "paper": dict(backbone=resnet, embed_dim=256, num_heads=8, mlp_dim=2048,
                    num_encoder_layers=2, num_decoder_layers=4, bev_height=50, bev_width=50,
                    pooled_height=10, pooled_width=10),
  }
  if name not in encoders:
    raise ConfigError(f"unknown preset {name!r} for the vision encoder; choose one of "
                      f"{sorted(encoders)}")
  small_heads = dict(detection_hidden=16, speed_channels=4, gru_hidden=16)
  # From scratch the waypoint head reads the target point in units of 20 m (models/
  # perception_heads.py says why), and a road-layout head asks the BEV cells where the lanes are
  # (data/topdown.py says why); `paper` keeps LMDrive's heads (metres, no road layout).
  # They also decode each view's road layout and the cars and pedestrians on it in image space
  # from its feature map (data/view_layout.py says why), at a quarter of the view's resolution.
  # The red-light-ahead head stays off for the small presets: their 64x64 front camera shows a
  # light ~30 m ahead well under a pixel wide, and even with the telephoto focus camera a 400-step
  # stage 1 did not learn it (`bench/light_heads.py`; README); paper's views come from 800x600.
  from_scratch = dict(target_point_scale=0.05, road_layout_classes=len(topdown.ROAD_CLASSES),
                      view_layout_classes=len(view_layout.VIEW_LAYOUT_CLASSES),
                      red_ahead_head=False)
  scratch_heads = {"tiny": dict(small_heads, **from_scratch, view_layout_size=(8, 8),
                                view_layout_hidden=16),
                   "small": dict(heads, **from_scratch)}
  return ConfigDict(dict(scratch_heads.get(name, heads),
                         encoder={**common, **encoders[name]}))


# ----------------------------------------------------------------------------------------------
# Q-Former presets


def qformer_preset(name: str) -> ConfigDict:
  """BLIP-2 Q-Former with projection to the LLM (`models/qformer.py: QFormer`).

  `encoder_hidden_size` is the vision token width (vision preset's embed_dim) and `out_dim` the
  LLM width (llm preset's embed_dim) of the same name.
  """
  common = dict(cross_attention_frequency=2, layer_norm_eps=1e-12, activation="gelu",
                use_text_input=False, vocab_size=30522, max_text_positions=512, pad_token_id=0,
                projection="mlp2x_gelu", dtype="float32", param_dtype="float32")
  presets = {
      "tiny": dict(num_queries=4, hidden_size=32, num_layers=2, num_heads=4,
                   intermediate_size=64, encoder_hidden_size=32, out_dim=64, vocab_size=1024,
                   max_text_positions=64),
      "small": dict(num_queries=4, hidden_size=128, num_layers=4, num_heads=4,
                    intermediate_size=512, encoder_hidden_size=128, out_dim=256,
                    vocab_size=1024, max_text_positions=128),
      # BERT-base layout (bert-base-uncased init, as BLIP-2), reading the instruction; 4 queries
      # per frame projected to LLaMA-7B's width.
      "paper": dict(num_queries=4, hidden_size=768, num_layers=12, num_heads=12,
                    intermediate_size=3072, encoder_hidden_size=256, out_dim=4096,
                    use_text_input=True),
  }
  if name not in presets:
    raise ConfigError(f"unknown preset {name!r} for the Q-Former; choose one of "
                      f"{sorted(presets)}")
  return ConfigDict({**common, **presets[name]})


# ----------------------------------------------------------------------------------------------
# Data presets


def data_preset(name: str, stage: int = 2) -> ConfigDict:
  """Input pipeline of a training stage (`lmgendrive_jax/data/pipeline.py: make_iterator`).

  One (H, W) for every view (the model's), LMDrive-style resize-then-crop (`crop_scale`), the
  BEV detection grid of the vision preset, clip windows (stage 2: short single-step windows;
  stage 3: long windows at a stride with multi-step futures for the world generator), token
  lengths, augmentation strengths and notice probability. `batch_size` is global; each host loads
  `batch_size / process_count`. `data_dir` is the build's --out folder.
  """
  if stage not in (1, 2, 3):
    raise ConfigError(f"data_preset stage must be 1, 2 or 3; got {stage!r}")
  common = dict(
      data_dir="", split="train", tokenizer="assets/tokenizer", seed=0, shuffle=True,
      views=("front", "left", "right", "rear", "focus"), crop_scale=0.875, random_crop=True,
      colour_jitter=0.1, drop_blocked=True, bev_ahead=30.0, bev_behind=20.0, bev_side=25.0,
      start_jitter=-1, notice_probability=0.5, read_threads=2, prefetch=4, worker_buffer=2,
      # Stages 2-3 (training only): a window start that has a junction within its waypoints'
      # horizon is drawn 1 + junction_window_boost times as often as another of its clip, and a
      # clip that passes a junction comes junction_clip_repeats times an epoch (data/clips.py,
      # pipeline.py). Drawn uniformly, ~1 window in 5 is one where the instruction picks the
      # branch; the rest teach lane keeping, which the cameras alone already tell.
      junction_window_boost=0.0, junction_clip_repeats=1,
      # Stages 2-3 (training only): a window start whose window holds a frame where the car
      # stands and pulls away (clips.pull_away_frames; ~1.5% of the expert's frames) gets
      # pull_away_window_boost more weight (added to the junction weight).
      pull_away_window_boost=0.0,
      # Stages 2-3 (training only): likewise slowing_window_boost for a window holding a frame
      # where the moving car's plan slows down (clips.slowing_frames; ~12% of windows).
      slowing_window_boost=0.0,
      # Stages 2-3 (training only): window starts weighted by the share of unmasked waypoints in
      # the window (clips.labelled_start_weights), so that on-policy data, whose learner-driven
      # frames are masked, is not drawn where it has no targets.
      labelled_windows=False,
      # Per-view road-layout labels (rows, cols) of each frame (data/view_layout.py); (0, 0):
      # none. Stage 1 sets it to the vision model's view_layout_size, stages 2-3 to the layout
      # probe's size.
      view_layout_size=(0, 0),
      # Stage-1 frames: per-view object cover (rows, cols): the share of each cell's rays that
      # meet a vehicle or pedestrian (view_layout.object_cover; needs no road map); (0, 0): none.
      # The hazard detector's dense target (configs/hazard_detector.py).
      view_objects_size=(0, 0),
      # Stages 2-3 (training, with random_crop): the four rig views share one column offset, so
      # the crop looks like the car turned by one yaw from the evaluation's centred crop
      # (camera_rig.crop_yaw, up to ~8 degrees at crop_scale 0.875), and the waypoints are
      # turned with it (geometry.turn_ego): the path stays on the road while the heading the
      # cameras show changes, which teaches steering back from a heading error instead of
      # ignoring one (below; measured, it did not raise DS). The stored focus view cannot turn
      # (it is cut at build time) and stays centred.
      rig_crop=False)
  # random_crop: LMDrive (InterFuser's resize-then-CenterCrop) centre-crops, as `paper` does. A
  # random crop shifts a 64-px view by up to +-4.5 px, an apparent yaw of +-8 degrees at the rig's
  # 100-degree FOV, while the ego-frame waypoints and BEV targets stay put: for a planner that
  # reads its cameras it teaches that such heading errors change nothing. `tiny` and `small` keep
  # it: on the big curriculum (a planner that reads its cameras), centre crops and `rig_crop`
  # halved its one-step heading slope (bench/lane_response.py: 0.146 -> 0.084 / 0.081 m/deg) but
  # drove 39.4 and 42.4 DS vs 45.5 with random crops on 40 held-out routes
  # (docs/experiments.md, 2026-12-06, 9th).
  presets = {
      "tiny": dict(view_size=(32, 32), batch_size=8, num_workers=0, bev_rows=8, bev_cols=8,
                   max_instruction_tokens=32, max_notice_tokens=16,
                   clip={2: dict(window_frames=4, stride=1, future_offsets=(1,)),
                         3: dict(window_frames=8, stride=2, future_offsets=(1, 2))}),
      # 64x64 views: a stage-2 step in seconds on 2 CPU cores (at 128x128 the VAE encode and
      # the DiT over 32x32 latents made it ~1 min).
      # Junction-weighted windows: on the bigger run's 4x data they cut the planner's lateral
      # error where the path turns from 1.95 to 1.27 m and made the blanked instruction cost DS
      # (README: bench/drive_quality.py, bench/lane_response.py).
      "small": dict(view_size=(64, 64), batch_size=8, num_workers=2, bev_rows=20,
                    bev_cols=20, max_instruction_tokens=48, max_notice_tokens=24,
                    junction_window_boost=3.0, junction_clip_repeats=2,
                    clip={2: dict(window_frames=4, stride=1, future_offsets=(1, 2)),
                          # Long clips at half the batch: 4 x 8 frames ~6 s a step (8 x 12: ~20 s).
                          3: dict(window_frames=8, stride=2, future_offsets=(1, 2, 4),
                                  batch_size=4)}),
      # LMDrive: 224 crops, 50x50 ~1 m BEV cells; stage 3 windows of 40 frames at stride 2 (8 s).
      "paper": dict(view_size=(224, 224), batch_size=64, num_workers=16, random_crop=False,
                    bev_rows=50, bev_cols=50, max_instruction_tokens=64, max_notice_tokens=32,
                    read_threads=8,
                    clip={2: dict(window_frames=10, stride=1, future_offsets=(1, 2, 3, 4)),
                          3: dict(window_frames=40, stride=2, future_offsets=(1, 2, 4, 8))}),
  }
  if name not in presets:
    raise ConfigError(f"unknown preset {name!r} for the data pipeline; choose one of "
                      f"{sorted(presets)}")
  preset = dict(presets[name])
  clip = preset.pop("clip")[3 if stage == 3 else 2]
  return ConfigDict({**common, **preset, **clip})


# ----------------------------------------------------------------------------------------------
# Simulator presets


def sim_preset(name: str) -> ConfigDict:
  """Embedded simulator (`lmgendrive_jax/sim`): towns, physics, cameras, traffic, instructions.

  `town` are the `sim/town.py: make_town` fields, `world` the `sim/world.py: WorldParams` fields,
  `camera` the `sim/render.py: CameraRig` fields, `traffic` the actor counts and scenario rates of
  `sim/scenario.py`, `instructions` the stream settings of `sim/instruction_stream.py`
  (LangAuto's misleading probability 0.2 for about 2 s, notices held 8 s), `expert` the
  autopilot's (LMDrive's target speeds).
  """
  town = dict(grid=(4, 4), block=55.0, lane_width=3.5, sidewalk=3.0, two_lane_prob=0.4,
              remove_edge_prob=0.1, light_prob=0.6, stop_prob=0.5, lane_points=10,
              raster_res=0.25, margin=30.0, light_cycle=(10.0, 2.0, 1.0))
  world = dict(wheelbase=2.9, max_steer_deg=70.0, max_accel=4.0, max_brake=9.0, max_speed=20.0,
               drag=0.02, idm_accel=2.0, idm_decel=3.0, idm_gap=2.5, idm_headway=1.2,
               npc_hard_brake=8.0, corridor_half_width=1.4, corridor_length=35.0, stop_gap=3.5,
               stop_sign_wait=1.0, brake_hold=4.0)
  camera = dict(views=("front", "left", "right", "rear"), width=64, height=64, max_boxes=12,
                draw_distance=120.0)
  traffic = dict(num_vehicles=6, num_pedestrians=6, scenario_every_m=60.0,
                 npc_speed_range=(5.0, 8.0))
  instructions = dict(misleading_prob=0.2, misleading_seconds=2.0, notice_seconds=8.0,
                      light_notice_m=40.0, scenario_notice_m=2.0)
  expert = dict(target_speed=6.5, slow_speed=4.0, lookahead=4.0, noise_prob=0.0,
                noise_steer=0.3, noise_seconds=1.0)
  presets = {
      "tiny": dict(batch_size=4),
      "small": dict(batch_size=8, town=dict(grid=(5, 5), block=65.0),
                    camera=dict(width=64, height=64, max_boxes=16),
                    traffic=dict(num_vehicles=12, num_pedestrians=12)),
      # LMDrive's collection: 800x600 cameras, bigger towns, denser traffic.
      "paper": dict(batch_size=4, town=dict(grid=(6, 6), block=80.0),
                    camera=dict(width=800, height=600, max_boxes=32, draw_distance=200.0),
                    traffic=dict(num_vehicles=40, num_pedestrians=40)),
  }
  if name not in presets:
    raise ConfigError(f"unknown preset {name!r} for the simulator; choose one of "
                      f"{sorted(presets)}")
  preset = dict(presets[name])
  sections = dict(town=town, world=world, camera=camera, traffic=traffic,
                  instructions=instructions, expert=expert)
  out = {key: {**value, **preset.pop(key, {})} for key, value in sections.items()}
  return ConfigDict({**out, **preset})


# ----------------------------------------------------------------------------------------------
# VAE presets


def vae_preset(name: str) -> ConfigDict:
  """Image autoencoder in diffusers' AutoencoderKL layout (`models/vae.py: AutoencoderKL`).

  Spatial downsampling is 2 ** (len(block_out_channels) - 1). `scaling_factor` (and
  `shift_factor`, None for none) map the posterior to the latents the world generator sees:
  `z = (mean - shift) * scale`.
  """
  common = dict(in_channels=3, out_channels=3, latent_channels=4, act_fn="silu",
                scaling_factor=1.0, shift_factor=None, use_quant_conv=True,
                use_post_quant_conv=True, mid_block_add_attention=True, dtype="float32",
                param_dtype="float32")
  presets = {
      # 32x32 views -> 8x8x4 latents; trained from scratch (stage 1) for the embedded default.
      "tiny": dict(block_out_channels=(8, 16, 16), layers_per_block=1, norm_num_groups=4),
      # 64x64 views (small data preset) -> 16x16x4 latents.
      "small": dict(block_out_channels=(32, 64, 64), layers_per_block=1, norm_num_groups=8),
      # Stable Diffusion's VAE (import its weights with convert/diffusers_vae.py): 8x down.
      "paper": dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                    norm_num_groups=32, scaling_factor=0.18215),
  }
  if name not in presets:
    raise ConfigError(f"unknown preset {name!r} for the VAE; choose one of {sorted(presets)}")
  return ConfigDict({**common, **presets[name]})


# ----------------------------------------------------------------------------------------------
# World generator presets


def world_preset(name: str) -> ConfigDict:
  """World generator: `dit` holds the `models/world.py: WorldDiT` fields, `flow` the
  `diffusion.py: FlowConfig` fields (training noise/time/dropout and the sampler), `chunk` the
  autoregressive window (`context_frames` observed + `future_frames` generated per chunk).

  `dit.cond_dim` is the LLM width (llm preset's embed_dim: the generation-query states), and
  `dit.latent_channels` the VAE preset's latent_channels of the same name.
  """
  common = dict(latent_channels=4, patch_size=2, num_views=5, max_frames=16, use_waypoints=False,
                qkv_bias=True, norm_eps=1e-6, dtype="float32", param_dtype="float32",
                scan_blocks=True, remat_policy="none", attention_impl="xla")
  dits = {
      "tiny": dict(embed_dim=32, num_blocks=2, num_heads=2, mlp_dim=64, cond_dim=64),
      # Sized for 2 CPU cores: 16x16 latents of the 64x64 views; ~60% of a 3.7 s stage-2 step.
      "small": dict(embed_dim=128, num_blocks=4, num_heads=4, mlp_dim=512, cond_dim=256,
                    remat_policy="none"),
      # DiT-L width/depth/heads; conditioning from LLaMA-7B's 4096-wide states.
      "paper": dict(embed_dim=1024, num_blocks=24, num_heads=16, mlp_dim=4096, cond_dim=4096,
                    max_frames=32, dtype="bfloat16", remat_policy="full"),
  }
  chunks = {"tiny": dict(context_frames=2, future_frames=2),
            "small": dict(context_frames=2, future_frames=4),
            "paper": dict(context_frames=4, future_frames=8)}
  if name not in dits:
    raise ConfigError(f"unknown preset {name!r} for the world generator; choose one of "
                      f"{sorted(dits)}")
  dit = {**common, **dits[name]}
  llm_width, latent_channels = llm_preset(name).embed_dim, vae_preset(name).latent_channels
  if dit["cond_dim"] != llm_width or dit["latent_channels"] != latent_channels:
    raise ConfigError(f"preset {name!r}: world dit cond_dim={dit['cond_dim']} / latent_channels="
                      f"{dit['latent_channels']} must equal the LLM width {llm_width} / VAE "
                      f"latent_channels {latent_channels}")
  flow = dict(time_logit_mean=0.0, time_logit_std=1.0, cond_drop_prob=0.1, sampler="euler",
              num_steps=8, guidance_scale=1.0, time_shift=1.0)
  return ConfigDict(dict(dit=dit, flow=flow, chunk=chunks[name]))
