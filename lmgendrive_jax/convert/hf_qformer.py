"""Hugging Face BLIP-2 Q-Former / BERT weights <-> `models/qformer.py: QFormer`.

- `load(path)`: a transformers `save_pretrained` directory of a `Blip2QFormerModel`
  (`model_type: blip_2_qformer`), or of a full BLIP-2 model (`blip-2`: the `qformer.` sub-tree
  and its `query_tokens`). Parameters the checkpoint lacks (the LLM projection, query tokens of a bare
  `Blip2QFormerModel`) start fresh from `seed`; `out_dim` / `projection` / `num_queries` say how.
- `load_from_bert(path, ...)`: BLIP-2's initialisation from a BERT checkpoint (`BertModel` /
  `BertForMaskedLM` ... save): self-attention, feed-forward and embeddings from BERT; the query
  feed-forward is a copy of BERT's feed-forward; cross-attention, queries and projection fresh.
- `save(model, params, path)`: the `Blip2QFormerModel` layout plus our extras (`query_tokens`,
  `embeddings.*`, `projection_fc*`) in the same file, so `Blip2QFormerModel.from_pretrained`
  loads it (ignoring the extras) and `load` restores everything.
No torch is needed: tensors are read with safetensors.
"""

from __future__ import annotations

import json
import os
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util
import flax.linen as nn

from lmgendrive_jax.convert import safetensors_io
from lmgendrive_jax.convert.torch_layouts import to_ours, to_theirs
from lmgendrive_jax.errors import ConversionError
from lmgendrive_jax.models.qformer import QFormer

_ATTN = {"q_proj": "query", "k_proj": "key", "v_proj": "value"}


def _layer_plan(i: int, bert: bool) -> dict[str, tuple[str, str]]:
  """Our per-layer sub-paths -> (their name, layout) for layer i (BLIP-2 or BERT names)."""
  root = f"encoder.layer.{i}"
  self_attn = f"{root}.attention.{'self' if bert else 'attention'}"
  plan = {}
  for ours, theirs in _ATTN.items():
    plan[f"self_attn/{ours}/kernel"] = (f"{self_attn}.{theirs}.weight", "heads_in")
    plan[f"self_attn/{ours}/bias"] = (f"{self_attn}.{theirs}.bias", "heads_bias")
    plan[f"cross_attn/{ours}/kernel"] = (f"{root}.crossattention.attention.{theirs}.weight",
                                         "heads_in")
    plan[f"cross_attn/{ours}/bias"] = (f"{root}.crossattention.attention.{theirs}.bias",
                                       "heads_bias")
  for ours, theirs in (("self_attn", f"{root}.attention.output"),
                       ("cross_attn", f"{root}.crossattention.output")):
    plan[f"{ours}/o_proj/kernel"] = (f"{theirs}.dense.weight", "heads_out")
    plan[f"{ours}/o_proj/bias"] = (f"{theirs}.dense.bias", "same")
    plan[f"{ours}_norm/scale"] = (f"{theirs}.LayerNorm.weight", "same")
    plan[f"{ours}_norm/bias"] = (f"{theirs}.LayerNorm.bias", "same")
  # BERT has one feed-forward; BLIP-2 initialises the query feed-forward as a copy of it.
  for ours, suffix in (("mlp_query", "" if bert else "_query"), ("mlp_text", "")):
    plan[f"{ours}/fc1/kernel"] = (f"{root}.intermediate{suffix}.dense.weight", "transpose")
    plan[f"{ours}/fc1/bias"] = (f"{root}.intermediate{suffix}.dense.bias", "same")
    plan[f"{ours}/fc2/kernel"] = (f"{root}.output{suffix}.dense.weight", "transpose")
    plan[f"{ours}/fc2/bias"] = (f"{root}.output{suffix}.dense.bias", "same")
    plan[f"{ours}_norm/scale"] = (f"{root}.output{suffix}.LayerNorm.weight", "same")
    plan[f"{ours}_norm/bias"] = (f"{root}.output{suffix}.LayerNorm.bias", "same")
  return plan


def weight_plan(model: QFormer, bert: bool = False) -> dict[str, tuple[str, str]]:
  """Our flat param path -> (their name without prefix, layout)."""
  plan = {
      "embed_norm/scale": ("embeddings.LayerNorm.weight" if bert else "layernorm.weight", "same"),
      "embed_norm/bias": ("embeddings.LayerNorm.bias" if bert else "layernorm.bias", "same"),
      "word_embeddings": ("embeddings.word_embeddings.weight", "same"),
      "position_embeddings": ("embeddings.position_embeddings.weight", "same"),
  }
  if not bert:
    plan["query_tokens"] = ("query_tokens", "flat")
    for name in ("projection_fc1", "projection_fc2"):
      plan[f"{name}/kernel"] = (f"{name}.weight", "transpose")
      plan[f"{name}/bias"] = (f"{name}.bias", "same")
  for i in range(model.num_layers):
    for ours, theirs in _layer_plan(i, bert).items():
      plan[f"layer_{i}/{ours}"] = theirs
  return plan


def qformer_config_from_hf(hf: dict, **overrides) -> dict:
  """QFormer fields from a Blip2QFormerConfig / Blip2Config / BertConfig dict."""
  model_type = hf.get("model_type")
  extras = hf.get("lmgendrive", {})
  num_queries = hf.get("num_query_tokens", 32)
  if model_type == "blip-2":
    qformer = hf["qformer_config"]
    use_text = qformer.get("use_qformer_text_input", False)
  elif model_type in ("blip_2_qformer", "bert"):
    qformer = hf
    use_text = model_type == "bert" or hf.get("use_qformer_text_input", False)
  else:
    raise ConversionError(f"config.json has model_type {model_type!r}; hf_qformer reads "
                          f"blip_2_qformer, blip-2 or bert")
  activation = qformer.get("hidden_act", "gelu")
  if activation not in ("gelu", "relu", "gelu_new"):
    raise ConversionError(f"Q-Former hidden_act {activation!r} is not supported")
  fields = dict(
      num_queries=extras.get("num_queries", num_queries),
      hidden_size=qformer.get("hidden_size", 768),
      num_layers=qformer.get("num_hidden_layers", 12),
      num_heads=qformer.get("num_attention_heads", 12),
      intermediate_size=qformer.get("intermediate_size", 3072),
      cross_attention_frequency=qformer.get("cross_attention_frequency", 2),
      encoder_hidden_size=qformer.get("encoder_hidden_size", qformer.get("hidden_size", 768)),
      layer_norm_eps=qformer.get("layer_norm_eps", 1e-12),
      activation={"gelu_new": "gelu_tanh"}.get(activation, activation),
      use_text_input=use_text,
      vocab_size=qformer.get("vocab_size", 30522),
      max_text_positions=qformer.get("max_position_embeddings", 512),
      pad_token_id=qformer.get("pad_token_id", 0) or 0,
      out_dim=extras.get("out_dim", overrides.get("out_dim", 4096)),
      projection=extras.get("projection", "mlp2x_gelu"))
  fields.update(overrides)
  return fields


def _find_prefix(keys, anchor: str) -> str:
  for key in sorted(keys, key=len):
    if key.endswith(anchor):
      return key[:-len(anchor)]
  raise ConversionError(f"no tensor ending in {anchor!r}: not a Q-Former/BERT checkpoint")


def _fill(model: QFormer, reader, plan: dict, prefix: str, seed: int,
          optional: Callable[[str], bool], extra: dict[str, str] | None = None) -> dict:
  """Reads every planned tensor that exists; fresh init for the optional ones that do not."""
  frames = jnp.zeros((1, 1, 2, model.encoder_hidden_size))
  text = jnp.zeros((1, 2), jnp.int32) if model.use_text_input else None
  init_fn = lambda key: nn.meta.unbox(model.init(key, frames, text))  # noqa: E731
  abstract = jax.eval_shape(init_fn, jax.random.key(seed))
  shapes = {k: v.shape for k, v in traverse_util.flatten_dict(abstract["params"], sep="/").items()}
  keys = set(reader.keys())
  params, missing = {}, []
  for ours, shape in shapes.items():
    theirs, layout = plan[ours]
    name = (extra or {}).get(ours, prefix + theirs)
    if name in keys:
      params[ours] = jnp.asarray(to_ours(np.asarray(reader.read(name), np.float32), layout,
                                         shape, name))
    elif optional(ours):
      missing.append(ours)
    else:
      raise ConversionError(f"tensor {name!r} (for our {ours}) is missing from {reader.path!r}")
  if missing:  # Only the fresh leaves are returned, so XLA drops the rest of the init.
    def init_missing(key):
      flat = traverse_util.flatten_dict(init_fn(key)["params"], sep="/")
      return {n: flat[n] for n in missing}
    params.update(jax.jit(init_missing)(jax.random.key(seed)))
  return traverse_util.unflatten_dict(params, sep="/")


def load(path: str, seed: int = 0, **overrides) -> tuple[QFormer, dict]:
  """BLIP-2 Q-Former directory -> (QFormer, params). overrides: QFormer fields, e.g.
  `out_dim=4096, num_queries=4, encoder_hidden_size=256` (a mismatched tensor is an error)."""
  model = QFormer(**qformer_config_from_hf(safetensors_io.read_config(path), **overrides))
  reader = safetensors_io.SafetensorsReader(path)
  prefix = _find_prefix(reader.keys(), "layernorm.weight")
  extra = {"query_tokens": "query_tokens"} if "query_tokens" in reader.keys() else {}
  fresh_ok = lambda ours: (ours.startswith(("projection_", "query_tokens", "word_", "position_"))  # noqa
                           or "/cross_attn" in ours)
  return model, _fill(model, reader, weight_plan(model), prefix, seed, fresh_ok, extra)


def load_from_bert(path: str, num_queries: int, encoder_hidden_size: int, out_dim: int,
                   cross_attention_frequency: int = 2, seed: int = 0, **overrides
                   ) -> tuple[QFormer, dict]:
  """BERT directory -> (QFormer, params) initialised as BLIP-2 does (see module docstring)."""
  hf = safetensors_io.read_config(path)
  if hf.get("model_type") != "bert":
    raise ConversionError(f"{path}/config.json has model_type {hf.get('model_type')!r}, not bert")
  model = QFormer(**qformer_config_from_hf(
      hf, num_queries=num_queries, encoder_hidden_size=encoder_hidden_size, out_dim=out_dim,
      cross_attention_frequency=cross_attention_frequency, **overrides))
  reader = safetensors_io.SafetensorsReader(path)
  prefix = _find_prefix(reader.keys(), "embeddings.word_embeddings.weight")
  plan = weight_plan(model, bert=True)
  plan.update({k: v for k, v in weight_plan(model).items() if k.startswith(("query", "projection"))})
  fresh_ok = lambda ours: ours.startswith(("projection_", "query_tokens")) or "/cross_attn" in ours  # noqa
  return model, _fill(model, reader, plan, prefix, seed, fresh_ok)


def hf_config(model: QFormer) -> dict:
  return {
      "model_type": "blip_2_qformer", "architectures": ["Blip2QFormerModel"],
      "hidden_size": model.hidden_size, "num_hidden_layers": model.num_layers,
      "num_attention_heads": model.num_heads, "intermediate_size": model.intermediate_size,
      "hidden_act": {"gelu_tanh": "gelu_new"}.get(model.activation, model.activation),
      "layer_norm_eps": model.layer_norm_eps,
      "cross_attention_frequency": model.cross_attention_frequency,
      "encoder_hidden_size": model.encoder_hidden_size,
      "use_qformer_text_input": model.use_text_input, "vocab_size": model.vocab_size,
      "max_position_embeddings": model.max_text_positions, "pad_token_id": model.pad_token_id,
      "num_query_tokens": model.num_queries,
      "lmgendrive": {"num_queries": model.num_queries, "out_dim": model.out_dim,
                     "projection": model.projection},
  }


def save(model: QFormer, params: dict, path: str, dtype: str = "float32") -> None:
  """Writes `path/config.json` + `path/model.safetensors` (Blip2QFormerModel layout + extras)."""
  plan = weight_plan(model)
  tensors = {}
  for ours, value in traverse_util.flatten_dict(params, sep="/").items():
    theirs, layout = plan[ours]
    value = np.asarray(jax.device_get(getattr(value, "value", value)), np.float32)
    shape = (1,) + value.shape if ours == "query_tokens" else None
    tensors[theirs] = to_theirs(value, layout, shape)
  safetensors_io.write(tensors, path, dtype)
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump(hf_config(model), f, indent=2)
