"""Device mesh, logical -> mesh sharding rules, multi-host start-up and global batches.

Models annotate parameters and activations with logical axis names (`embed`, `heads`, `batch`,
...). Which mesh axes (`data`, `fsdp`, `tensor`) they map to is config data
(`config.logical_axis_rules`), as in MaxText. Everything here turns those names into
`NamedSharding`s for `jax.jit`'s `in_shardings` / `out_shardings`.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from lmgendrive_jax.config import mesh_shape
from lmgendrive_jax.errors import ConfigError

Rules = Sequence[tuple[str, Any]]


def make_mesh(mesh_cfg, devices: Sequence[jax.Device] | None = None) -> Mesh:
  """Mesh with axes `mesh_cfg.axes` (Auto axis types). One -1 in `mesh_cfg.shape` fills in.

  Multi-slice: a `dcn_shape` with a product > 1 splits each axis into an ICI part (inside a slice)
  and a DCN part (across slices) with `mesh_utils.create_hybrid_device_mesh`.
  """
  devices = list(devices if devices is not None else jax.devices())
  axes = tuple(mesh_cfg.axes)
  dcn_shape = tuple(mesh_cfg.get("dcn_shape", (1,) * len(axes)))
  axis_types = (AxisType.Auto,) * len(axes)
  num_slices = math.prod(dcn_shape)
  if num_slices > 1:
    from jax.experimental import mesh_utils
    if len(devices) % num_slices:
      raise ConfigError(f"mesh.dcn_shape {dcn_shape} needs the {len(devices)} devices to split "
                        f"into {num_slices} slices evenly")
    ici_shape = mesh_shape(mesh_cfg, len(devices) // num_slices)
    device_array = mesh_utils.create_hybrid_device_mesh(ici_shape, dcn_shape, devices)
    return Mesh(device_array, axes, axis_types=axis_types)
  shape = mesh_shape(mesh_cfg, len(devices))
  return jax.make_mesh(shape, axes, axis_types=axis_types, devices=devices)


def logical_rules(config) -> tuple:
  """The config's logical -> mesh rules as the tuple-of-pairs Flax expects."""
  return tuple((name, tuple(target) if isinstance(target, list) else target)
               for name, target in config.logical_axis_rules)


def logical_shardings(logical_specs: Any, mesh: Mesh, rules: Rules) -> Any:
  """Tree of logical PartitionSpecs -> tree of NamedShardings on `mesh`."""
  return nn.logical_to_mesh_sharding(logical_specs, mesh, tuple(rules))


def abstract_variables(init_fn: Callable, *args, **kwargs) -> tuple[Any, Any]:
  """Shapes of `init_fn(*args)`'s variables (nothing allocated) and their logical specs."""
  boxed = jax.eval_shape(init_fn, *args, **kwargs)
  return nn.meta.unbox(boxed), nn.get_partition_spec(boxed)


def divisible_sharding(sharding: NamedSharding, shape: tuple[int, ...]) -> NamedSharding:
  """Replicates the dimensions of `shape` that the sharding's mesh axes do not divide (a
  1-token null condition cannot be split over 2 devices); the others keep their axes."""
  spec = list(sharding.spec) + [None] * (len(shape) - len(sharding.spec))
  for dim, axes in enumerate(spec):
    if axes is None:
      continue
    names = (axes,) if isinstance(axes, str) else tuple(axes)
    if shape[dim] % math.prod(sharding.mesh.shape[name] for name in names):
      spec[dim] = None
  return NamedSharding(sharding.mesh, P(*spec))


def shardings_for(tree: Any, shardings: Any) -> Any:
  """`divisible_sharding` leaf by leaf (tree: arrays or ShapeDtypeStructs)."""
  return jax.tree.map(lambda x, s: divisible_sharding(s, x.shape), tree, shardings)


def variable_shardings(init_fn: Callable, mesh: Mesh, rules: Rules, *args, **kwargs):
  """(abstract variables, NamedShardings) for the variables `init_fn(*args)` would create."""
  abstract, specs = abstract_variables(init_fn, *args, **kwargs)
  return abstract, shardings_for(abstract, logical_shardings(specs, mesh, rules))


def init_sharded(init_fn: Callable, mesh: Mesh, rules: Rules, *args, **kwargs) -> Any:
  """Runs `init_fn` under jit so each variable is created directly on its shards."""
  _, shardings = variable_shardings(init_fn, mesh, rules, *args, **kwargs)
  with jax.set_mesh(mesh), nn.logical_axis_rules(tuple(rules)):
    return jax.jit(lambda *a: nn.meta.unbox(init_fn(*a, **kwargs)), out_shardings=shardings)(*args)


def batch_axes(rules: Rules) -> Any:
  """The mesh axes the logical `batch` axis maps to (the data-parallel axes)."""
  for name, target in rules:
    if name == "batch":
      return target
  return None


def batch_sharding(mesh: Mesh, rules: Rules, ndim: int = 1) -> NamedSharding:
  """Sharding of an array whose leading axis is the global batch."""
  return NamedSharding(mesh, P(batch_axes(rules), *([None] * (ndim - 1))))


def global_batch(local_batch: Any, mesh: Mesh, rules: Rules) -> Any:
  """Per-process numpy batch (leading axis = this host's share) -> global jax.Arrays.

  Each process passes only the examples it loaded; the global batch is their concatenation in
  process order (`jax.make_array_from_process_local_data`).
  """
  def to_global(x):
    x = np.asarray(x)
    return jax.make_array_from_process_local_data(batch_sharding(mesh, rules, x.ndim), x)
  return jax.tree.map(to_global, local_batch)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None, process_id: int | None = None,
                           cpu_collectives: str = "gloo") -> None:
  """Starts multi-host JAX once per process.

  On TPU pods and SLURM/Kubernetes clusters JAX finds everything itself (call with no arguments).
  Elsewhere the arguments, or the environment variables `LMGD_COORDINATOR`, `LMGD_NUM_PROCESSES`
  and `LMGD_PROCESS_ID`, name the coordinator. Single-process runs need no call at all.
  """
  coordinator_address = coordinator_address or os.environ.get("LMGD_COORDINATOR")
  if num_processes is None and "LMGD_NUM_PROCESSES" in os.environ:
    num_processes = int(os.environ["LMGD_NUM_PROCESSES"])
  if process_id is None and "LMGD_PROCESS_ID" in os.environ:
    process_id = int(os.environ["LMGD_PROCESS_ID"])
  if jax.distributed.is_initialized():
    return
  if coordinator_address is None and num_processes is None:
    on_pod = "TPU_WORKER_HOSTNAMES" in os.environ or "SLURM_JOB_ID" in os.environ
    if not on_pod:
      return  # One process: nothing to coordinate.
    jax.distributed.initialize()
  else:
    # Only affects the CPU backend (and must be set before any backend starts); accelerators
    # use their own collectives.
    jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id)
  logging.info("jax.distributed: process %d of %d, %d local / %d global devices",
               jax.process_index(), jax.process_count(), jax.local_device_count(),
               jax.device_count())
