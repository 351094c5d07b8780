"""What the one-step placement benches share (`lane_response.py`, `lead_car_response.py`): a
trained run's agent, its camera rig and one jitted renderer, and the held-out routes' episodes
with their towns padded alike, so that the renderer compiles once for every town.

  scenes = PlacedScenes(args)                  # args: --work_dir, --preset, --route_set, --seed
  for episode, town, s in scenes.places(16, straight_places):  # up to 16 route arc lengths
    state = ...                                # the episode's initial state, placed at s
    views = scenes.views(town, state)          # uint8[V, H, W, 3] as the planner reads them
    waypoints, _, _ = scenes.agent.planner.step(scenes.agent.planner.start(text), views, speed)
"""

from __future__ import annotations

import argparse
import math
from typing import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from lmgendrive_jax import config as config_lib
from lmgendrive_jax.agent.lmgendrive_agent import LMGenDriveAgent
from lmgendrive_jax.sim import host
from lmgendrive_jax.sim import render as render_lib
from lmgendrive_jax.sim import routes as routes_lib
from lmgendrive_jax.sim import town as town_lib


class PlacedScenes:
  """See the module docstring."""

  def __init__(self, args: argparse.Namespace):
    self.sim = config_lib.sim_preset(args.preset)
    self.agent = LMGenDriveAgent()
    self.agent.setup({"work_dir": args.work_dir})
    self.rig = host.rig_from_config(self.sim, self.agent.sensors())
    self._render = jax.jit(render_lib.render_views, static_argnames="rig")
    self.specs = routes_lib.route_set(args.route_set, args.seed)
    # One padding for every town and actor count, so the renderer compiles once.
    self._shapes = town_lib.max_shapes(host.get_town(spec.town_seed, self.sim)
                                       for spec in self.specs)
    self._pads = (int(self.sim.traffic.num_vehicles) + host.EXTRA_ACTORS,
                  int(self.sim.traffic.num_pedestrians) + host.EXTRA_ACTORS)

  def episodes(self) -> Iterator[tuple[host.Episode, dict]]:
    """(episode, its town's padded arrays on device) per route of the set."""
    for spec in self.specs:
      episode = host.Episode(spec, self.sim, *self._pads)
      yield episode, jax.tree.map(jnp.asarray, episode.town.arrays(self._shapes))

  def places(self, count: int, pick: Callable[[routes_lib.Route, int], list[float]]
             ) -> Iterator[tuple[host.Episode, dict, float]]:
    """(episode, its town's arrays, arc length) at up to `count` places over the set's routes:
    `pick(route, n)` chooses up to n = count / routes (rounded up) arc lengths on each."""
    per_route = max(1, math.ceil(count / len(self.specs)))
    given = 0
    for episode, town in self.episodes():
      for s in pick(episode.route, per_route):
        if given >= count:
          return
        given += 1
        yield episode, town, s

  def cameras(self, town: dict, state: dict) -> np.ndarray:
    """uint8[V, H, W, 3]: the rig's cameras rendered in `state` (views in `rig.views` order)."""
    return np.asarray(self._render(town, jax.tree.map(jnp.asarray, state), rig=self.rig))

  def views(self, town: dict, state: dict) -> np.ndarray:
    """The cameras rendered in `state`, preprocessed as the agent feeds its planner."""
    images = self.cameras(town, state)
    return self.agent.preprocess({v: images[self.rig.views.index(v)]
                                  for v in self.agent.preprocess.camera_views})
