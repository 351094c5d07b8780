"""Next-token cross-entropy for training the LLM on text (the instruction corpus)."""

import jax
import jax.numpy as jnp
import optax


def next_token_loss(model, params, batch, rng=None):
  """batch: tokens int32[B, L], mask bool[B, L] (valid tokens). Returns (mean loss, metrics)."""
  del rng
  tokens, mask = batch["tokens"], batch["mask"].astype(bool)
  logits, _ = model.apply({"params": params}, tokens[:, :-1], input_mask=mask[:, :-1])
  targets, target_mask = tokens[:, 1:], (mask[:, 1:] & mask[:, :-1]).astype(jnp.float32)
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
  count = jnp.maximum(target_mask.sum(), 1.0)
  loss = (losses * target_mask).sum() / count
  accuracy = ((jnp.argmax(logits, -1) == targets) * target_mask).sum() / count
  return loss, {"accuracy": accuracy, "tokens": target_mask.sum()}
