"""Where the driving score goes: the DS points a route set lost, by cause.

A route's DS is RC x IS (LangAuto, `specs/langauto.md`), so what it lost splits exactly as

  100 - DS = (100 - RC)            the part of the route not driven, charged to how it ended
           + RC x (1 - IS)         the penalties on the part driven, shared among the infractions

The route not driven is charged to its ending: `route deviation`, `blocked` or `timeout`, and a
timeout or block after a collision to that collision (on the embedded default a crash pins the
car, so those routes end standing: docs/experiments.md). A completed route that stopped short of
100 RC is charged to `completed short`. The penalties are shared in proportion to each factor's
log (IS is their product), the outside-route-lanes factor (1 - percent outside / 100) among them.
Averaged over the routes, the causes sum to 100 - mean DS: the table `bench/drive_quality.py`
prints beside the counts of endings and infractions, which do not say what each one cost.

  lost = ds_lost_by_cause(results["routes"])   # {cause: DS points, mean over routes}
"""

from __future__ import annotations

import collections
import math

from lmgendrive_jax.sim.scoring import PENALTY

OUTSIDE_LANES = "outside_route_lanes"


def _unfinished_cause(route: dict) -> str:
  """What the route's undriven part (100 - RC) is charged to."""
  ending = route["ending"]
  if ending == "route_deviation":
    return "not driven: route deviation"
  if ending == "completed":
    return "not driven: completed short"
  collisions = [i["type"] for i in route["infractions"] if i["type"].startswith("collision")]
  reason = f"after {collisions[0]}" if collisions else "standing"
  return f"not driven: {ending} {reason}"


def _penalty_factors(route: dict) -> list[tuple[str, float]]:
  """(infraction type, its multiplicative factor on IS) for each infraction of the route."""
  factors = []
  for infraction in route["infractions"]:
    kind = infraction["type"]
    if kind == OUTSIDE_LANES:
      factors.append((kind, max(1.0 - infraction["percentage"] / 100.0, 0.0)))
    elif kind in PENALTY:
      factors.append((kind, PENALTY[kind]))
    else:
      raise ValueError(f"route {route.get('route_id', route.get('route'))}: infraction type "
                       f"{kind!r} has no penalty (known: {sorted(PENALTY)} and {OUTSIDE_LANES})")
  return factors


def route_ds_lost(route: dict) -> dict[str, float]:
  """One route record (results.json) -> {cause: DS points lost}, summing to 100 - its DS."""
  rc, score = float(route["rc"]), float(route["is"])
  lost = collections.Counter()
  if rc < 100.0:
    lost[_unfinished_cause(route)] += 100.0 - rc
  factors = _penalty_factors(route)
  penalties = rc * (1.0 - score)
  if penalties <= 1e-9:
    return dict(lost)
  if not factors:
    raise ValueError(f"route {route.get('route_id', route.get('route'))}: IS {score} below 1 "
                     f"without an infraction to charge it to")
  zero = [kind for kind, factor in factors if factor == 0.0]
  if zero:  # IS 0: the first factor that zeroed it takes everything (log 0 has no share)
    lost[f"penalty: {zero[0]}"] += penalties
    return dict(lost)
  log_total = sum(math.log(factor) for _, factor in factors)
  for kind, factor in factors:
    lost[f"penalty: {kind}"] += penalties * math.log(factor) / log_total
  return dict(lost)


def ds_lost_by_cause(routes: list[dict]) -> dict[str, float]:
  """Route records -> {cause: DS points lost, mean over the routes}, largest first; the values
  sum to 100 - the mean DS."""
  if not routes:
    return {}
  total = collections.Counter()
  for route in routes:
    total.update(route_ds_lost(route))
  return {cause: points / len(routes) for cause, points in total.most_common()}
