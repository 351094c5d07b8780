"""Stage-1 model (vision encoder + perception heads + LMDrive losses): learning and sharding."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from lmgendrive_jax import config as config_lib
from lmgendrive_jax import parallel
from lmgendrive_jax.data.view_layout import VIEW_LAYOUT_CLASSES
from lmgendrive_jax.models.perception_heads import PerceptionHeads, decode_detections
from lmgendrive_jax.models.vision import PerceptionModel
from lmgendrive_jax.train.losses_vision import LMDRIVE_WEIGHTS, stage1_loss

GRID = 8
VIEWS = 5
NUM_VIEW_CLASSES = len(VIEW_LAYOUT_CLASSES)  # the road classes, beyond_map, object
SIZE = 32


def _model():
  return PerceptionModel(**dict(config_lib.vision_preset("tiny").to_dict(), red_ahead_head=True))


def _batch(rng, batch, num_objects=2):
  """Random images and labels with `num_objects` objects per frame (T = 1)."""
  images = rng.integers(0, 256, size=(batch, 1, VIEWS, SIZE, SIZE, 3), dtype=np.uint8)
  detection = np.zeros((batch, 1, GRID, GRID, 8), np.float32)
  for b in range(batch):
    cells = rng.choice(GRID * GRID, num_objects, replace=False)
    for cell in cells:
      yaw = rng.uniform(-np.pi, np.pi)
      detection[b, 0, cell // GRID, cell % GRID] = [1.0, *rng.uniform(-0.4, 0.4, 2), np.sin(yaw),
                                                    np.cos(yaw), *rng.uniform(1.0, 4.0, 2),
                                                    rng.uniform(0, 5)]
  labels = {
      "detection": detection,
      "waypoints": np.cumsum(rng.uniform(0.0, 2.0, (batch, 1, 5, 2)), axis=2).astype(np.float32),
      "traffic_light": rng.integers(0, 2, (batch, 1)),
      "stop_sign": rng.integers(0, 2, (batch, 1)),
      # Its own generator: the draws above and below stay those the tests were tuned on.
      "road_layout": np.random.default_rng(batch).dirichlet(
          np.full(6, 0.3), size=(batch, 1, GRID, GRID)).astype(np.float32),
      "view_layout": np.random.default_rng(batch + 1).dirichlet(
          np.full(NUM_VIEW_CLASSES, 0.3), size=(batch, 1, VIEWS, 8, 8)).astype(np.float32),
      "red_light_ahead": np.random.default_rng(batch + 2).integers(0, 2, (batch, 1)),
  }
  inputs = {"images": images, "speed": rng.uniform(0, 8, (batch, 1)).astype(np.float32),
            "target_point": rng.uniform(-10, 30, (batch, 1, 2)).astype(np.float32)}
  return inputs, labels


OPTIMIZER = optax.adam(3e-3)


def _key(seed):
  """RBG keys: their init compiles several times faster on CPU than threefry's unrolled hash."""
  return jax.random.key(seed, impl="rbg")


@jax.jit
def _init(key, inputs):
  return nn.meta.unbox(_model().init(key, **inputs))


@jax.jit
def _train_step(params, rest, opt_state, inputs, labels, weights):
  def loss_fn(params):
    predictions, _ = _model().apply({"params": params, **rest}, **inputs)
    return stage1_loss(predictions, labels, weights=weights)
  (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
  updates, opt_state = OPTIMIZER.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state, metrics


def _train(inputs, labels, steps, key=0, weights=LMDRIVE_WEIGHTS):
  """Adam from a fresh init; both learning tests use one batch shape, so this compiles once."""
  variables = _init(_key(key), inputs)
  params, rest = variables["params"], {k: v for k, v in variables.items() if k != "params"}
  opt_state = OPTIMIZER.init(params)
  history = []
  for _ in range(steps):
    params, opt_state, metrics = _train_step(params, rest, opt_state, inputs, labels,
                                             {k: jnp.float32(v) for k, v in weights.items()})
    history.append(metrics)
  return {"params": params, **rest}, jax.device_get(history)


@pytest.mark.slow
def test_stage1_overfits_a_fixed_batch():
  # Equal weights: LMDrive's 0.01 on the stop sign would need many more steps to show learning
  # on random labels; the weights themselves are checked in test_losses_vision.py. The detection
  # term falls slowest: its objectness part is normalised by the mean error weight, so it tracks
  # the hardest cells rather than the average one.
  inputs, labels = _batch(np.random.default_rng(0), batch=4)
  _, history = _train(inputs, labels, steps=300,
                      weights={k: 1.0 for k in (*LMDRIVE_WEIGHTS, "road_layout",
                                                "view_layout", "red_light_ahead")})
  first, last = history[0], history[-1]
  for name in ("detection", "waypoints", "traffic_light", "stop_sign", "detection_speed",
               "road_layout", "red_light_ahead"):
    assert last[name] < 0.35 * first[name], (name, first[name], last[name])
  # The tiny backbone leaves a 1x1 map per 32-px view: one 16-wide vector per view cannot draw
  # 20 random 8x8 layouts, but it learns what it can.
  assert last["view_layout"] < 0.85 * first["view_layout"]
  assert last["detection/box"] < 0.2 * first["detection/box"]
  rest = lambda m: m["total"] - m["view_layout"]  # noqa: E731
  assert rest(last) < 0.1 * rest(first)


@pytest.mark.slow
def test_detection_head_recovers_box_centres():
  """Each scene shows its objects as bright squares in the front view at the place that matches
  their BEV cell. After a few hundred steps on the detection loss alone, each scene's highest
  objectness cells are its objects' cells and cell middle + predicted offset is the true centre.

  A ViT backbone (8x8 patches -> 4x4 tokens per view) keeps the squares' positions; the tiny
  ResNet squeezes a 32x32 view to one feature vector.
  """
  cfg = config_lib.vision_preset("tiny")
  cfg.encoder.backbone_kind = "vit"
  cfg.encoder.backbone = dict(image_size=SIZE, patch_size=8, hidden_size=32, num_layers=1,
                              num_heads=4, mlp_dim=64)
  model = PerceptionModel(**cfg.to_dict())
  rng = np.random.default_rng(1)
  inputs, labels = _batch(rng, batch=4, num_objects=2)
  images = np.full((4, 1, VIEWS, SIZE, SIZE, 3), 40, np.uint8)
  centres = []
  cell_pixels = SIZE // GRID
  for b in range(4):
    scene = []
    for row, col in np.argwhere(labels["detection"][b, 0, :, :, 0] > 0.5):
      images[b, 0, 0, row * cell_pixels:(row + 1) * cell_pixels,
             col * cell_pixels:(col + 1) * cell_pixels] = 250
      dx, dy = labels["detection"][b, 0, row, col, 1:3]
      scene.append((row + 0.5 + dy, col + 0.5 + dx))
    centres.append(sorted(scene))
  inputs["images"] = images
  weights = {k: jnp.float32(k == "detection") for k in LMDRIVE_WEIGHTS}
  variables = nn.meta.unbox(jax.jit(model.init)(_key(1), **inputs))
  params, rest = variables["params"], {k: v for k, v in variables.items() if k != "params"}
  opt_state = OPTIMIZER.init(params)

  @jax.jit
  def step(params, opt_state):
    def loss_fn(params):
      predictions, _ = model.apply({"params": params, **rest}, **inputs)
      return stage1_loss(predictions, labels, weights=weights)[0]
    grads = jax.grad(loss_fn)(params)
    updates, opt_state = OPTIMIZER.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  for _ in range(300):
    params, opt_state = step(params, opt_state)
  predictions, _ = model.apply({"params": params, **rest}, **inputs)
  _, found, scores = decode_detections(predictions["detection"][:, 0])
  for b in range(4):
    order = np.argsort(-np.asarray(scores[b]).ravel())[:len(centres[b])]
    cells = [divmod(int(i), GRID) for i in order]
    expected_cells = sorted(tuple(int(v) for v in np.floor(c)) for c in centres[b])
    assert sorted(cells) == expected_cells, (b, cells, expected_cells)
    decoded = sorted(tuple(np.asarray(found[b, r, c])) for r, c in cells)
    np.testing.assert_allclose(decoded, centres[b], atol=0.15)


@pytest.mark.slow
def test_sharded_forward_and_loss_match_single_device(num_devices):
  model = _model()
  inputs, labels = _batch(np.random.default_rng(2), batch=4)
  variables = _init(_key(0), inputs)

  def loss(variables, inputs, labels):
    predictions, out = model.apply(variables, **inputs)
    total, _ = stage1_loss(predictions, labels)
    return total, predictions, out["tokens"]

  single = jax.jit(loss)(variables, inputs, labels)

  mesh = jax.make_mesh((2, 2, 2), ("data", "fsdp", "tensor"),
                       axis_types=(jax.sharding.AxisType.Auto,) * 3)
  rules = config_lib.logical_axis_rules()
  _, shardings = parallel.variable_shardings(lambda k: model.init(k, **inputs), mesh, rules,
                                             _key(0))
  sharded_vars = jax.device_put(variables, shardings)
  assert any(not leaf.sharding.is_fully_replicated
             for leaf in jax.tree.leaves(sharded_vars["params"])), "nothing was sharded"
  batch_sharding = lambda x: NamedSharding(mesh, P(("data", "fsdp"), *[None] * (x.ndim - 1)))  # noqa
  put = lambda tree: jax.tree.map(lambda x: jax.device_put(x, batch_sharding(x)), tree)  # noqa
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    sharded = jax.jit(loss)(sharded_vars, put(inputs), put(labels))
  for ours, reference in zip(jax.tree.leaves(sharded), jax.tree.leaves(single)):
    np.testing.assert_allclose(np.asarray(ours), np.asarray(reference), rtol=1e-5, atol=1e-5)


def test_waypoint_head_reads_the_target_point_scaled():
  """From scratch (tiny, small) the GRU's initial state reads the target point in units of 20 m,
  `paper` in LMDrive's metres (its imported heads); the scale is applied to the input itself."""
  assert config_lib.vision_preset("tiny").target_point_scale == 0.05
  assert config_lib.vision_preset("small").target_point_scale == 0.05
  assert config_lib.vision_preset("paper").target_point_scale == 1.0
  rng = np.random.default_rng(0)
  bev, light = rng.normal(size=(2, 4, 4, 8)), rng.normal(size=(2, 8))
  states, speed = rng.normal(size=(2, 5, 8)), rng.uniform(0, 5, 2)
  target_point = np.array([[8.3, 46.1], [-3.0, 20.0]], np.float32)
  scaled = PerceptionHeads(8, 4, 16, target_point_scale=0.05)
  params = scaled.init(jax.random.key(0), bev, light, states, speed, target_point)
  metres = PerceptionHeads(8, 4, 16, target_point_scale=1.0)
  np.testing.assert_allclose(
      scaled.apply(params, bev, light, states, speed, target_point)["waypoints"],
      metres.apply(params, bev, light, states, speed, 0.05 * target_point)["waypoints"],
      rtol=1e-5, atol=1e-6)
  assert not np.allclose(
      scaled.apply(params, bev, light, states, speed, target_point)["waypoints"],
      metres.apply(params, bev, light, states, speed, target_point)["waypoints"])


def test_from_scratch_bev_queries_start_as_their_cells_positions():
  """tiny/small start each BEV cell's query at its sine position (distinct cells from step 0);
  paper keeps LMDrive's N(0, 0.02) queries; anything else is an error naming the field."""
  from lmgendrive_jax.models.bev_decoder import BEVDecoder
  from lmgendrive_jax.nn.posenc import sine_2d
  assert config_lib.vision_preset("small").encoder.bev_query_init == "sine"
  assert config_lib.vision_preset("paper").encoder.bev_query_init == "normal"
  memory, speed = jnp.zeros((1, 6, 16)), jnp.zeros((1,))
  for init, check in (("sine", lambda q: np.testing.assert_allclose(q, sine_2d(3, 4, 16))),
                      ("normal", lambda q: np.testing.assert_array_less(np.abs(q), 0.2))):
    decoder = BEVDecoder(16, 2, 32, 0, 1, 3, 4, 5, bev_query_init=init)
    queries = nn.meta.unbox(decoder.init(jax.random.key(0), memory, speed))["params"][
        "bev_queries"]
    assert queries.shape == (12, 16)
    check(np.asarray(queries))
  with pytest.raises(ValueError, match="bev_query_init"):
    BEVDecoder(16, 2, 32, 0, 1, 3, 4, 5, bev_query_init="zeros").init(
        jax.random.key(0), memory, speed)


def test_road_layout_head_predicts_class_shares_per_cell():
  """tiny/small have the head (one linear map of each cell's state + a per-cell bias); paper,
  LMDrive's heads, does not."""
  assert config_lib.vision_preset("small").road_layout_classes == 6
  assert config_lib.vision_preset("paper").road_layout_classes == 0
  rng = np.random.default_rng(0)
  inputs = (rng.normal(size=(2, 4, 3, 8)), rng.normal(size=(2, 8)), rng.normal(size=(2, 5, 8)),
            rng.uniform(0, 5, 2), np.zeros((2, 2), np.float32))
  heads = PerceptionHeads(8, 4, 16, road_layout_classes=6)
  variables = heads.init(jax.random.key(0), *inputs)
  params = nn.meta.unbox(variables)["params"]
  assert params["road_layout_cell_bias"].shape == (4, 3, 6)
  logits = heads.apply(variables, *inputs)["road_layout_logits"]
  assert logits.shape == (2, 4, 3, 6)
  # Each cell's logits depend on that cell's state only.
  moved = inputs[0].copy()
  moved[:, 1, 2] += 1.0
  changed = np.any(np.asarray(heads.apply(variables, moved, *inputs[1:])["road_layout_logits"])
                   != np.asarray(logits), axis=-1)
  np.testing.assert_array_equal(changed, np.broadcast_to(
      np.eye(4, dtype=bool)[1][:, None] & np.eye(3, dtype=bool)[2][None], (2, 4, 3)))
  assert "road_layout_logits" not in PerceptionHeads(8, 4, 16).apply(
      PerceptionHeads(8, 4, 16).init(jax.random.key(0), *inputs), *inputs)


def test_view_layout_head_decodes_each_views_own_feature_map():
  """tiny/small decode every view's road layout in image space from that view's projected
  feature map (data/view_layout.py says why); paper, LMDrive's heads, does not. The term's
  gradient reaches the backbone and the projection, and nothing of the BEV decoder."""
  assert config_lib.vision_preset("small").view_layout_classes == NUM_VIEW_CLASSES
  assert tuple(config_lib.vision_preset("small").view_layout_size) == (16, 16)
  assert config_lib.vision_preset("paper").view_layout_classes == 0
  inputs, labels = _batch(np.random.default_rng(3), batch=2)
  variables = _init(_key(0), inputs)
  model = _model()
  layout = jax.jit(lambda images: model.apply(variables, **dict(inputs, images=images))[0][
      "view_layout_logits"])
  logits = layout(inputs["images"])
  assert logits.shape == (2, 1, VIEWS, 8, 8, NUM_VIEW_CLASSES)
  # Each view's logits depend on that view's image only.
  changed_images = inputs["images"].copy()
  changed_images[:, :, 2] = 255 - changed_images[:, :, 2]
  differs = np.abs(np.asarray(layout(changed_images) - logits)).max(axis=(0, 1, 3, 4, 5))
  assert differs[2] > 1e-3 and np.all(np.delete(differs, 2) == 0.0), differs

  def view_term(params):
    predictions, _ = model.apply({**variables, "params": params}, **inputs)
    return stage1_loss(predictions, labels)[1]["view_layout"]
  grads = jax.jit(jax.grad(view_term))(variables["params"])
  norm = lambda tree: float(optax.global_norm(tree))  # noqa: E731
  encoder = grads["encoder"]
  assert norm(encoder["backbone"]) > 0 and norm(encoder["feature_proj"]) > 0
  assert norm(grads["view_layout"]) > 0
  assert norm(encoder["bev_decoder"]) == 0 and norm(grads["heads"]) == 0


def test_red_light_ahead_head_reads_the_focus_view_not_the_speed():
  """The red-light-ahead head sees the focus view's feature map only: the ego speed (which
  LMDrive's light head learns to read instead of the lamp) does not move it; the focus image
  does."""
  inputs, _ = _batch(np.random.default_rng(3), batch=4)
  variables = _init(_key(3), inputs)
  apply = jax.jit(lambda v, x: _model().apply(v, **x)[0])
  base = apply(variables, inputs)
  faster = apply(variables, dict(inputs, speed=inputs["speed"] + 5.0))
  np.testing.assert_array_equal(base["red_ahead_logits"], faster["red_ahead_logits"])
  assert not np.allclose(base["light_logits"], faster["light_logits"])
  images = inputs["images"].copy()
  images[:, :, -1] = 255 - images[:, :, -1]  # the focus view (last) only
  other_focus = apply(variables, dict(inputs, images=images))
  assert not np.allclose(base["red_ahead_logits"], other_focus["red_ahead_logits"])
