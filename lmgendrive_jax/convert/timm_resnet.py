"""timm ResNet weights <-> our `models/resnet.py: ResNet` (params + frozen BatchNorm statistics).

Reads a directory in timm's Hugging Face save format (`config.json` + `model.safetensors`, as
written by `timm.models.push_to_hub.save_for_hf` or by `save` below) with no torch involved. The
architecture is read off the tensors themselves (block type, blocks per stage, stage widths, stem
type and width, average-pool shortcut), so resnet18/26/34/50/101, their `d` and `t` variants and
custom widths all load without a table of names; `config.json` only has to exist. A key prefix
(e.g. `rgb_backbone.` in LMDrive's perception checkpoints) is found automatically.

Renaming rule: timm's module path with each numeric index glued to the name before it
(`layer2.1.downsample.1.weight` -> `layer2_1/downsample_1/kernel`); conv weights
[out, in, kh, kw] -> kernel [kh, kw, in, out]; BatchNorm weight/bias -> params scale/bias,
running_mean/var -> batch_stats mean/var.
"""

from __future__ import annotations

import json
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from lmgendrive_jax.convert import safetensors_io
from lmgendrive_jax.errors import ConversionError
from lmgendrive_jax.models.resnet import ResNet

_BN_LEAVES = {"weight": ("params", "scale"), "bias": ("params", "bias"),
              "running_mean": ("batch_stats", "mean"), "running_var": ("batch_stats", "var")}
_BN_FROM_OURS = {v: k for k, v in _BN_LEAVES.items()}


def _glue(path: str) -> str:
  """'layer2.1.downsample.1' -> 'layer2_1/downsample_1'."""
  parts: list[str] = []
  for piece in path.split("."):
    if piece.isdigit() and parts:
      parts[-1] += f"_{piece}"
    else:
      parts.append(piece)
  return "/".join(parts)


def _unglue(path: str) -> str:
  """'layer2_1/downsample_1' -> 'layer2.1.downsample.1'."""
  return ".".join(re.sub(r"_(\d+)$", r".\1", p) for p in path.split("/"))


def _find_prefix(keys) -> str:
  for key in keys:
    for stem in ("conv1.0.weight", "conv1.weight"):
      if key.endswith(stem) and not re.search(r"layer\d+\.", key):
        return key[:-len(stem)]
  raise ConversionError("no ResNet stem (conv1.weight or conv1.0.weight) among the tensors: "
                        "this is not a timm ResNet state dict")


def config_from_shapes(shapes: dict[str, tuple[int, ...]]) -> dict:
  """ResNet fields inferred from timm tensor shapes (keys without prefix)."""
  if "conv1.0.weight" in shapes:
    first, second = shapes["conv1.0.weight"][0], shapes["conv1.3.weight"][0]
    stem_width = second
    stem_type = "deep_tiered" if first != second else "deep"
    if stem_type == "deep_tiered" and first != 3 * (stem_width // 4):
      raise ConversionError(f"stem widths {first}, {second} match neither timm's deep nor its "
                            f"deep_tiered stem")
  elif "conv1.weight" in shapes:
    stem_type, stem_width = "", 64
  else:
    raise ConversionError("no ResNet stem weights (conv1.weight / conv1.0.weight) found")
  block = "bottleneck" if "layer1.0.conv3.weight" in shapes else "basic"
  layers, channels = [], []
  for stage in range(1, 5):
    depth = len({m.group(1) for k in shapes if (m := re.match(rf"layer{stage}\.(\d+)\.", k))})
    if depth == 0:
      raise ConversionError(f"stage layer{stage} has no blocks; timm ResNets have four stages")
    layers.append(depth)
    channels.append(shapes[f"layer{stage}.0.conv1.weight"][0])
  avg_down = any(re.match(r"layer\d+\.0\.downsample\.2\.weight", k) for k in shapes)
  return dict(block=block, layers=tuple(layers), channels=tuple(channels), stem_width=stem_width,
              stem_type=stem_type, avg_down=avg_down)


def timm_architecture(model: ResNet) -> tuple[str, dict]:
  """A registered timm architecture name and the `model_args` that make it equal our model."""
  base = {("basic", ""): "resnet18", ("basic", "deep"): "resnet18d",
          ("basic", "deep_tiered"): "resnet10t", ("bottleneck", ""): "resnet50",
          ("bottleneck", "deep"): "resnet50d", ("bottleneck", "deep_tiered"): "resnet14t"}
  name = base[(model.block, model.stem_type)]
  args = dict(layers=list(model.layers), channels=list(model.channels),
              stem_width=model.stem_width, stem_type=model.stem_type, avg_down=model.avg_down)
  return name, args


def load(path: str, prefix: str | None = None, **overrides) -> tuple[ResNet, dict]:
  """timm directory -> (ResNet, {"params": ..., "batch_stats": ...}) as float32 numpy-backed arrays.

  overrides: other ResNet fields (e.g. `dtype="bfloat16"`, `frozen_batch_norm=False`).
  """
  if not os.path.isfile(os.path.join(path, "config.json")):
    raise ConversionError(f"{path}/config.json not found: expected a timm save_for_hf directory "
                          f"(config.json + model.safetensors)")
  reader = safetensors_io.SafetensorsReader(path)
  keys = reader.keys()
  prefix = _find_prefix(keys) if prefix is None else prefix
  shapes = {k[len(prefix):]: reader.shape(k) for k in keys if k.startswith(prefix)}
  model = ResNet(**{**config_from_shapes(shapes), **overrides})
  abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3))))
  expected = traverse_util.flatten_dict(
      {c: abstract[c] for c in ("params", "batch_stats")}, sep="/")
  flat = {}
  for ours, leaf in expected.items():
    collection, *module, leaf_name = ours.split("/")
    module_path = _unglue("/".join(module))
    if leaf_name == "kernel":
      theirs = f"{prefix}{module_path}.weight"
    else:
      theirs = f"{prefix}{module_path}.{_BN_FROM_OURS[(collection, leaf_name)]}"
    reader.check(theirs)
    array = np.asarray(reader.read(theirs), np.float32)
    if leaf_name == "kernel":
      array = array.transpose(2, 3, 1, 0)
    shape = getattr(leaf, "value", leaf).shape
    if array.shape != shape:
      raise ConversionError(f"{path}: tensor {theirs} has shape {array.shape} after layout change "
                            f"but our {ours} needs {shape}")
    flat[ours] = array
  variables = traverse_util.unflatten_dict(flat, sep="/")
  return model, jax.tree.map(jnp.asarray, variables)


def save(model: ResNet, variables: dict, path: str, dtype: str = "float32") -> None:
  """Writes `path/config.json` (timm's save_for_hf layout) and `path/model.safetensors`.

  `timm.create_model(cfg["architecture"], num_classes=0, **cfg["model_args"])` then loads the
  tensors with `load_state_dict(..., strict=True)`.
  """
  flat = traverse_util.flatten_dict({c: variables[c] for c in ("params", "batch_stats")}, sep="/")
  tensors = {}
  for ours, value in flat.items():
    collection, *module, leaf_name = ours.split("/")
    value = np.asarray(jax.device_get(getattr(value, "value", value)), np.float32)
    module_path = _unglue("/".join(module))
    if leaf_name == "kernel":
      tensors[f"{module_path}.weight"] = value.transpose(3, 2, 0, 1)
    else:
      tensors[f"{module_path}.{_BN_FROM_OURS[(collection, leaf_name)]}"] = value
      if leaf_name == "mean":
        tensors[f"{module_path}.num_batches_tracked"] = np.zeros((), np.int64)
  int_tensors = {k: v for k, v in tensors.items() if v.dtype == np.int64}
  float_tensors = {k: v for k, v in tensors.items() if v.dtype != np.int64}
  safetensors_io.write(float_tensors, path, dtype)
  if int_tensors:  # timm's state dict carries BatchNorm counters; keep strict loading possible.
    from safetensors.numpy import load_file, save_file
    file = os.path.join(path, "model.safetensors")
    save_file({**load_file(file), **int_tensors}, file, metadata={"format": "pt"})
  architecture, model_args = timm_architecture(model)
  config = {"architecture": architecture, "num_classes": 0, "num_features": model.num_features,
            "global_pool": "avg", "model_args": model_args,
            "pretrained_cfg": {"architecture": architecture, "num_classes": 0,
                               "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}}
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump(config, f, indent=2)
