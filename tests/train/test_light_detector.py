"""The red-light detector (models/light_detector.py, train/light_detector.py): it finds a lamp of
a few pixels, its run trains through launch/train.py's task table and the agent's light rule
loads that run and reads the focus view as the run's data made it."""

import os
import sys

import flax.linen as nn
import jax
import numpy as np
import optax
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "data"))
import lmdrive_fixture as fx  # noqa: E402

from data_pipelines.lmdrive_tfds import BuildConfig, build  # noqa: E402
from lmgendrive_jax import config as config_lib  # noqa: E402
from lmgendrive_jax.agent.detector import ViewDetector  # noqa: E402
from lmgendrive_jax.data import pipeline  # noqa: E402
from lmgendrive_jax.errors import CheckpointError, ConfigError, DataError  # noqa: E402
from lmgendrive_jax.models.light_detector import RedLightDetector  # noqa: E402
from lmgendrive_jax.train import light_detector, loop, trained  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _scenes(rng, count, size=32):
  """Grey street scenes with a 2x3 px lamp each, red (label 1) or green (0), anywhere in the upper
  half, and a red car-sized block low in half of them (a red that is not a lamp)."""
  images = rng.integers(90, 140, (count, size, size, 3)).astype(np.uint8)
  labels = rng.integers(0, 2, count)
  for image, label in zip(images, labels):
    y, x = rng.integers(0, size // 2 - 3), rng.integers(0, size - 2)
    image[y:y + 3, x:x + 2] = (230, 20, 20) if label else (20, 220, 40)
    if rng.random() < 0.5:
      y, x = rng.integers(size // 2 + 2, size - 6), rng.integers(0, size - 8)
      image[y:y + 5, x:x + 8] = (150, 30, 30)
  return images, labels.astype(np.float32)


def test_detector_learns_a_lamp_of_a_few_pixels():
  detector = RedLightDetector(widths=(8, 16, 16), strides=(1, 2, 2), hidden=16)
  rng = np.random.default_rng(0)
  params = detector.init(jax.random.key(0), np.zeros((1, 32, 32, 3), np.uint8))["params"]
  tx = optax.adam(3e-3)
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state, images, labels):
    def loss_fn(params):
      logits = detector.apply({"params": params}, images)
      return optax.sigmoid_binary_cross_entropy(logits, labels).mean()
    grads = jax.grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state)
    return optax.apply_updates(params, updates), opt_state

  for _ in range(150):
    params, opt_state = step(params, opt_state, *_scenes(rng, 32))
  images, labels = _scenes(np.random.default_rng(1), 256)
  said = detector.apply({"params": params}, images) > 0
  assert np.mean(said == (labels > 0)) > 0.95


def test_position_channels_let_the_detector_tell_where_a_block_is():
  """Convolutions pooled over the whole map cannot tell a block in the middle (a car in the own
  lane) from one beside it (the next lane); with position channels they can."""
  middle, beside = (np.full((1, 32, 32, 3), 100, np.uint8) for _ in range(2))
  middle[0, 20:24, 12:20] = 200
  beside[0, 20:24, 20:28] = 200  # shifted by the detector's total stride (8)
  for position_channels, differ in ((False, False), (True, True)):
    detector = RedLightDetector(widths=(8, 8), strides=(2, 4), hidden=8,
                                position_channels=position_channels)
    variables = detector.init(jax.random.key(0), middle)
    kernel = nn.unbox(variables)["params"]["conv0"]["kernel"]
    assert kernel.shape[2] == (5 if position_channels else 3)
    logits = [float(detector.apply(variables, image)[0]) for image in (middle, beside)]
    assert (abs(logits[0] - logits[1]) > 1e-4) == differ, logits


def test_the_object_map_has_the_last_feature_maps_cells_and_feeds_the_frame_logit():
  detector = RedLightDetector(widths=(8, 8, 8), strides=(1, 2, 2), hidden=8, object_map=True)
  images = np.random.default_rng(0).integers(0, 255, (2, 24, 40, 3), np.uint8)
  variables = detector.init(jax.random.key(0), images)
  logits, object_logits = detector.apply(variables, images, return_objects=True)
  assert logits.shape == (2,) and object_logits.shape == (2, 6, 10)
  assert detector.feature_size(24, 40) == (6, 10)
  np.testing.assert_array_equal(detector.apply(variables, images), logits)
  # The frame-level MLP reads the object map: its first layer has 64 + 64 + 60 inputs.
  assert nn.unbox(variables)["params"]["hidden"]["kernel"].shape[0] == 8 + 8 + 60
  with pytest.raises(ValueError, match="object_map"):
    RedLightDetector(widths=(8,), strides=(2,)).init(jax.random.key(0), images,
                                                     return_objects=True)


def test_object_loss_counts_covered_cells_more_and_rates_them():
  cover = np.zeros((1, 2, 2), np.float32)
  cover[0, 0, 0] = 1.0
  right = np.where(cover > 0, 5.0, -5.0).astype(np.float32)
  loss, metrics = light_detector.object_loss(right, cover, boost=30.0)
  assert float(loss) < 0.01 and float(metrics["object_recall"]) == 1.0
  missed, metrics = light_detector.object_loss(-right, cover, boost=30.0)
  unboosted, _ = light_detector.object_loss(-right, cover, boost=0.0)
  # Every cell is wrong in both; the covered one carries 31 of the 34 weights with the boost.
  np.testing.assert_allclose(float(missed), float(unboosted), rtol=1e-5)
  assert float(metrics["object_recall"]) == 0.0 and float(metrics["object_precision"]) == 0.0
  half_wrong = np.array([[[5.0, 5.0], [-5.0, -5.0]]], np.float32)
  boosted, metrics = light_detector.object_loss(half_wrong, cover, boost=30.0)
  flat, _ = light_detector.object_loss(half_wrong, cover, boost=0.0)
  assert float(boosted) < float(flat)  # the one wrong cell is empty: it weighs 1 of 34, not 1 of 4
  assert float(metrics["object_precision"]) == 0.5


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  root = tmp_path_factory.mktemp("light")
  r0 = fx.route_name(1, 1, 0)
  fx.write_dataset(str(root / "src"), [dict(name=r0, num_frames=24)],
                   clips=[fx.clip_entry(r0, 0, 20, 60)])
  build(str(root / "src"), str(root / "out"), BuildConfig(camera_size=(64, 48)), progress=False)
  return str(root / "out"), str(root / "runs")


def test_a_detector_run_trains_and_the_agent_rule_reads_it(dataset, monkeypatch):
  data_dir, runs = dataset
  monkeypatch.chdir(REPO)
  config = config_lib.load_config(os.path.join(REPO, "configs", "light_detector.py") +
                                  ":preset=tiny")
  config.runs_root, config.data.data_dir = runs, data_dir
  config.train.steps = config.train.checkpoint_every = 3
  config = config_lib.resolve_run_dirs(config)
  task, detector = light_detector.build_task(config)
  result = loop.run(config, task, log_enabled=False)
  assert np.isfinite(result["loss"]) and 0.0 <= result["recall_moving"] <= 1.0

  rule = ViewDetector.from_run(config.work_dir)
  # The fixture build has no focus camera: the focus view is the front camera's centre crop.
  assert rule.camera_views == ("front",) and rule.camera_size == (64, 48)
  front = np.random.default_rng(0).integers(0, 255, (48, 64, 3), np.uint8)
  prob = rule.probability({"front": front})
  _, variables, _ = trained.load_light_detector(config.work_dir)
  expected = jax.nn.sigmoid(detector.apply(variables, rule.preprocess({"front": front})))[0]
  np.testing.assert_allclose(prob, expected, rtol=1e-5)
  # The data it trained on: the pipeline's focus view only.
  assert pipeline.batch_spec(config.data, 1)["images"][0][1] == 1

  with pytest.raises(CheckpointError, match="'light_detector' run"):
    trained.load_perception(config.work_dir)
  config.data.views = ("front", "focus")
  with pytest.raises(ConfigError, match="one view"):
    light_detector.build_task(config)


# The fixture's frames are in a stop sign's zone every fifth frame, its vehicle is in the route's
# corridor every seventh.
@pytest.mark.parametrize("name, label, every", [("stop_sign_detector", "stop_sign_zone", 5),
                                                ("hazard_detector", "hazard_ahead", 7)])
def test_front_view_detector_runs_train_on_their_labels(name, label, every, dataset, monkeypatch,
                                                       capsys):
  data_dir, runs = dataset
  monkeypatch.chdir(REPO)
  config = config_lib.load_config(os.path.join(REPO, "configs", f"{name}.py") + ":preset=tiny")
  config.runs_root, config.data.data_dir = runs, data_dir
  config.train.steps = config.train.checkpoint_every = 3
  config = config_lib.resolve_run_dirs(config)
  assert config.work_dir.endswith(f"{name}_tiny")
  batch = light_detector.build_task(config)[0].batches.batch(0)
  np.testing.assert_array_equal(batch[label], batch["frame"] % every == 0)
  if label == "hazard_ahead":
    # Its object target: the front view's cover on the object map's cells, a car where the
    # label says one is in the corridor.
    assert batch["view_objects"].shape == (len(batch["frame"]), 1, 8, 8)
    in_corridor = batch["view_objects"][batch[label] == 1]
    assert len(in_corridor) and (in_corridor.reshape(len(in_corridor), -1).max(-1) > 0).all()
  task, _ = light_detector.build_task(config)
  result = loop.run(config, task, log_enabled=False)
  assert np.isfinite(result["loss"]) and result["label_known"] == 1.0
  if label == "hazard_ahead":
    assert np.isfinite(result["object_loss"]) and 0.0 <= result["object_recall"] <= 1.0
    config.data.view_objects_size = (4, 4)
    with pytest.raises(ConfigError, match=r"view_objects_size is \(4, 4\).*\(8, 8\)"):
      light_detector.build_task(config)
  detector = ViewDetector.from_run(config.work_dir)
  assert detector.label == label and detector.camera_views == ("front",)
  # bench/light_heads.py rates it against its own label.
  from bench import light_heads
  assert light_heads.main(["--work_dir", config.work_dir, "--split", "train",
                           "--batches", "2"]) == 0
  out = capsys.readouterr().out
  assert f"{label}  none" in out
  assert ("Object map of" in out) == (label == "hazard_ahead")  # the detector with a map
  # ... and read on each frame's path as the hazard rule's path reading reads it.
  assert ("Object map read on each frame's path" in out) == (label == "hazard_ahead")


class _Batches:
  def __init__(self, labels):
    self.labels = labels

  def batch(self, step):
    return {"stop_sign_zone": np.asarray(self.labels[step])}


def test_data_without_the_label_is_refused():
  batches = light_detector.KnownLabels(_Batches([[-1, 1], [-1, -1]]), "stop_sign_zone")
  assert batches.batch(0)["stop_sign_zone"].tolist() == [-1, 1]
  with pytest.raises(DataError, match="'stop_sign_zone'"):
    batches.batch(1)
