"""Q-Former alignment's token cache (train/qformer_align.py): batches drawn by (seed, step) keep
tokens and labels together and resume exactly; a cache of other data is refused on resume. The
run itself is exercised in test_curriculum.py."""

import numpy as np
import pytest

from lmgendrive_jax.errors import DataError
from lmgendrive_jax.train.qformer_align import LazyBatches, TokenCache


def _cache(seed=0, frames=50):
  index = np.arange(frames, dtype=np.float32)
  tokens = np.broadcast_to(index[:, None, None], (frames, 3, 4)).copy()
  labels = {"waypoints": np.broadcast_to(index[:, None, None], (frames, 5, 2)).copy(),
            "waypoint_mask": np.ones((frames, 5), bool)}
  return TokenCache(tokens, labels, batch_size=6, seed=seed,
                    fingerprint={"frames": frames, "seed": seed})


def test_batches_keep_tokens_with_their_labels():
  batch = _cache().batch(0)
  assert batch["vision_tokens"].shape == (6, 1, 3, 4) and batch["waypoints"].shape == (6, 1, 5, 2)
  assert batch["frame_mask"].all() and batch["waypoint_mask"].shape == (6, 1, 5)
  np.testing.assert_array_equal(batch["vision_tokens"][:, 0, 0, 0], batch["waypoints"][:, 0, 0, 0])
  assert len(np.unique(batch["vision_tokens"][:, 0, 0, 0])) > 1


def test_resume_draws_the_same_batches():
  straight = _cache()
  expected = [straight.batch(step) for step in range(4)]
  first = _cache()
  first.batch(0), first.batch(1)
  resumed = _cache()
  resumed.set_state(first.get_state())
  for step in (2, 3):
    got = resumed.batch(step)
    for key, value in expected[step].items():
      np.testing.assert_array_equal(got[key], value)
  with pytest.raises(DataError, match="step 4 but step 7"):
    resumed.batch(7)
  assert not np.array_equal(_cache(seed=1).batch(0)["vision_tokens"], expected[0]["vision_tokens"])


def test_a_cache_of_other_data_is_refused_on_resume():
  with pytest.raises(DataError, match="another token cache"):
    _cache(frames=40).set_state(_cache().get_state())
  with pytest.raises(DataError, match="no frames"):
    TokenCache(np.zeros((0, 3, 4)), {}, 2, 0, {})


def test_the_cache_is_built_on_its_first_batch_only():
  builds = []

  def build(frames=50):
    builds.append(frames)
    return _cache(frames=frames)

  first = _cache()
  first.batch(0), first.batch(1)
  finished = LazyBatches(build)  # a rerun of a finished run: restored, no step trained
  finished.set_state(first.get_state())
  assert finished.get_state() == first.get_state() and builds == []

  resumed = LazyBatches(build)
  resumed.set_state(first.get_state())
  straight = _cache()
  expected = [straight.batch(step) for step in range(3)][2]
  np.testing.assert_array_equal(resumed.batch(2)["vision_tokens"], expected["vision_tokens"])
  resumed.batch(3)
  assert builds == [50] and resumed.get_state()["step"] == 4

  other = LazyBatches(lambda: build(frames=40))  # its fingerprint is checked once it is built
  other.set_state(first.get_state())
  with pytest.raises(DataError, match="another token cache"):
    other.batch(2)
