"""Imports of the PyTorch reference libraries (transformers, diffusers, timm) for parity tests.

Why the op definitions: on CPU-only machines whose torch is the CPU wheel (torch==2.13.0+cpu) the
PyPI torchvision wheel is a CUDA build whose C ops cannot load. torchvision's import then fails
registering fake kernels for `torchvision::nms` / `torchvision::qnms`, and transformers and timm
import torchvision eagerly. Defining those two op schemas first lets torchvision's pure-Python
parts (all that timm and transformers use here) import. Nothing calls the ops. On a machine with a
matching torchvision this is a no-op.
"""

import sys

import torch

_NMS_SCHEMA = "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"


def define_missing_torchvision_ops() -> None:
  """Imports torchvision; if its C ops are missing, defines their schemas and imports again."""
  try:
    import torchvision  # noqa: F401
    return
  except ModuleNotFoundError:
    return  # No torchvision: transformers and diffusers import fine without it.
  except RuntimeError as e:
    if "torchvision::" not in str(e):
      raise
  for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
    del sys.modules[name]
  for op in ("nms", "qnms"):
    try:
      torch._C._dispatch_find_schema_or_throw(f"torchvision::{op}", "")
    except RuntimeError:
      torch.library.define(f"torchvision::{op}", _NMS_SCHEMA)
  import torchvision  # noqa: F401,F811


def import_timm():
  define_missing_torchvision_ops()
  import timm
  return timm
