"""Linear projection with logical axis names and optional LoRA adapters.

The one dense layer of the project: every projection in the LLM, Q-Former and world generator is a
`Linear`, so sharding (logical axes on the kernel) and LoRA (a `lora` sub-tree next to the frozen
kernel) behave the same everywhere. LoRA parameters live under `<layer>/lora/{a,b}`, so freezing
the base is the regex `^(?!.*/lora/)` and saving only adapters is a filter on `/lora/`.
"""

import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

Axes = Sequence[str | None]


def _as_tuple(value) -> tuple:
  return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def _matmul_2d(x: jax.Array, kernel: jax.Array, n_in: int) -> jax.Array:
  """x[..., *in] . kernel[*in, *out] as one [rows, in] @ [in, out] matmul.

  Flattening first matters on CPU: XLA's backward of a dot_general with several batch-like
  dimensions is ~30% slower than the same product as one 2D GEMM. The reshapes keep the sharded
  dimensions major, so they cost no communication.
  """
  lead, in_shape, out_shape = x.shape[:-n_in], x.shape[-n_in:], kernel.shape[n_in:]
  in_size = math.prod(in_shape)
  y = x.reshape(-1, in_size) @ kernel.reshape(in_size, -1)
  return y.reshape(*lead, *out_shape)


class Linear(nn.Module):
  """y = x . kernel (+ bias) (+ alpha/rank * x . a . b), contracting the trailing `in_axes` of x.

  x: f32[..., *in_shape] -> y: f32[..., *features]. `kernel_axes` names every kernel dimension
  (input dims first, then output dims).
  """
  features: int | tuple[int, ...]
  kernel_axes: Axes
  in_axes: int | tuple[int, ...] = -1
  use_bias: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  lora_rank: int = 0
  lora_alpha: float = 16.0
  kernel_init: Callable | None = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    features = _as_tuple(self.features)
    in_axes = tuple(sorted(a % x.ndim for a in _as_tuple(self.in_axes)))
    n_in = len(in_axes)
    if in_axes != tuple(range(x.ndim - n_in, x.ndim)):
      raise ValueError(f"Linear contracts trailing axes only; got in_axes={self.in_axes} for "
                       f"input of shape {x.shape}")
    if len(self.kernel_axes) != n_in + len(features):
      raise ValueError(f"kernel_axes {tuple(self.kernel_axes)} must name {n_in} input and "
                       f"{len(features)} output dims")
    in_shape = x.shape[-n_in:]
    kernel_init = self.kernel_init or nn.initializers.variance_scaling(
        1.0, "fan_in", "truncated_normal", in_axis=tuple(range(n_in)),
        out_axis=tuple(range(n_in, n_in + len(features))))
    kernel = self.param("kernel", nn.with_logical_partitioning(kernel_init, tuple(self.kernel_axes)),
                        in_shape + features, self.param_dtype)
    dtype = jnp.dtype(self.dtype)
    x = x.astype(dtype)
    y = _matmul_2d(x, kernel.astype(dtype), n_in)
    if self.use_bias:
      bias = self.param("bias", nn.with_logical_partitioning(
          nn.initializers.zeros_init(), tuple(self.kernel_axes[n_in:])), features, self.param_dtype)
      y = y + bias.astype(dtype)
    if self.lora_rank > 0:
      y = y + LoRA(features, tuple(self.kernel_axes), n_in, self.lora_rank, self.lora_alpha,
                   dtype, self.param_dtype, name="lora")(x)
    return y


class LoRA(nn.Module):
  """Low-rank update alpha/rank * (x . a) . b; b starts at zero so the base output is unchanged."""
  features: tuple[int, ...]
  kernel_axes: tuple
  n_in: int
  rank: int
  alpha: float
  dtype: Any
  param_dtype: Any

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    in_shape = x.shape[-self.n_in:]
    a = self.param("a", nn.with_logical_partitioning(
        nn.initializers.variance_scaling(1.0, "fan_in", "normal", in_axis=tuple(range(self.n_in)),
                                         out_axis=self.n_in),
        tuple(self.kernel_axes[:self.n_in]) + ("lora_rank",)), in_shape + (self.rank,),
        self.param_dtype)
    b = self.param("b", nn.with_logical_partitioning(
        nn.initializers.zeros_init(), ("lora_rank",) + tuple(self.kernel_axes[self.n_in:])),
        (self.rank,) + self.features, self.param_dtype)
    down = _matmul_2d(x, a.astype(self.dtype), self.n_in)
    up = _matmul_2d(down, b.astype(self.dtype), 1)
    return up * (self.alpha / self.rank)
