"""Where the time goes: the seconds a route's car stood, and why, read from its evaluation trace.

LangAuto gives a route 0.8 s per metre (+ 5 s): an average of 1.25 m/s, so a car that stands
half its time through lights and waits times out short of the goal, and `eval/ds_loss.py` charges
that to "timeout standing" without saying what held it. A traced route (`configs/eval.py:
trace`, points every 0.5 s with the agent's `trace_fields`) says it: each stretch between two
points in which the car stood (speed below STANDING_MPS at its end) goes to

  - `held: <rule>`: one of the agent's detector rules (`LMGenDriveAgent.RULES`: red_light,
    stop_sign, hazard) braked in it (its `<rule>_brakes` count rose), the first in that order if
    several;
  - `after a collision`: no rule braked and the route has had a collision (on the embedded
    default a crash pins the car);
  - `planner, after a rule's hold`: no rule braked, but a rule braked when this stand began or in
    the RULE_STOP_S before (it stopped the car): the planner stands on after the rule let go
    (behaviour cloning's inertia: a standing expert rarely pulls away, so a stopped planner asks
    ~0 m/s);
  - `planner`: the planner stood of its own accord (a car ahead it sees, the start, inertia).

A push of the stuck rule (its `pushes` count rose) or moving ends a stand. Traces without the
rule fields (the expert's, lane keeping's) count every stand as `planner` or after a collision.

  seconds = standing_seconds_by_cause(results["routes"])  # {cause: mean s per route}
"""

from __future__ import annotations

import collections

from lmgendrive_jax.agent.lmgendrive_agent import RULES

STANDING_MPS = 0.2
RULE_STOP_S = 3.0  # a rule that braked this long before a stand began stopped the car
RULE_NAMES = tuple(spec.name for spec in RULES)  # their trace fields: `<name>_brakes`
AFTER_COLLISION = "after a collision"
PLANNER_AFTER_RULE = "planner, after a rule's hold"
PLANNER = "planner"


def route_standing_seconds(route: dict) -> dict[str, float]:
  """One route record with a `trace` -> {cause: seconds stood} (see the module docstring)."""
  trace = route.get("trace")
  if not trace:
    raise ValueError(f"route {route.get('route_id', route.get('route'))}: no trace to read "
                     f"(evaluate with configs/eval.py: trace=True)")
  first_collision = min((float(i["time"]) for i in route["infractions"]
                         if i["type"].startswith("collision")), default=float("inf"))
  seconds: collections.Counter = collections.Counter()
  stand_began_held = None  # None: moving; else whether a rule stopped the car for this stand
  last_rule_t = -float("inf")
  for before, point in zip(trace, trace[1:]):
    held = [name for name in RULE_NAMES
            if point.get(f"{name}_brakes", 0) > before.get(f"{name}_brakes", 0)]
    if held:
      last_rule_t = float(point["t"])
    if point.get("pushes", 0) > before.get("pushes", 0) or point["speed"] >= STANDING_MPS:
      stand_began_held = None
      continue
    if stand_began_held is None:
      stand_began_held = float(point["t"]) - last_rule_t <= RULE_STOP_S
    if held:
      cause = f"held: {held[0]}"
    elif point["t"] >= first_collision:
      cause = AFTER_COLLISION
    else:
      cause = PLANNER_AFTER_RULE if stand_began_held else PLANNER
    seconds[cause] += float(point["t"]) - float(before["t"])
  return dict(seconds)


def standing_seconds_by_cause(routes: list[dict]) -> dict[str, float]:
  """Traced route records -> {cause: seconds stood, mean over the routes}, largest first."""
  total: collections.Counter = collections.Counter()
  for route in routes:
    total.update(route_standing_seconds(route))
  n = max(len(routes), 1)
  return {cause: value / n for cause, value in total.most_common()}
