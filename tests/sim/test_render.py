"""Rendering geometry against the pinhole model, camera placement of the LMDrive rig, lamps."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmgendrive_jax.config import sim_preset
from lmgendrive_jax.sim import host, render, scenario, town as town_lib, world

CFG = sim_preset("tiny")
TOWN = host.get_town(2, CFG)
RIG = render.CameraRig(views=("front", "left", "right", "rear"), width=64, height=64,
                       max_boxes=8)
EGO_POS, EGO_YAW = np.array([-20.0, -20.0]), 0.3  # off the road network, on open terrain


def arrays_with_box(centre, half, colour=(1.0, 0.0, 1.0), material=town_lib.MAT_PLAIN,
                    light=-1, yaw=0.0):
  """The town's arrays with every static box removed except one at `centre` (x, y, z)."""
  a = TOWN.arrays()
  a["box_centre"][:] = 1e5
  a["box_centre"][0], a["box_half"][0] = centre, half
  a["box_yaw"][0], a["box_material"][0], a["box_light"][0] = yaw, material, light
  a["box_colour"][0] = a["box_colour2"][0] = colour
  return jax.tree.map(jnp.asarray, a)


RENDER = jax.jit(lambda arrays, state: render.render_views(arrays, state, RIG))


def ego_frame_point(forward, right, z=0.0):
  c, s = math.cos(EGO_YAW), math.sin(EGO_YAW)
  return np.array([EGO_POS[0] + forward * c - right * s, EGO_POS[1] + forward * s + right * c, z])


def box_mask(arrays, state, empty):
  images = np.asarray(RENDER(arrays, state))
  return np.any(images != empty, axis=-1)  # [V, H, W]


@pytest.fixture(scope="module")
def scene():
  state = jax.tree.map(jnp.asarray, scenario.empty_state(EGO_POS, EGO_YAW, weather_id=0))
  empty = np.asarray(RENDER(arrays_with_box((1e5, 1e5, 1.0), (0.5, 0.5, 0.5)), state))
  return state, empty


def test_box_projects_where_the_pinhole_model_says(scene):
  state, empty = scene
  centre = ego_frame_point(25.0, 2.5)
  half = (0.8, 0.8, 3.0)
  mask = box_mask(arrays_with_box((centre[0], centre[1], 3.0), half), state, empty)
  assert mask[0].any() and not mask[1:].any()  # front only
  rows, cols = np.nonzero(mask[0])
  u, v, depth = render.project_point(RIG, "front", EGO_POS, EGO_YAW, (centre[0], centre[1], 3.0))
  assert depth == pytest.approx(25.0 - 1.3, abs=1e-6)
  assert cols.mean() + 0.5 == pytest.approx(u, abs=1.0)
  _, v_top, _ = render.project_point(RIG, "front", EGO_POS, EGO_YAW, (*centre[:2], 6.0))
  _, v_bottom, _ = render.project_point(RIG, "front", EGO_POS, EGO_YAW, (*centre[:2], 0.0))
  assert rows.min() == pytest.approx(v_top, abs=1.5)
  assert rows.max() + 1 == pytest.approx(v_bottom, abs=1.5)
  # Pinhole by hand: focal = W / (2 tan(50 deg)); u = W/2 + f * right / depth.
  focal = 64 / (2 * math.tan(math.radians(50)))
  assert u == pytest.approx(32 + focal * 2.5 / (25.0 - 1.3), abs=1e-4)


@pytest.mark.parametrize("view,angle", [("left", -60.0), ("right", 60.0), ("rear", 180.0)])
def test_object_at_camera_yaw_is_centred_in_that_view(scene, view, angle):
  state, empty = scene
  # 25 m from the camera (x = 1.3 forward, or -1.3 for the rear one) along the view's axis.
  cam_x = -1.3 if view == "rear" else 1.3
  a = math.radians(angle)
  centre = ego_frame_point(cam_x + 25 * math.cos(a), 25 * math.sin(a))
  mask = box_mask(arrays_with_box((centre[0], centre[1], 2.0), (0.7, 0.7, 2.0)), state, empty)
  index = RIG.views.index(view)
  assert mask[index].any()
  assert [i for i in range(4) if mask[i].any()] == [index]
  cols = np.nonzero(mask[index])[1]
  assert cols.mean() + 0.5 == pytest.approx(32.0, abs=0.75)


@pytest.mark.parametrize("facing", ["ego", "away", "across"])
def test_traffic_light_lamp_glows_in_its_state_towards_its_traffic(scene, facing):
  """The head's front face (+length, turned towards the traffic it controls) shows the lamp of
  the light's state; from behind or the side the head is a dark housing (as in CARLA)."""
  state, _ = scene
  light = 0
  centre = ego_frame_point(12.0, 0.0)
  yaw = EGO_YAW + {"ego": math.pi, "away": 0.0, "across": math.pi / 2}[facing]
  arrays = arrays_with_box((centre[0], centre[1], 2.3), (0.3, 0.6, 1.5), colour=(0.1, 0.1, 0.1),
                           material=town_lib.MAT_LIGHT, light=light, yaw=yaw)
  seen = set()
  for t in np.arange(0.0, 30.0, 0.5):
    lamp = int(world.light_states(arrays, jnp.float32(t))[light])
    image = np.asarray(RENDER(arrays, dict(state, t=jnp.float32(t))))[0].astype(int)
    # The box spans rows around the horizon (its centre is at camera height); thirds by z.
    column = image[:, 32]
    reddest = int(np.argmax(column[:, 0] - column[:, 1]))
    greenest = int(np.argmax(column[:, 1] - column[:, 0] - column[:, 2]))
    seen.add(lamp)
    if facing != "ego":
      lamp_like = ((column[:, 0] > 200) & (column[:, 1] < 80)) | (
          (column[:, 1] > 200) & (column[:, 0] < 100))
      assert not lamp_like.any(), (t, lamp)  # no lamp lit, whatever its state
    elif lamp == world.RED:
      assert column[reddest, 0] > 200 and reddest < 32
    elif lamp == world.GREEN:
      assert column[greenest, 1] > 200 and greenest > 32
  assert {world.RED, world.GREEN} <= seen


def test_render_is_deterministic_and_sized_at_any_resolution(scene):
  state, _ = scene
  arrays = jax.tree.map(jnp.asarray, TOWN.arrays())
  big = render.CameraRig(views=("front", "focus"), width=200, height=150, max_boxes=8)
  images = jax.jit(lambda s: render.render_views(arrays, s, big))(state)
  assert images.shape == (2, 150, 200, 3) and images.dtype == jnp.uint8
  again = jax.jit(lambda s: render.render_views(arrays, s, big))(state)
  np.testing.assert_array_equal(np.asarray(images), np.asarray(again))
  crop = render.focus_crop(np.zeros((600, 800, 3), np.uint8))
  assert crop.shape == (128, 128, 3)


def test_agent_cameras_set_the_rig_with_each_views_own_fov():
  """The agent's sensors (sim/host.py: rig_from_config) pick views and size; the telephoto focus
  camera at its own FOV is rendered, any other FOV is refused naming the camera."""
  from lmgendrive_jax.agent.lmgendrive_agent import camera_sensor
  cfg = sim_preset("tiny")
  sensors = [camera_sensor(f"rgb_{v}", 40, 30) for v in ("front", "left", "focus")]
  rig = host.rig_from_config(cfg, sensors)
  assert rig.views == ("front", "left", "focus") and (rig.width, rig.height) == (40, 30)
  assert sensors[2]["fov"] == pytest.approx(render.view_fov_deg("focus")) and sensors[2]["fov"] < 30
  sensors[1] = {**sensors[1], "fov": 90.0}
  with pytest.raises(Exception, match="rgb_left"):
    host.rig_from_config(cfg, sensors)
