"""diffusers AutoencoderKL weights <-> our `models/vae.py: AutoencoderKL` (Stable Diffusion's VAE).

Reads a diffusers `save_pretrained` directory (`config.json` +
`diffusion_pytorch_model.safetensors`, or a `vae/` sub-folder of a pipeline directory) with
`safetensors` only: no torch, no pickle. `save` writes the same layout back, which
`diffusers.AutoencoderKL.from_pretrained` loads strictly.

Renaming rule: diffusers' module path with each list index glued to the name before it
(`encoder.down_blocks.0.resnets.1.conv1.weight` <-> `encoder/down_blocks_0/resnets_1/conv1/kernel`);
conv weights [out, in, kh, kw] <-> kernels [kh, kw, in, out]; GroupNorm weight <-> scale. The
mid-block attention's `to_q/to_k/to_v/to_out.0` live in our `attention/{q,k,v,o}_proj` (one head);
checkpoints from before diffusers 0.14 name them `query/key/value/proj_attn` and load as well.
`load` returns the params collection: apply with `model.apply({"params": params}, ...)`.
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
from lmgendrive_jax.convert.torch_layouts import to_ours, to_theirs
from lmgendrive_jax.errors import ConversionError
from lmgendrive_jax.models.vae import AutoencoderKL

_ATTENTION = {"q_proj": "to_q", "k_proj": "to_k", "v_proj": "to_v", "o_proj": "to_out.0"}
_LEGACY_ATTENTION = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
_WEIGHT_STEM = "diffusion_pytorch_model"
_FIELDS = ("in_channels", "out_channels", "latent_channels", "block_out_channels",
           "layers_per_block", "norm_num_groups", "act_fn", "scaling_factor", "shift_factor",
           "use_quant_conv", "use_post_quant_conv", "mid_block_add_attention")


def _unglue(path: str) -> str:
  """'down_blocks_0/resnets_1' -> 'down_blocks.0.resnets.1'."""
  return ".".join(re.sub(r"_(\d+)$", r".\1", p) for p in path.split("/"))


def their_name(ours: str) -> tuple[str, str]:
  """Our '/'-joined parameter path -> (diffusers state-dict key, layout for torch_layouts)."""
  *module, leaf = ours.split("/")
  if "attention" in module:
    at = module.index("attention")
    proj = _ATTENTION[module[at + 1]]
    base = _unglue("/".join(module[:at])) + "." + proj
    if leaf == "kernel":
      return base + ".weight", "heads_out" if proj == "to_out.0" else "heads_in"
    return base + ".bias", "same" if proj == "to_out.0" else "heads_bias"
  base = _unglue("/".join(module))
  if leaf == "kernel":
    return base + ".weight", "conv"
  if leaf == "scale":
    return base + ".weight", "same"
  return base + ".bias", "same"


def model_from_config(config: dict, **overrides) -> AutoencoderKL:
  """A diffusers AutoencoderKL config dict -> our module (unsupported options are errors)."""
  down = tuple(config.get("down_block_types", ("DownEncoderBlock2D",)))
  up = tuple(config.get("up_block_types", ("UpDecoderBlock2D",)))
  if set(down) != {"DownEncoderBlock2D"} or set(up) != {"UpDecoderBlock2D"}:
    raise ConversionError(f"only DownEncoderBlock2D/UpDecoderBlock2D VAEs are supported; got "
                          f"down_block_types={down}, up_block_types={up}")
  channels = tuple(config.get("block_out_channels", (64,)))
  if len(down) != len(channels) or len(up) != len(channels):
    raise ConversionError(f"{len(down)} down / {len(up)} up blocks but block_out_channels "
                          f"{channels}: the config is inconsistent")
  if config.get("latents_mean") is not None or config.get("latents_std") is not None:
    raise ConversionError("per-channel latents_mean/latents_std are not supported; use "
                          "scaling_factor/shift_factor")
  defaults = dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
                  norm_num_groups=32, act_fn="silu", scaling_factor=0.18215, shift_factor=None,
                  use_quant_conv=True, use_post_quant_conv=True, mid_block_add_attention=True)
  fields = {k: config.get(k, defaults.get(k)) for k in _FIELDS}
  fields["block_out_channels"] = channels
  if fields["use_quant_conv"] is None:
    fields["use_quant_conv"] = True
  if fields["use_post_quant_conv"] is None:
    fields["use_post_quant_conv"] = True
  return AutoencoderKL(**{**fields, **overrides})


def diffusers_config(model: AutoencoderKL) -> dict:
  levels = len(model.block_out_channels)
  return {"_class_name": "AutoencoderKL", "_diffusers_version": "0.42.1",
          "down_block_types": ["DownEncoderBlock2D"] * levels,
          "up_block_types": ["UpDecoderBlock2D"] * levels, "force_upcast": True,
          "sample_size": 32 * 2 ** (levels - 1), "latents_mean": None, "latents_std": None,
          **{k: list(getattr(model, k)) if k == "block_out_channels" else getattr(model, k)
             for k in _FIELDS}}


def abstract_params(model: AutoencoderKL) -> dict:
  factor = model.downsample_factor
  images = jnp.zeros((1, factor, factor, model.in_channels))
  abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), images))
  return {k: getattr(v, "value", v).shape
          for k, v in traverse_util.flatten_dict(abstract["params"], sep="/").items()}


def _resolve_dir(path: str) -> str:
  if os.path.isfile(os.path.join(path, "config.json")):
    return path
  if os.path.isfile(os.path.join(path, "vae", "config.json")):
    return os.path.join(path, "vae")  # a whole pipeline directory: its vae/ sub-folder
  raise ConversionError(f"{path}/config.json not found: expected a diffusers save_pretrained "
                        f"directory (config.json + {_WEIGHT_STEM}.safetensors) or a pipeline "
                        f"directory with a vae/ sub-folder")


def load(path: str, **overrides) -> tuple[AutoencoderKL, dict]:
  """diffusers directory -> (AutoencoderKL, params) as float32 arrays.

  overrides: other AutoencoderKL fields (e.g. `dtype="bfloat16"`).
  """
  path = _resolve_dir(path)
  with open(os.path.join(path, "config.json")) as f:
    config = json.load(f)
  if config.get("_class_name", "AutoencoderKL") != "AutoencoderKL":
    raise ConversionError(f"{path}/config.json describes a {config['_class_name']}, not an "
                          f"AutoencoderKL")
  model = model_from_config(config, **overrides)
  reader = safetensors_io.SafetensorsReader(path, stem=_WEIGHT_STEM)
  available = set(reader.keys())
  params = {}
  for ours, shape in abstract_params(model).items():
    theirs, layout = their_name(ours)
    if theirs not in available:
      legacy = re.sub(r"\.(to_q|to_k|to_v|to_out\.0)\.",
                      lambda m: "." + _LEGACY_ATTENTION[m.group(1)] + ".", theirs)
      if legacy in available:
        theirs = legacy
    reader.check(theirs)
    value = np.asarray(reader.read(theirs), np.float32)
    if layout != "conv" and value.ndim == 4 and value.shape[2:] == (1, 1):
      value = value[:, :, 0, 0]  # attention projections stored as 1x1 convs in old checkpoints
    params[ours] = jnp.asarray(to_ours(value, layout, shape, f"{path}:{theirs}"))
  return model, traverse_util.unflatten_dict(params, sep="/")


def save(model: AutoencoderKL, params: dict, path: str, dtype: str = "float32") -> None:
  """Writes `path/config.json` and `path/diffusion_pytorch_model.safetensors` (diffusers)."""
  params = params.get("params", params) if isinstance(params, dict) else params
  flat = traverse_util.flatten_dict(params, sep="/")
  expected = abstract_params(model)
  missing = sorted(set(expected) - set(flat))
  if missing:
    raise ConversionError(f"cannot save the VAE: parameters {missing[:5]} are missing from the "
                          f"params given")
  tensors = {}
  for ours, value in flat.items():
    theirs, layout = their_name(ours)
    tensors[theirs] = to_theirs(
        np.asarray(jax.device_get(getattr(value, "value", value)), np.float32), layout)
  safetensors_io.write(tensors, path, dtype, stem=_WEIGHT_STEM)
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump(diffusers_config(model), f, indent=2)
