"""Stage-1 losses vs a hand computation of LMDrive's formulas (numpy, written out term by term)."""

import jax.numpy as jnp
import numpy as np
import pytest

from lmgendrive_jax.data import view_layout
from lmgendrive_jax.train import losses_vision
from lmgendrive_jax.train.losses_vision import LMDRIVE_WEIGHTS, stage1_loss


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def _reference(pred, labels):
  """LMDrive's train_pretrain loss, written with numpy on flattened cells (all frames valid)."""
  out = pred["detection"].reshape(-1, 8).astype(np.float64)
  tgt = labels["detection"].reshape(-1, 8).astype(np.float64)
  prob = tgt[:, 0]
  prob_mean = max(prob.mean(), 1e-7)
  weight = _sigmoid(out[:, 0] * (1 - 2 * prob))
  bce = np.maximum(out[:, 0], 0) - out[:, 0] * prob + np.log1p(np.exp(-np.abs(out[:, 0])))
  det = (weight * bce).mean() / weight.mean()
  l1 = lambda lo, hi: (prob[:, None] * np.abs(out[:, lo:hi] - tgt[:, lo:hi])).mean() / prob_mean  # noqa
  offset, orientation, box, speed = l1(1, 3), l1(3, 5), l1(5, 7), l1(7, 8)
  traffic = 0.4 * det + 0.2 * offset + 0.2 * box + 0.2 * orientation
  waypoints = np.abs(pred["waypoints"] - labels["waypoints"]).mean()

  def ce(logits, label):
    logits = logits.reshape(-1, 2).astype(np.float64)
    log_norm = np.log(np.exp(logits).sum(-1))
    return (log_norm - logits[np.arange(len(logits)), label.reshape(-1)]).mean()

  light = ce(pred["light_logits"], labels["traffic_light"])
  stop = ce(pred["stop_logits"], labels["stop_sign"])
  return 0.5 * traffic + 0.5 * waypoints + 0.05 * speed + 0.1 * light + 0.01 * stop


def _example(rng, b=2, t=3):
  detection = rng.normal(size=(b, t, 6, 6, 8)).astype(np.float32)
  detection[..., 0] = (rng.uniform(size=(b, t, 6, 6)) < 0.2).astype(np.float32)
  labels = {"detection": detection, "waypoints": rng.normal(size=(b, t, 5, 2)).astype(np.float32),
            "traffic_light": rng.integers(0, 2, (b, t)), "stop_sign": rng.integers(0, 2, (b, t))}
  pred = {"detection": rng.normal(size=(b, t, 6, 6, 8)).astype(np.float32),
          "waypoints": rng.normal(size=(b, t, 5, 2)).astype(np.float32),
          "light_logits": rng.normal(size=(b, t, 2)).astype(np.float32),
          "stop_logits": rng.normal(size=(b, t, 2)).astype(np.float32)}
  return pred, labels


def test_stage1_loss_matches_lmdrive_formula():
  pred, labels = _example(np.random.default_rng(0))
  total, metrics = stage1_loss(pred, labels)
  np.testing.assert_allclose(float(total), _reference(pred, labels), rtol=1e-5)
  assert float(metrics["total"]) == float(total)


def test_frame_mask_drops_padded_frames():
  pred, labels = _example(np.random.default_rng(1))
  mask = np.array([[True, True, False], [True, False, False]])
  total, _ = stage1_loss(pred, labels, frame_mask=jnp.asarray(mask))
  valid = lambda x: x[mask][None]  # [1, valid frames, ...]  # noqa: E731
  expected = _reference({k: valid(v) for k, v in pred.items()},
                        {k: valid(v) for k, v in labels.items()})
  np.testing.assert_allclose(float(total), expected, rtol=1e-5)


def test_empty_scene_keeps_regression_terms_finite():
  pred, labels = _example(np.random.default_rng(2))
  labels["detection"][..., 0] = 0.0
  total, metrics = stage1_loss(pred, labels)
  assert np.isfinite(float(total)) and float(metrics["detection/offset"]) == 0.0


def test_mismatched_grid_is_an_error():
  pred, labels = _example(np.random.default_rng(3))
  labels["detection"] = labels["detection"][:, :, :5]
  with pytest.raises(ValueError, match="BEV grid"):
    stage1_loss(pred, labels)


def _with_road_layout(rng, pred, labels, classes=6):
  b, t, h, w = labels["detection"].shape[:4]
  pred = dict(pred, road_layout_logits=rng.normal(size=(b, t, h, w, classes)).astype(np.float32))
  shares = rng.dirichlet(np.full(classes, 0.5), size=(b, t, h, w)).astype(np.float32)
  return pred, dict(labels, road_layout=shares)


def test_road_layout_term_is_the_kl_over_frames_with_a_road_map():
  rng = np.random.default_rng(4)
  pred, labels = _with_road_layout(rng, *_example(rng))
  has_map = np.array([[True, False, True], [True, True, False]])
  labels["road_layout_mask"] = has_map
  weights = {"detection": 0.5, "waypoints": 0.5, "detection_speed": 0.05, "traffic_light": 0.1,
             "stop_sign": 0.01, "road_layout": 0.5}
  total, metrics = stage1_loss(pred, labels, weights=weights)
  logits, target = pred["road_layout_logits"], labels["road_layout"]
  log_q = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  kl = (target * (np.log(np.maximum(target, 1e-12)) - log_q)).sum(-1)   # [B, T, H, W]
  np.testing.assert_allclose(float(metrics["road_layout"]), kl[has_map].mean(), rtol=1e-5)
  np.testing.assert_allclose(float(total), _reference(pred, labels) + 0.5 * kl[has_map].mean(),
                             rtol=1e-5)
  # The exact prediction costs nothing (a KL, not a cross-entropy with the labels' entropy).
  exact = dict(pred, road_layout_logits=np.log(np.maximum(target, 1e-12)))
  assert abs(float(stage1_loss(exact, labels)[1]["road_layout"])) < 1e-5
  # Without a weight the term is reported, not trained.
  np.testing.assert_allclose(float(stage1_loss(pred, labels)[0]), _reference(pred, labels),
                             rtol=1e-5)


def test_road_layout_needs_its_labels_and_its_head():
  rng = np.random.default_rng(5)
  pred, labels = _with_road_layout(rng, *_example(rng))
  with pytest.raises(KeyError, match="road_layout"):
    stage1_loss(pred, {k: v for k, v in labels.items() if k != "road_layout"})
  with pytest.raises(ValueError, match="road classes"):
    stage1_loss(pred, dict(labels, road_layout=labels["road_layout"][..., :4]))
  plain, _ = _example(rng)
  with pytest.raises(KeyError, match="road_layout_classes"):
    stage1_loss(plain, labels, weights={"detection": 0.5, "road_layout": 0.5})


def test_view_layout_term_is_the_kl_per_view_pixel_over_frames_with_a_road_map():
  rng = np.random.default_rng(6)
  pred, labels = _example(rng)
  classes = len(view_layout.VIEW_LAYOUT_CLASSES)
  shape = (2, 3, 5, 4, 4, classes)  # [B, T, V, rows, cols, classes]
  pred["view_layout_logits"] = rng.normal(size=shape).astype(np.float32)
  labels["view_layout"] = rng.dirichlet(np.full(classes, 0.5), size=shape[:-1]).astype(np.float32)
  has_map = np.array([[True, True, False], [False, True, True]])
  labels["view_layout_mask"] = has_map
  frames = np.array([[True, False, True], [True, True, True]])
  total, metrics = stage1_loss(pred, labels, frame_mask=frames,
                               weights={"waypoints": 0.5, "view_layout": 2.0})
  logits, target = pred["view_layout_logits"], labels["view_layout"]
  log_q = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  kl = (target * (np.log(target) - log_q)).sum(-1)   # [B, T, V, rows, cols]
  used = has_map & frames
  np.testing.assert_allclose(float(metrics["view_layout"]), kl[used].mean(), rtol=1e-5)
  np.testing.assert_allclose(float(total), 0.5 * float(metrics["waypoints"])
                             + 2.0 * kl[used].mean(), rtol=1e-5)
  with pytest.raises(KeyError, match="view_layout_size"):
    stage1_loss(pred, {k: v for k, v in labels.items() if k != "view_layout"})
  with pytest.raises(ValueError, match="view_layout_size"):
    stage1_loss(pred, dict(labels, view_layout=target[:, :, :, :2]))


def test_red_light_ahead_term_is_a_cross_entropy_added_with_its_weight():
  rng = np.random.default_rng(7)
  pred, labels = _example(rng)
  pred["red_ahead_logits"] = rng.normal(size=(2, 3, 2)).astype(np.float32)
  labels["red_light_ahead"] = rng.integers(0, 2, (2, 3))
  logits = pred["red_ahead_logits"].reshape(-1, 2).astype(np.float64)
  expected = (np.log(np.exp(logits).sum(-1))
              - logits[np.arange(6), labels["red_light_ahead"].reshape(-1)]).mean()
  total, metrics = stage1_loss(pred, labels)  # LMDrive's weights: reported, not trained
  np.testing.assert_allclose(float(metrics["red_light_ahead"]), expected, rtol=1e-5)
  np.testing.assert_allclose(float(total), _reference(pred, labels), rtol=1e-5)
  weighted, _ = stage1_loss(pred, labels, weights={**LMDRIVE_WEIGHTS, "red_light_ahead": 0.5})
  np.testing.assert_allclose(float(weighted), _reference(pred, labels) + 0.5 * expected,
                             rtol=1e-5)
  del labels["red_light_ahead"]
  with pytest.raises(KeyError, match="red_light_ahead"):
    stage1_loss(pred, labels, weights={**LMDRIVE_WEIGHTS, "red_light_ahead": 0.5})


def test_object_confidence_reads_p_object_on_and_off_the_objects():
  """The view-layout metrics say whether the head finds the objects: the predicted P(object)
  averaged over the cells they cover, by share, and over the rest; frames without a map out."""
  classes, obj = len(view_layout.VIEW_LAYOUT_CLASSES), view_layout.OBJECT
  target = np.zeros((1, 2, 1, 2, 1, classes), np.float32)
  target[..., 0] = 1.0
  target[0, 0, 0, 0, 0] = np.eye(classes)[obj]            # a cell all object
  target[0, 0, 0, 1, 0, [0, obj]] = 0.5                    # a cell half object
  logits = np.zeros_like(target)
  logits[0, 0, 0, 0, 0, obj] = 5.0
  logits[0, 1, ..., obj] = 9.0                             # the frame without a map
  p = np.exp(logits[0, 0, 0, :, 0]) / np.exp(logits[0, 0, 0, :, 0]).sum(-1, keepdims=True)
  got = losses_vision.object_confidence(jnp.asarray(logits), jnp.asarray(target),
                                        jnp.array([[True, False]]))
  np.testing.assert_allclose(got["view_layout/object_p"], (p[0, obj] + 0.5 * p[1, obj]) / 1.5,
                             rtol=1e-5)
  np.testing.assert_allclose(got["view_layout/object_p_elsewhere"], p[1, obj], rtol=1e-5)


def test_view_object_boost_weighs_cells_by_their_object_share():
  """loss.view_object_boost: each cell's KL weighs 1 + boost x its object share, so a head that
  paints the road under a car loses more the larger the boost; 0 is the plain mean."""
  classes, obj = len(view_layout.VIEW_LAYOUT_CLASSES), view_layout.OBJECT
  target = np.zeros((1, 1, 1, 1, 2, classes), np.float32)
  target[..., 0, 0] = 1.0                                  # road
  target[..., 1, obj] = 1.0                                # a car
  logits = np.zeros_like(target)
  logits[..., 0] = 4.0                                     # road predicted everywhere
  labels = {"view_layout": jnp.asarray(target), "view_layout_mask": jnp.array([[True]])}
  frames = jnp.array([[True]])
  kl = np.log(np.exp(logits[0, 0, 0, 0]).sum(-1)) - logits[0, 0, 0, 0, [0, 1], [0, obj]]
  for boost in (0.0, 30.0):
    got = losses_vision.view_layout_loss(jnp.asarray(logits), labels, frames, boost)
    np.testing.assert_allclose(got, (kl[0] + (1 + boost) * kl[1]) / (2 + boost), rtol=1e-5)
