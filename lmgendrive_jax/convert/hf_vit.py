"""Hugging Face ViT (`ViTModel`) and CLIP vision (`CLIPVisionModel`) weights <-> `models/vit.py: ViT`.

Reads a transformers `save_pretrained` directory (config.json + model.safetensors, no torch): a
`ViTModel` / `ViTFor...` checkpoint (`model_type: vit`, keys under `embeddings.` / `encoder.layer.`,
optionally prefixed `vit.`), a `CLIPVisionModel` (`model_type: clip_vision_model`, keys under
`vision_model.`) or a full `CLIPModel` (`model_type: clip`, its `vision_config`; the text tower is
ignored). `save` writes the same layout back so transformers loads it with `from_pretrained`.
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from lmgendrive_jax.convert import safetensors_io
from lmgendrive_jax.convert.torch_layouts import to_ours, to_theirs
from lmgendrive_jax.errors import ConversionError
from lmgendrive_jax.models.vit import ViT

# Per-layer weights: our sub-path -> (their ViT name, their CLIP name, layout).
_LAYER = {
    "norm1/scale": ("layernorm_before.weight", "layer_norm1.weight", "same"),
    "norm1/bias": ("layernorm_before.bias", "layer_norm1.bias", "same"),
    "norm2/scale": ("layernorm_after.weight", "layer_norm2.weight", "same"),
    "norm2/bias": ("layernorm_after.bias", "layer_norm2.bias", "same"),
    "mlp/fc1/kernel": ("intermediate.dense.weight", "mlp.fc1.weight", "transpose"),
    "mlp/fc1/bias": ("intermediate.dense.bias", "mlp.fc1.bias", "same"),
    "mlp/fc2/kernel": ("output.dense.weight", "mlp.fc2.weight", "transpose"),
    "mlp/fc2/bias": ("output.dense.bias", "mlp.fc2.bias", "same"),
    "attn/o_proj/kernel": ("attention.output.dense.weight", "self_attn.out_proj.weight",
                           "heads_out"),
    "attn/o_proj/bias": ("attention.output.dense.bias", "self_attn.out_proj.bias", "same"),
}
for _ours, _vit, _clip in (("q_proj", "query", "q_proj"), ("k_proj", "key", "k_proj"),
                           ("v_proj", "value", "v_proj")):
  _LAYER[f"attn/{_ours}/kernel"] = (f"attention.attention.{_vit}.weight",
                                    f"self_attn.{_clip}.weight", "heads_in")
  _LAYER[f"attn/{_ours}/bias"] = (f"attention.attention.{_vit}.bias", f"self_attn.{_clip}.bias",
                                  "heads_bias")

_TOP_VIT = {
    "cls_token": ("embeddings.cls_token", "flat"),
    "pos_embed": ("embeddings.position_embeddings", "flat"),
    "patch_embed/kernel": ("embeddings.patch_embeddings.projection.weight", "conv"),
    "patch_embed/bias": ("embeddings.patch_embeddings.projection.bias", "same"),
    "final_norm/scale": ("layernorm.weight", "same"),
    "final_norm/bias": ("layernorm.bias", "same"),
}
_TOP_CLIP = {
    "cls_token": ("embeddings.class_embedding", "flat"),
    "pos_embed": ("embeddings.position_embedding.weight", "flat"),
    "patch_embed/kernel": ("embeddings.patch_embedding.weight", "conv"),
    "pre_norm/scale": ("pre_layrnorm.weight", "same"),
    "pre_norm/bias": ("pre_layrnorm.bias", "same"),
}


def weight_plan(model: ViT) -> dict[str, tuple[str, str]]:
  """Our flat param path -> (their name without prefix, layout)."""
  clip = model.layout == "clip"
  plan = dict(_TOP_CLIP if clip else _TOP_VIT)
  layer_root = "encoder.layers" if clip else "encoder.layer"
  for i in range(model.num_layers):
    for ours, (vit_name, clip_name, layout) in _LAYER.items():
      plan[f"layer_{i}/{ours}"] = (f"{layer_root}.{i}.{clip_name if clip else vit_name}", layout)
  return plan


def vit_config_from_hf(hf: dict, **overrides) -> dict:
  """ViT fields from a transformers config dict (ViT, CLIP vision, or full CLIP)."""
  model_type = hf.get("model_type")
  if model_type == "clip":
    hf, model_type = hf["vision_config"], "clip_vision_model"
  if model_type not in ("vit", "clip_vision_model"):
    raise ConversionError(f"config.json has model_type {model_type!r}; hf_vit reads 'vit', "
                          f"'clip_vision_model' or 'clip'")
  clip = model_type == "clip_vision_model"
  if not clip and not hf.get("qkv_bias", True):
    raise ConversionError("ViT checkpoints with qkv_bias=False are not supported")
  fields = dict(
      image_size=hf.get("image_size", 224), patch_size=hf.get("patch_size", 32 if clip else 16),
      hidden_size=hf.get("hidden_size", 768), num_layers=hf.get("num_hidden_layers", 12),
      num_heads=hf.get("num_attention_heads", 12), mlp_dim=hf.get("intermediate_size", 3072),
      layout="clip" if clip else "vit",
      activation={"gelu": "gelu", "quick_gelu": "quick_gelu", "gelu_new": "gelu_tanh",
                  "gelu_pytorch_tanh": "gelu_tanh"}[hf.get("hidden_act", "quick_gelu" if clip
                                                          else "gelu")],
      layer_norm_eps=hf.get("layer_norm_eps", 1e-5 if clip else 1e-12))
  fields.update(overrides)
  return fields


def _prefix(keys, layout: str) -> str:
  anchor = ("embeddings.patch_embedding.weight" if layout == "clip"
            else "embeddings.patch_embeddings.projection.weight")
  for key in keys:
    if key.endswith(anchor):
      return key[:-len(anchor)]
  raise ConversionError(f"no tensor ending in {anchor!r}: not a {layout} vision checkpoint")


def load(path: str, **overrides) -> tuple[ViT, dict]:
  """transformers directory -> (ViT, params). overrides: other ViT fields (dtype, ...)."""
  config_path = os.path.join(path, "config.json")
  if not os.path.isfile(config_path):
    raise ConversionError(f"{config_path} not found: expected a transformers save_pretrained "
                          f"directory (config.json + model.safetensors)")
  with open(config_path) as f:
    model = ViT(**vit_config_from_hf(json.load(f), **overrides))
  reader = safetensors_io.SafetensorsReader(path)
  prefix = _prefix(reader.keys(), model.layout)
  size = model.image_size
  abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3))))
  shapes = {k: v.value.shape if hasattr(v, "value") else v.shape
            for k, v in traverse_util.flatten_dict(abstract["params"], sep="/").items()}
  plan = weight_plan(model)
  params = {}
  for ours, shape in shapes.items():
    theirs, layout = plan[ours]
    reader.check(prefix + theirs)
    params[ours] = jnp.asarray(to_ours(np.asarray(reader.read(prefix + theirs), np.float32),
                                       layout, shape, prefix + theirs))
  return model, traverse_util.unflatten_dict(params, sep="/")


def hf_config(model: ViT) -> dict:
  common = dict(hidden_size=model.hidden_size, num_hidden_layers=model.num_layers,
                num_attention_heads=model.num_heads, intermediate_size=model.mlp_dim,
                image_size=model.image_size, patch_size=model.patch_size, num_channels=3,
                layer_norm_eps=model.layer_norm_eps,
                hidden_act={"gelu_tanh": "gelu_pytorch_tanh"}.get(model.activation,
                                                                  model.activation))
  if model.layout == "clip":
    return dict(common, model_type="clip_vision_model", architectures=["CLIPVisionModel"])
  return dict(common, model_type="vit", architectures=["ViTModel"], qkv_bias=True)


def save(model: ViT, params: dict, path: str, dtype: str = "float32") -> None:
  """Writes `path/config.json` and `path/model.safetensors` in transformers' layout."""
  flat = traverse_util.flatten_dict(params, sep="/")
  prefix = "vision_model." if model.layout == "clip" else ""
  plan = weight_plan(model)
  grid = model.image_size // model.patch_size
  flat_shapes = {"embeddings.cls_token": (1, 1, model.hidden_size),
                 "embeddings.position_embeddings": (1, grid * grid + 1, model.hidden_size),
                 "embeddings.class_embedding": (model.hidden_size,),
                 "embeddings.position_embedding.weight": (grid * grid + 1, model.hidden_size)}
  tensors = {}
  for ours, (theirs, layout) in plan.items():
    value = np.asarray(jax.device_get(getattr(flat[ours], "value", flat[ours])), np.float32)
    tensors[prefix + theirs] = to_theirs(value, layout, flat_shapes.get(theirs))
  safetensors_io.write(tensors, path, dtype)
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump(hf_config(model), f, indent=2)
