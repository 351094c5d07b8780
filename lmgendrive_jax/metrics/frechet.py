"""Fréchet distances between feature distributions: FID (images) and FVD (videos).

Where it sits: the generation evaluation encodes real and generated frames/clips with a feature
network (`metrics/features.py`, weights from a local safetensors file), accumulates Gaussian
statistics here (streaming: no feature matrix is kept) and reports

  d^2 = |mu_r - mu_g|^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2))     (Heusel et al. 2017)

All statistics are float64 numpy on the host. The matrix square root is scipy's `sqrtm`, with
pytorch-fid's fallback (add eps * I to both covariances) when the product is near singular.

Which numbers these are: FID/FVD values are only comparable with published ones when the
feature network is the published one (InceptionV3 pool3 for FID, I3D logits for FVD) with its
weights. No weights can be downloaded here, so the code path is tested with a randomly
initialised network (`tests/world/test_metrics.py`); with those, the numbers rank generators
against each other inside this project and nothing more.
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
from scipy import linalg


class GaussianStats:
  """Streaming mean and covariance of feature vectors f[N, D] (float64 sums)."""

  def __init__(self, dim: int | None = None):
    self.count = 0
    self._sum = None if dim is None else np.zeros(dim)
    self._outer = None if dim is None else np.zeros((dim, dim))

  def add(self, features: np.ndarray) -> "GaussianStats":
    features = np.asarray(features, np.float64)
    if features.ndim != 2:
      raise ValueError(f"features must be [N, D]; got shape {features.shape}")
    if self._sum is None:
      self._sum = np.zeros(features.shape[1])
      self._outer = np.zeros((features.shape[1],) * 2)
    if features.shape[1] != self._sum.shape[0]:
      raise ValueError(f"feature width {features.shape[1]} differs from the earlier "
                       f"{self._sum.shape[0]}")
    self.count += features.shape[0]
    self._sum += features.sum(0)
    self._outer += features.T @ features
    return self

  @property
  def mean(self) -> np.ndarray:
    return self._sum / self.count

  @property
  def cov(self) -> np.ndarray:
    """Unbiased sample covariance (as numpy.cov / pytorch-fid)."""
    if self.count < 2:
      raise ValueError(f"a covariance needs at least 2 feature vectors; got {self.count}")
    mean = self.mean
    return (self._outer - self.count * np.outer(mean, mean)) / (self.count - 1)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
  """Squared Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2)."""
  mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
  sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(
      np.float64)
  if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
    raise ValueError(f"statistics differ in shape: {mu1.shape}/{sigma1.shape} vs "
                     f"{mu2.shape}/{sigma2.shape}")
  diff = mu1 - mu2
  covmean, _ = linalg.sqrtm(sigma1 @ sigma2, disp=False)
  if not np.isfinite(covmean).all():
    offset = np.eye(sigma1.shape[0]) * eps
    covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
  if np.iscomplexobj(covmean):
    if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
      raise ValueError(f"sqrtm has a large imaginary part {np.max(np.abs(covmean.imag)):.3g}: "
                       f"the covariances are degenerate; use more samples than feature dims")
    covmean = covmean.real
  return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def stats_of(batches: Iterable[np.ndarray], extractor: Callable[[np.ndarray], np.ndarray]
             ) -> GaussianStats:
  """Feature statistics of an iterable of input batches (images or videos)."""
  stats = GaussianStats()
  for batch in batches:
    stats.add(extractor(batch))
  return stats


def _batches(array: np.ndarray, batch_size: int):
  for start in range(0, len(array), batch_size):
    yield array[start:start + batch_size]


def fid(real_images: np.ndarray, generated_images: np.ndarray,
        extractor: Callable[[np.ndarray], np.ndarray], batch_size: int = 64) -> float:
  """real/generated: uint8[N, H, W, 3]; extractor from `features.image_extractor`."""
  real = stats_of(_batches(real_images, batch_size), extractor)
  fake = stats_of(_batches(generated_images, batch_size), extractor)
  return frechet_distance(real.mean, real.cov, fake.mean, fake.cov)


def fvd(real_videos: np.ndarray, generated_videos: np.ndarray,
        extractor: Callable[[np.ndarray], np.ndarray], batch_size: int = 16) -> float:
  """real/generated: uint8[N, T, H, W, 3] clips (one view each); extractor from
  `features.video_extractor`."""
  real = stats_of(_batches(real_videos, batch_size), extractor)
  fake = stats_of(_batches(generated_videos, batch_size), extractor)
  return frechet_distance(real.mean, real.cov, fake.mean, fake.cov)
