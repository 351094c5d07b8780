"""bench/lead_car_response.py places the standing car where it says: in the ego's lane, the gap
ahead of its front bumper, facing the same way, and no other actor."""

import jax.numpy as jnp
import numpy as np
import pytest

from bench.lead_car_response import EGO_HALF_LENGTH_M, lane_position, placed_state
from lmgendrive_jax.sim import world


@pytest.mark.parametrize("gap", [3.0, 15.0])
def test_the_car_stands_the_gap_ahead_in_the_egos_lane(gap, straight_place):
  _, episode, s = straight_place
  state = placed_state(episode.initial_state, episode.route, s, gap)
  assert state["npc_active"].sum() == 1 and state["npc_active"][0]
  assert not state["ped_active"].any() and state["ego_speed"] == pytest.approx(5.0)
  ahead = s + EGO_HALF_LENGTH_M + gap
  assert lane_position(episode.route, ahead)[0] == episode.route.lane[
      np.searchsorted(episode.route.s, ahead)]
  town = {k: jnp.asarray(v) for k, v in episode.town.arrays().items()}
  pos, yaw = world.npc_poses(town, {k: jnp.asarray(v) for k, v in state.items()})
  centre_gap = float(np.linalg.norm(np.asarray(pos[0]) - state["ego_pos"]))
  assert centre_gap == pytest.approx(EGO_HALF_LENGTH_M + gap + float(state["npc_half"][0, 0]),
                                     abs=0.3)
  turn = (float(yaw[0]) - float(state["ego_yaw"]) + np.pi) % (2 * np.pi) - np.pi
  assert turn == pytest.approx(0.0, abs=0.05)
  assert not placed_state(episode.initial_state, episode.route, s, None)["npc_active"].any()
  with pytest.raises(ValueError, match="beyond route"):
    lane_position(episode.route, episode.route.length + 5.0)


def test_on_car_averages_a_head_over_the_cells_the_car_covers():
  from bench.lead_car_response import _on_car
  from lmgendrive_jax.data import view_layout

  window, car = view_layout.FULL_IMAGE, np.array([[0.0, 8.0, 0.0, 4.6, 2.0, 0.0, 0.0]], np.float32)
  share = view_layout.view_layout(np.zeros((200, 200), np.uint8), "front", window, 1.0, 8, 8,
                                  objects=car)[..., view_layout.OBJECT]
  assert _on_car(np.full((8, 8), 0.3), window, 1.0, car) == pytest.approx(0.3)
  assert _on_car(share, window, 1.0, car) == pytest.approx((share ** 2).sum() / share.sum())
  behind = car.copy()
  behind[0, 1] = -8.0  # behind the front camera: no cell
  assert np.isnan(_on_car(np.full((8, 8), 0.3), window, 1.0, behind))
