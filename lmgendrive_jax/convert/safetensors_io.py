"""Reading and writing safetensors checkpoints (single file or sharded with an index), no torch.

Shared by every converter: tensors are read lazily (memory-mapped slices, bf16 through
ml_dtypes), so a converter can pull exactly the block one device needs.
"""

from __future__ import annotations

import json
import os

import ml_dtypes
import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from lmgendrive_jax.errors import ConversionError

INDEX_SUFFIX = ".safetensors.index.json"
_DTYPES = {"float32": np.float32, "float16": np.float16, "bfloat16": ml_dtypes.bfloat16}


def read_config(path: str) -> dict:
  """`<path>/config.json` of a transformers/diffusers `save_pretrained` directory."""
  config_path = os.path.join(path, "config.json")
  if not os.path.isfile(config_path):
    raise ConversionError(f"{config_path} not found: expected a save_pretrained directory with "
                          f"config.json and safetensors weights")
  with open(config_path) as f:
    return json.load(f)


class SafetensorsReader:
  """All tensors of a directory: `<stem>.safetensors` or shards listed in `<stem>.safetensors.index.json`."""

  def __init__(self, path: str, stem: str | None = None):
    self.path = path
    stems = [stem] if stem else ["model", "diffusion_pytorch_model"]
    self._file_of: dict[str, str] = {}
    for candidate in stems:
      single = os.path.join(path, f"{candidate}.safetensors")
      index = os.path.join(path, f"{candidate}{INDEX_SUFFIX}")
      if os.path.isfile(index):
        with open(index) as f:
          weight_map = json.load(f)["weight_map"]
        self._file_of = {k: os.path.join(path, v) for k, v in weight_map.items()}
        break
      if os.path.isfile(single):
        with safe_open(single, framework="numpy") as f:
          self._file_of = {k: single for k in f.keys()}
        break
    else:
      raise ConversionError(f"no safetensors weights in {path!r}: expected one of "
                            f"{[s + '.safetensors' for s in stems]} or a sharded index")
    self._handles = {}

  def keys(self) -> list[str]:
    return list(self._file_of)

  def _handle(self, name: str):
    self.check(name)
    file = self._file_of[name]
    if file not in self._handles:
      if not os.path.isfile(file):
        raise ConversionError(f"shard {file!r} listed in the index of {self.path!r} is missing")
      self._handles[file] = safe_open(file, framework="numpy")
    return self._handles[file]

  def check(self, name: str) -> None:
    if name not in self._file_of:
      raise ConversionError(f"tensor {name!r} is missing from the checkpoint in {self.path!r}")

  def slice(self, name: str):
    """A lazy slice object: index it (`reader.slice(n)[0:4, :]`) to read only that block."""
    return self._handle(name).get_slice(name)

  def shape(self, name: str) -> tuple[int, ...]:
    return tuple(self.slice(name).get_shape())

  def read(self, name: str) -> np.ndarray:
    return self._handle(name).get_tensor(name)


def write(tensors: dict[str, np.ndarray], path: str, dtype: str = "float32",
          max_shard_bytes: int = 4 << 30, stem: str = "model") -> None:
  """Writes tensors as `<stem>.safetensors`, or shards plus an index when over max_shard_bytes."""
  if dtype not in _DTYPES:
    raise ConversionError(f"cannot write dtype {dtype!r}; choose one of {sorted(_DTYPES)}")
  os.makedirs(path, exist_ok=True)
  arrays = {k: np.ascontiguousarray(np.asarray(v).astype(_DTYPES[dtype])) for k, v in
            tensors.items()}
  shards, current, size = [], {}, 0
  for name, array in arrays.items():
    if current and size + array.nbytes > max_shard_bytes:
      shards.append(current)
      current, size = {}, 0
    current[name] = array
    size += array.nbytes
  shards.append(current)
  metadata = {"format": "pt"}
  if len(shards) == 1:
    save_file(shards[0], os.path.join(path, f"{stem}.safetensors"), metadata=metadata)
    return
  weight_map = {}
  for i, shard in enumerate(shards):
    file = f"{stem}-{i + 1:05d}-of-{len(shards):05d}.safetensors"
    save_file(shard, os.path.join(path, file), metadata=metadata)
    weight_map.update({name: file for name in shard})
  with open(os.path.join(path, f"{stem}{INDEX_SUFFIX}"), "w") as f:
    json.dump({"metadata": {"total_size": sum(a.nbytes for a in arrays.values())},
               "weight_map": weight_map}, f, indent=2)
