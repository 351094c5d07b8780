"""Instruction following at junctions: did the ego leave each junction the way its route said?

Where it sits: `host.Episode` feeds `JunctionFollowing.update` the ego position and the scorer's
route progress every tick; its `result()` joins the route's scoring record (`junctions`,
`junctions_entered`, `junctions_followed`, `junctions_missed`) and `summarize` gives a route
set's `instruction_following` (followed / (followed + missed) over all routes), which
bench/drive_quality.py and the report show.

The instruction stream is derived from the route (instruction_stream.py), so the turn the route
takes at a junction is the turn the instruction asked for (a misleading instruction never changes
the route). A junction is entered once the ego's route progress reaches its entry. It is followed
once the ego passes within `tolerance_m` of the exit arm's cross-section `exit_margin_m` beyond
the junction's exit: the route's point there or the nearest point of any other lane of that road
(either direction: a straight crossing that ends in the next lane over left by the right arm;
the scorer, not this check, judges the lane). That cross-section is metres away from every other
arm. It is missed once the ego, without having followed, gets farther from the entry than the
farthest of those exit points (+ `tolerance_m`): it left by another arm. A junction the route
ended in (blocked, timed out while waiting to turn) is neither, and the share counts only decided
junctions. The leaderboard score does not see this directly (a wrong turn shows up later as a
route deviation), which is why it is measured on its own: it separates "follows the language"
from "drives safely".
"""

from __future__ import annotations

import numpy as np

from lmgendrive_jax.data import geometry
from lmgendrive_jax.sim import routes as routes_lib, town as town_lib

JUNCTION_OPTIONS = {town_lib.LEFT: "left", town_lib.RIGHT: "right", town_lib.STRAIGHT: "straight"}


class JunctionFollowing:
  """Per-route junction checks; `update` once per tick, then `result()`."""

  def __init__(self, route: routes_lib.Route, town: town_lib.Town, exit_margin_m: float = 8.0,
               tolerance_m: float = 2.5):
    self.tolerance_m = tolerance_m
    self.checks = []
    for run in routes_lib.route_maneuvers(route, town):
      if run["junction"] < 0 or run["option"] not in JUNCTION_OPTIONS:
        continue
      exit_s = min(run["s_end"] + exit_margin_m, route.length)
      entry_xy = route.point_at(run["s_start"]).astype(np.float64)
      exit_xy = exit_arm_points(route, town, exit_s)
      self.checks.append(dict(option=JUNCTION_OPTIONS[run["option"]], s_entry=run["s_start"],
                              entry_xy=entry_xy, exit_xy=exit_xy,
                              reach_m=float(np.linalg.norm(exit_xy - entry_xy, axis=-1).max())
                              + tolerance_m,
                              entered=False, followed=False, missed=False))

  def update(self, pos, progress_m: float) -> None:
    pos = np.asarray(pos, np.float64)
    for check in self.checks:
      if check["followed"] or check["missed"]:
        continue
      if progress_m >= check["s_entry"]:
        check["entered"] = True
      if np.linalg.norm(pos - check["exit_xy"], axis=-1).min() < self.tolerance_m:
        check["followed"] = check["entered"] = True
      elif check["entered"] and np.linalg.norm(pos - check["entry_xy"]) > check["reach_m"]:
        check["missed"] = True

  def result(self) -> dict:
    """{'junctions': [{option, entered, followed, missed}], 'junctions_entered',
    'junctions_followed', 'junctions_missed'}."""
    junctions = [{k: c[k] for k in ("option", "entered", "followed", "missed")}
                 for c in self.checks]
    return {"junctions": junctions,
            "junctions_entered": sum(c["entered"] for c in junctions),
            "junctions_followed": sum(c["followed"] for c in junctions),
            "junctions_missed": sum(c["missed"] for c in junctions)}


def exit_arm_points(route: routes_lib.Route, town: town_lib.Town, exit_s: float) -> np.ndarray:
  """f64[K, 2]: the route's point at `exit_s`, then the nearest point of every other lane of the
  road it is on there (`town.lane_edge`; none when that point is inside a junction)."""
  route_xy = route.point_at(exit_s).astype(np.float64)
  lane = int(route.lane[min(int(np.searchsorted(route.s, exit_s)), len(route.lane) - 1)])
  edge = int(town.lane_edge[lane])
  others = [] if edge < 0 else [l for l in np.flatnonzero(town.lane_edge == edge) if l != lane]
  return np.stack([route_xy] + [nearest_on_polyline(town.lane_points[l], route_xy)
                                for l in others])


def nearest_on_polyline(points: np.ndarray, xy: np.ndarray) -> np.ndarray:
  """f64[2]: the point of the polyline `points` f[P, 2] nearest to `xy` f[2]."""
  return geometry.project_onto_polyline(points, np.asarray(xy)[None])[0][0]


def summarize(results: list[dict]) -> dict:
  """A route set's junction totals and `instruction_following`: followed / (followed + missed)
  in per cent (None: no junction was decided)."""
  entered, followed, missed = (sum(r.get(f"junctions_{k}", 0) for r in results)
                               for k in ("entered", "followed", "missed"))
  decided = followed + missed
  return {"junctions_entered": entered, "junctions_followed": followed,
          "junctions_missed": missed,
          "instruction_following": 100.0 * followed / decided if decided else None}
