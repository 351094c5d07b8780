"""LangAuto scoring (CARLA leaderboard 1.0 rules, specs/langauto.md), one route at a time.

Where it sits: the host loop (host.py) feeds `RouteScorer.update` the ego's pose and speed and the
world step's events (world.py `info`) every tick; `result()` gives the per-route record written to
`results.json`; `aggregate(results)` averages a route set (DS, RC and IS each averaged
separately).

Rules implemented:
- RC: per cent of the route driven. Progress advances past each 1 m route point once the ego is
  beyond it along the route (CARLA's RouteCompletionTest, a window of points ahead).
- IS = product of factors: pedestrian collision 0.50, vehicle 0.60, static/layout 0.65, red light
  0.70, stop sign 0.80; driving outside route lanes multiplies by (1 - % of route driven outside
  lanes / 100), counted as the route metres advanced while off the road or in a lane of the
  opposite direction (junction areas never count, as CARLA's OutsideRouteLanesTest).
- A collision counts once per contact, as CARLA's CollisionTest filters its sensor's events: one is
  ignored when its actor is the last one counted (remembered 5 s after that collision) or when the
  ego is within 3 m of where an earlier collision counted (places forgotten once the ego is 5 m
  away). A car standing in contact with two actors at once counts each once, not every tick.
- A stop sign is run when the ego crosses its stop line without having been below 0.1 m/s in the
  waiting zone before it (CARLA's RunningStopTest speed threshold).
- Endings (no factor; RC stops): route deviation (> 30 m from the route), agent blocked
  (< 0.1 m/s for 180 s), timeout (0.8 s per route metre + 5 s); completed when RC > 99 % and
  within 10 m of the goal.
- DS = RC x IS per route.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from lmgendrive_jax.sim import following, routes as routes_lib

PENALTY = {
    "collision_pedestrian": 0.50,
    "collision_vehicle": 0.60,
    "collision_static": 0.65,
    "red_light": 0.70,
    "stop_sign": 0.80,
}
DEVIATION_M = 30.0
BLOCKED_SPEED = 0.1
BLOCKED_S = 180.0
TIMEOUT_S_PER_M = 0.8
TIMEOUT_EXTRA_S = 5.0
COMPLETE_RC = 99.0
COMPLETE_GOAL_M = 10.0
# CARLA's CollisionTest: MIN_AREA_OF_COLLISION, MAX_AREA_OF_COLLISION, MAX_ID_TIME.
SAME_COLLISION_M = 3.0
FORGET_COLLISION_M = 5.0
SAME_ACTOR_S = 5.0
STOP_SPEED = 0.1
PROGRESS_WINDOW = 8  # route points (1 m apart) looked at ahead of the current one

ENDINGS = ("completed", "route_deviation", "agent_blocked", "timeout", "running")


@dataclasses.dataclass
class Infraction:
  type: str
  time: float
  position: tuple[float, float]
  detail: dict = dataclasses.field(default_factory=dict)

  def to_dict(self) -> dict:
    return {"type": self.type, "time": round(self.time, 3),
            "position": [round(float(p), 3) for p in self.position], **self.detail}


def _heading_code(yaw: float) -> int:
  """0 east, 1 south, 2 west, 3 north (town.py drive_dir codes) of a CARLA-frame yaw."""
  return int(round(yaw / (math.pi / 2))) % 4


class RouteScorer:
  """Scores one route; call `update` once per 20 Hz tick, then `result()`."""

  def __init__(self, route: routes_lib.Route):
    self.route = route
    self.points = route.points.astype(np.float64)
    ahead = np.concatenate([self.points[1:], self.points[-1:] * 2 - self.points[-2:-1]])
    self.dirs = ahead - self.points  # route direction at each point
    self.index = 0
    self.infractions: list[Infraction] = []
    self.outside_m = 0.0
    self.ending = "running"
    self.t = 0.0
    self.blocked_since = None
    self.collision_places: list[np.ndarray] = []  # ego positions of the counted collisions
    self.last_collided = None  # (type, actor) of the last counted collision
    self.last_collision_t = 0.0
    self.stop_ok: dict[int, bool] = {}
    self.timeout_s = TIMEOUT_S_PER_M * route.length + TIMEOUT_EXTRA_S

  @property
  def done(self) -> bool:
    return self.ending != "running"

  @property
  def progress_m(self) -> float:
    return float(self.route.s[self.index])

  @property
  def route_completion(self) -> float:
    if self.ending == "completed":
      return 100.0
    return 100.0 * self.progress_m / max(self.route.length, 1e-6)

  def _advance(self, pos: np.ndarray) -> float:
    """Moves the progress index past route points behind the ego; returns metres advanced."""
    old = self.index
    last = min(self.index + PROGRESS_WINDOW, len(self.points) - 1)
    for i in range(self.index + 1, last + 1):
      if np.dot(self.dirs[i], pos - self.points[i]) > 0 and np.linalg.norm(
          pos - self.points[i]) < DEVIATION_M:
        self.index = i
    return float(self.route.s[self.index] - self.route.s[old])

  def _forget_collisions(self, pos: np.ndarray) -> None:
    """Once per tick: forget the places the ego has left and a last actor hit long ago."""
    self.collision_places = [place for place in self.collision_places
                             if np.linalg.norm(pos - place) <= FORGET_COLLISION_M]
    if self.last_collided is not None and self.t - self.last_collision_t > SAME_ACTOR_S:
      self.last_collided = None

  def _collision(self, kind: str, actor: int, pos: np.ndarray) -> None:
    if actor < 0 or self.last_collided == (kind, actor):
      return
    if any(np.linalg.norm(pos - place) <= SAME_COLLISION_M for place in self.collision_places):
      return
    self.collision_places.append(pos.copy())
    self.last_collided, self.last_collision_t = (kind, actor), self.t
    self.infractions.append(Infraction(kind, self.t, tuple(pos), {"actor": int(actor)}))

  def update(self, t: float, pos, yaw: float, speed: float, info: dict) -> None:
    """One tick: sim time after the step, ego pose/speed after it, world.step's `info`."""
    if self.done:
      return
    previous_t, self.t = self.t, float(t)
    pos = np.asarray(pos, np.float64)
    advanced = self._advance(pos)
    drive = int(info.get("drive_dir", 4))
    outside = drive == 255 or (drive < 4 and drive == (_heading_code(yaw) + 2) % 4)
    if outside:
      self.outside_m += advanced
    self._forget_collisions(pos)
    for kind in ("collision_pedestrian", "collision_vehicle", "collision_static"):
      self._collision(kind, int(info.get(kind, -1)), pos)
    if int(info.get("red_light", -1)) >= 0:
      self.infractions.append(Infraction("red_light", self.t, tuple(pos),
                                         {"stop_line": int(info["red_light"])}))
    zone = int(info.get("stop_zone", -1))
    if zone >= 0 and speed < STOP_SPEED:
      self.stop_ok[zone] = True
    crossed = int(info.get("stop_sign_crossed", -1))
    if crossed >= 0:
      if not self.stop_ok.get(crossed, False):
        self.infractions.append(Infraction("stop_sign", self.t, tuple(pos),
                                           {"stop_line": crossed}))
      self.stop_ok[crossed] = False

    # Endings, completion first.
    goal = self.points[-1]
    if (100.0 * self.progress_m / max(self.route.length, 1e-6) > COMPLETE_RC
        and np.linalg.norm(pos - goal) < COMPLETE_GOAL_M):
      self.ending = "completed"
      return
    lo = max(0, self.index - 50)
    hi = min(len(self.points), self.index + 200)
    if np.min(np.linalg.norm(self.points[lo:hi] - pos, axis=-1)) > DEVIATION_M:
      self.ending = "route_deviation"
      return
    if speed < BLOCKED_SPEED:
      if self.blocked_since is None:
        self.blocked_since = previous_t  # stopped over the whole tick that just ended
      if self.t - self.blocked_since >= BLOCKED_S:
        self.ending = "agent_blocked"
        return
    else:
      self.blocked_since = None
    if self.t >= self.timeout_s:
      self.ending = "timeout"

  def infraction_score(self) -> float:
    score = 1.0
    for infraction in self.infractions:
      score *= PENALTY[infraction.type]
    outside_pct = 100.0 * self.outside_m / max(self.route.length, 1e-6)
    return score * (1.0 - min(outside_pct, 100.0) / 100.0)

  def result(self) -> dict:
    """The per-route record of results.json."""
    rc = self.route_completion
    score = self.infraction_score()
    infractions = [i.to_dict() for i in self.infractions]
    if self.outside_m > 0:
      infractions.append({"type": "outside_route_lanes", "time": round(self.t, 3),
                          "percentage": round(100.0 * self.outside_m / self.route.length, 3)})
    spec = self.route.spec
    return {"route": spec.name, "town_id": spec.town_id, "weather_id": spec.weather_id,
            "track": spec.track, "length_m": round(self.route.length, 2), "ds": rc * score,
            "rc": rc, "is": score, "infractions": infractions, "ending": self.ending,
            "sim_time": round(self.t, 3)}


def aggregate(results: list[dict]) -> dict:
  """{'routes': results, 'mean_ds', 'mean_rc', 'mean_is'}: each averaged over routes; plus the
  junction totals and `instruction_following` (following.py; not part of the leaderboard score)."""
  n = max(len(results), 1)
  return {"routes": results,
          "mean_ds": sum(r["ds"] for r in results) / n,
          "mean_rc": sum(r["rc"] for r in results) / n,
          "mean_is": sum(r["is"] for r in results) / n,
          "num_routes": len(results), **following.summarize(results)}
