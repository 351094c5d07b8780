"""Where the car first left its route, and how: the place the drive went wrong.

A route ends in route deviation once the car is 30 m off it (`specs/langauto.md`), long after it
left it. `first_exit` finds the first trajectory point more than OFF_ROUTE_M from the route
(farther than a lane's half-width plus the car's), names what the route does there (`place`) and
measures how gradually the car got there: `drift_m`, the route metres between the last point
within ON_ROUTE_M of the route and the exit. A planner that holds its heading while its lane goes
on drifts over tens of metres on a plain lane; one that takes the wrong branch leaves within a
few metres inside a junction.

  exit = first_exit(route, town, trajectory_xy)  # None: never more than OFF_ROUTE_M off
  exit -> {"t": s after the start, "position": [x, y] of the car there, "route_s": m along the
           route, "place": PLACES, "drift_m": m, "max_off_m": the farthest the car got from
           the route near its progress}

Each trajectory point is matched to the route near where the previous one was (a route may pass
a place twice: a drift off one pass must not read as driving on the other).

Closed-loop evaluation stores it per route (`results.json`: "first_exit"),
`bench/drive_quality.py` counts where each agent left its routes, and the report marks it on the
route's map.
"""

from __future__ import annotations

import numpy as np

from lmgendrive_jax.sim import routes as routes_lib
from lmgendrive_jax.sim import town as town_lib

OFF_ROUTE_M = 2.5
ON_ROUTE_M = 0.5
APPROACH_M = 10.0  # "approaching a junction": the route enters one within this many metres
WINDOW_BACK_M = 5.0  # a point may match the route this far behind the previous match
MAX_SPEED_MPS = 20.0  # the simulator's top speed (sim/world.py: WorldParams.max_speed)
JUNCTION_PLACES = {town_lib.LEFT: "junction: left", town_lib.RIGHT: "junction: right",
                   town_lib.STRAIGHT: "junction: straight", town_lib.LANEFOLLOW: "junction: bend"}
PLACES = ("lane", "approaching a junction", "lane change") + tuple(JUNCTION_PLACES.values())


def place_on_route(route: routes_lib.Route, town: town_lib.Town, index: int) -> str:
  """What the route does at its point `index` (one of PLACES)."""
  option = int(route.option[index])
  if option in (town_lib.CHANGELANELEFT, town_lib.CHANGELANERIGHT):
    return "lane change"
  if int(town.lane_junction[int(route.lane[index])]) >= 0:
    return JUNCTION_PLACES.get(option, "junction: bend")
  ahead = (route.s > route.s[index]) & (route.s <= route.s[index] + APPROACH_M)
  if np.any(town.lane_junction[route.lane[ahead]] >= 0):
    return "approaching a junction"
  return "lane"


def first_exit(route: routes_lib.Route, town: town_lib.Town, trajectory_xy,
               every_s: float = 0.5) -> dict | None:
  """trajectory_xy f[T, 2]: the car's positions every `every_s` seconds from the start (the
  evaluation's trajectory) -> the first exit (see the module docstring) or None."""
  trajectory = np.asarray(trajectory_xy, np.float64).reshape(-1, 2)
  if not len(trajectory):
    return None
  points, s = np.asarray(route.points, np.float64), np.asarray(route.s, np.float64)
  # Each point is matched to the route near the car's progress so far, not anywhere on it: a
  # route that passes a place twice would otherwise match a drift off its first pass to its
  # second. The window reaches as far ahead as the car can drive between two points.
  ahead_m = MAX_SPEED_MPS * every_s + WINDOW_BACK_M
  off, nearest = np.empty(len(trajectory)), np.empty(len(trajectory), np.int64)
  progress = float(s[0])
  for i, position in enumerate(trajectory):
    window = np.flatnonzero((s >= progress - WINDOW_BACK_M) & (s <= progress + ahead_m))
    distance = np.linalg.norm(points[window] - position, axis=1)
    nearest[i] = window[int(distance.argmin())]
    off[i] = float(distance.min())
    progress = float(s[nearest[i]])
  beyond = np.nonzero(off > OFF_ROUTE_M)[0]
  if not len(beyond):
    return None
  exit_point = int(beyond[0])
  on_route = np.nonzero(off[:exit_point] <= ON_ROUTE_M)[0]
  drift_from = int(nearest[on_route[-1]]) if len(on_route) else 0
  index = int(nearest[exit_point])
  return {"t": round(exit_point * every_s, 2),
          "position": [round(float(v), 2) for v in trajectory[exit_point]],
          "route_s": round(float(route.s[index]), 1),
          "place": place_on_route(route, town, index),
          "drift_m": round(max(float(route.s[index] - route.s[drift_from]), 0.0), 1),
          "max_off_m": round(float(off.max()), 1)}
