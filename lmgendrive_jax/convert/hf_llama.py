"""Hugging Face LLaMA checkpoints <-> our `models/llm.py` parameters, without torch.

`load(path)` reads a `save_pretrained` directory (config.json + model.safetensors, or sharded
with model.safetensors.index.json; fp32 or bf16) and returns `(model, params)` with
`model.apply({"params": params}, tokens) -> (logits, out)`, `out["hidden"]` the final-norm
states. Each weight is placed directly onto its sharding: every device's shard is read from the
memory-mapped safetensors file by `jax.make_array_from_callback`, so a 7B model is never
materialised whole on a host. `save(model, params, path)` writes the same format back (LoRA
adapters merged into the base weights, so plain transformers can read it).
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import traverse_util
from jax.sharding import Mesh, SingleDeviceSharding

from lmgendrive_jax import config as config_lib
from lmgendrive_jax import parallel
from lmgendrive_jax.convert import safetensors_io
from lmgendrive_jax.errors import ConversionError
from lmgendrive_jax.models.llm import LLM

# Our parameter name inside a layer -> (HF name inside `model.layers.{i}.`, layout).
_LAYER_WEIGHTS = {
    "attn/q_proj/kernel": ("self_attn.q_proj.weight", "heads_in"),
    "attn/k_proj/kernel": ("self_attn.k_proj.weight", "heads_in"),
    "attn/v_proj/kernel": ("self_attn.v_proj.weight", "heads_in"),
    "attn/o_proj/kernel": ("self_attn.o_proj.weight", "heads_out"),
    "mlp/gate_proj/kernel": ("mlp.gate_proj.weight", "transpose"),
    "mlp/up_proj/kernel": ("mlp.up_proj.weight", "transpose"),
    "mlp/down_proj/kernel": ("mlp.down_proj.weight", "transpose"),
    "input_norm/scale": ("input_layernorm.weight", "same"),
    "post_attn_norm/scale": ("post_attention_layernorm.weight", "same"),
}
_TOP_WEIGHTS = {
    "embedder/embedding": ("model.embed_tokens.weight", "same"),
    "final_norm/scale": ("model.norm.weight", "same"),
    "lm_head/kernel": ("lm_head.weight", "transpose"),
}


# ----------------------------------------------------------------------------------------------
# Config.


def llm_config_from_hf(hf: dict, **overrides) -> ml_collections.ConfigDict:
  """HF LlamaConfig dict -> our `llm_preset`-shaped config (fields of `LLM`)."""
  if hf.get("model_type", "llama") not in ("llama", "mistral"):
    raise ConversionError(f"config.json model_type={hf.get('model_type')!r} is not a LLaMA-family "
                          f"decoder this converter understands (llama, mistral)")
  for unsupported in ("attention_bias", "mlp_bias"):
    if hf.get(unsupported):
      raise ConversionError(f"config.json sets {unsupported}=true; LLaMA layers with biases are "
                            f"not supported by models/llm.py")
  rope = dict(hf.get("rope_parameters") or {})
  theta = rope.pop("rope_theta", hf.get("rope_theta", 10000.0))
  if not rope and hf.get("rope_scaling"):  # transformers 4.x layout
    rope = dict(hf["rope_scaling"])
  if rope.get("rope_type", rope.get("type", "default")) == "default":
    rope = None
  num_heads = hf["num_attention_heads"]
  cfg = config_lib.llm_preset("tiny")
  cfg.update(dict(
      vocab_size=hf["vocab_size"], embed_dim=hf["hidden_size"],
      num_layers=hf["num_hidden_layers"], num_heads=num_heads,
      num_kv_heads=hf.get("num_key_value_heads") or num_heads,
      head_dim=hf.get("head_dim") or hf["hidden_size"] // num_heads,
      mlp_dim=hf["intermediate_size"], max_positions=hf.get("max_position_embeddings", 2048),
      rope_theta=float(theta), norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
      tie_embeddings=bool(hf.get("tie_word_embeddings", False)), lora_rank=0))
  cfg.rope_scaling = rope
  cfg.update(overrides)
  return cfg


def hf_config_from_llm(model: LLM) -> dict:
  """Our LLM fields -> an HF LlamaConfig dict (transformers 5 layout)."""
  rope = {"rope_type": "default", "rope_theta": model.rope_theta}
  if model.rope_scaling:
    rope = {**dict(model.rope_scaling), "rope_theta": model.rope_theta}
  return dict(
      architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=model.vocab_size,
      hidden_size=model.embed_dim, intermediate_size=model.mlp_dim,
      num_hidden_layers=model.num_layers, num_attention_heads=model.num_heads,
      num_key_value_heads=model.num_kv_heads, head_dim=model.head_dim, hidden_act="silu",
      max_position_embeddings=model.max_positions, rms_norm_eps=model.norm_eps,
      rope_parameters=rope, tie_word_embeddings=model.tie_embeddings, attention_bias=False,
      mlp_bias=False, bos_token_id=1, eos_token_id=2, dtype="float32")


# ----------------------------------------------------------------------------------------------
# Layout transforms: HF tensor block -> our block for one index of our array.


def _bounds(index: slice, size: int) -> tuple[int, int]:
  start, stop, step = index.indices(size)
  if step != 1:
    raise ConversionError(f"strided shard index {index} is not supported")
  return start, stop


def _read_block(tensor, layout: str, our_index: tuple[slice, ...], our_shape: tuple[int, ...]):
  """Reads from HF tensor (lazy safetensors slice) exactly the block our shard needs."""
  b = [_bounds(s, n) for s, n in zip(our_index, our_shape)]
  if layout == "same":
    return tensor[tuple(slice(*x) for x in b)]
  if layout == "transpose":  # ours [in, out] = hf[out, in].T
    return np.asarray(tensor[slice(*b[1]), slice(*b[0])]).T
  if layout == "heads_in":  # ours [E, H, D] = hf[H*D, E].T reshaped
    (e0, e1), (h0, h1), (d0, d1) = b
    head_dim = our_shape[2]
    block = np.asarray(tensor[h0 * head_dim:h1 * head_dim, e0:e1]).T
    return block.reshape(e1 - e0, h1 - h0, head_dim)[:, :, d0:d1]
  if layout == "heads_out":  # ours [H, D, E] = hf[E, H*D].T reshaped
    (h0, h1), (d0, d1), (e0, e1) = b
    head_dim = our_shape[1]
    block = np.asarray(tensor[e0:e1, h0 * head_dim:h1 * head_dim]).T
    return block.reshape(h1 - h0, head_dim, e1 - e0)[:, d0:d1, :]
  raise AssertionError(layout)


def _hf_shape(ours: tuple[int, ...], layout: str) -> tuple[int, ...]:
  """The HF tensor shape that holds our array of shape `ours`."""
  if layout == "same":
    return tuple(ours)
  if layout == "transpose":
    return tuple(reversed(ours))
  if layout == "heads_in":
    return (ours[1] * ours[2], ours[0])
  return (ours[2], ours[0] * ours[1])  # heads_out


def _to_hf(array: np.ndarray, layout: str) -> np.ndarray:
  """Our full array -> HF layout (for export)."""
  if layout == "same":
    return array
  if layout == "transpose":
    return array.T
  if layout == "heads_in":
    e, h, d = array.shape
    return array.reshape(e, h * d).T
  if layout == "heads_out":
    h, d, e = array.shape
    return array.reshape(h * d, e).T
  raise AssertionError(layout)


# ----------------------------------------------------------------------------------------------
# Load.


def _weight_plan(model: LLM, scan: bool) -> dict[str, tuple[Callable[[int], str] | str, str]]:
  """Our flat param path -> (HF name or per-layer name function, layout)."""
  plan = {}
  for ours, (hf_name, layout) in _TOP_WEIGHTS.items():
    if ours.startswith("lm_head") and model.tie_embeddings:
      continue
    plan[ours] = (hf_name, layout)
  for ours, (hf_suffix, layout) in _LAYER_WEIGHTS.items():
    name_fn = (lambda i, s=hf_suffix: f"model.layers.{i}.{s}")
    if scan:
      plan[f"layers/{ours}"] = (name_fn, layout)
    else:
      for i in range(model.num_layers):
        plan[f"layers_{i}/{ours}"] = (name_fn(i), layout)
  return plan


def load(path: str, mesh: Mesh | None = None, rules=None, dtype: str | None = None,
         param_dtype: str | None = None, **overrides) -> tuple[LLM, dict]:
  """Loads an HF LLaMA directory -> (model, params), each weight placed on its sharding.

  mesh/rules: where to place the weights (default: the first local device). dtype / param_dtype:
  compute and storage dtypes (default float32 storage). overrides: any other `LLM` field, e.g.
  `lora_rank=16` (adapters start at b = 0, so the model equals the checkpoint).
  """
  hf = safetensors_io.read_config(path)
  cfg = llm_config_from_hf(hf, **overrides)
  if dtype:
    cfg.dtype = dtype
  if param_dtype:
    cfg.param_dtype = param_dtype
  model = LLM(**cfg.to_dict())
  reader = safetensors_io.SafetensorsReader(path)

  dummy = jnp.zeros((1, 1), jnp.int32)
  init_fn = lambda key: model.init(key, dummy)  # noqa: E731
  if mesh is None:
    abstract, _ = parallel.abstract_variables(init_fn, jax.random.key(0))
    device = SingleDeviceSharding(jax.local_devices()[0])
    shardings = jax.tree.map(lambda _: device, abstract)
  else:
    rules = rules or config_lib.logical_axis_rules()
    abstract, shardings = parallel.variable_shardings(init_fn, mesh, rules, jax.random.key(0))
  abstract_params = traverse_util.flatten_dict(abstract["params"], sep="/")
  flat_shardings = traverse_util.flatten_dict(shardings["params"], sep="/")
  plan = _weight_plan(model, cfg.scan_layers)
  storage = jnp.dtype(cfg.param_dtype)

  params = {}
  for name, leaf in abstract_params.items():
    if "/lora/" in name:
      continue
    if name not in plan:
      raise ConversionError(f"parameter {name!r} of our LLM has no Hugging Face counterpart")
    hf_name, layout = plan[name]
    stacked = callable(hf_name)
    for n in ([hf_name(i) for i in range(model.num_layers)] if stacked else [hf_name]):
      reader.check(n)

    def read(index, hf_name=hf_name, layout=layout, stacked=stacked, shape=leaf.shape):
      if stacked:
        l0, l1 = _bounds(index[0], shape[0])
        return np.stack([_read_block(reader.slice(hf_name(i)), layout, index[1:], shape[1:])
                         for i in range(l0, l1)]).astype(storage)
      return np.asarray(_read_block(reader.slice(hf_name), layout, index, shape)).astype(storage)

    ours_shape = leaf.shape[1:] if stacked else leaf.shape
    expected = _hf_shape(ours_shape, layout)
    first = hf_name(0) if stacked else hf_name
    if reader.shape(first) != expected:
      raise ConversionError(f"{path}: tensor {first} has shape {reader.shape(first)} but our "
                            f"{name} {tuple(ours_shape)} needs {expected}: config.json does not "
                            f"match the weights")
    params[name] = jax.make_array_from_callback(leaf.shape, flat_shardings[name], read)

  lora_names = [n for n in abstract_params if "/lora/" in n]
  if lora_names:  # Fresh adapters, created on their shardings (XLA drops the unused base init).
    def init_lora(key):
      flat = traverse_util.flatten_dict(nn.meta.unbox(init_fn(key))["params"], sep="/")
      return {n: flat[n] for n in lora_names}
    lora = jax.jit(init_lora, out_shardings={n: flat_shardings[n] for n in lora_names})(
        jax.random.key(0))
    params.update(lora)
  return model, traverse_util.unflatten_dict(params, sep="/")


def load_tokenizer(path: str):
  """The tokenizer saved beside the weights, through transformers.AutoTokenizer."""
  from lmgendrive_jax.data.tokenizer import load_tokenizer as _load
  return _load(path)


# ----------------------------------------------------------------------------------------------
# Export.


def merged_params(model: LLM, params: dict) -> dict:
  """Flat params with each LoRA update folded into its base kernel (W + alpha/r * a @ b)."""
  flat = {k: np.asarray(jax.device_get(v), np.float32)
          for k, v in traverse_util.flatten_dict(params, sep="/").items()}
  merged = {k: v for k, v in flat.items() if "/lora/" not in k}
  for name in [k for k in flat if k.endswith("/lora/a")]:
    base = name[:-len("/lora/a")]
    a, b = flat[name], flat[base + "/lora/b"]
    if model.scan_layers and base.startswith("layers/"):  # Leading axis: layers.
      update = np.stack([np.tensordot(a[i], b[i], axes=1) for i in range(a.shape[0])])
    else:
      update = np.tensordot(a, b, axes=1)
    merged[base + "/kernel"] = merged[base + "/kernel"] + update * (model.lora_alpha /
                                                                    model.lora_rank)
  return merged


def save(model: LLM, params: dict, path: str, dtype: str = "float32",
         max_shard_bytes: int = 4 << 30) -> None:
  """Writes `path/config.json` and safetensors (sharded with an index above max_shard_bytes)."""
  os.makedirs(path, exist_ok=True)
  flat = merged_params(model, params)
  hf_config = hf_config_from_llm(model)
  hf_config["dtype"] = dtype
  plan = _weight_plan(model, model.scan_layers)
  tensors = {}
  for name, (hf_name, layout) in plan.items():
    array = flat[name]
    if callable(hf_name):
      for i in range(model.num_layers):
        tensors[hf_name(i)] = _to_hf(array[i], layout)
    else:
      tensors[hf_name] = _to_hf(array, layout)
  safetensors_io.write(tensors, path, dtype, max_shard_bytes)
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump(hf_config, f, indent=2)
