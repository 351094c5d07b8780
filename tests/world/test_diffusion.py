"""Flow-matching math: conventions, logit-normal times, Euler/Heun on an exact Gaussian flow."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmgendrive_jax import diffusion
from lmgendrive_jax.errors import ConfigError

MU = np.array([1.5, -0.5], np.float32)
SIGMA = np.array([0.5, 2.0], np.float32)


def gaussian_velocity(x, t):
  """Exact E[noise - x0 | x_t] for x0 ~ N(MU, SIGMA^2), noise ~ N(0, 1), x_t = (1-t) x0 + t noise."""
  mean_t = (1 - t) * MU
  var_t = (1 - t) ** 2 * SIGMA ** 2 + t ** 2
  centred = x - mean_t
  expected_x0 = MU + (1 - t) * SIGMA ** 2 / var_t * centred
  expected_noise = t / var_t * centred
  return expected_noise - expected_x0


def _standard_normal(n=8192):
  z = np.random.default_rng(0).normal(size=(n, 2))
  return jnp.asarray(((z - z.mean(0)) / z.std(0)).astype(np.float32))  # exactly N(0, 1) moments


def _moment_errors(sampler, steps):
  samples = jax.jit(lambda x: diffusion.integrate(gaussian_velocity, x, steps, sampler))(
      _standard_normal())
  samples = np.asarray(samples, np.float64)
  mean_error = np.max(np.abs(samples.mean(0) - MU))
  var_error = np.max(np.abs(samples.var(0) / SIGMA ** 2 - 1))
  return mean_error, var_error


def test_interpolation_and_target_follow_the_stated_convention():
  x0, noise = jnp.full((2, 3), 2.0), jnp.full((2, 3), -1.0)
  np.testing.assert_allclose(diffusion.interpolate(x0, noise, jnp.array([0.0, 1.0])),
                             [[2.0] * 3, [-1.0] * 3])
  np.testing.assert_allclose(diffusion.interpolate(x0, noise, 0.25), jnp.full((2, 3), 1.25))
  np.testing.assert_allclose(diffusion.velocity_target(x0, noise), jnp.full((2, 3), -3.0))
  grid = diffusion.time_grid(4)
  np.testing.assert_allclose(grid, [1.0, 0.75, 0.5, 0.25, 0.0])
  shifted = diffusion.time_grid(4, shift=3.0)
  assert shifted[0] == 1.0 and shifted[-1] == 0.0 and shifted[2] == pytest.approx(0.75)


def test_logit_normal_time_sampling():
  t = np.asarray(diffusion.sample_time(jax.random.key(0), (200_000,), 0.5, 0.8))
  assert t.min() > 0 and t.max() < 1
  logits = np.log(t / (1 - t))
  assert logits.mean() == pytest.approx(0.5, abs=0.01)
  assert logits.std() == pytest.approx(0.8, abs=0.01)


@pytest.mark.parametrize("steps,heun_tol,euler_tol", [(4, 0.1, 0.6), (8, 0.025, 0.35)])
def test_samplers_recover_gaussian_target_heun_closer(steps, heun_tol, euler_tol):
  euler_mean, euler_var = _moment_errors("euler", steps)
  heun_mean, heun_var = _moment_errors("heun", steps)
  assert heun_mean < 1e-3 and euler_mean < 1e-3, (heun_mean, euler_mean)
  assert heun_var < heun_tol and euler_var < euler_tol, (heun_var, euler_var)
  assert heun_var < 0.25 * euler_var


def test_convergence_orders():
  """Halving the step size cuts Euler's error ~2x (first order) and Heun's ~4x (second order)."""
  euler = [_moment_errors("euler", steps)[1] for steps in (16, 32, 64)]
  heun = [_moment_errors("heun", steps)[1] for steps in (16, 32)]
  assert 1.6 < euler[0] / euler[1] < 2.5 and 1.6 < euler[1] / euler[2] < 2.5, euler
  assert heun[0] / heun[1] > 3.2 and euler[2] < 0.05, heun


def test_guidance_combines_branches():
  def velocity_fn(x, t, drop):
    return jnp.where(drop[:, None], 1.0, 3.0) * jnp.ones_like(x)
  v = diffusion.guided(velocity_fn, 2.5)(jnp.zeros((2, 4)), jnp.float32(0.5))
  np.testing.assert_allclose(v, jnp.full((2, 4), 1.0 + 2.5 * (3.0 - 1.0)))
  v = diffusion.guided(velocity_fn, 1.0)(jnp.zeros((2, 4)), jnp.float32(0.5))
  np.testing.assert_allclose(v, jnp.full((2, 4), 3.0))


def test_flow_config_rejects_bad_values():
  with pytest.raises(ConfigError, match="sampler"):
    diffusion.FlowConfig(sampler="ddim")
  with pytest.raises(ConfigError, match="unknown flow config keys"):
    diffusion.flow_config({"num_step": 4})
