"""grain pipelines on a built fixture: static shapes and masks, exact resume through Orbax,
disjoint per-host shards covering an epoch, clip windows / notices / completed labels, global
arrays, tokenizer errors."""

import json

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

import lmdrive_fixture as fx
from data_pipelines.lmdrive_tfds import BuildConfig, build
from lmgendrive_jax import parallel
from lmgendrive_jax.config import data_preset, logical_axis_rules, mesh_config
from lmgendrive_jax.data import (augment, camera_rig, examples, geometry, pipeline, sources,
                                 view_layout)
from lmgendrive_jax.data.tokenizer import load_tokenizer
from lmgendrive_jax.errors import DataError
from lmgendrive_jax.sim.instructions import render

TOKENIZER = "assets/tokenizer"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  root = tmp_path_factory.mktemp("pipe")
  r0, r1 = fx.route_name(1, 1, 0), fx.route_name(2, 12, 1)
  fx.write_dataset(str(root / "src"), [
      dict(name=r0, num_frames=40), dict(name=r1, num_frames=20, weather=12, layout="preprocessed")],
      clips=[fx.clip_entry(r0, 0, 12, 60), fx.clip_entry(r0, 10, 25, 62),
             fx.clip_entry(r0, 20, 30, 61), fx.clip_entry(r1, 17, 19, 60)],
      notices={r0: [{"frame_id": 5, "instruction_id": 57, "instruction_args": []}]},
      misleading=[fx.clip_entry(r0, 3, 15, 63)])
  report = build(str(root / "src"), str(root / "out"), BuildConfig(camera_size=(64, 48)),
                 progress=False)
  assert report["counts"] == {} and report["clip_examples"] == {"train": 4, "validation": 1}
  return str(root / "out")


def config(data_dir, stage, **overrides):
  cfg = data_preset("tiny", stage)
  cfg.data_dir, cfg.tokenizer = data_dir, TOKENIZER
  cfg.update(overrides)
  return cfg


def test_static_shapes_and_masks_for_a_clip_shorter_than_the_window(built):
  cfg = config(built, 2, batch_size=2, window_frames=6, future_offsets=(1, 2))
  it = pipeline.make_clip_iterator(cfg, "validation", train=False, shard_index=0, shard_count=1)
  batch = next(it)
  # One clip in the split, repeated to fill the static batch of 2.
  spec = {k: (shape, np.dtype(dtype)) for k, (shape, dtype) in pipeline.batch_spec(cfg, 2).items()}
  assert {k: (v.shape, v.dtype) for k, v in batch.items()} == spec
  # Clip 17..19 of a 20-frame route: 3 frames (its tail stops at the route end) in 6 slots.
  np.testing.assert_array_equal(batch["frame_mask"][0], [1, 1, 1, 0, 0, 0])
  assert batch["images"][0, 3:].max() == 0
  assert (batch["images"][0, :3].reshape(3, -1).std(axis=1) > 0).all()
  assert not batch["waypoints"][0, 3:].any() and not batch["speed"][0, 3:].any()
  np.testing.assert_allclose(batch["speed"][0, :3], 4.0)
  np.testing.assert_array_equal(batch["completed"][0], [0, 0, 0, 0, 0, 0])
  np.testing.assert_array_equal(batch["future_index"][0, :, 0], [1, 2, 0, 0, 0, 0])
  np.testing.assert_array_equal(batch["future_mask"][0], [[1, 1], [1, 0], [0, 0], [0, 0],
                                                          [0, 0], [0, 0]])
  tokenizer = load_tokenizer(TOKENIZER)
  ids = batch["instruction_tokens"][0][batch["instruction_mask"][0]]
  assert ids[0] == tokenizer.bos_token_id
  assert tokenizer.decode(ids[1:]) in {render(60, [], np.random.default_rng(s)) for s in range(64)}
  assert (batch["instruction_tokens"][0][~batch["instruction_mask"][0]] == 0).all()
  assert batch["notice_frame"][0] == -1 and not batch["notice_mask"].any()


def test_notices_completed_and_misleading_labels(built):
  cfg = config(built, 2, batch_size=1, window_frames=8, notice_probability=1.0, start_jitter=0,
               colour_jitter=0.0)
  it = pipeline.make_clip_iterator(cfg, "train", train=True, shard_index=0, shard_count=1,
                                   num_epochs=1)
  seen = {}
  for batch in it:
    seen[int(batch["instruction_id"][0])] = batch
  assert sorted(seen) == [60, 61, 62, 63]
  first = seen[60]   # frames 0..7 of a clip 0..12: the notice at frame 5 goes before slot 5.
  assert first["notice_frame"][0] == 5 and first["notice_mask"][0].any()
  assert not first["misleading"][0] and not first["completed"][0].any()
  misleading = seen[63]  # starts at 3; completed from frame 13 = 10 frames in: slot >= 10 -> none
  assert misleading["misleading"][0]
  assert misleading["notice_frame"][0] == 2   # notice frame 5 = slot 2 of a window from frame 3
  late = seen[61]  # 20..30 + tail: window frames 20..27, none completed yet
  assert late["notice_frame"][0] == -1


def test_clips_through_a_junction_come_junction_clip_repeats_times_an_epoch(built):
  # The fixture's junction is frames 26..29 of route 0: clips 10..25 and 20..30 (with their
  # completed tails) pass it, 0..12 and the misleading 3..15 do not.
  cfg = config(built, 2, batch_size=1, junction_clip_repeats=3, junction_window_boost=4.0)
  it = pipeline.make_clip_iterator(cfg, "train", train=True, shard_index=0, shard_count=1,
                                   num_epochs=1)
  counts = {}
  for batch in it:
    counts[int(batch["instruction_id"][0])] = counts.get(int(batch["instruction_id"][0]), 0) + 1
  assert counts == {60: 1, 63: 1, 62: 3, 61: 3}
  evaluation = pipeline.make_clip_iterator(cfg, "train", train=False, shard_index=0,
                                           shard_count=1, num_epochs=1)
  assert sum(1 for _ in evaluation) == 4  # Evaluation reads every clip once.


def test_two_hosts_get_disjoint_shards_covering_an_epoch(built):
  cfg = config(built, 1, batch_size=8)
  ids = []
  for host in range(2):
    it = pipeline.make_frame_iterator(cfg, "train", shard_index=host, shard_count=2,
                                      num_epochs=1)
    host_ids = [(int(t), int(f)) for b in it for t, f in zip(b["town_id"], b["frame"])]
    assert len(host_ids) == 20  # 40 frames / 2 hosts, local batches of 4
    ids.append(host_ids)
  assert not set(ids[0]) & set(ids[1])
  assert sorted(ids[0] + ids[1]) == [(1, f) for f in range(40)]
  assert ids[0] != sorted(ids[0])  # shuffled


@pytest.mark.parametrize("workers", [0, pytest.param(1, marks=pytest.mark.slow)])
def test_iterator_resumes_exactly_from_an_orbax_checkpoint(built, tmp_path, workers):
  cfg = config(built, 2, batch_size=2, num_workers=workers)
  make = lambda: pipeline.make_clip_iterator(cfg, "train", shard_index=0, shard_count=1)  # noqa: E731
  reference = make()
  expected = [next(reference) for _ in range(7)]
  reference.close()
  it = make()
  for _ in range(3):
    it.batch(it.step)
  manager = ocp.CheckpointManager(str(tmp_path / "ckpt"))
  manager.save(3, args=ocp.args.Composite(data=ocp.args.JsonSave(it.get_state())))
  manager.wait_until_finished()
  it.close()
  restored_state = manager.restore(3, args=ocp.args.Composite(data=ocp.args.JsonRestore()))["data"]
  resumed = make()
  resumed.set_state(restored_state)
  for step in range(3, 7):
    batch = resumed.batch(step)
    for key in batch:
      np.testing.assert_array_equal(batch[key], expected[step][key], err_msg=key)
  resumed.close()
  if workers:
    return  # The config check below is the same code path with or without workers.
  other = pipeline.make_clip_iterator(config(built, 2, batch_size=2, num_workers=workers,
                                             seed=1), "train", shard_index=0, shard_count=1)
  with pytest.raises(DataError, match="another pipeline config"):
    other.set_state(restored_state)
  other.close()


def test_stage1_batch_to_global_arrays(built):
  cfg = config(built, 1)
  it = pipeline.make_frame_iterator(cfg, "train")
  batch = next(it)
  spec = pipeline.batch_spec(cfg, 1)
  assert {k: (v.shape, np.dtype(v.dtype)) for k, v in batch.items()} == {
      k: (shape, np.dtype(dtype)) for k, (shape, dtype) in spec.items()}
  mesh = parallel.make_mesh(mesh_config())
  arrays = it.global_batch(batch, mesh, logical_axis_rules())
  assert arrays["images"].shape == (8, 5, 32, 32, 3)
  assert len(arrays["images"].sharding.device_set) == jax.device_count()
  np.testing.assert_array_equal(np.asarray(arrays["detection"]), batch["detection"])
  # The 8x8 grid of the tiny preset is re-rasterised from the stored boxes (6.25 x 6.25 m cells):
  # the vehicle 10 m ahead, 2 m right -> row floor(20 / 6.25) = 3, column floor(27 / 6.25) = 4.
  assert (batch["detection"][:, 3, 4, 0] == 1).all() and batch["detection"][..., 0].sum() == 8


def test_tokenizer_errors_name_the_path(tmp_path):
  with pytest.raises(DataError, match="does not exist"):
    load_tokenizer(str(tmp_path / "nowhere"))
  with pytest.raises(DataError, match="no tokenizer files"):
    load_tokenizer(str(tmp_path))
  tokenizer = load_tokenizer(TOKENIZER)
  assert tokenizer.pad_token_id == 0 and len(tokenizer) <= 1024
  assert [tokenizer.convert_ids_to_tokens(i) for i in range(4)] == ["<pad>", "<s>", "</s>", "<unk>"]
  text = "Turn left at the next intersection, then stop 20 m ahead."
  assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text


def _views(built, random_crop: bool, seeds) -> list[np.ndarray]:
  """A training frame's views drawn with each of `seeds` (colour jitter off), and its evaluation
  views last."""
  cfg = config(built, 1, random_crop=random_crop, colour_jitter=0.0)
  source = sources.frame_source(cfg.data_dir, "train")
  train_map = examples.FrameExample(cfg, examples._stored_grid(source), train=True)
  eval_map = examples.FrameExample(cfg, examples._stored_grid(source), train=False)
  record = source[3]
  return [train_map.random_map(record, np.random.default_rng(s))["images"] for s in seeds] + [
      eval_map.random_map(record, np.random.default_rng(0))["images"]]


def test_centre_crop_training_views_are_the_evaluation_views(built):
  # LMDrive centre-crops (`paper`): a random crop shifts a view by an apparent yaw of several
  # degrees while the ego-frame waypoints stay put (config.data_preset says why).
  assert not data_preset("paper", 1).random_crop and not data_preset("paper", 2).random_crop
  *drawn, expected = _views(built, random_crop=False, seeds=range(4))
  for images in drawn:
    np.testing.assert_array_equal(images, expected)


def test_random_crop_shifts_training_views(built):
  *drawn, centred = _views(built, random_crop=True, seeds=range(4))
  assert sum(not np.array_equal(images, centred) for images in drawn) >= 3


def test_view_layouts_follow_each_views_crop(built):
  """Stage 1's per-view road layout (data/view_layout.py) at the view's own resolution: under a
  random crop the image and its label move together, pixel for pixel."""
  cfg = config(built, 1, random_crop=True, colour_jitter=0.0, view_layout_size=(32, 32))
  source = sources.frame_source(cfg.data_dir, "train")
  grid = examples._stored_grid(source)
  train_map = examples.FrameExample(cfg, grid, True, source.build_config)
  eval_map = examples.FrameExample(cfg, grid, False, source.build_config)
  record = source[3]
  centred = eval_map.random_map(record, np.random.default_rng(0))
  assert centred["view_layout"].shape == (5, 32, 32, len(view_layout.VIEW_LAYOUT_CLASSES)) and centred["view_layout_mask"]
  np.testing.assert_allclose(centred["view_layout"].sum(-1), 1.0, rtol=1e-5)
  # The fixture's road map has bands ahead of the ego: the front label changes down the image.
  assert len(np.unique(centred["view_layout"][0].argmax(-1))) > 2
  moved = 0
  for seed in range(6):
    drawn = train_map.random_map(record, np.random.default_rng(seed))
    for view in range(4):  # focus is never cropped
      # The crop's offset from the centred one, found from the images.
      shifts = [(dy, dx) for dy in range(-3, 4) for dx in range(-9, 10)
                if np.array_equal(_overlap(drawn["images"][view], dy, dx, 0),
                                  _overlap(centred["images"][view], dy, dx, 1))]
      assert len(shifts) == 1, shifts
      moved += shifts[0] != (0, 0)
      np.testing.assert_allclose(_overlap(drawn["view_layout"][view], *shifts[0], 0),
                                 _overlap(centred["view_layout"][view], *shifts[0], 1), atol=1e-6)
  assert moved >= 12
  # A frame without a road map gets no label (masked).
  assert not eval_map.random_map(dict(record, has_road_map=False), None)["view_layout_mask"]


def test_crop_yaw_is_the_turn_that_brings_the_crop_centre_ray_straight_ahead():
  # A crop shifted right shows the camera turned right: the ray through its centre column,
  # seen from the car turned by that yaw, points straight ahead.
  for u in (0.3, 0.5, 0.62):
    window = (u - 0.2, u + 0.2, 0.1, 0.9)
    _, ray = camera_rig.rays("front", np.array(u), np.array(0.5), aspect=0.75)
    turned = geometry.turn_ego(ray[:2], camera_rig.crop_yaw(window))
    assert abs(turned[0]) < 1e-6 and turned[1] > 0
    assert np.sign(camera_rig.crop_yaw(window)) == np.sign(round(u - 0.5, 6))


def test_rig_crop_turns_the_waypoints_with_the_views(built):
  """`rig_crop`: the four rig views move by one column shift (one turn of the car) and the
  waypoints turn by the angle that shift shows at the rig's field of view; the focus view and
  the window drawn stay as without it."""
  frames = sources.frame_source(built, "train")
  record = sources.clip_source(built, "train")[0]
  def example(seed, **overrides):
    cfg = config(built, 2, window_frames=3, colour_jitter=0.0, **overrides)
    return examples.ClipExample(cfg, frames, train=True).random_map(
        record, np.random.default_rng(seed))
  # The stored 64x48 views resized for a 32x32 crop at crop_scale 0.875, and the centred crop.
  new_w, _, centred_left, _ = augment.crop_box(64, 48, 32, 32, 0.875)
  turned = 0
  for seed in range(6):
    # The same seed draws the same window (before the crop): the centred example is its reference.
    centred = example(seed, random_crop=False)
    drawn = example(seed, random_crop=True, rig_crop=True)
    assert centred["frame_mask"].all() and drawn["waypoint_mask"].any()
    np.testing.assert_array_equal(drawn["speed"], centred["speed"])
    np.testing.assert_array_equal(drawn["images"][:, 4], centred["images"][:, 4])  # focus
    columns = set()
    for view in range(4):
      shifts = [(dy, dx) for dy in range(-3, 4) for dx in range(-9, 10)
                if np.array_equal(_overlap(drawn["images"][0, view], dy, dx, 0),
                                  _overlap(centred["images"][0, view], dy, dx, 1))]
      assert len(shifts) == 1, shifts
      columns.add(shifts[0][1])
    assert len(columns) == 1, columns   # one column shift for the whole rig
    shift = columns.pop()
    # The turn is from the centred crop (which an odd margin puts half a pixel off-axis).
    tan_half = np.tan(np.radians(camera_rig.FOV_DEG / 2))
    yaw = (np.arctan(((centred_left + shift + 16) / new_w - 0.5) * 2 * tan_half)
           - np.arctan(((centred_left + 16) / new_w - 0.5) * 2 * tan_half))
    if shift == 0:
      np.testing.assert_array_equal(drawn["waypoints"], centred["waypoints"])
    np.testing.assert_allclose(drawn["waypoints"], geometry.turn_ego(centred["waypoints"], yaw),
                               atol=1e-5)
    if abs(shift) >= 2:
      turned += 1
      # Turned right (the crop moved right), the road ahead now lies to the left.
      far = centred["waypoints"][0, -1]
      assert np.sign(drawn["waypoints"][0, -1, 0] - far[0]) == -np.sign(shift) * np.sign(far[1])
  assert turned >= 2


def test_rig_crop_is_refused_for_stage_1_frames(built):
  cfg = config(built, 1, random_crop=True, rig_crop=True)
  grid = examples._stored_grid(sources.frame_source(cfg.data_dir, "train"))
  with pytest.raises(DataError, match="rig_crop"):
    examples.FrameExample(cfg, grid, train=True)
  examples.FrameExample(cfg, grid, train=False)  # evaluation crops are centred: nothing to turn


def _overlap(image, dy, dx, which):
  """The part of `image` that overlaps the other crop, offset (dy, dx) from it: which=0 for the
  shifted crop, 1 for the reference one."""
  h, w = image.shape[:2]
  sign = 1 if which == 1 else -1
  rows = slice(max(0, sign * dy), h + min(0, sign * dy))
  cols = slice(max(0, sign * dx), w + min(0, sign * dx))
  return image[rows, cols]


@pytest.mark.parametrize("labelled_windows", [False, True])
def test_labelled_windows_are_not_drawn_where_every_target_is_masked(built, labelled_windows):
  """On-policy data masks the learner's frames; with `labelled_windows` no window is drawn
  where all of its targets are masked (clips.labelled_start_weights), without it some are."""
  cfg = config(built, 2, batch_size=1, window_frames=2, labelled_windows=labelled_windows)
  frames = sources.frame_source(built, "train")
  transform = examples.ClipExample(cfg, frames, train=True)
  record = dict(sources.clip_source(built, "train")[0])
  mask = np.array(record["waypoint_mask"], bool)
  mask[:len(mask) - 2] = False  # only the last two frames keep targets
  record["waypoint_mask"] = mask
  rng = np.random.default_rng(0)
  labelled = [transform.random_map(record, rng)["waypoint_mask"].any() for _ in range(40)]
  assert all(labelled) if labelled_windows else not all(labelled)
