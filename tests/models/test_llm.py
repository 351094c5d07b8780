"""LLM behaviour: KV cache vs full forward, block-causal masks, LoRA, scan/remat/dtype options."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lmgendrive_jax import config as config_lib
from lmgendrive_jax.models.llm import LLM
from lmgendrive_jax.nn.attention import make_attn_mask
from lmgendrive_jax.train.optimizer import make_optimizer
from lmgendrive_jax.train.state import create_state
from lmgendrive_jax.train.step import make_train_step
from lmgendrive_jax.train.lm_loss import next_token_loss


def _model(**overrides):
  cfg = config_lib.llm_preset("tiny")
  cfg.update(overrides)
  return LLM(**cfg.to_dict())


def _tokens(batch=2, length=14, seed=0):
  return jnp.asarray(np.random.default_rng(seed).integers(0, 1024, size=(batch, length)))


def test_make_attn_mask_block_causal():
  # [prefix x2 | block A x2 | block B x2], last token padding.
  input_mask = jnp.array([[1, 1, 1, 1, 1, 0]], bool)
  mask_ar = jnp.array([[1, 0, 1, 0, 1, 0]])
  mask = np.asarray(make_attn_mask(input_mask, mask_ar)[0, 0])
  expected = np.array([[1, 1, 0, 0, 0, 0],
                       [1, 1, 0, 0, 0, 0],
                       [1, 1, 1, 1, 0, 0],
                       [1, 1, 1, 1, 0, 0],
                       [1, 1, 1, 1, 1, 0],
                       [0, 0, 0, 0, 0, 0]], bool)
  np.testing.assert_array_equal(mask, expected)


@pytest.mark.parametrize("scan_layers", [True, False])
def test_prefill_plus_extends_equals_full_forward(scan_layers):
  """Instruction prefix (padded) then three frame blocks, block-causal, vs one full pass."""
  model = _model(scan_layers=scan_layers)
  embeds = jax.random.normal(jax.random.key(0), (2, 4 + 3 * 3, 64))
  input_mask = jnp.ones((2, 13), bool).at[1, 3].set(False)  # example 1: padded instruction
  mask_ar = jnp.array([1, 1, 1, 1] + [1, 0, 0] * 3)[None].repeat(2, 0)
  params = nn.meta.unbox(model.init(jax.random.key(1), embeddings=embeds))["params"]
  full, full_out = model.apply({"params": params}, embeddings=embeds, input_mask=input_mask,
                               mask_ar=mask_ar)
  cache = model.init_cache(2, 16)
  pieces, hidden = [], []
  for start, stop in [(0, 4), (4, 7), (7, 10), (10, 13)]:
    logits, out = model.apply({"params": params}, embeddings=embeds[:, start:stop],
                              input_mask=input_mask[:, start:stop], mask_ar=mask_ar[:, start:stop],
                              cache=cache)
    cache = out["cache"]
    pieces.append(logits)
    hidden.append(out["hidden"])
  valid = np.asarray(input_mask)[..., None]
  np.testing.assert_allclose(np.concatenate(pieces, 1) * valid, np.asarray(full) * valid,
                             atol=2e-5)
  np.testing.assert_allclose(np.concatenate(hidden, 1) * valid,
                             np.asarray(full_out["hidden"]) * valid, atol=2e-5)
  # The block-causal mask matters: frame 1's outputs must not see frame 2.
  changed = embeds.at[:, 7:].set(0.0)
  again, _ = model.apply({"params": params}, embeddings=changed, input_mask=input_mask,
                         mask_ar=mask_ar)
  np.testing.assert_allclose(again[:, :7] * valid[:, :7], full[:, :7] * valid[:, :7], atol=1e-5)
  assert np.abs(np.asarray(again[:, 7:] - full[:, 7:])).max() > 1e-3


def test_scan_remat_and_unrolled_agree():
  tokens = _tokens()
  base = _model(scan_layers=True)
  params = nn.meta.unbox(base.init(jax.random.key(0), tokens))["params"]
  ref, _ = base.apply({"params": params}, tokens)
  remat, _ = _model(scan_layers=True, remat_policy="full").apply({"params": params}, tokens)
  np.testing.assert_allclose(remat, ref, atol=1e-5)
  unrolled_params = {k: v for k, v in params.items() if k != "layers"}
  for i in range(2):
    unrolled_params[f"layers_{i}"] = jax.tree.map(lambda x: x[i], params["layers"])
  unrolled, _ = _model(scan_layers=False).apply({"params": unrolled_params}, tokens)
  np.testing.assert_allclose(unrolled, ref, atol=1e-5)
  bf16, _ = _model(dtype="bfloat16").apply({"params": params}, tokens)
  assert params["embedder"]["embedding"].dtype == jnp.float32
  assert np.abs(np.asarray(bf16) - np.asarray(ref)).max() < 0.1


def test_lora_zero_init_is_identity_and_only_adapters_train():
  tokens = _tokens()
  base = _model()
  lora = _model(lora_rank=4, lora_targets=("q_proj", "v_proj", "down_proj"))
  lora_params = nn.meta.unbox(lora.init(jax.random.key(0), tokens))["params"]
  assert lora_params["layers"]["attn"]["q_proj"]["lora"]["a"].shape == (2, 64, 4)
  assert lora_params["layers"]["mlp"]["down_proj"]["lora"]["b"].shape == (2, 4, 64)
  assert "lora" not in lora_params["layers"]["attn"]["k_proj"]
  base_params = jax.tree.map(lambda x: x, lora_params)
  for proj in (base_params["layers"]["attn"]["q_proj"], base_params["layers"]["attn"]["v_proj"],
               base_params["layers"]["mlp"]["down_proj"]):
    del proj["lora"]
  ref, _ = base.apply({"params": base_params}, tokens)
  out, _ = lora.apply({"params": lora_params}, tokens)
  np.testing.assert_array_equal(np.asarray(out), np.asarray(ref))

  frozen = [r"^(?!.*/lora/).*"]
  optim = config_lib.optim_config(lr=1e-2, warmup_steps=0, frozen=frozen)
  tx = make_optimizer(optim, lora_params)
  state = create_state(lora_params, tx)
  # No Adam moments for the frozen base: state size ~ adapter size.
  adapter_size = sum(x.size for p, x in jax.tree_util.tree_leaves_with_path(lora_params)
                     if "lora" in jax.tree_util.keystr(p))
  opt_size = sum(x.size for x in jax.tree.leaves(state.opt_state))
  assert opt_size <= 2 * adapter_size + 16
  step = jax.jit(make_train_step(lambda p, b, r, s: next_token_loss(lora, p, b), tx, frozen))
  batch = {"tokens": tokens, "mask": jnp.ones_like(tokens, bool)}
  for _ in range(2):  # Step 1 moves b (a's gradient is 0 while b = 0), step 2 moves a.
    state, metrics = step(state, batch, jax.random.key(0))
  assert bool(metrics["finite"])
  for path, new in jax.tree_util.tree_leaves_with_path(state.params):
    old = lora_params
    for key in path:
      old = old[key.key]
    moved = not np.array_equal(np.asarray(new), np.asarray(old))
    assert moved == ("lora" in jax.tree_util.keystr(path)), jax.tree_util.keystr(path)


def test_non_finite_batch_is_skipped_and_counted():
  model = _model()
  tokens = _tokens()
  params = nn.meta.unbox(model.init(jax.random.key(0), tokens))["params"]
  tx = make_optimizer(config_lib.optim_config(warmup_steps=0), params)
  state = create_state(params, tx)

  def loss_fn(p, batch, rng, model_state):
    loss, metrics = next_token_loss(model, p, batch)
    return loss * batch["scale"], metrics

  step = jax.jit(make_train_step(loss_fn, tx))
  batch = {"tokens": tokens, "mask": jnp.ones_like(tokens, bool), "scale": jnp.float32(jnp.nan)}
  new_state, metrics = step(state, batch, jax.random.key(0))
  assert not bool(metrics["finite"]) and int(new_state.skipped) == 1
  assert int(new_state.skipped_in_a_row) == 1
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), new_state.params, params)
  new_state, metrics = step(new_state, {**batch, "scale": jnp.float32(1.0)}, jax.random.key(0))
  assert bool(metrics["finite"]) and int(new_state.skipped_in_a_row) == 0
