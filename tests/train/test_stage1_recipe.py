"""What stage 1 does so that the frozen encoder sees the lane: learnt BatchNorm statistics kept
by the train step, target-point dropout, view tokens handed on, noise-masked waypoints."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from data_pipelines.lmdrive_tfds.features import BuildConfig
from data_pipelines.lmdrive_tfds.reader import frame_labels
from lmgendrive_jax import config as config_lib
from lmgendrive_jax.models.vision import VisionEncoder
from lmgendrive_jax.train.state import create_state
from lmgendrive_jax.train.stage1 import drop_target_points
from lmgendrive_jax.train.step import make_train_step


class _Normed(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool):
    return nn.Dense(1)(nn.BatchNorm(use_running_average=not train, momentum=0.5)(x))


def test_train_step_keeps_updated_batch_statistics_only_on_finite_steps():
  model = _Normed()
  x = jnp.asarray(np.random.default_rng(0).normal(3.0, 2.0, (16, 4)), jnp.float32)
  variables = model.init(jax.random.key(0), x, train=False)
  tx = optax.sgd(0.1)
  state = create_state(variables["params"], tx, model_state={"batch_stats":
                                                              variables["batch_stats"]})

  def loss_fn(params, batch, rng, model_state):
    out, updated = model.apply({"params": params, **model_state}, batch["x"], train=True,
                               mutable=["batch_stats"])
    return jnp.mean(out ** 2) * batch["scale"], ({}, {**model_state, **updated})

  step = jax.jit(make_train_step(loss_fn, tx, updates_model_state=True))
  new_state, metrics = step(state, {"x": x, "scale": jnp.float32(1.0)}, jax.random.key(1))
  assert bool(metrics["finite"])
  mean = np.asarray(new_state.model_state["batch_stats"]["BatchNorm_0"]["mean"])
  np.testing.assert_allclose(mean, 0.5 * np.asarray(x).mean(0), rtol=1e-5)  # momentum 0.5
  skipped, metrics = step(new_state, {"x": x, "scale": jnp.float32(jnp.nan)}, jax.random.key(2))
  assert not bool(metrics["finite"])
  jax.tree.map(np.testing.assert_array_equal, skipped.model_state, new_state.model_state)


def test_target_point_dropout_zeroes_whole_rows_at_the_rate():
  points = jnp.asarray(np.random.default_rng(0).uniform(1.0, 30.0, (4000, 2)), jnp.float32)
  np.testing.assert_array_equal(drop_target_points(points, jax.random.key(0), 0.0), points)
  dropped = np.asarray(drop_target_points(points, jax.random.key(0), 0.5))
  zero_rows = (dropped == 0).all(1)
  kept_rows = (dropped == np.asarray(points)).all(1)
  assert (zero_rows | kept_rows).all()
  assert 0.45 < zero_rows.mean() < 0.55


def test_small_encoders_append_every_views_tokens():
  fields = config_lib.vision_preset("tiny").encoder.to_dict()
  assert fields["append_view_tokens"]
  images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (2, 1, 5, 32, 32, 3)),
                       jnp.uint8)
  speed = jnp.ones((2, 1))
  encoder = VisionEncoder(**fields)
  # RBG keys: their init compiles several times faster on CPU than threefry's.
  variables = encoder.init(jax.random.key(0, impl="rbg"), images, speed)
  tokens, out = encoder.apply(variables, images, speed)
  views = out["view_tokens"].shape[2]
  assert tokens.shape == (2, 1, encoder.num_tokens + views, fields["embed_dim"])
  # [pooled BEV | light | waypoints | view tokens]
  cells = fields["pooled_height"] * fields["pooled_width"]
  np.testing.assert_array_equal(tokens[:, :, cells], out["light_feature"])
  np.testing.assert_array_equal(tokens[:, :, cells + 1:encoder.num_tokens],
                                out["waypoint_features"])
  np.testing.assert_array_equal(tokens[:, :, encoder.num_tokens:], out["view_tokens"])


def _measurement(frame: int, noise: float) -> dict:
  """Driving north (+gps_x) at 1 m per frame on a straight road."""
  return {"gps_x": float(frame), "gps_y": 0.0, "x": 0.0, "y": -float(frame), "theta": 0.0,
          "x_command": frame + 20.0, "y_command": 0.0, "actors_data": {},
          "is_red_light_present": [], "is_stop_sign_present": [], "steer_noise": noise}


def test_waypoints_driven_with_steering_noise_are_masked():
  config = BuildConfig()
  step = config.waypoint_step_frames
  noisy = {3 * step + 2}  # one noisy frame between waypoints 3 and 4 of frame 0
  measurements = {f: _measurement(f, 0.3 if f in noisy else 0.0) for f in range(60)}
  labels = frame_labels(measurements, 0, config)
  np.testing.assert_array_equal(labels["waypoint_mask"], [True, True, True, False, False])
  np.testing.assert_allclose(labels["waypoints"][:, 1], [5, 10, 15, 20, 25])  # forward, metres
  # A frame after the noise: its future is the expert's own recovery, kept whole.
  after = frame_labels(measurements, max(noisy) + 1, config)
  assert after["waypoint_mask"].all()
  # LMDrive's own data has no steer_noise field: nothing masked but the route's end.
  clean = {f: {k: v for k, v in m.items() if k != "steer_noise"} for f, m in measurements.items()}
  assert frame_labels(clean, 0, config)["waypoint_mask"].all()
  np.testing.assert_array_equal(frame_labels(clean, 40, config)["waypoint_mask"],
                                [True, True, True, False, False])


def test_waypoints_the_learner_drove_are_masked():
  """On-policy collection (agent/takeover.py): the learner's frames are masked like noise; the
  expert's takeover after them keeps its whole future."""
  config = BuildConfig()
  step = config.waypoint_step_frames
  learner = set(range(0, 2 * step + 1))  # the learner drives up to frame 2 * step, then the expert
  measurements = {f: dict(_measurement(f, 0.0), learner_control=f in learner) for f in range(60)}
  np.testing.assert_array_equal(frame_labels(measurements, 0, config)["waypoint_mask"],
                                [False] * 5)
  np.testing.assert_array_equal(frame_labels(measurements, step, config)["waypoint_mask"],
                                [False] * 5)
  assert frame_labels(measurements, max(learner) + 1, config)["waypoint_mask"].all()
