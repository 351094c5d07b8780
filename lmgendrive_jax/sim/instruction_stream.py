"""LangAuto instruction and notice streams of a route (host side, seeded per route).

Where it sits: `plan_instructions(route, town, rng)` cuts the route into consecutive instruction
spans (route arc lengths) from its maneuvers: turns at the next intersection / traffic light /
T-junction (optionally "in x metres"), two consecutive turns, lane changes, "follow the road for
x m" / "keep course until ...". `InstructionStream` issues them one at a time while the host loop
reports the ego's route progress: an instruction starts when the previous one completes (the ego
passed its span), and at each change a misleading instruction (impossible or unsafe: a lane
change into oncoming traffic or the kerb, a turn where there is no road) is shown first with
probability `misleading_prob` for `misleading_seconds`. `NoticeStream` gives notices: a scenario
trigger within `scenario_notice_m` (held `notice_seconds`), and a change of the route's next
traffic light within `light_notice_m`. Both record clips with frame ranges (10 Hz frames = tick
// 2) for the collector's instruction lists.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from lmgendrive_jax.sim import instructions as vocab
from lmgendrive_jax.sim import routes as routes_lib
from lmgendrive_jax.sim import town as town_lib

ID = vocab.ID_BY_NAME
_MOVE = {town_lib.LEFT: "left", town_lib.RIGHT: "right", town_lib.STRAIGHT: "straight"}
_MOVE_INDEX = {"left": 0, "right": 1, "straight": 2}


@dataclasses.dataclass
class InstructionSpan:
  instruction_id: int
  args: dict
  s_start: float
  s_end: float


def _round5(x: float) -> int:
  return int(max(5, 5 * round(x / 5.0)))


def plan_instructions(route: routes_lib.Route, town: town_lib.Town,
                      rng: np.random.Generator, approach_m: float = 25.0) -> list[InstructionSpan]:
  """Consecutive spans covering [0, route length]."""
  runs = routes_lib.route_maneuvers(route, town)
  # Maneuvers worth an instruction: junction turns/straights (not bends) and lane changes.
  key = [r for r in runs if (r["junction"] >= 0 and r["option"] in _MOVE) or r["option"] in (
      town_lib.CHANGELANELEFT, town_lib.CHANGELANERIGHT)]
  spans: list[InstructionSpan] = []
  cursor = 0.0
  i = 0
  while i < len(key):
    run = key[i]
    start = max(cursor, run["s_start"] - approach_m)
    end = min(run["s_end"] + 3.0, route.length)
    if start - cursor >= 10.0:
      distance = _round5(start - cursor)
      if run["junction"] >= 0 and rng.random() < 0.4:
        junction = run["junction"]
        name = ("KeepCourse-until-traffic-light" if town.junction_has_light[junction] else
                "KeepCourse-until-T-junction" if town.junction_kind[junction] == 3 else
                "KeepCourse-until-intersection")
        # Keep course covers the whole approach; the turn instruction follows at the junction.
        spans.append(InstructionSpan(ID[name], {}, cursor, start))
      else:
        spans.append(InstructionSpan(ID["Follow-road-for-x-m"], {"distance": distance}, cursor,
                                     start))
    elif spans:
      start = cursor
    else:
      start = 0.0
    if run["option"] in (town_lib.CHANGELANELEFT, town_lib.CHANGELANERIGHT):
      side = "left" if run["option"] == town_lib.CHANGELANELEFT else "right"
      ahead = run["s_start"] - start
      if ahead > 12.0 and rng.random() < 0.5:
        spans.append(InstructionSpan(ID[f"ChangeLane-{side}-in-x-m"], {"distance": _round5(ahead)},
                                     start, end))
      else:
        spans.append(InstructionSpan(ID[f"ChangeLane-{side}"], {}, start, end))
      cursor = end
      i += 1
      continue
    move = _MOVE[run["option"]]
    junction = run["junction"]
    nxt = key[i + 1] if i + 1 < len(key) else None
    if (nxt is not None and nxt["junction"] >= 0 and nxt["s_start"] - run["s_end"] < 25.0
        and rng.random() < 0.5):
      second = _MOVE[nxt["option"]]
      spans.append(InstructionSpan(
          25 + 3 * _MOVE_INDEX[move] + _MOVE_INDEX[second], {}, start,
          min(nxt["s_end"] + 3.0, route.length)))
      cursor = spans[-1].s_end
      i += 2
      continue
    place = ("TrafficLight" if town.junction_has_light[junction] else
             "TJunction" if town.junction_kind[junction] == 3 else "Intersection")
    ahead = run["s_start"] - start
    if ahead > 15.0 and rng.random() < 0.5:
      spans.append(InstructionSpan(ID[f"{place}-{move}-in-x-m"], {"distance": _round5(ahead)},
                                   start, end))
    else:
      spans.append(InstructionSpan(ID[f"{place}-{move}"], {}, start, end))
    cursor = end
    i += 1
  rest = route.length - cursor
  if rest >= 10.0 or not spans:
    spans.append(InstructionSpan(ID["Follow-road-for-x-m"], {"distance": _round5(rest)}, cursor,
                                 route.length))
  else:
    spans[-1].s_end = route.length
  return spans


def misleading_candidates(route: routes_lib.Route, town: town_lib.Town,
                          progress: float) -> list[int]:
  """Instruction ids impossible or unsafe at this point of the route."""
  i = int(np.clip(np.searchsorted(route.s, progress), 0, len(route.s) - 1))
  lane = int(route.lane[i])
  out = []
  if town.lane_junction[lane] < 0:
    if town.lane_left[lane] < 0:
      out.append(ID["ChangeLane-left"])  # left of the innermost lane is oncoming traffic
    if town.lane_right[lane] < 0:
      out.append(ID["ChangeLane-right"])  # right of the outermost lane is the kerb
  near_junction = np.any((np.abs(route.s - progress) < 30.0) & (
      town.lane_junction[route.lane] >= 0))
  if not near_junction:
    out += [ID["Turn-left"], ID["Turn-right"]]  # no road to turn into here
  return out or [ID["Turn-left"], ID["Turn-right"]]


class InstructionStream:
  """Issues a route's instructions in turn; records clips for the collector.

  `update(progress_m, t, frame)` -> current instruction text. `clips`: list of dicts with
  start_frame, end_frame, instruction (rule name), instruction_id, instruction_args,
  misleading.
  """

  def __init__(self, route: routes_lib.Route, town: town_lib.Town, cfg, seed: int):
    self.route, self.town = route, town
    self.rng = np.random.default_rng([seed, 31])
    self.spans = plan_instructions(route, town, self.rng)
    self.misleading_prob = float(cfg.misleading_prob)
    self.misleading_seconds = float(cfg.misleading_seconds)
    self.index = -1
    self.text = ""
    self.clips: list[dict] = []
    self._open: dict | None = None
    self._misleading: dict | None = None
    self._misleading_until = -1.0

  def _issue(self, t: float, frame: int, progress: float) -> None:
    span = self.spans[self.index]
    self.text = vocab.render(span.instruction_id, span.args, self.rng)
    self._open = dict(start_frame=frame, end_frame=frame,
                      instruction=vocab.INSTRUCTIONS[span.instruction_id].name,
                      instruction_id=span.instruction_id, instruction_args=dict(span.args),
                      misleading=False, text=self.text)
    if self.rng.random() < self.misleading_prob:
      wrong = int(self.rng.choice(misleading_candidates(self.route, self.town, progress)))
      self._misleading = dict(start_frame=frame, end_frame=frame,
                              instruction=vocab.INSTRUCTIONS[wrong].name, instruction_id=wrong,
                              instruction_args={}, misleading=True,
                              text=vocab.render(wrong, {}, self.rng))
      self._misleading_until = t + self.misleading_seconds

  @property
  def current(self) -> dict | None:
    """The clip now shown (misleading first), or None before the first update."""
    return self._misleading or self._open

  @property
  def is_misleading(self) -> bool:
    return self._misleading is not None

  def update(self, progress: float, t: float, frame: int) -> str:
    if self.index < 0:
      self.index = 0
      self._issue(t, frame, progress)
    if self._misleading is not None:
      self._misleading["end_frame"] = frame
      if t >= self._misleading_until:
        self.clips.append(self._misleading)
        self._misleading = None
        self._open["start_frame"] = frame  # the real instruction is shown from now on
    if self._open is not None:
      self._open["end_frame"] = frame
    while self._open is not None and progress >= self.spans[self.index].s_end - 1e-6 and (
        self.index < len(self.spans) - 1):
      if self._misleading is not None:
        self.clips.append(self._misleading)
        self._misleading = None
      self.clips.append(self._open)
      self.index += 1
      self._issue(t, frame, progress)
    return self.current["text"]

  def finish(self) -> list[dict]:
    """Closes the open clips (route ended); returns all clips in order of start."""
    for clip in (self._misleading, self._open):
      if clip is not None:
        self.clips.append(clip)
    self._misleading = self._open = None
    return sorted(self.clips, key=lambda c: (c["start_frame"], c["misleading"]))


class NoticeStream:
  """Notices of a route: scenario triggers and light changes. `update(...)` -> text ('' none)."""

  LIGHT_NOTICE = {0: ID["Notice-light-red"], 1: ID["Notice-light-yellow"],
                  2: ID["Notice-light-green"]}

  def __init__(self, route: routes_lib.Route, town: town_lib.Town, events: list, cfg, seed: int,
               enabled: bool = True):
    self.route, self.town, self.events = route, town, list(events)
    self.enabled = enabled
    self.rng = np.random.default_rng([seed, 37])
    self.hold = float(cfg.notice_seconds)
    self.light_m = float(cfg.light_notice_m)
    self.trigger_m = float(cfg.scenario_notice_m)
    self.stop_lines = routes_lib.route_stop_lines(route, town)
    self.fired: set[int] = set()
    self.last_state: dict[int, int] = {}
    self.notices: list[dict] = []
    self.text = ""
    self.until = -1.0

  def _give(self, instruction_id: int, t: float, frame: int) -> None:
    self.text = vocab.render(instruction_id, {}, self.rng)
    self.until = t + self.hold
    self.notices.append(dict(frame_id=frame, instruction_id=int(instruction_id),
                             instruction_args={}, text=self.text))

  def update(self, ego_pos, progress: float, light_states: np.ndarray, t: float,
             frame: int) -> str:
    if not self.enabled:
      return ""
    for k, event in enumerate(self.events):
      if k not in self.fired and (np.linalg.norm(np.asarray(ego_pos) - np.asarray(
          event.trigger)) < self.trigger_m or progress >= event.trigger_s):
        self.fired.add(k)
        self._give(event.notice_id, t, frame)
    ahead = [(s, line) for s, line in self.stop_lines if 0.0 <= s - progress <= self.light_m]
    if ahead:
      _, line = ahead[0]
      light = int(self.town.stop_line_light[line])
      if light >= 0:
        state = int(light_states[light])
        previous = self.last_state.get(light)
        if previous is not None and previous != state:
          self._give(self.LIGHT_NOTICE[state], t, frame)
        self.last_state[light] = state
    if t >= self.until:
      self.text = ""
    return self.text
