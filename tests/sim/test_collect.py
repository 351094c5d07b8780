"""Data collection: the LMDrive raw layout reads back (measurements equal, JPEGs decode to the
rendered pixels), instruction files list each clip with correct frame ranges, resume skips
finished routes."""

import json
import math
import os

import numpy as np
import pytest
from PIL import Image

from data_pipelines import collect
from lmgendrive_jax.config import load_config
from lmgendrive_jax.sim import instructions

pytestmark = pytest.mark.slow  # drives two routes with cameras (~40 s together)

MEASUREMENT_KEYS = (
    "gps_x gps_y x y theta speed target_speed x_command y_command command gt_command steer "
    "throttle brake weather weather_id near_node_x near_node_y far_node_x far_node_y is_junction "
    "is_vehicle_present is_bike_present is_lane_vehicle_present is_junction_vehicle_present "
    "is_pedestrian_present is_red_light_present is_stop_sign_present should_slow should_brake "
    "future_waypoints affected_light_id steer_noise learner_control stop_sign_zone "
    "light_stop_distance").split()
# steer_noise, learner_control, stop_sign_zone, light_stop_distance: ours (collect.py)


class Spy(collect.Collector):
  """The real collector, also keeping what it was given in memory (to compare with the files;
  the state and town to re-render the images)."""

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    self.seen = {}

  def on_tick(self, episode, state, info, images, control, agent):
    super().on_tick(episode, state, info, images, control, agent)
    if episode.tick % 2 == 0 and images is not None:
      clip = episode.instructions.current
      self.seen[(collect.route_dir_name(episode.spec), episode.tick // 2)] = dict(
          images=np.array(images),
          measurement=collect.measurement(episode, state, control, agent.last_labels, info),
          instruction=(clip["instruction_id"], clip["misleading"]), state=state,
          town=episode.town)


@pytest.fixture(scope="module")
def collected(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("collect"))
  config = load_config("configs/collect.py:preset=tiny", [f"--config.out_dir={out}"])
  spy = {}
  results = collect.collect(config, collector=lambda *a: spy.setdefault("c", Spy(*a)))
  return out, config, spy["c"], results


def test_layout_and_measurements_read_back(collected):
  out, config, spy, results = collected
  assert len(results) == 2 and all(r["ending"] == "completed" for r in results)
  index = [line.split() for line in open(os.path.join(out, "dataset_index.txt"))]
  assert len(index) == 2
  for route, n_frames in index:
    n_frames = int(n_frames)
    for folder in ("rgb_front", "rgb_left", "rgb_right", "rgb_rear", "measurements",
                   "actors_data"):
      assert len(os.listdir(os.path.join(out, route, folder))) == n_frames
    for frame in (0, n_frames // 2, n_frames - 1):
      name = f"{frame:04d}"
      m = json.load(open(os.path.join(out, route, "measurements", name + ".json")))
      assert set(m) == set(MEASUREMENT_KEYS) and isinstance(m["stop_sign_zone"], bool)
      distance = m["light_stop_distance"]  # the expert's search: -1 .. 40 m, None without one
      assert distance is None or -1.0 <= distance <= 40.0
      assert (distance is None) == (m["affected_light_id"] == -1)
      assert m == json.loads(json.dumps(spy.seen[(route, frame)]["measurement"]))
      for v, view in enumerate(collect.VIEWS):
        decoded = np.asarray(Image.open(os.path.join(out, route, f"rgb_{view}", name + ".jpg")))
        rendered = spy.seen[(route, frame)]["images"][v]
        assert decoded.shape == rendered.shape == (64, 64, 3)
        assert np.abs(decoded.astype(int) - rendered.astype(int)).mean() < 6.0
      actors = json.load(open(os.path.join(out, route, "actors_data", name + ".json")))
      for actor in actors.values():
        assert {"loc", "ori", "box", "vel", "tpe"} <= set(actor) and actor["tpe"] in (0, 1, 2)
    # affected_light_id names the light's actors_data entry (LMDrive: the actor id), which the
    # builder's red_light_ahead label reads.
    named = 0
    for frame in range(n_frames):
      m = json.load(open(os.path.join(out, route, "measurements", f"{frame:04d}.json")))
      actors = json.load(open(os.path.join(out, route, "actors_data", f"{frame:04d}.json")))
      if m["affected_light_id"] >= 0 and str(m["affected_light_id"]) in actors:
        assert actors[str(m["affected_light_id"])]["tpe"] == 2
        named += 1
      else:
        assert m["affected_light_id"] == -1 or m["affected_light_id"] >= collect.LIGHT_ACTOR_BASE
    assert named or all(json.load(open(os.path.join(out, route, "measurements", f"{f:04d}.json")))
                        ["affected_light_id"] == -1 for f in range(n_frames))


def test_instruction_lists_match_what_the_agent_was_shown(collected):
  out, config, spy, _ = collected
  frames = {r: int(n) for r, n in (line.split() for line in open(os.path.join(out,
                                                                            "dataset_index.txt")))}
  nav = [json.loads(line) for line in open(os.path.join(out, "navigation_instruction_list.txt"))]
  misleading = [json.loads(line) for line in open(os.path.join(out, "misleading_data.txt"))]
  assert nav
  for route, n in frames.items():
    clips = [c for c in nav if c["route_path"] == route]
    wrong = [c for c in misleading if c["route_path"] == route]
    assert min(c["start_frame"] for c in clips + wrong) == 0 and clips[-1]["end_frame"] == n - 1
    for a, b in zip(clips, clips[1:]):
      # Issued when the previous one completes, or after a misleading one shown first.
      assert b["start_frame"] == a["end_frame"] or any(
          m["start_frame"] == a["end_frame"] and m["end_frame"] == b["start_frame"]
          for m in wrong)
  for clip in nav + misleading:
    assert {"start_frame", "end_frame", "instruction", "instruction_id", "instruction_args",
            "town_id", "weather_id", "route_path", "route_frames", "bad_case"} <= set(clip)
    assert 0 <= clip["start_frame"] <= clip["end_frame"] < frames[clip["route_path"]]
    assert instructions.INSTRUCTIONS[clip["instruction_id"]].name == clip["instruction"]
    instructions.render(clip["instruction_id"], clip["instruction_args"],
                        np.random.default_rng(0))
    # Frames strictly inside the clip showed this instruction (or a misleading one before it).
    for frame in range(clip["start_frame"] + 1, clip["end_frame"]):
      shown_id, shown_misleading = spy.seen[(clip["route_path"], frame)]["instruction"]
      if clip in misleading:
        assert shown_misleading and shown_id == clip["instruction_id"]
      elif not shown_misleading:
        assert shown_id == clip["instruction_id"]
  notices = json.load(open(os.path.join(out, "notice_instruction_list.json")))
  for route, items in notices.items():
    for item in items:
      assert 0 <= item["frame_id"] < frames[route] and 50 <= item["instruction_id"] < 60


def test_resume_redoes_only_unfinished_routes(collected):
  out, config, _, _ = collected
  assert collect.collect(config) == []  # everything done
  routes = collect.finished_routes(out)
  os.remove(os.path.join(out, routes[0], collect.DONE))
  redone = collect.collect(config)
  assert len(redone) == 1 and redone[0]["route"] == "tiny_00"
  assert collect.finished_routes(out) == routes
  assert len(open(os.path.join(out, "dataset_index.txt")).readlines()) == 2


def test_the_focus_camera_is_written_when_the_rig_renders_it(tmp_path):
  config = load_config("configs/collect.py:preset=tiny", [f"--config.out_dir={tmp_path}"])
  assert collect.Collector(str(tmp_path), config, collect.VIEWS)._written_views() == collect.VIEWS
  with_focus = collect.VIEWS + ("focus",)
  assert collect.Collector(str(tmp_path), config, with_focus)._written_views() == with_focus


def test_recovery_views_move_the_cameras_not_the_car(collected, tmp_path):
  """With `view_shift`, the same expert drive (same poses) is written, with the cameras of the
  shift episodes' frames rendered from the measurement's `view_pose` and the others unchanged."""
  import jax

  from lmgendrive_jax.sim import host, render, town as town_lib
  clean_out, _, _, _ = collected
  config = load_config("configs/collect.py:preset=tiny", [
      f"--config.out_dir={tmp_path}", "--config.max_routes=1", "--config.view_shift.gap_m=8"])
  spy = {}
  collect.collect(config, collector=lambda *a: spy.setdefault("c", Spy(*a)))
  spy = spy["c"]
  (route,) = collect.finished_routes(str(tmp_path))
  frames = sorted(frame for _, frame in spy.seen)
  assert len(os.listdir(os.path.join(clean_out, route, "measurements"))) == len(frames)
  shifted = []
  for frame in frames:
    name = f"{frame:04d}"
    m = json.load(open(os.path.join(tmp_path, route, "measurements", name + ".json")))
    clean = json.load(open(os.path.join(clean_out, route, "measurements", name + ".json")))
    view = m.pop("view_pose", None)
    assert m == clean  # the car drove exactly as without recovery views
    jpeg = open(os.path.join(tmp_path, route, "rgb_front", name + ".jpg"), "rb").read()
    clean_jpeg = open(os.path.join(clean_out, route, "rgb_front", name + ".jpg"), "rb").read()
    if view is None:
      assert jpeg == clean_jpeg
    else:
      assert jpeg != clean_jpeg
      shifted.append((frame, view))
  assert 0.2 * len(frames) < len(shifted) < 0.9 * len(frames)
  rig = host.rig_from_config(config.sim)
  draw = jax.jit(lambda town, state: render.render_views(town, state, rig))
  for frame, view in shifted[::max(len(shifted) // 3, 1)]:
    seen = spy.seen[(route, frame)]
    town = seen["town"].arrays(town_lib.max_shapes([seen["town"]]))
    state = dict(seen["state"], ego_pos=np.array([view["x"], view["y"]], np.float32),
                 ego_yaw=np.float32(view["theta"] - np.pi / 2))
    np.testing.assert_array_equal(np.asarray(draw(town, state)), seen["images"])
    assert abs(math.hypot(view["x"] - seen["state"]["ego_pos"][0],
                          view["y"] - seen["state"]["ego_pos"][1])) <= 1.5 + 1e-3
