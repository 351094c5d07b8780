"""Stage 1's VAE batch: k distinct random views per frame, each a random square crop of its own
frame's view (train/stage1.py: vae_training_views)."""

import jax
import numpy as np
import pytest

from lmgendrive_jax.train.stage1 import vae_training_views


def _find(views: np.ndarray, crop: np.ndarray) -> list[tuple[int, int, int]]:
  """(view, y, x) of every place `crop` appears in views[V, H, W, 3]."""
  ch, cw = crop.shape[:2]
  return [(v, y, x) for v in range(views.shape[0]) for y in range(views.shape[1] - ch + 1)
          for x in range(views.shape[2] - cw + 1)
          if np.array_equal(views[v, y:y + ch, x:x + cw], crop)]


@pytest.mark.parametrize("views_per_frame,crop", [(2, 6), (1, 0), (0, 0)])
def test_crops_come_from_distinct_views_of_their_own_frame(views_per_frame, crop):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (3, 5, 10, 12, 3), dtype=np.uint8)
  out = np.asarray(vae_training_views(images, jax.random.key(1), views_per_frame, crop))
  k = views_per_frame or 5
  size = (crop, crop) if crop else (10, 12)
  assert out.shape == (3 * k, *size, 3)
  for b in range(3):
    places = [_find(images[b], out[b * k + j]) for j in range(k)]
    assert all(len(p) == 1 for p in places), places  # random pixels: a unique match
    assert len({p[0][0] for p in places}) == k  # distinct views
  if crop:  # offsets vary (not always the corner)
    offsets = {(_find(images[i // k], out[i])[0][1:]) for i in range(len(out))}
    assert len(offsets) > 1
