"""Flow matching for the world generator: noising, velocity target, time sampling, loss, samplers.

Conventions (one choice, used by the loss and every sampler):
- time t in [0, 1]; **t = 0 is data, t = 1 is noise** (rectified flow / SD3 / maxdiffusion's
  `FlowMatchScheduler`, sigma = t):  x_t = (1 - t) * x0 + t * noise.
- the network predicts the velocity dx_t/dt = noise - x0 (`velocity_target`).
- training times are logit-normal: t = sigmoid(m + s * n), n ~ N(0, 1) (SD3's default m=0, s=1).
- sampling integrates dx/dt = v from t = 1 (pure noise) down to t = 0 on the grid
  `time_grid(num_steps, shift)`: uniform in t, optionally warped by SD3's shift
  t' = shift * t / (1 + (shift - 1) * t) (shift > 1 spends more steps at high noise).
  Euler: x <- x + (t_next - t) * v(x, t). Heun (2nd order, 2 evaluations per step): Euler
  predictor, then the average of the slopes at both ends.
- classifier-free guidance: training drops the condition of a sample with probability
  `cond_drop_prob` (the denoiser swaps in its learned null condition); sampling uses
  v = v_null + w * (v_cond - v_null), w = `guidance_scale` (1 = no guidance, one evaluation).
- context frames are clean (their frame time is 0) and concatenated before the noisy future
  frames along the frame axis; the loss covers the future frames only.

The generic pieces (`interpolate`, `sample_time`, `euler`, `heun`, `integrate`) know nothing of
the model; `flow_matching_loss` and `sample_future` wire them to `models/world.py: WorldDiT`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from lmgendrive_jax.errors import ConfigError

VelocityFn = Callable[[jax.Array, jax.Array], jax.Array]  # (x, t: f32[]) -> dx/dt
SAMPLERS = ("euler", "heun")


@dataclasses.dataclass(frozen=True)
class FlowConfig:
  """Training and sampling settings; fields mirror `config.world_preset(name).flow`."""
  time_logit_mean: float = 0.0
  time_logit_std: float = 1.0
  cond_drop_prob: float = 0.1
  sampler: str = "euler"
  num_steps: int = 8
  guidance_scale: float = 1.0
  time_shift: float = 1.0

  def __post_init__(self):
    if self.sampler not in SAMPLERS:
      raise ConfigError(f"flow.sampler={self.sampler!r}; choose one of {SAMPLERS}")
    if self.num_steps < 1:
      raise ConfigError(f"flow.num_steps={self.num_steps} must be at least 1")
    if not 0.0 <= self.cond_drop_prob < 1.0:
      raise ConfigError(f"flow.cond_drop_prob={self.cond_drop_prob} must be in [0, 1)")
    if self.time_shift <= 0:
      raise ConfigError(f"flow.time_shift={self.time_shift} must be positive")


def _expand(t: jax.Array, x: jax.Array) -> jax.Array:
  """Broadcast t: [B] or [B, F] against x: [B, ...] or [B, F, ...] by trailing singleton axes."""
  t = jnp.asarray(t, jnp.float32)
  return t.reshape(t.shape + (1,) * (x.ndim - t.ndim))


def interpolate(x0: jax.Array, noise: jax.Array, t: jax.Array) -> jax.Array:
  """x_t = (1 - t) * x0 + t * noise; t: scalar, [B] or [B, F] (leading axes of x0)."""
  t = _expand(t, x0)
  return (1.0 - t) * x0 + t * noise


def velocity_target(x0: jax.Array, noise: jax.Array) -> jax.Array:
  """d x_t / dt = noise - x0."""
  return noise - x0


def sample_time(key: jax.Array, shape: tuple[int, ...], mean: float = 0.0, std: float = 1.0
                ) -> jax.Array:
  """Logit-normal times f32[shape] in (0, 1)."""
  return jax.nn.sigmoid(mean + std * jax.random.normal(key, shape, jnp.float32))


def shift_time(t: jax.Array, shift: float) -> jax.Array:
  """SD3's resolution shift of the time grid (identity for shift = 1)."""
  return shift * t / (1.0 + (shift - 1.0) * t)


def time_grid(num_steps: int, shift: float = 1.0) -> jax.Array:
  """f32[num_steps + 1] from 1 (noise) down to 0 (data)."""
  return shift_time(jnp.linspace(1.0, 0.0, num_steps + 1, dtype=jnp.float32), shift)


def euler(velocity_fn: VelocityFn, x: jax.Array, grid: jax.Array) -> jax.Array:
  """Integrates from grid[0] to grid[-1] with explicit Euler (one evaluation per step)."""
  def step(i, x):
    t, t_next = grid[i], grid[i + 1]
    return x + (t_next - t) * velocity_fn(x, t)
  return jax.lax.fori_loop(0, grid.shape[0] - 1, step, x)


def heun(velocity_fn: VelocityFn, x: jax.Array, grid: jax.Array) -> jax.Array:
  """Heun's method (explicit trapezoid): two evaluations per step."""
  def step(i, x):
    t, t_next = grid[i], grid[i + 1]
    dt = t_next - t
    slope = velocity_fn(x, t)
    predicted = x + dt * slope
    return x + dt * 0.5 * (slope + velocity_fn(predicted, t_next))
  return jax.lax.fori_loop(0, grid.shape[0] - 1, step, x)


def integrate(velocity_fn: VelocityFn, noise: jax.Array, num_steps: int, sampler: str = "euler",
              shift: float = 1.0) -> jax.Array:
  """noise (the t = 1 state) -> sample at t = 0."""
  grid = time_grid(num_steps, shift)
  if sampler == "euler":
    return euler(velocity_fn, noise, grid)
  if sampler == "heun":
    return heun(velocity_fn, noise, grid)
  raise ConfigError(f"sampler={sampler!r}; choose one of {SAMPLERS}")


def guided(velocity_fn: Callable[[jax.Array, jax.Array, jax.Array], jax.Array],
           guidance_scale: float) -> VelocityFn:
  """Classifier-free guidance over `velocity_fn(x, t, drop_cond: bool[B])`.

  Both branches run as one doubled batch: v = v_null + w * (v_cond - v_null).
  """
  def fn(x, t):
    batch = x.shape[0]
    if guidance_scale == 1.0:
      return velocity_fn(x, t, jnp.zeros((batch,), bool))
    drop = jnp.concatenate([jnp.zeros((batch,), bool), jnp.ones((batch,), bool)])
    both = velocity_fn(jnp.concatenate([x, x]), t, drop)
    v_cond, v_null = both[:batch], both[batch:]
    return v_null + guidance_scale * (v_cond - v_null)
  return fn


# ----------------------------------------------------------------------------------------------
# The world generator's loss and chunk sampler.


def _frame_times(batch: int, context_frames: int, future_t: jax.Array, future_frames: int
                 ) -> jax.Array:
  """f32[B, Fc + Ff]: 0 for the clean context frames, the flow time for the future frames."""
  return jnp.concatenate([jnp.zeros((batch, context_frames), jnp.float32),
                          jnp.broadcast_to(_expand(future_t, jnp.zeros((batch, 1))),
                                           (batch, future_frames))], axis=1)


def flow_matching_loss(model, variables, context: jax.Array, future: jax.Array, cond: jax.Array,
                       key: jax.Array, flow: FlowConfig, *, cond_mask: jax.Array | None = None,
                       waypoints: jax.Array | None = None, future_mask: jax.Array | None = None,
                       train_cond_drop: bool = True) -> tuple[jax.Array, dict]:
  """Velocity-matching loss on the future frames.

  context: f32[B, Fc, V, h, w, c] clean latents of observed frames (Fc may be 0);
  future: f32[B, Ff, V, h, w, c] clean latents to learn; cond: f32[B, Nc, Dc] (LLM generation
  states); future_mask: bool[B, Ff] frames that exist (padding excluded from the mean).
  One time per sample (logit-normal) for all its future frames.
  Returns (loss f32[], out) with out["t"] f32[B], out["per_frame"] f32[B, Ff] mean squared errors.
  """
  if context.shape[0] != future.shape[0] or context.shape[2:] != future.shape[2:]:
    raise ValueError(f"context {context.shape} and future {future.shape} must share B, V, h, w, c")
  batch, context_frames, future_frames = future.shape[0], context.shape[1], future.shape[1]
  time_key, noise_key, drop_key = jax.random.split(key, 3)
  t = sample_time(time_key, (batch,), flow.time_logit_mean, flow.time_logit_std)
  noise = jax.random.normal(noise_key, future.shape, jnp.float32)
  noisy = interpolate(future.astype(jnp.float32), noise, t)
  drop = (jax.random.bernoulli(drop_key, flow.cond_drop_prob, (batch,)) if train_cond_drop
          else jnp.zeros((batch,), bool))
  latents = jnp.concatenate([context.astype(jnp.float32), noisy], axis=1)
  velocity, _ = model.apply(variables, latents,
                            _frame_times(batch, context_frames, t, future_frames), cond,
                            cond_mask=cond_mask, drop_cond=drop, waypoints=waypoints)
  error = jnp.square(velocity[:, context_frames:] - velocity_target(future, noise))
  per_frame = error.reshape(batch, future_frames, -1).mean(-1)
  weights = (jnp.ones((batch, future_frames), jnp.float32) if future_mask is None
             else future_mask.astype(jnp.float32))
  loss = (per_frame * weights).sum() / jnp.maximum(weights.sum(), 1.0)
  return loss, {"t": t, "per_frame": per_frame, "cond_dropped": drop}


def sample_future(model, variables, context: jax.Array, cond: jax.Array, key: jax.Array,
                  num_future_frames: int, flow: FlowConfig, *, cond_mask: jax.Array | None = None,
                  waypoints: jax.Array | None = None) -> jax.Array:
  """Samples future latents f32[B, Ff, V, h, w, c] given clean context f32[B, Fc, V, h, w, c].

  Starts from Gaussian noise at t = 1 and integrates with `flow.sampler` in `flow.num_steps`
  steps, with classifier-free guidance when `flow.guidance_scale != 1`.
  """
  batch, context_frames = context.shape[:2]
  shape = (batch, num_future_frames) + context.shape[2:]
  context = context.astype(jnp.float32)

  def velocity_fn(x, t, drop):
    copies = x.shape[0] // batch  # 2 under guidance: the batch is doubled

    def tile(a):
      return None if a is None else jnp.concatenate([a] * copies)
    latents = jnp.concatenate([tile(context), x], axis=1)
    times = _frame_times(x.shape[0], context_frames, jnp.full((x.shape[0],), t),
                         num_future_frames)
    velocity, _ = model.apply(variables, latents, times, tile(cond), cond_mask=tile(cond_mask),
                              drop_cond=drop, waypoints=tile(waypoints))
    return velocity[:, context_frames:]

  noise = jax.random.normal(key, shape, jnp.float32)
  return integrate(guided(velocity_fn, flow.guidance_scale), noise, flow.num_steps,
                   flow.sampler, flow.time_shift)


def flow_config(cfg: Any) -> FlowConfig:
  """`config.world_preset(name).flow` (ConfigDict or dict) -> FlowConfig (unknown keys error)."""
  values = dict(cfg.to_dict() if hasattr(cfg, "to_dict") else cfg)
  known = {f.name for f in dataclasses.fields(FlowConfig)}
  unknown = sorted(set(values) - known)
  if unknown:
    raise ConfigError(f"unknown flow config keys {unknown}; known: {sorted(known)}")
  return FlowConfig(**values)
