"""HF LLaMA import/export parity against transformers' LlamaForCausalLM (random init, torch)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file
from transformers import LlamaConfig, LlamaForCausalLM

from lmgendrive_jax import config as config_lib
from lmgendrive_jax import parallel
from lmgendrive_jax.convert import hf_llama
from lmgendrive_jax.errors import ConversionError

CONFIGS = {
    "mha": dict(num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=False,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
    "gqa_llama3_rope": dict(
        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False,
        rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                         "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 16}),
    "tied_linear_rope": dict(num_attention_heads=4, num_key_value_heads=2,
                             tie_word_embeddings=True,
                             rope_parameters={"rope_type": "linear", "rope_theta": 1000.0,
                                              "factor": 2.0}),
}


def _hf_model(tmp_path, name, dtype=torch.float32):
  torch.manual_seed(0)
  cfg = LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                    max_position_embeddings=64, rms_norm_eps=1e-6, **CONFIGS[name])
  model = LlamaForCausalLM(cfg).eval()
  path = tmp_path / name
  model.to(dtype).save_pretrained(path)
  return model.float(), str(path)


def _relative_error(ours, ref):
  ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
  return np.abs(ours - ref).max() / np.abs(ref).max()


@pytest.mark.parametrize("name", list(CONFIGS))
def test_parity_and_round_trip(tmp_path, name):
  hf_model, path = _hf_model(tmp_path, name)
  tokens = np.random.default_rng(0).integers(0, 96, size=(2, 11))
  with torch.no_grad():
    ref = hf_model(torch.tensor(tokens), output_hidden_states=True)
  model, params = hf_llama.load(path)
  logits, out = model.apply({"params": params}, jnp.asarray(tokens))
  assert _relative_error(logits, ref.logits) < 1e-4
  assert _relative_error(out["hidden"], ref.hidden_states[-1]) < 1e-4

  export = tmp_path / f"{name}_export"
  hf_llama.save(model, params, str(export))
  reloaded = LlamaForCausalLM.from_pretrained(export).eval()
  with torch.no_grad():
    again = reloaded(torch.tensor(tokens)).logits
  np.testing.assert_allclose(again.numpy(), ref.logits.numpy(), rtol=0, atol=1e-5)


def test_bf16_sharded_checkpoint_onto_mesh(tmp_path):
  hf_model, path = _hf_model(tmp_path, "gqa_llama3_rope", dtype=torch.bfloat16)
  # Re-save as a sharded checkpoint with an index (as large HF models are).
  hf_model.to(torch.bfloat16).save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
  assert (tmp_path / "sharded" / "model.safetensors.index.json").exists()
  mesh = parallel.make_mesh(config_lib.mesh_config((2, 2, 2)))
  rules = config_lib.logical_axis_rules()
  model, params = hf_llama.load(str(tmp_path / "sharded"), mesh=mesh, rules=rules)
  q = params["layers"]["attn"]["q_proj"]["kernel"]  # [layers, embed, heads, head_dim]
  assert q.sharding.spec == jax.sharding.PartitionSpec(None, "fsdp", "tensor", None)
  assert params["embedder"]["embedding"].sharding.spec == jax.sharding.PartitionSpec("tensor",
                                                                                       "fsdp")
  # Every device holds only its shard.
  assert q.addressable_shards[0].data.shape == (2, 16, 2, 8)
  tokens = np.random.default_rng(1).integers(0, 96, size=(2, 7))
  with torch.no_grad():
    ref = hf_model.float()(torch.tensor(tokens)).logits
  logits, _ = model.apply({"params": params}, jnp.asarray(tokens))
  assert _relative_error(logits, ref) < 1e-4  # bf16 weights are exact in fp32.


def test_missing_tensor_and_mismatched_config_are_named(tmp_path):
  _, path = _hf_model(tmp_path, "mha")
  tensors = load_file(f"{path}/model.safetensors")
  save_file({k: v for k, v in tensors.items() if k != "model.norm.weight"},
            f"{path}/model.safetensors")
  with pytest.raises(ConversionError, match="model.norm.weight"):
    hf_llama.load(path)
  save_file(tensors, f"{path}/model.safetensors")
  with open(f"{path}/config.json") as f:
    cfg = json.load(f)
  cfg["intermediate_size"] = 40
  with open(f"{path}/config.json", "w") as f:
    json.dump(cfg, f)
  with pytest.raises(ConversionError, match=r"mlp\.\w+_proj\.weight has shape"):
    hf_llama.load(path)
  with pytest.raises(ConversionError, match="config.json"):
    hf_llama.load(str(tmp_path / "nowhere"))
