"""The jitted training step shared by every stage: gradients, guard, update.

A stage supplies `loss_fn(params, batch, rng, model_state) -> (loss, metrics)` (model_state: the
non-parameter collections, e.g. batch statistics); this module turns it into
`step(state, batch, rng) -> (state, metrics)`. A stage that updates those collections (BatchNorm
trained from scratch: stage 1 of the embedded default) returns `(loss, (metrics, model_state))`
and is built with `updates_model_state=True`; the new collections are kept like the parameters,
only on finite steps. A non-finite loss or gradient skips the update (parameters, optimizer state
and those collections stay bit-identical), counts it, and reports it in the metrics so the loop
can stop after K in a row. Gradients of frozen parameters feed `optax.set_to_zero` only,
so XLA drops their computation under jit.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from lmgendrive_jax.train.optimizer import path_labels
from lmgendrive_jax.train.state import TrainState


def _all_finite(tree) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def make_train_step(loss_fn: Callable, tx: optax.GradientTransformation,
                    frozen_patterns=(), updates_model_state: bool = False) -> Callable:
  """step(state, batch, rng) -> (state, metrics); jit it with shardings and donate the state."""

  def step(state: TrainState, batch: Any, rng: jax.Array):
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, batch, rng, state.model_state)
    metrics, model_state = aux if updates_model_state else (aux, state.model_state)
    labels = path_labels(grads, frozen_patterns)
    trainable_grads = jax.tree.map(lambda g, label: g if label == "trainable" else None,
                                   grads, labels)
    finite = jnp.isfinite(loss) & _all_finite(trainable_grads)
    grad_norm = optax.global_norm(trainable_grads)
    updates, new_opt_state = tx.update(grads, state.opt_state, state.params)
    new_params = optax.apply_updates(state.params, updates)
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)  # noqa
    new_state = TrainState(
        step=state.step + 1, params=keep(new_params, state.params),
        opt_state=keep(new_opt_state, state.opt_state),
        skipped=state.skipped + (~finite).astype(jnp.int32),
        skipped_in_a_row=jnp.where(finite, 0, state.skipped_in_a_row + 1),
        model_state=keep(model_state, state.model_state))
    metrics = {**metrics, "loss": loss, "grad_norm": grad_norm, "finite": finite,
               "skipped": new_state.skipped}
    return new_state, metrics

  return step
