"""Per-image reconstruction metrics for generated video: PSNR and SSIM.

Used by the generation evaluation (`generate/`) and the world-generator tests to score generated
frames against the recorded ones. Inputs are any `[..., H, W, C]` arrays (uint8 frames with
`data_range=255`, or floats in [-1, 1] with `data_range=2`); results keep the leading axes, so
`[B, T, V, H, W, 3]` video gives per-frame, per-view scores `[B, T, V]`.

SSIM follows Wang et al. 2004 as tf.image.ssim / skimage (gaussian_weights=True): an 11x11
Gaussian window with sigma 1.5 over valid positions, K1 = 0.01, K2 = 0.03, computed per channel
and averaged.
"""

import jax
import jax.numpy as jnp


def psnr(prediction: jax.Array, target: jax.Array, data_range: float = 255.0) -> jax.Array:
  """[..., H, W, C] x2 -> f32[...] peak signal-to-noise ratio in dB (inf for identical images)."""
  diff = prediction.astype(jnp.float32) - target.astype(jnp.float32)
  mse = jnp.mean(jnp.square(diff), axis=(-3, -2, -1))
  return 10.0 * jnp.log10(data_range ** 2 / mse)


def _gaussian_window(size: int, sigma: float) -> jax.Array:
  coords = jnp.arange(size, dtype=jnp.float32) - (size - 1) / 2.0
  g = jnp.exp(-0.5 * jnp.square(coords / sigma))
  return g / g.sum()


def _filter(x: jax.Array, window: jax.Array) -> jax.Array:
  """Separable 'valid' filtering of x: f32[N, H, W, C] with a 1D window, per channel."""
  size = window.shape[0]
  channels = x.shape[-1]
  rows = jnp.tile(window.reshape(size, 1, 1, 1), (1, 1, 1, channels))
  cols = jnp.tile(window.reshape(1, size, 1, 1), (1, 1, 1, channels))
  dims = ("NHWC", "HWIO", "NHWC")
  precision = jax.lax.Precision.HIGHEST
  x = jax.lax.conv_general_dilated(x, rows, (1, 1), "VALID", dimension_numbers=dims,
                                   feature_group_count=channels, precision=precision)
  return jax.lax.conv_general_dilated(x, cols, (1, 1), "VALID", dimension_numbers=dims,
                                      feature_group_count=channels, precision=precision)


def ssim(prediction: jax.Array, target: jax.Array, data_range: float = 255.0,
         window_size: int = 11, sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03
         ) -> jax.Array:
  """[..., H, W, C] x2 -> f32[...] mean structural similarity (1 for identical images)."""
  if prediction.shape != target.shape:
    raise ValueError(f"ssim: shapes differ: {prediction.shape} vs {target.shape}")
  height, width = prediction.shape[-3:-1]
  if height < window_size or width < window_size:
    raise ValueError(f"ssim: images {height}x{width} are smaller than the {window_size}x"
                     f"{window_size} window; pass a smaller window_size")
  lead = prediction.shape[:-3]
  x = prediction.astype(jnp.float32).reshape(-1, *prediction.shape[-3:])
  y = target.astype(jnp.float32).reshape(-1, *target.shape[-3:])
  window = _gaussian_window(window_size, sigma)
  mu_x, mu_y = _filter(x, window), _filter(y, window)
  var_x = _filter(x * x, window) - mu_x * mu_x
  var_y = _filter(y * y, window) - mu_y * mu_y
  cov = _filter(x * y, window) - mu_x * mu_y
  c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
  ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
      (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2))
  return ssim_map.mean(axis=(1, 2, 3)).reshape(lead)
