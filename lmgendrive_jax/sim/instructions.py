"""The LangAuto instruction vocabulary: 65 instruction ids, each a rule name, a category and about
8 paraphrases with argument slots (specs/lmdrive_format.md, "Instruction vocabulary").

Where it sits: `sim/instruction_stream.py` turns a route into a sequence of (instruction id, args)
events; `render` turns one into text for the agent (and the collector writes the id + args to
`navigation_instruction_list.txt`); the TFDS builder re-renders paraphrases from the ids at build
time; `instruction_corpus()` is the text the tokenizer is trained on
(`data_pipelines/train_tokenizer.py`).

Ids: 0-33 turns, 34-49 follow, 50-59 notices, 60-64 other. Argument slots are written
`{distance}` (metres), `{count}`, `{forward}`, `{lateral}` (metres) and `{side}` ("left"/"right").
`render` accepts the args as a dict (`{"distance": 30}`) or, as LMDrive's lists store them, a
list/tuple in `arg_names` order.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import numpy as np

from lmgendrive_jax.errors import SimulatorError


@dataclasses.dataclass(frozen=True)
class InstructionSpec:
  """One instruction of the vocabulary. `paraphrases` use `str.format` slots named `arg_names`."""
  id: int
  name: str
  category: str  # "turn" | "follow" | "notice" | "other"
  paraphrases: tuple[str, ...]
  arg_names: tuple[str, ...]


# ----------------------------------------------------------------------------------------------
# Paraphrase families. A family is a list of templates with a `{dir}` placeholder filled when the
# vocabulary is built (so "left" and "right" share phrasing but stay distinct instructions).

_TURN_NOW = [
    "Turn {dir}.", "Take a {dir} turn.", "Make a {dir} turn here.", "Go {dir} now.",
    "Please turn {dir}.", "Steer {dir} and take the turn.", "Take the {dir}.",
    "Turn to the {dir} here.",
]
_TURN_IN = [
    "Turn {dir} in {distance} metres.", "In {distance} metres, turn {dir}.",
    "After {distance} metres, take a {dir} turn.", "Make a {dir} turn {distance} metres ahead.",
    "Go {dir} in about {distance} metres.", "Drive {distance} metres and then turn {dir}.",
    "Take the {dir} turn coming up in {distance} metres.",
    "Prepare to turn {dir} in {distance} metres.",
]


def _place_family(place: str, short: str) -> tuple[list[str], list[str], list[str], list[str]]:
  """(turn here, straight here, turn in x m, straight in x m) templates for a junction kind."""
  turn = [
      f"Turn {{dir}} at {place}.", f"At {place}, turn {{dir}}.",
      f"Take a {{dir}} at {place}.", f"Make a {{dir}} turn at {place}.",
      f"When you reach {place}, go {{dir}}.", f"Go {{dir}} at {place}.",
      f"Please turn {{dir}} once you get to {place}.", f"At {short}, take the {{dir}} turn.",
  ]
  straight = [
      f"Go straight at {place}.", f"At {place}, continue straight.",
      f"Drive straight through {place}.", f"Keep going straight at {place}.",
      f"Cross {place} and keep straight.", f"Continue straight ahead at {place}.",
      f"Don't turn at {place}, go straight.", f"At {short}, go straight on.",
  ]
  turn_in = [
      f"Turn {{dir}} at {place} in {{distance}} metres.",
      f"In {{distance}} metres, turn {{dir}} at {place}.",
      f"{place.capitalize()} is {{distance}} metres ahead; turn {{dir}} there.",
      f"After {{distance}} metres, take a {{dir}} at {place}.",
      f"Drive {{distance}} metres to {place} and go {{dir}}.",
      f"Make a {{dir}} turn at {place}, {{distance}} metres from here.",
      f"Go {{dir}} at {short} about {{distance}} metres ahead.",
      f"Prepare to turn {{dir}} at {place} in {{distance}} metres.",
  ]
  straight_in = [
      f"Go straight at {place} in {{distance}} metres.",
      f"In {{distance}} metres, continue straight at {place}.",
      f"{place.capitalize()} is {{distance}} metres ahead; drive straight through it.",
      f"After {{distance}} metres, keep straight at {place}.",
      f"Drive {{distance}} metres to {place} and go straight on.",
      f"Cross {place} {{distance}} metres ahead without turning.",
      f"Keep straight at {short} about {{distance}} metres ahead.",
      f"Continue straight through {place} in {{distance}} metres.",
  ]
  return turn, straight, turn_in, straight_in


_ROUNDABOUT = [
    "At the roundabout, take the {ordinal} exit.", "Take the {ordinal} exit at the roundabout.",
    "Enter the roundabout and leave at the {ordinal} exit.",
    "Go around the roundabout and take the {ordinal} exit.",
    "Use the {ordinal} exit of the roundabout.", "Leave the roundabout by the {ordinal} exit.",
    "At the circle, exit at the {ordinal} turn-off.",
    "When you reach the roundabout, take exit number {number}.",
]
_MOVES = {"left": "turn left", "right": "turn right", "straight": "go straight"}
_TWO_TURNS = [
    "At the next intersection {a}, then at the one after {b}.",
    "{A} at the next junction and then {b}.",
    "First {a} at the intersection, then {b} at the following one.",
    "{A} at this intersection; at the next one, {b}.",
    "Two junctions ahead: {a} at the first and {b} at the second.",
    "Please {a} and then {b} at the next intersection.",
    "{A} at the coming intersection, then {b} right after.",
    "At the first junction {a}, and at the second {b}.",
]


def _fill(templates: Sequence[str], **kw) -> tuple[str, ...]:
  # `{{distance}}`-style slots survive one format pass; only the named placeholders fill in.
  out = []
  for template in templates:
    text = template
    for key, value in kw.items():
      text = text.replace("{" + key + "}", value)
    out.append(text)
  return tuple(out)


def _build() -> tuple[InstructionSpec, ...]:
  specs: list[tuple[str, str, tuple[str, ...], tuple[str, ...]]] = []

  def add(name, category, paraphrases, args=()):
    specs.append((name, category, tuple(paraphrases), tuple(args)))

  # 0-3: turns without a junction reference.
  for d in ("left", "right"):
    add(f"Turn-{d}", "turn", _fill(_TURN_NOW, dir=d))
  for d in ("left", "right"):
    add(f"Turn-{d}-in-x-m", "turn", _fill(_TURN_IN, dir=d), ("distance",))
  # 4-21: at the next intersection / traffic light / T-junction, here or in x metres.
  places = (("Intersection", "the next intersection", "the junction"),
            ("TrafficLight", "the traffic light", "the lights"),
            ("TJunction", "the T-junction", "the T junction"))
  for key, place, short in places:
    turn, straight, turn_in, straight_in = _place_family(place, short)
    add(f"{key}-left", "turn", _fill(turn, dir="left"))
    add(f"{key}-right", "turn", _fill(turn, dir="right"))
    add(f"{key}-straight", "turn", straight)
    add(f"{key}-left-in-x-m", "turn", _fill(turn_in, dir="left"), ("distance",))
    add(f"{key}-right-in-x-m", "turn", _fill(turn_in, dir="right"), ("distance",))
    add(f"{key}-straight-in-x-m", "turn", straight_in, ("distance",))
  # 22-24: roundabout exits.
  for number, ordinal in ((1, "first"), (2, "second"), (3, "third")):
    add(f"Roundabout-exit-{number}", "turn",
        _fill(_ROUNDABOUT, ordinal=ordinal, number=str(number)))
  # 25-33: two consecutive turns.
  for first in ("left", "right", "straight"):
    for second in ("left", "right", "straight"):
      a, b = _MOVES[first], _MOVES[second]
      add(f"TwoTurns-{first}-{second}", "turn", _fill(_TWO_TURNS, a=a, b=b, A=a.capitalize()))
  assert len(specs) == 34, len(specs)

  # 34-49: follow.
  for d in ("left", "right"):
    add(f"ChangeLane-{d}", "follow", _fill([
        "Change to the {dir} lane.", "Move into the {dir} lane.", "Switch lanes to the {dir}.",
        "Please change lanes to the {dir}.", "Merge into the lane on your {dir}.",
        "Shift over to the {dir} lane.", "Get into the {dir} lane.",
        "Make a lane change to the {dir}.",
    ], dir=d))
  for d in ("left", "right"):
    add(f"ChangeLane-{d}-in-x-m", "follow", _fill([
        "Change to the {dir} lane in {distance} metres.",
        "In {distance} metres, move into the {dir} lane.",
        "After {distance} metres, switch lanes to the {dir}.",
        "Merge into the {dir} lane within {distance} metres.",
        "Get into the {dir} lane in about {distance} metres.",
        "Drive {distance} metres, then change to the {dir} lane.",
        "Shift to the {dir} lane {distance} metres ahead.",
        "Prepare a lane change to the {dir} in {distance} metres.",
    ], dir=d), ("distance",))
  add("Follow-road", "follow", [
      "Follow the road.", "Keep following this road.", "Stay on the current road.",
      "Continue along the road.", "Just follow the lane.", "Keep driving along this road.",
      "Drive on along the road.", "Stay in your lane and follow the road.",
  ])
  add("Follow-road-for-x-m", "follow", [
      "Follow the road for {distance} metres.", "Keep going along this road for {distance} metres.",
      "Drive straight along the road for {distance} metres.",
      "Continue on this road for the next {distance} metres.",
      "Stay in your lane for {distance} metres.", "Follow the lane for about {distance} metres.",
      "Go along the road for {distance} metres.", "Drive {distance} metres along the road.",
  ], ("distance",))
  add("Follow-highway", "follow", [
      "Follow the highway.", "Stay on the highway.", "Keep driving on the highway.",
      "Continue along the highway.", "Keep to the highway.", "Drive on along the highway.",
      "Remain on the highway.", "Follow the motorway.",
  ])
  add("Follow-highway-for-x-m", "follow", [
      "Follow the highway for {distance} metres.", "Stay on the highway for {distance} metres.",
      "Keep driving on the highway for {distance} metres.",
      "Continue along the highway for the next {distance} metres.",
      "Drive {distance} metres along the highway.", "Remain on the highway for {distance} metres.",
      "Follow the motorway for about {distance} metres.",
      "Keep to the highway for {distance} metres.",
  ], ("distance",))
  for key, place in (("intersection", "the next intersection"),
                     ("traffic-light", "the traffic light"), ("T-junction", "the T-junction")):
    add(f"KeepCourse-until-{key}", "follow", [
        f"Keep your course until {place}.", f"Drive on until you reach {place}.",
        f"Follow the road up to {place}.", f"Keep going until {place}.",
        f"Stay on this road until {place}.", f"Continue until you get to {place}.",
        f"Hold your course up to {place}.", f"Drive along until {place}.",
    ])
  add("Enter-highway", "follow", [
      "Enter the highway.", "Take the ramp onto the highway.", "Get on the highway.",
      "Merge onto the highway.", "Join the highway ahead.", "Drive onto the highway.",
      "Take the highway entrance.", "Use the on-ramp to the highway.",
  ])
  add("Exit-highway", "follow", [
      "Exit the highway.", "Take the next exit off the highway.", "Leave the highway.",
      "Get off the highway.", "Take the off-ramp.", "Drive off the highway at the exit.",
      "Use the next highway exit.", "Leave the motorway at the exit.",
  ])
  for d in ("left", "right"):
    add(f"Keep-{d}-lane", "follow", _fill([
        "Stay in the {dir} lane.", "Keep to the {dir} lane.", "Drive in the {dir} lane.",
        "Remain in the {dir} lane.", "Hold the {dir} lane.", "Keep driving in the {dir} lane.",
        "Use the {dir} lane.", "Stick to the {dir} lane.",
    ], dir=d))
  add("Cross-n-intersections", "follow", [
      "Go straight through the next {count} intersections.",
      "Drive straight across {count} intersections.",
      "Keep straight for the next {count} junctions.",
      "Cross {count} intersections without turning.",
      "Continue straight through {count} junctions.",
      "Pass the next {count} intersections going straight.",
      "Don't turn for the next {count} intersections.",
      "Stay straight across the coming {count} junctions.",
  ], ("count",))
  assert len(specs) == 50, len(specs)

  # 50-59: notices.
  add("Notice-pedestrian", "notice", [
      "Watch out for the pedestrian crossing ahead.", "A pedestrian is crossing the road.",
      "Pay attention to the person crossing in front.", "Careful, someone is walking across.",
      "Mind the pedestrian on the road.", "There is a pedestrian ahead, be careful.",
      "Look out, a person is stepping onto the road.", "Yield to the pedestrian crossing.",
  ])
  add("Notice-cyclist", "notice", [
      "Watch out for the cyclist ahead.", "A cyclist is on the road.",
      "Careful, there is a bike in front.", "Mind the cyclist.", "Give way to the cyclist.",
      "Pay attention to the bicycle ahead.", "There is a cyclist crossing.",
      "Look out for the bike rider.",
  ])
  add("Notice-vehicle-braking", "notice", [
      "The car ahead is braking hard.", "Watch out, the vehicle in front stopped abruptly.",
      "Careful, the car ahead is slamming on its brakes.", "The vehicle ahead is stopping suddenly.",
      "Mind the braking car in front.", "Be ready to stop, the car ahead brakes.",
      "The leading vehicle is braking abruptly.", "Slow down, the car in front is stopping.",
  ])
  add("Notice-red-light-runner", "notice", [
      "A vehicle is running the red light.", "Watch out for the car running the red light.",
      "Careful, a car is crossing against the red.", "Someone is running the light ahead.",
      "Mind the vehicle ignoring the red light.", "A car is blowing through the red light.",
      "Look out, a vehicle is not stopping at the light.",
      "Be careful, a red light runner is coming.",
  ])
  add("Notice-rough-road", "notice", [
      "The road ahead is rough.", "Careful, bumpy road ahead.", "Rough surface coming up.",
      "Slow down for the rough road.", "The road is uneven ahead.", "Mind the potholes.",
      "Watch out, the road gets bumpy.", "Drive carefully on the rough road.",
  ])
  add("Notice-tunnel", "notice", [
      "There is a tunnel ahead.", "We are entering a tunnel.", "A tunnel is coming up.",
      "Careful, tunnel ahead.", "Drive into the tunnel ahead.", "Watch out for the tunnel.",
      "The road goes through a tunnel.", "Prepare to enter the tunnel.",
  ])
  for colour, advice in (("red", "stop"), ("green", "go"), ("yellow", "prepare to stop")):
    add(f"Notice-light-{colour}", "notice", [
        f"The traffic light is {colour}.", f"The light ahead turned {colour}.",
        f"Notice the {colour} light.", f"The signal is {colour} now.",
        f"Careful, the light is {colour}.", f"Traffic light ahead: {colour}.",
        f"The light has changed to {colour}, {advice}.", f"Look, the light is {colour}.",
    ])
  add("Notice-stop-sign", "notice", [
      "There is a stop sign ahead.", "Stop sign ahead, come to a full stop.",
      "Careful, a stop sign is coming up.", "Watch for the stop sign.",
      "Mind the stop sign ahead.", "Stop at the stop sign.", "A stop sign is ahead, stop there.",
      "Notice the stop sign.",
  ])
  assert len(specs) == 60, len(specs)

  # 60-64: other.
  add("Start-driving", "other", [
      "Start driving.", "Let's go.", "Begin driving.", "Start moving.", "Get going.",
      "Pull away and start driving.", "You can start driving now.", "Drive off.",
  ])
  add("Slow-down", "other", [
      "Slow down.", "Reduce your speed.", "Drive slower.", "Ease off the throttle.",
      "Please slow down.", "Take it slower.", "Decrease speed.", "Lower your speed.",
  ])
  add("Stop", "other", [
      "Stop.", "Stop the car.", "Come to a stop.", "Please stop here.", "Halt.",
      "Bring the car to a stop.", "Stop now.", "Pull up and stop.",
  ])
  add("Drive-freely", "other", [
      "Drive freely.", "Drive wherever you like.", "Go anywhere you want.", "Just drive around.",
      "Feel free to drive.", "Drive as you wish.", "Cruise around freely.",
      "No particular route, just drive.",
  ])
  add("Go-to-point", "other", [
      "Go to the point {forward} metres ahead and {lateral} metres to the {side}.",
      "Drive to the spot {forward} metres in front and {lateral} metres to your {side}.",
      "Head for the point {forward} metres ahead, {lateral} metres {side}.",
      "Reach the location {forward} metres forward and {lateral} metres to the {side}.",
      "Move to {forward} metres ahead and {lateral} metres on the {side}.",
      "Your target is {forward} metres ahead and {lateral} metres to the {side}.",
      "Drive {forward} metres forward, ending {lateral} metres to the {side}.",
      "Go to the place {lateral} metres to the {side} and {forward} metres ahead.",
  ], ("forward", "lateral", "side"))
  assert len(specs) == 65, len(specs)
  return tuple(InstructionSpec(i, name, category, paraphrases, args)
               for i, (name, category, paraphrases, args) in enumerate(specs))


INSTRUCTIONS: tuple[InstructionSpec, ...] = _build()
ID_BY_NAME: dict[str, int] = {spec.name: spec.id for spec in INSTRUCTIONS}
NUM_INSTRUCTIONS = len(INSTRUCTIONS)
TURN_IDS = tuple(range(0, 34))
FOLLOW_IDS = tuple(range(34, 50))
NOTICE_IDS = tuple(range(50, 60))
OTHER_IDS = tuple(range(60, 65))


def _format_value(value: Any) -> str:
  if isinstance(value, (float, np.floating)) and float(value).is_integer():
    return str(int(value))
  if isinstance(value, (float, np.floating)):
    return f"{float(value):.1f}"
  return str(value)


def _args_dict(spec: InstructionSpec, args: Mapping[str, Any] | Sequence[Any] | None) -> dict:
  if args is None:
    args = {}
  if isinstance(args, (list, tuple)):
    if len(args) < len(spec.arg_names):
      raise SimulatorError(
          f"instruction {spec.id} ({spec.name}) takes args {spec.arg_names}; got the list "
          f"{list(args)!r} with {len(args)} values")
    args = dict(zip(spec.arg_names, args))
  if not isinstance(args, Mapping):
    raise SimulatorError(f"instruction {spec.id} ({spec.name}): args must be a dict or a list, "
                         f"got {type(args).__name__} {args!r}")
  missing = [name for name in spec.arg_names if name not in args]
  if missing:
    raise SimulatorError(f"instruction {spec.id} ({spec.name}) needs args {spec.arg_names}; "
                         f"{missing} missing from {dict(args)!r}")
  return {name: _format_value(args[name]) for name in spec.arg_names}


def spec(instruction_id: int) -> InstructionSpec:
  """The InstructionSpec of an id, or SimulatorError naming the valid range."""
  if isinstance(instruction_id, bool) or not isinstance(instruction_id, (int, np.integer)) or not (
      0 <= int(instruction_id) < NUM_INSTRUCTIONS):
    raise SimulatorError(f"instruction id {instruction_id!r} is not in 0..{NUM_INSTRUCTIONS - 1}")
  return INSTRUCTIONS[int(instruction_id)]


def render(instruction_id: int, args: Mapping[str, Any] | Sequence[Any] | None,
           rng: np.random.Generator) -> str:
  """A random paraphrase of `instruction_id` with `args` filled in (dict or list in arg order)."""
  instruction = spec(instruction_id)
  values = _args_dict(instruction, args)
  template = instruction.paraphrases[int(rng.integers(len(instruction.paraphrases)))]
  return template.format(**values)


def sample_args(instruction_id: int, rng: np.random.Generator) -> dict:
  """Plausible argument values for an instruction (what the instruction stream produces)."""
  samplers = {
      "distance": lambda: int(rng.choice(np.arange(10, 205, 5))),
      "count": lambda: int(rng.integers(2, 4)),
      "forward": lambda: int(rng.integers(5, 60)),
      "lateral": lambda: int(rng.integers(2, 20)),
      "side": lambda: str(rng.choice(["left", "right"])),
  }
  return {name: samplers[name]() for name in spec(instruction_id).arg_names}


def instruction_corpus(seed: int = 0, samples_per_paraphrase: int = 3) -> list[str]:
  """Every paraphrase of every instruction, each with `samples_per_paraphrase` sampled args."""
  rng = np.random.default_rng(seed)
  corpus = []
  for instruction in INSTRUCTIONS:
    for template in instruction.paraphrases:
      for _ in range(samples_per_paraphrase if instruction.arg_names else 1):
        corpus.append(template.format(**_args_dict(instruction, sample_args(instruction.id, rng))))
  return corpus
