"""Metrics: PSNR/SSIM against hand computations, Fréchet distance against closed forms, and the
FID/FVD code path with randomly initialised feature networks loaded from safetensors (no
published InceptionV3/I3D weights exist on this machine)."""

import jax
import numpy as np
import pytest
from scipy import signal

from lmgendrive_jax.errors import ConversionError
from lmgendrive_jax.metrics import features, frechet
from lmgendrive_jax.metrics.image import psnr, ssim


def test_psnr_hand_computed():
  a = np.full((2, 3, 8, 8, 3), 100, np.uint8)
  b = a + np.uint8(10)
  np.testing.assert_allclose(psnr(a, b), np.full((2, 3), 10 * np.log10(255 ** 2 / 100)),
                             rtol=1e-6)


def _ssim_reference(x, y, data_range=255.0):
  """float64 Wang et al. with an 11x11 sigma-1.5 Gaussian, 'valid' 2D convolution, per channel."""
  g = np.exp(-0.5 * ((np.arange(11) - 5) / 1.5) ** 2)
  window = np.outer(g, g) / np.outer(g, g).sum()
  c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
  values = []
  for ch in range(x.shape[-1]):
    a, b = x[..., ch].astype(np.float64), y[..., ch].astype(np.float64)
    f = lambda z: signal.convolve2d(z, window, mode="valid")  # noqa: E731
    mu_a, mu_b = f(a), f(b)
    var_a, var_b, cov = f(a * a) - mu_a ** 2, f(b * b) - mu_b ** 2, f(a * b) - mu_a * mu_b
    values.append((((2 * mu_a * mu_b + c1) * (2 * cov + c2)) /
                   ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))).mean())
  return np.mean(values)


def test_ssim_matches_reference_and_is_one_for_identical_images():
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (3, 24, 20, 3)).astype(np.uint8)
  y = np.clip(x.astype(int) + rng.integers(-40, 40, x.shape), 0, 255).astype(np.uint8)
  ours = np.asarray(ssim(x, y))
  reference = [_ssim_reference(x[i], y[i]) for i in range(3)]
  np.testing.assert_allclose(ours, reference, rtol=1e-4)
  np.testing.assert_allclose(ssim(x, x), np.ones(3), rtol=1e-6)
  with pytest.raises(ValueError, match="window"):
    ssim(x[:, :8, :8], y[:, :8, :8])


def test_frechet_distance_closed_forms():
  mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
  s1, s2 = np.array([1.0, 2.0, 0.5]), np.array([2.0, 1.0, 0.5])
  expected = np.sum((mu1 - mu2) ** 2) + np.sum((s1 - s2) ** 2)  # diagonal covariances
  assert frechet.frechet_distance(mu1, np.diag(s1 ** 2), mu2, np.diag(s2 ** 2)) == (
      pytest.approx(expected, rel=1e-9))
  rotation, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))
  rotated = frechet.frechet_distance(rotation @ mu1, rotation @ np.diag(s1 ** 2) @ rotation.T,
                                     rotation @ mu2, rotation @ np.diag(s2 ** 2) @ rotation.T)
  assert rotated == pytest.approx(expected, rel=1e-6)


def test_streaming_stats_equal_numpy():
  data = np.random.default_rng(2).normal(size=(50, 4))
  stats = frechet.GaussianStats().add(data[:17]).add(data[17:])
  np.testing.assert_allclose(stats.mean, data.mean(0), rtol=1e-12)
  np.testing.assert_allclose(stats.cov, np.cov(data, rowvar=False), rtol=1e-10)


def _smooth_images(n, size, rng):
  yy, xx = np.mgrid[0:size, 0:size] / size
  phases = rng.uniform(0, 2 * np.pi, (n, 1, 1, 3))
  freq = rng.uniform(0.5, 2.0, (n, 1, 1, 3))
  images = 127.5 * (1 + np.sin(2 * np.pi * freq * (xx + yy)[None, :, :, None] + phases))
  return images.astype(np.uint8)


def test_fid_path_with_random_init_network_from_safetensors(tmp_path):
  net = features.ImageFeatureNet(channels=(8, 12), input_size=16)
  variables = features.init_random(net)
  features.save(net, variables, str(tmp_path))
  kind, loaded, _ = features.load(str(tmp_path))
  assert kind == "image_conv" and loaded == net
  rng = np.random.default_rng(0)
  real = _smooth_images(48, 16, rng)
  extract = features.image_extractor(str(tmp_path), batch_size=20)  # 48 = 20 + 20 + 8 (padded)
  np.testing.assert_allclose(extract(real[:4]), jax.jit(net.apply)(variables, real[:4]),
                             rtol=1e-5, atol=1e-6)
  assert abs(frechet.fid(real, real, extract)) < 1e-6
  noise = lambda s: np.clip(real + rng.normal(0, s, real.shape), 0, 255).astype(np.uint8)  # noqa
  small, large = frechet.fid(real, noise(10), extract), frechet.fid(real, noise(60), extract)
  assert 0 < small < large
  with pytest.raises(ConversionError, match="image"):
    features.video_extractor(str(tmp_path))


def test_fvd_path_with_random_init_network_from_safetensors(tmp_path):
  net = features.VideoFeatureNet(channels=(8, 12), input_size=16)
  variables = features.init_random(net)
  features.save(net, variables, str(tmp_path))
  extract = features.video_extractor(str(tmp_path), batch_size=16)
  rng = np.random.default_rng(0)
  frames = _smooth_images(40 * 4, 16, rng).reshape(40, 4, 16, 16, 3)
  moving = np.stack([np.roll(frames[:, 0], 2 * t, axis=2) for t in range(4)], axis=1)
  static = np.repeat(moving[:, :1], 4, axis=1)  # the same first frames, frozen in time
  assert abs(frechet.fvd(moving, moving, extract)) < 1e-6
  assert frechet.fvd(moving, static, extract) > 0
  # A config that does not match the saved tensors is an error naming the tensor.
  (tmp_path / "config.json").write_text('{"kind": "video_conv", "fields": {"channels": [8, 16]}}')
  with pytest.raises(ConversionError, match="conv_1"):
    features.load(str(tmp_path))
