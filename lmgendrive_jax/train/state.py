"""Training state (params, optimizer state, counters) and its creation directly on its shardings."""

from __future__ import annotations

from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from lmgendrive_jax import parallel


@flax.struct.dataclass
class TrainState:
  step: jax.Array            # int32[]: updates applied or skipped so far
  params: Any
  opt_state: Any
  skipped: jax.Array         # int32[]: non-finite steps skipped in total
  skipped_in_a_row: jax.Array  # int32[]
  model_state: Any = None    # non-parameter collections (e.g. frozen batch_stats); not optimised


def create_state(params: Any, tx: optax.GradientTransformation,
                 model_state: Any = None) -> TrainState:
  # Three distinct buffers: one shared zero could not be donated three times.
  zero = lambda: jnp.zeros((), jnp.int32)  # noqa: E731
  return TrainState(step=zero(), params=params, opt_state=tx.init(params), skipped=zero(),
                    skipped_in_a_row=zero(), model_state=model_state or {})


def abstract_state(init_fn: Callable, make_tx: Callable[[Any], optax.GradientTransformation],
                   mesh, rules, *args):
  """Shapes and shardings of the state `init_fn(*args)` + `make_tx(params)` would create.

  Nothing is allocated. Optimizer moments inherit their parameter's logical axes (optax maps over
  the annotated boxes); scalars are replicated. Returns (abstract_state with shardings, shardings,
  tx, make_state) where `make_state(*args)` builds the real, still-annotated state.
  """
  abstract_variables = jax.eval_shape(init_fn, *args)
  tx = make_tx(abstract_variables["params"])

  def make_state(*a):
    variables = dict(init_fn(*a))
    params = variables.pop("params")
    return create_state(params, tx, variables)

  boxed = jax.eval_shape(make_state, *args)
  unboxed = nn.meta.unbox(boxed)
  shardings = parallel.shardings_for(unboxed, nn.logical_to_mesh_sharding(
      nn.get_partition_spec(boxed), mesh, tuple(rules)))
  abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                          unboxed, shardings)
  return abstract, shardings, tx, make_state


def create_sharded_state(init_fn: Callable, make_tx: Callable[[Any], optax.GradientTransformation],
                         mesh, rules, *args) -> tuple[TrainState, Any, optax.GradientTransformation]:
  """Creates the state under jit so every parameter and optimizer moment lands on its shards.

  init_fn(*args) -> variables with logically annotated params; make_tx(params) -> optimizer.
  Returns (state, state shardings, tx).
  """
  _, shardings, tx, make_state = abstract_state(init_fn, make_tx, mesh, rules, *args)
  with jax.set_mesh(mesh), nn.logical_axis_rules(tuple(rules)):
    state = jax.jit(lambda *a: nn.meta.unbox(make_state(*a)), out_shardings=shardings)(*args)
  return state, shardings, tx
