"""Q-Former vs transformers' Blip2QFormerModel (random init) through hf_qformer; BERT init."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import traverse_util

from lmgendrive_jax.convert import hf_qformer
from lmgendrive_jax.errors import ConversionError

NUM_QUERIES, VISION_WIDTH = 4, 24


def _reference(use_text):
  import transformers
  torch.manual_seed(0)
  config = transformers.Blip2QFormerConfig(
      hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64,
      encoder_hidden_size=VISION_WIDTH, cross_attention_frequency=2,
      use_qformer_text_input=use_text, vocab_size=50, max_position_embeddings=16)
  model = transformers.Blip2QFormerModel(config)
  with torch.no_grad():
    for name, param in model.named_parameters():
      if "LayerNorm" in name or "layernorm" in name:
        param.add_(0.1 * torch.randn_like(param))
  from transformers.models.blip_2.modeling_blip_2 import Blip2TextEmbeddings
  return model.eval(), Blip2TextEmbeddings(config).eval()


def _max_rel(ours, theirs):
  return float(np.max(np.abs(np.asarray(ours) - theirs)) / np.max(np.abs(theirs)))


@pytest.mark.parametrize("use_text", [False, True])
def test_qformer_matches_blip2_qformer(tmp_path, use_text):
  reference, text_embeddings = _reference(use_text)
  reference.save_pretrained(str(tmp_path))
  model, params = hf_qformer.load(str(tmp_path), num_queries=NUM_QUERIES, out_dim=16)
  assert model.use_text_input == use_text and model.encoder_hidden_size == VISION_WIDTH
  rng = np.random.default_rng(0)
  frames = rng.normal(size=(2, 3, 7, VISION_WIDTH)).astype(np.float32)  # [B, T, Nv, Dv]
  text_ids = text_mask = None
  queries = torch.tensor(np.asarray(params["query_tokens"]))[None].expand(6, -1, -1)
  embeds, mask = queries, None
  if use_text:
    params["word_embeddings"] = jnp.asarray(text_embeddings.word_embeddings.weight.detach().numpy())
    params["position_embeddings"] = jnp.asarray(
        text_embeddings.position_embeddings.weight.detach().numpy())
    text_ids = rng.integers(1, 50, size=(2, 5))
    text_mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], bool)
    per_frame = lambda x: torch.from_numpy(np.repeat(x, 3, axis=0))  # noqa: E731
    embeds = text_embeddings(input_ids=per_frame(text_ids), query_embeds=queries)
    mask = torch.cat([torch.ones(6, NUM_QUERIES, dtype=torch.long),
                      per_frame(text_mask.astype(np.int64))], dim=1)

  with torch.no_grad():
    theirs = reference(query_embeds=embeds, query_length=NUM_QUERIES, attention_mask=mask,
                       encoder_hidden_states=torch.from_numpy(frames.reshape(6, 7, VISION_WIDTH))
                       ).last_hidden_state.numpy()
  llm_tokens, out = jax.jit(model.apply)({"params": params}, jnp.asarray(frames), text_ids,
                                         text_mask)
  assert llm_tokens.shape == (2, 3, NUM_QUERIES, 16)
  ours_queries = np.asarray(out["query_states"]).reshape(6, NUM_QUERIES, 32)
  assert _max_rel(ours_queries, theirs[:, :NUM_QUERIES]) < 1e-4
  if use_text:
    ours_text = np.asarray(out["text_states"]).reshape(6, 5, 32)
    assert _max_rel(ours_text, theirs[:, NUM_QUERIES:]) < 1e-4


def test_saved_qformer_reloads_in_transformers_and_here(tmp_path):
  import transformers
  reference, _ = _reference(False)
  reference.save_pretrained(str(tmp_path / "src"))
  model, params = hf_qformer.load(str(tmp_path / "src"), num_queries=NUM_QUERIES, out_dim=16)
  hf_qformer.save(model, params, str(tmp_path / "out"))

  reloaded = transformers.Blip2QFormerModel.from_pretrained(str(tmp_path / "out")).eval()
  frames = torch.randn(2, 7, VISION_WIDTH)
  queries = torch.randn(2, NUM_QUERIES, 32)
  with torch.no_grad():
    np.testing.assert_allclose(
        reloaded(query_embeds=queries, encoder_hidden_states=frames).last_hidden_state.numpy(),
        reference(query_embeds=queries, encoder_hidden_states=frames).last_hidden_state.numpy(),
        rtol=1e-5, atol=1e-5)
  model_again, params_again = hf_qformer.load(str(tmp_path / "out"))
  assert model_again == model
  flat, flat_again = (traverse_util.flatten_dict(p, sep="/") for p in (params, params_again))
  assert flat.keys() == flat_again.keys()
  for name in flat:  # Query tokens and projection round-trip too.
    np.testing.assert_array_equal(np.asarray(flat[name]), np.asarray(flat_again[name]), name)


def test_bert_initialisation_copies_bert_as_blip2_does(tmp_path):
  import transformers
  torch.manual_seed(0)
  bert = transformers.BertModel(transformers.BertConfig(
      hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
      vocab_size=60, max_position_embeddings=20), add_pooling_layer=False)
  bert.save_pretrained(str(tmp_path))
  model, params = hf_qformer.load_from_bert(str(tmp_path), num_queries=NUM_QUERIES,
                                            encoder_hidden_size=VISION_WIDTH, out_dim=16)
  state = {k: v.detach().numpy() for k, v in bert.state_dict().items()}
  assert model.use_text_input and model.vocab_size == 60
  np.testing.assert_array_equal(params["word_embeddings"], state["embeddings.word_embeddings.weight"])
  np.testing.assert_array_equal(params["embed_norm"]["scale"], state["embeddings.LayerNorm.weight"])
  for i in range(2):
    layer = params[f"layer_{i}"]
    query = state[f"encoder.layer.{i}.attention.self.query.weight"]  # [H*D, E]
    np.testing.assert_array_equal(np.asarray(layer["self_attn"]["q_proj"]["kernel"]).reshape(32, 32),
                                  query.T)
    fc1 = state[f"encoder.layer.{i}.intermediate.dense.weight"].T
    np.testing.assert_array_equal(layer["mlp_query"]["fc1"]["kernel"], fc1)  # BLIP-2's copy
    np.testing.assert_array_equal(layer["mlp_text"]["fc1"]["kernel"], fc1)
  assert "cross_attn" in params["layer_0"] and "cross_attn" not in params["layer_1"]
  assert params["layer_0"]["cross_attn"]["k_proj"]["kernel"].shape == (VISION_WIDTH, 4, 8)
  tokens, _ = jax.jit(model.apply)({"params": params}, jnp.zeros((1, 2, 3, VISION_WIDTH)),
                          jnp.ones((1, 4), jnp.int32))
  assert tokens.shape == (1, 2, NUM_QUERIES, 16) and bool(jnp.all(jnp.isfinite(tokens)))


def test_load_rejects_mismatched_vision_width(tmp_path):
  reference, _ = _reference(False)
  reference.save_pretrained(str(tmp_path))
  with pytest.raises(ConversionError, match="crossattention"):
    hf_qformer.load(str(tmp_path), encoder_hidden_size=VISION_WIDTH + 8)


def test_sharded_qformer_matches_single_device(num_devices):
  import flax.linen as nn
  from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

  from lmgendrive_jax import config as config_lib
  from lmgendrive_jax import parallel
  from lmgendrive_jax.models.qformer import QFormer

  cfg = config_lib.qformer_preset("tiny")
  cfg.use_text_input = True
  model = QFormer(**cfg.to_dict())
  rng = np.random.default_rng(0)
  frames = jnp.asarray(rng.normal(size=(4, 2, 22, cfg.encoder_hidden_size)), jnp.float32)
  text = jnp.asarray(rng.integers(1, cfg.vocab_size, (4, 6)), jnp.int32)
  mask = jnp.asarray(np.arange(6)[None] < np.array([[6], [4], [2], [5]]))
  init_fn = lambda key: model.init(key, frames, text)  # noqa: E731
  key = jax.random.key(0, impl="rbg")  # Compiles faster than threefry on CPU.
  params = jax.jit(lambda k: nn.meta.unbox(init_fn(k)))(key)
  single = jax.jit(model.apply)(params, frames, text, mask)

  mesh = jax.make_mesh((2, 2, 2), ("data", "fsdp", "tensor"), axis_types=(AxisType.Auto,) * 3)
  rules = config_lib.logical_axis_rules()
  _, shardings = parallel.variable_shardings(init_fn, mesh, rules, key)
  sharded_params = jax.device_put(params, shardings)
  assert any(not x.sharding.is_fully_replicated for x in jax.tree.leaves(sharded_params))
  batch = lambda x: jax.device_put(x, NamedSharding(mesh, P(("data", "fsdp"))))  # noqa: E731
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    sharded = jax.jit(model.apply)(sharded_params, batch(frames), batch(text), batch(mask))
  for ours, reference in zip(jax.tree.leaves(sharded), jax.tree.leaves(single)):
    np.testing.assert_allclose(np.asarray(ours), np.asarray(reference), rtol=1e-5, atol=1e-5)
