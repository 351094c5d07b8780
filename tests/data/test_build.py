"""TFDS build of LMDrive-format fixtures: read-back equals the sources (both layouts), labels equal
hand-computed geometry, every bad input is skipped with its reason, and the build resumes."""

import io
import json
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

import lmdrive_fixture as fx
from data_pipelines.lmdrive_tfds import BuildConfig, build
from lmgendrive_jax.data.sources import VERSION, clip_source, frame_source

SIZE = (64, 48)


def render(instruction_id, args, rng):
  """A stand-in vocabulary: the builder's documented `render(id, args, rng) -> text` contract."""
  return f"instruction {instruction_id} {list(args)} take {int(rng.integers(3))}"


def decode(data):
  return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def source_pixels(path):
  return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def raw_build(tmp_path_factory):
  root = tmp_path_factory.mktemp("raw")
  r0 = fx.route_name(1, 1, 0)
  fx.write_dataset(str(root / "src"), [dict(name=r0, num_frames=32, theta=0.3)],
                   clips=[fx.clip_entry(r0, 2, 12), fx.clip_entry(r0, 25, 31)],
                   notices={r0: [{"frame_id": 6, "instruction_id": 50, "instruction_args": []}]},
                   misleading=[fx.clip_entry(r0, 10, 22, 5)])
  report = build(str(root / "src"), str(root / "out"), BuildConfig(camera_size=SIZE),
                 progress=False, render=render)
  return root, r0, report


def test_raw_layout_reads_back_source_pixels_values_and_labels(raw_build):
  root, r0, report = raw_build
  assert report["examples"] == {"train": 32, "validation": 0} and report["counts"] == {}
  frames = frame_source(str(root / "out"), "train")
  assert len(frames) == 32
  for index in (0, 17, 31):
    record = frames[index]
    frame = int(record["frame"])
    route_dir = os.path.join(root, "src", r0)
    for view in fx.VIEWS:
      path = os.path.join(route_dir, f"rgb_{view}", f"{frame:04d}.jpg")
      np.testing.assert_array_equal(decode(record["images"][view]), source_pixels(path))
    front = source_pixels(os.path.join(route_dir, "rgb_front", f"{frame:04d}.jpg"))
    side = round(128 / 600 * SIZE[1])
    top, left = (SIZE[1] - side) // 2, (SIZE[0] - side) // 2
    focus = decode(record["images"]["focus"]).astype(int)  # Re-encoded as JPEG q95: lossy.
    assert focus.shape == (side, side, 3)
    assert np.abs(focus - front[top:top + side, left:left + side]).mean() < 3
    with open(os.path.join(route_dir, "measurements", f"{frame:04d}.json")) as f:
      m = json.load(f)
    for key in ("gps_x", "gps_y", "x", "y", "theta", "speed", "x_command", "y_command", "brake"):
      assert record["measurements"][key] == pytest.approx(m[key], rel=1e-6), key
    assert record["traffic_light"] == (frame % 4 == 0)
    # The next stop line's light (actor "7", red) on every third frame, whatever the speed.
    assert record["red_light_ahead"] == (frame % 3 == 0)
    assert record["red_light_zone"] == (frame % 6 == 0)  # only where its line is <= 8 m ahead
    assert record["stop_sign_zone"] == (frame % 5 == 0)
    # The vehicle (2 m right) is in the route's corridor where the route runs 2 m right.
    assert record["hazard_ahead"] == (frame % 7 == 0)
    # Straight at 4 m/s: +0.5 s steps are 2 m forward; the target was written 30 m ahead, 4 m right.
    known = min(5, (31 - frame) // 5)
    expected = np.stack([np.zeros(5), 2.0 * np.minimum(np.arange(1, 6), max(known, 0))], -1)
    np.testing.assert_allclose(record["waypoints"], expected, atol=1e-4)
    np.testing.assert_array_equal(record["waypoint_mask"], np.arange(5) < known)
    np.testing.assert_allclose(record["target_point"], [4.0, 30.0], atol=1e-4)
    # The fixture's vehicle: 2 m right, 10 m ahead, same heading, 4.5 x 2 m, 3 m/s.
    np.testing.assert_allclose(record["objects"], [[2, 10, 0, 4.5, 2, 3, 0]], atol=1e-4)
    # 50x50 grid of 1 m cells, 30 m ahead: row 30 - 10 = 20, column 25 + 2 = 27; the centre sits
    # on the cell corner, half a cell up-left of the middle.
    bev = record["bev_targets"]
    assert bev[..., 0].sum() == 1
    np.testing.assert_allclose(bev[20, 27], [1, -0.5, -0.5, 0, 1, 4.5, 2, 3], atol=1e-4)
    assert record["has_road_map"]
    np.testing.assert_array_equal(record["road_map"], fx.road_map_pattern(frame))
  # TFDS itself reads what we wrote (no TensorFlow involved).
  builder = tfds.builder_from_directory(str(root / "out" / "lmdrive_frames" / VERSION))
  first = builder.as_data_source("train")[0]
  np.testing.assert_array_equal(first["images"]["left"], source_pixels(
      os.path.join(root, "src", r0, "rgb_left", f"{int(first['frame']):04d}.jpg")))


def test_clip_records(raw_build):
  root, r0, _ = raw_build
  clips = clip_source(str(root / "out"), "train")
  by_start = {int(clips[i]["start_frame"]): clips[i] for i in range(len(clips))}
  assert sorted(by_start) == [2, 10, 25]
  nav = by_start[2]
  # Instruction 2..12 plus a 10-frame completed tail: frames 2..22; completed after frame 12.
  np.testing.assert_array_equal(nav["frames"], np.arange(2, 23))
  np.testing.assert_array_equal(nav["frame_records"], np.arange(2, 23))
  np.testing.assert_array_equal(nav["completed"], np.arange(2, 23) > 12)
  frames = frame_source(str(root / "out"), "train")
  np.testing.assert_allclose(nav["waypoints"][5], frames[7]["waypoints"])
  assert not nav["misleading"]
  assert [t.decode() for t in nav["texts"]][0].startswith("instruction 36 []")
  assert list(nav["notices"]["frame"]) == [6] and list(nav["notices"]["instruction_id"]) == [50]
  tail = by_start[25]  # The tail stops at the route's last frame.
  np.testing.assert_array_equal(tail["frames"], np.arange(25, 32))
  # Each clip frame's road option is its frame's gt_command (the fixture's junction: 26..29).
  np.testing.assert_array_equal(tail["road_option"], [4, 2, 2, 2, 2, 4, 4])
  np.testing.assert_array_equal(nav["road_option"], [
      frames[int(k)]["measurements"]["gt_command"] for k in nav["frame_records"]])
  misleading = by_start[10]
  assert misleading["misleading"]
  np.testing.assert_array_equal(misleading["frames"], np.arange(10, 23))
  np.testing.assert_array_equal(misleading["completed"], np.arange(10, 23) >= 20)


def test_preprocessed_layout_reads_back_and_rejects_wrong_size(tmp_path):
  r0, r1 = fx.route_name(3, 2, 0), fx.route_name(4, 12, 1)
  fx.write_dataset(str(tmp_path / "src"), [
      dict(name=r0, num_frames=6, layout="preprocessed"),
      dict(name=r1, num_frames=4, layout="preprocessed", weather=12),
      dict(name=fx.route_name(5, 2, 2), num_frames=2, layout="preprocessed", size=(32, 24))])
  report = build(str(tmp_path / "src"), str(tmp_path / "out"),
                 BuildConfig(camera_size=SIZE, image_format="png"), progress=False)
  assert report["examples"] == {"train": 6, "validation": 4}
  assert report["counts"] == {"wrong_image_size": 2}
  assert all("expected 64x192" in s["detail"] for s in report["skipped"])
  for split, route, count in (("train", r0, 6), ("validation", r1, 4)):
    frames = frame_source(str(tmp_path / "out"), split)
    assert len(frames) == count
    record = frames[count - 1]
    stacked = source_pixels(os.path.join(tmp_path, "src", route, "rgb_full",
                                         f"{int(record['frame']):04d}.jpg"))
    for i, view in enumerate(fx.VIEWS):
      np.testing.assert_array_equal(decode(record["images"][view]),
                                    stacked[i * SIZE[1]:(i + 1) * SIZE[1]])
    side = round(128 / 600 * SIZE[1])
    top, left = (SIZE[1] - side) // 2, (SIZE[0] - side) // 2
    np.testing.assert_array_equal(decode(record["images"]["focus"]),  # PNG: lossless.
                                  stacked[top:top + side, left:left + side])
    with open(os.path.join(tmp_path, "src", route, "measurements_full",
                           f"{int(record['frame']):04d}.json")) as f:
      m = json.load(f)
    assert record["speed"] == pytest.approx(m["speed"])
    assert record["objects"].shape == (1, 7)


def test_every_bad_input_is_skipped_with_its_reason(tmp_path):
  src = tmp_path / "src"
  r0 = fx.route_name(1, 1, 0)
  fx.write_dataset(str(src), [dict(name=r0, num_frames=12)],
                   clips=[fx.clip_entry(r0, 0, 1), fx.clip_entry("../elsewhere/route", 0, 3),
                          fx.clip_entry(r0, 2, 4, bad_case=True), fx.clip_entry(r0, 5, 6)])
  route = src / r0
  jpeg = (route / "rgb_front" / "0003.jpg").read_bytes()
  (route / "rgb_front" / "0003.jpg").write_bytes(jpeg[:len(jpeg) // 2])        # truncated
  (route / "rgb_rear" / "0004.jpg").write_bytes(b"not a jpeg at all")         # unreadable
  os.remove(route / "rgb_left" / "0005.jpg")                                   # missing file
  m = json.loads((route / "measurements" / "0006.json").read_text())
  del m["speed"]
  (route / "measurements" / "0006.json").write_text(json.dumps(m))            # missing key
  m = json.loads((route / "measurements" / "0007.json").read_text())
  m["theta"] = float("nan")
  (route / "measurements" / "0007.json").write_text(json.dumps(m))            # NaN
  a = json.loads((route / "actors_data" / "0008.json").read_text())
  a["101"]["vel"][0] = float("inf")
  (route / "actors_data" / "0008.json").write_text(json.dumps(a))             # inf
  Image.fromarray(fx.pattern(24, 32, 1)).save(route / "rgb_right" / "0009.jpg")  # wrong size
  # A road map that is not one (RGB, as LMDrive's CARLA renders): reported, its frame kept.
  Image.fromarray(fx.pattern(200, 200, 2)).save(route / "topdown" / "0010.png")
  with open(src / "dataset_index.txt", "a") as f:
    f.write("../outside_route 10\n")                                           # outside root
  with open(src / "navigation_instruction_list.txt", "a") as f:
    f.write("{not json\n")
  report = build(str(src), str(tmp_path / "out"), BuildConfig(camera_size=SIZE), progress=False,
                 render=render)
  with open(tmp_path / "out" / "build_report.json") as f:
    assert json.load(f)["counts"] == report["counts"]
  assert report["counts"] == {
      "bad_image": 2, "missing_file": 1, "missing_key": 1, "non_finite": 2,
      "wrong_image_size": 1, "route_outside_root": 2, "bad_json": 1, "bad_case": 1,
      "bad_topdown": 1,
      # The clip over frames 5..6 includes a skipped frame, so it is not written.
      "clip_frame_missing": 1}
  reasons = {(os.path.basename(s["path"]), s["reason"]) for s in report["skipped"]}
  assert {("0003.jpg", "bad_image"), ("0004.jpg", "bad_image"), ("0005.jpg", "missing_file"),
          ("0006.json", "missing_key"), ("0007.json", "non_finite"),
          ("0009.jpg", "wrong_image_size"), ("0010.png", "bad_topdown")} <= reasons
  assert report["examples"] == {"train": 5, "validation": 0}
  # The clip over 0..1 keeps only the written part of its completed tail (frame 2).
  assert report["clip_examples"] == {"train": 1, "validation": 0}
  clips = clip_source(str(tmp_path / "out"), "train")
  assert len(clips) == 1
  np.testing.assert_array_equal(clips[0]["frames"], [0, 1, 2])
  np.testing.assert_array_equal(clips[0]["completed"], [False, False, True])
  frames = frame_source(str(tmp_path / "out"), "train")
  assert sorted(int(frames[i]["frame"]) for i in range(len(frames))) == [0, 1, 2, 10, 11]
  has_map = {int(frames[i]["frame"]): bool(frames[i]["has_road_map"]) for i in range(len(frames))}
  assert has_map == {0: True, 1: True, 2: True, 10: False, 11: True}


def test_parallel_build_resumes_finished_routes(tmp_path):
  src = tmp_path / "src"
  names = [fx.route_name(1, 1, i) for i in range(3)]
  fx.write_dataset(str(src), [dict(name=n, num_frames=4, seed=i) for i, n in enumerate(names)])
  out = tmp_path / "out"
  first = build(str(src), str(out), BuildConfig(camera_size=SIZE), workers=2, progress=False)
  work = out / "_work" / "routes"
  kept = work / names[0] / "frames.array_record"
  kept_mtime = kept.stat().st_mtime_ns
  os.remove(work / names[1] / "done.json")  # As if the build was killed while on this route.
  second = build(str(src), str(out), BuildConfig(camera_size=SIZE), workers=0, progress=False)
  assert kept.stat().st_mtime_ns == kept_mtime
  assert (work / names[1] / "done.json").exists()
  assert first["examples"] == second["examples"] == {"train": 12, "validation": 0}
  frames = frame_source(str(out), "train")
  assert [int(frames[i]["frame"]) for i in range(12)] == [0, 1, 2, 3] * 3
  with pytest.raises(Exception, match="another config"):
    build(str(src), str(out), BuildConfig(camera_size=SIZE, image_format="png"), progress=False)


def test_focus_camera_build_stores_the_focus_cameras_image(tmp_path):
  """With `focus_camera`, the focus view is the frame's rgb_focus/ image (our collector's
  telephoto camera) instead of a crop of the front one; a frame without one is skipped."""
  r0 = fx.route_name(1, 1, 0)
  fx.write_dataset(str(tmp_path / "src"), [dict(name=r0, num_frames=4)])
  os.makedirs(tmp_path / "src" / r0 / "rgb_focus")
  focus = {f: fx.pattern(SIZE[1], SIZE[0], 777 + f) for f in range(4)}
  for frame in range(3):  # frame 3 has none
    Image.fromarray(focus[frame]).save(tmp_path / "src" / r0 / "rgb_focus" / f"{frame:04d}.png")
    os.rename(tmp_path / "src" / r0 / "rgb_focus" / f"{frame:04d}.png",
              tmp_path / "src" / r0 / "rgb_focus" / f"{frame:04d}.jpg")  # PNG bytes: lossless
  report = build(str(tmp_path / "src"), str(tmp_path / "out"),
                 BuildConfig(camera_size=SIZE, image_format="png", focus_camera=True),
                 progress=False)
  assert report["counts"] == {"missing_file": 1}
  assert report["skipped"][0]["path"].endswith(os.path.join("rgb_focus", "0003.jpg"))
  frames = frame_source(str(tmp_path / "out"), "train")
  assert len(frames) == 3
  for i in range(3):
    record = frames[i]
    np.testing.assert_array_equal(decode(record["images"]["focus"]), focus[int(record["frame"])])
  assert frames.build_config["focus_camera"] is True


def test_stop_sign_zone_label_is_unknown_where_the_source_does_not_say():
  from data_pipelines.lmdrive_tfds import reader
  assert reader.stop_sign_zone({"stop_sign_zone": True}) == 1
  assert reader.stop_sign_zone({"stop_sign_zone": False}) == 0
  assert reader.stop_sign_zone({"is_stop_sign_present": [3]}) == -1  # LMDrive's data


def test_red_light_zone_holds_up_to_8_m_before_a_red_lights_line_and_is_unknown_without_it():
  from data_pipelines.lmdrive_tfds import reader
  red = {"affected_light_id": 7, "actors_data": {"7": {"tpe": 2, "sta": reader.RED}}}
  green = {"affected_light_id": 7, "actors_data": {"7": {"tpe": 2, "sta": 2}}}
  zone = lambda m, distance: reader.red_light_zone({**m, "light_stop_distance": distance}, 8.0)
  assert [zone(red, d) for d in (-2.0, -1.0, 0.0, 8.0, 8.5, 30.0)] == [0, 1, 1, 1, 0, 0]
  assert zone(green, 3.0) == 0 and zone(red, None) == 0  # green; no light-controlled line
  assert reader.red_light_zone(red, 8.0) == -1  # LMDrive's data, our collections before the key
  assert reader.red_light_ahead({**red, "light_stop_distance": 30.0}) == 1


def test_hazard_label_holds_for_an_object_in_the_route_corridor_up_to_10_m_past_the_bumper():
  from data_pipelines.lmdrive_tfds import reader
  # The ego at GPS (0, 0) facing north (theta 0): ego right = east = gps_y, forward = gps_x.
  straight = {"gps_x": 0.0, "gps_y": 0.0, "future_waypoints": [[d, 0.0] for d in range(2, 22, 2)]}
  def label(right, forward, length=4.5, m=straight):
    car = np.array([[right, forward, 0.0, length, 2.0, 3.0, 0]], np.float32)
    return reader.hazard_ahead(m, car, np.zeros(2), 0.0)
  # Gap = forward - 2.45 (ego's front) - length / 2.
  assert label(0.0, 12.0) == 1 and label(1.7, 12.0) == 1  # gap 7.3 m, within the lane
  assert label(1.9, 12.0) == 0  # the next lane's edge
  assert label(0.0, 14.6) == 1 and label(0.0, 14.8) == 0  # gap 9.9 / 10.1 m
  assert label(0.0, -3.0) == 0  # behind
  # The corridor follows the route: a right turn 4 m ahead takes it to a car 6 m to the right.
  turning = dict(straight, future_waypoints=[[2.0, 0.0], [4.0, 0.0]] + [
      [4.0, d] for d in range(2, 16, 2)])
  assert label(6.0, 4.5, m=turning) == 1 and label(6.0, 4.5) == 0
  assert reader.hazard_ahead(straight, np.zeros((0, 7), np.float32), np.zeros(2), 0.0) == 0
  assert reader.hazard_ahead({"gps_x": 0.0, "gps_y": 0.0}, np.zeros((0, 7), np.float32),
                             np.zeros(2), 0.0) == -1  # LMDrive data without a route ahead


def test_report_counts_recovery_views_and_those_masked_as_crawling(tmp_path):
  """Frames whose measurement has a `view_pose` (recovery views) are counted in the report, and
  of them those `recovery_min_step_m` masks: here the first waypoint is 5 frames (0.5 s) ahead,
  2.0 m at 4 m/s (under 2.5: masked) and 3.0 m at 6 m/s (kept)."""
  slow, fast = fx.route_name(1, 1, 0), fx.route_name(1, 1, 1)
  fx.write_dataset(str(tmp_path / "src"), [dict(name=slow, num_frames=20, speed=4.0),
                                           dict(name=fast, num_frames=20, speed=6.0)])
  for route, shifted in ((slow, range(3, 11)), (fast, range(3, 7))):
    for frame in shifted:
      path = tmp_path / "src" / route / "measurements" / f"{frame:04d}.json"
      m = json.loads(path.read_text())
      m["view_pose"] = {"gps_x": m["gps_x"] + 0.5, "gps_y": m["gps_y"], "x": m["x"],
                        "y": m["y"] - 0.5, "theta": m["theta"]}
      path.write_text(json.dumps(m))
  report = build(str(tmp_path / "src"), str(tmp_path / "out"),
                 BuildConfig(camera_size=SIZE, recovery_min_step_m=2.5), progress=False)
  assert report["counts"] == {}
  assert report["recovery_views"] == {"written": 12, "crawl_masked": 8}
  frames = frame_source(str(tmp_path / "out"), "train")
  first_kept = {(r["route"].decode(), int(r["frame"])): bool(np.asarray(r["waypoint_mask"])[0])
                for r in (frames[i] for i in range(len(frames)))}
  assert [first_kept[(slow, f)] for f in (2, 3, 10, 11)] == [True, False, False, True]
  assert first_kept[(fast, 3)] and first_kept[(fast, 6)]
