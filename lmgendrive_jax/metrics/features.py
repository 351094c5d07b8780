"""Pluggable feature networks for FID/FVD, loaded from a local directory (no downloads).

A feature-network directory holds `config.json` and `model.safetensors`:

  {"kind": "image_conv", "fields": {...}}  -> `ImageFeatureNet` (2D conv stack, global pool)
  {"kind": "video_conv", "fields": {...}}  -> `VideoFeatureNet` (3D conv stack, I3D-like
                                              space-time downsampling, global pool)
  a timm ResNet directory (config.json with "architecture" + model.safetensors)
                                           -> `models/resnet.py` via `convert/timm_resnet.py`,
                                              globally pooled (e.g. an ImageNet ResNet-50)

`save(module, params, path)` writes the first two kinds ('/'-joined parameter paths as tensor
names); `load(path) -> (kind, module, variables)`; `image_extractor(path)` and
`video_extractor(path)` give jitted, batch-shape-stable `fn(uint8 array) -> f32[N, D]` for
`metrics/frechet.py`.

Weights: the reference networks (InceptionV3 for FID, I3D for FVD) are not available on this
machine, and their layouts are not implemented here. The tests exercise every code path with a
randomly initialised network saved to and loaded from safetensors. Numbers from such a network
compare generators with each other; they are not the published FID/FVD.
"""

from __future__ import annotations

import json
import os
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from lmgendrive_jax.convert import safetensors_io
from lmgendrive_jax.errors import ConversionError

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


class ImageFeatureNet(nn.Module):
  """images: uint8[N, H, W, 3] -> f32[N, channels[-1]]: resize to input_size, [-1, 1],
  stride-2 3x3 conv + ReLU per width in `channels`, global average pool."""
  channels: tuple[int, ...] = (32, 64, 128, 256)
  input_size: int = 64

  @nn.compact
  def __call__(self, images: jax.Array) -> jax.Array:
    x = images.astype(jnp.float32) / 127.5 - 1.0
    x = jax.image.resize(x, (x.shape[0], self.input_size, self.input_size, x.shape[-1]),
                         "bilinear")
    for i, width in enumerate(self.channels):
      x = nn.relu(nn.Conv(width, (3, 3), strides=(2, 2), name=f"conv_{i}")(x))
    return x.mean(axis=(1, 2))


class VideoFeatureNet(nn.Module):
  """videos: uint8[N, T, H, W, 3] -> f32[N, channels[-1]]: resize frames to input_size, 3x3x3
  convs + ReLU, space halved every layer and time every other layer, global average pool."""
  channels: tuple[int, ...] = (32, 64, 128, 256)
  input_size: int = 64

  @nn.compact
  def __call__(self, videos: jax.Array) -> jax.Array:
    n, t, _, _, c = videos.shape
    x = videos.astype(jnp.float32) / 127.5 - 1.0
    x = jax.image.resize(x, (n, t, self.input_size, self.input_size, c), "bilinear")
    for i, width in enumerate(self.channels):
      time_stride = 2 if i % 2 and x.shape[1] > 1 else 1
      x = nn.relu(nn.Conv(width, (3, 3, 3), strides=(time_stride, 2, 2), name=f"conv_{i}")(x))
    return x.mean(axis=(1, 2, 3))


KINDS = {"image_conv": ImageFeatureNet, "video_conv": VideoFeatureNet}


def save(module: nn.Module, params: dict, path: str) -> None:
  """Writes `path/config.json` + `path/model.safetensors` for an Image/VideoFeatureNet."""
  kind = {cls: name for name, cls in KINDS.items()}.get(type(module))
  if kind is None:
    raise ConversionError(f"cannot save a {type(module).__name__}; savable kinds: {sorted(KINDS)}")
  flat = traverse_util.flatten_dict(params.get("params", params), sep="/")
  safetensors_io.write({k: np.asarray(jax.device_get(v)) for k, v in flat.items()}, path)
  fields = {"channels": list(module.channels), "input_size": module.input_size}
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump({"kind": kind, "fields": fields}, f, indent=2)


def load(path: str) -> tuple[str, nn.Module, dict]:
  """A feature-network directory -> (kind, module, variables)."""
  config_path = os.path.join(path, "config.json")
  if not os.path.isfile(config_path):
    raise ConversionError(f"{config_path} not found: a feature network directory needs "
                          f"config.json + model.safetensors")
  with open(config_path) as f:
    config = json.load(f)
  if "architecture" in config and "kind" not in config:
    from lmgendrive_jax.convert import timm_resnet
    module, variables = timm_resnet.load(path)
    return "timm_resnet", module, variables
  kind = config.get("kind")
  if kind not in KINDS:
    raise ConversionError(f"{config_path}: kind={kind!r}; expected one of {sorted(KINDS)} or a "
                          f"timm ResNet config")
  fields = dict(config.get("fields", {}))
  if "channels" in fields:
    fields["channels"] = tuple(fields["channels"])
  module = KINDS[kind](**fields)
  sample = (jnp.zeros((1, 8, 8, 3), jnp.uint8) if kind == "image_conv"
            else jnp.zeros((1, 2, 8, 8, 3), jnp.uint8))
  abstract = jax.eval_shape(lambda: module.init(jax.random.key(0), sample))
  expected = traverse_util.flatten_dict(abstract["params"], sep="/")
  reader = safetensors_io.SafetensorsReader(path)
  flat = {}
  for name, leaf in expected.items():
    reader.check(name)
    value = np.asarray(reader.read(name), np.float32)
    if value.shape != leaf.shape:
      raise ConversionError(f"{path}: tensor {name} has shape {value.shape}; the config "
                            f"{fields} needs {leaf.shape}")
    flat[name] = jnp.asarray(value)
  return kind, module, {"params": traverse_util.unflatten_dict(flat, sep="/")}


def _resnet_features(module, variables, images: jax.Array) -> jax.Array:
  x = jax.image.resize(images.astype(jnp.float32) / 255.0,
                       (images.shape[0], 224, 224, images.shape[-1]), "bilinear")
  x = (x - IMAGENET_MEAN) / IMAGENET_STD
  features, _ = module.apply(variables, x)
  return features.mean(axis=(1, 2))


def _batched(fn: Callable, batch_size: int) -> Callable[[np.ndarray], np.ndarray]:
  """Pads every call to `batch_size` rows so one compiled program serves any N."""
  def run(inputs: np.ndarray) -> np.ndarray:
    inputs = np.asarray(inputs)
    outputs = []
    for start in range(0, len(inputs), batch_size):
      part = inputs[start:start + batch_size]
      pad = batch_size - len(part)
      if pad:
        part = np.concatenate([part, np.zeros((pad,) + part.shape[1:], part.dtype)])
      outputs.append(np.asarray(fn(part))[:batch_size - pad])
    return np.concatenate(outputs).astype(np.float32)
  return run


def image_extractor(path: str, batch_size: int = 32) -> Callable[[np.ndarray], np.ndarray]:
  """uint8[N, H, W, 3] -> f32[N, D] with the image network in `path`."""
  kind, module, variables = load(path)
  if kind == "video_conv":
    raise ConversionError(f"{path} holds a video feature network; FID needs an image one")
  if kind == "timm_resnet":
    fn = jax.jit(lambda x: _resnet_features(module, variables, x))
  else:
    fn = jax.jit(lambda x: module.apply(variables, x))
  return _batched(fn, batch_size)


def video_extractor(path: str, batch_size: int = 8) -> Callable[[np.ndarray], np.ndarray]:
  """uint8[N, T, H, W, 3] -> f32[N, D] with the video network in `path`."""
  kind, module, variables = load(path)
  if kind != "video_conv":
    raise ConversionError(f"{path} holds a {kind} network; FVD needs a video_conv one")
  return _batched(jax.jit(lambda x: module.apply(variables, x)), batch_size)


def init_random(module: nn.Module, seed: int = 0) -> dict:
  """Random-init variables (the tests' stand-in for published weights)."""
  sample = (jnp.zeros((1, 8, 8, 3), jnp.uint8) if isinstance(module, ImageFeatureNet)
            else jnp.zeros((1, 2, 8, 8, 3), jnp.uint8))
  return module.init(jax.random.key(seed), sample)
