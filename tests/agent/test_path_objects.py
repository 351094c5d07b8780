"""The hazard rule's path reading (agent/path_objects.py): which object-map cells the planner's
path covers on LMDrive's front camera, and the agent braking for an object seen there only."""

import flax.linen as nn
import jax
import ml_collections
import numpy as np
import pytest

from lmgendrive_jax.agent import detector as detector_lib
from lmgendrive_jax.agent import path_objects, preprocess
from lmgendrive_jax.agent.detector import ViewDetector
from lmgendrive_jax.agent.lmgendrive_agent import LMGenDriveAgent
from lmgendrive_jax.agent.planner import PlanState
from lmgendrive_jax.data import augment, camera_rig
from lmgendrive_jax.errors import ConfigError
from lmgendrive_jax.models.light_detector import RedLightDetector

# The small presets' front view: a 64x64 camera, its centred 0.875 crop, an 8x8 object map.
# That crop's odd margin puts it half a pixel off the camera's axis; the symmetric window is
# for checks of mirror symmetry.
WINDOW = augment.crop_window(64, 64, 64, 64, 0.875)
SYMMETRIC = (1 / 16, 15 / 16, 1 / 16, 15 / 16)


def _front_path(window=WINDOW, **kwargs):
  return path_objects.PathObjects("front", window, 1.0, 8, 8, **kwargs)


def _arc(radius: float, side: int) -> np.ndarray:
  """Five waypoints on a circle turning left (side -1) or right (+1) from straight ahead."""
  angles = np.linspace(0.2, 1.2, 5)
  return np.stack([side * radius * (1 - np.cos(angles)), radius * np.sin(angles)], -1)


STRAIGHT = np.stack([np.zeros(5), 2.5 * np.arange(1, 6)], -1)


def test_polyline_is_cut_or_extended_to_its_length():
  cut = path_objects.path_polyline(STRAIGHT, 6.0)
  np.testing.assert_allclose(cut, [[0, 0], [0, 2.5], [0, 5.0], [0, 6.0]], atol=1e-6)
  short = path_objects.path_polyline([[3.0, 4.0]], 10.0)  # one waypoint 5 m away: extended on
  np.testing.assert_allclose(short[-1], [6.0, 8.0], atol=1e-5)
  standing = path_objects.path_polyline(np.zeros((5, 2)), 10.0)  # asks to stand: straight on
  np.testing.assert_allclose(standing, [[0, 0], [0, 10.0]], atol=1e-6)


def test_distance_to_polyline():
  line = np.array([[0.0, 0.0], [0.0, 10.0], [5.0, 10.0]], np.float32)
  points = np.array([[1.0, 5.0], [-2.0, -2.0], [3.0, 12.0]], np.float32)
  np.testing.assert_allclose(path_objects.distance_to_polyline(points, line),
                             [1.0, np.hypot(2, 2), 2.0], atol=1e-6)


def test_path_cells_are_the_ground_close_ahead_where_the_car_goes():
  path = _front_path(SYMMETRIC)
  straight = path.cells(STRAIGHT)
  # Only rows below the horizon (4 of the 8) whose ground lies within the corridor's length: the
  # top half of the image, sky and the road beyond ~12 m, is never on the path.
  assert not straight[:5].any() and straight[5:].any()
  # Straight ahead: the middle columns, symmetric about the camera's axis.
  np.testing.assert_array_equal(straight, straight[:, ::-1])
  assert straight[5:, 3:5].all() and not straight[:, [0, 7]].any()
  # Turning: the far rows move towards the turn's side, mirrored for the other side.
  left, right = path.cells(_arc(10.0, -1)), path.cells(_arc(10.0, +1))
  np.testing.assert_array_equal(left, right[:, ::-1])
  assert left[5, 1] and not left[5, 4] and not straight[5, 1]
  # A wider corridor covers at least as much.
  assert (_front_path(half_width_m=3.0).cells(STRAIGHT) >= straight).all()


def test_cells_follow_the_ground_points_of_the_camera():
  """A cell is on the path exactly when most of its ground points lie within the corridor."""
  path = _front_path(samples=2)
  u, v = np.meshgrid((np.arange(16) + 0.5) / 16, (np.arange(16) + 0.5) / 16)
  u = WINDOW[0] + (WINDOW[1] - WINDOW[0]) * u
  v = WINDOW[2] + (WINDOW[3] - WINDOW[2]) * v
  ground, hits = camera_rig.ground_points("front", u, v, 1.0)
  inside = hits & (np.abs(ground[..., 0]) <= path_objects.HALF_WIDTH_M) & (
      ground[..., 1] <= path_objects.LENGTH_M)
  share = inside.reshape(8, 2, 8, 2).mean(axis=(1, 3))
  np.testing.assert_array_equal(path.cells(STRAIGHT), share >= path_objects.MIN_SHARE)


def test_reading_is_the_largest_object_probability_on_the_path():
  path = _front_path()
  objects = np.zeros((8, 8), np.float32)
  objects[6, 0] = 0.9  # a car beside the path, low left
  assert path.reading(objects, STRAIGHT) == 0.0
  objects[6, 3] = 0.7  # one on it
  assert path.reading(objects, STRAIGHT) == pytest.approx(0.7)
  assert path.reading(objects, _arc(6.0, -1)) == pytest.approx(0.9)  # turning into the first
  with pytest.raises(ValueError, match=r"\(4, 4\)"):
    path.reading(np.zeros((4, 4)), STRAIGHT)


def _red_object_detector():
  """A hazard ViewDetector (object map) on a 64x64 front camera whose frame head never fires and
  whose object map fires on the cells of its 8x8 view holding pure red."""
  detector = RedLightDetector(widths=(1,), strides=(1,), hidden=1, object_map=True)
  variables = nn.meta.unbox(detector.init(jax.random.key(0), np.zeros((1, 8, 8, 3), np.uint8)))
  params = jax.tree.map(np.zeros_like, variables["params"])
  params["conv0"]["kernel"] = np.zeros((3, 3, 3, 1), np.float32)
  params["conv0"]["kernel"][1, 1, :, 0] = [1.0, -1.0, -1.0]  # redness: ~+6 red, ~-0.6 grey
  params["object_head"]["kernel"] = np.array([[4.0]], np.float32)
  params["object_head"]["bias"] = np.array([-10.0], np.float32)
  params["logit"]["bias"] = np.array([-10.0], np.float32)  # P(hazard_ahead) ~0 always
  view_preprocess = preprocess.ViewPreprocessor(("front",), (8, 8), 0.875)
  return ViewDetector(detector, {"params": params}, view_preprocess, (64, 64), "hazard_ahead")


class StraightPlanner:
  """Waypoints straight ahead at 5 m/s from a front camera, whatever it shows."""
  max_frames = 8
  data = ml_collections.ConfigDict(dict(views=("front",), view_size=(8, 8), crop_scale=0.875,
                                        stride=1, data_dir=""))

  def start(self, instruction):
    return PlanState(cache=None)

  def add_notice(self, state, notice):
    return state

  def step(self, state, views, speed, commit, input_data):
    return STRAIGHT.astype(np.float32), 0.0, PlanState(None)


@pytest.mark.parametrize("where, path_threshold, brakes", [
    ("ahead", 0.5, True), ("ahead", 0.0, False), ("beside", 0.5, False), (None, 0.5, False)])
def test_the_hazard_rule_brakes_for_an_object_on_the_planners_path(where, path_threshold, brakes,
                                                                   monkeypatch):
  detector = _red_object_detector()
  monkeypatch.setattr(detector_lib, "detector_for_run", lambda work_dir, labels: detector)
  agent = LMGenDriveAgent(StraightPlanner())
  agent.setup(dict(camera_size=(64, 64), hazard_detector="some/run",
                   hazard_path_threshold=path_threshold))
  front = np.full((64, 64, 3), 128, np.uint8)
  if where == "ahead":  # a car standing in the lane 4-6 m ahead: the image's lower middle
    front[44:58, 24:40] = (255, 0, 0)
  elif where == "beside":  # one low at the left edge, next to the lane
    front[44:58, 0:10] = (255, 0, 0)
  data = {"rgb_front": (0, front), "instruction": (0, "follow the road"),
          "speed": (0, {"speed": 3.0})}
  for tick in range(24):
    control = agent.run_step(data, tick * 0.05)
  assert (control.brake == 1.0 and control.throttle == 0.0) == brakes
  fields = agent.trace_fields()
  assert fields["p_hazard"] < 0.01
  if path_threshold:
    assert (fields["p_hazard_path"] > 0.99) == (where == "ahead")


def test_the_path_reading_needs_an_object_map(monkeypatch):
  detector = _red_object_detector()
  plain = ViewDetector(RedLightDetector(widths=(1,), strides=(1,), hidden=1),
                       {"params": {}}, detector.preprocess, (64, 64), "hazard_ahead")
  monkeypatch.setattr(detector_lib, "detector_for_run", lambda work_dir, labels: plain)
  agent = LMGenDriveAgent(StraightPlanner())
  with pytest.raises(ConfigError, match="object map"):
    agent.setup(dict(camera_size=(64, 64), hazard_detector="some/run", hazard_path_threshold=0.5))
