"""Closed-loop driving quality on a held-out route set: ours vs the expert and two baselines.

  python bench/drive_quality.py --work_dir work_dirs/quickstart_small/stage3_small \
      [--route_set tiny_8] [--seed 1,2,3,4,5] [--preset small] [--light_detector RUN]

Drives four agents over the same route set of the embedded simulator (lmgendrive_jax/eval/,
the code `launch/eval.py` runs): our trained model (`--work_dir`, a stage-2/3 run; quickstart's
bigger preset `PRESET=big ./launch/quickstart.sh` trains the one the README reports), the
privileged expert, a lane-keeping baseline that ignores the instructions (straight on at every
junction), and our model with the instruction blanked. The route set is held out: quickstart
collects its training data with seed 0, this bench drives seed 1 (other routes through the same
towns), or several seeds whose routes it pools: one 8-route set scores a model within ~10 DS,
too coarse to tell two recipes apart. Each agent's results go to
`<out>/<set>_s<seed>/<agent>/results.json` as evaluation writes them, so an interrupted bench
resumes where it stopped and a later run with more seeds reuses the seeds already driven.

Prints DS (with its standard error over the pooled routes) / RC / IS per agent, instruction
following (of the junctions an agent drove through, the share it left the way its route, and so its
instruction, said: sim/following.py), how the routes ended, the DS each agent lost by cause
(`eval/ds_loss.py`: the route not driven, charged to its ending, and each penalty), with `--trace`
the seconds its car stood per route and why (`eval/standing.py`: a rule's hold, the planner standing
on after it, after a collision), where the car first left its routes (`eval/route_exit.py`: a plain
lane, approaching a junction, inside one, a lane change; and how many metres it drifted to get
there), and the targets: ours >= 70% of the expert's DS and above both baselines, instruction
following >= 90%.
The pooled summary goes to `<out>/<set>_s<seeds>.json`. With `--light_detector` (a
`configs/light_detector.py` run), ours and ours blanked drive with the agent's light rule
(`agent/red_light.py`), with `--stop_sign_detector` and `--hazard_detector` with its stop-sign and
hazard rules (`agent/stop_sign.py`, `agent/hazard.py`; `--hazard_max_wait` the longest the hazard
rule holds a standing car, `--hazard_path_threshold` its object map read on the planner's path,
0.5 by default, 0 off: `agent/path_objects.py`), with `--stuck_seconds` with its stuck rule (`agent/stuck.py`;
`--forced_forward_seconds` its push, 1.5 in the big preset's evaluation), with `--aim_lookahead_m`
at the expert's aim point instead of LMDrive's (`sim/pid.py`); their results go to
`<agent>[+light_rule][+stop_rule][+hazard_rule[+hwait<S>][+hpath<P>]][+stuck[+push<S>]][+aim<L>]/` beside the
others, so the expert's and lane keeping's routes are reused. The big preset's evaluation is
`--light_detector RUN/light_detector_small --stop_sign_detector RUN/stop_sign_detector_small
--hazard_detector RUN/hazard_detector_small --hazard_max_wait 10 --stuck_seconds 8
--forced_forward_seconds 1.5` (RUN: `work_dirs/quickstart_big`; `--work_dir
RUN/stage2_dagger_small`).
"""

from __future__ import annotations

import collections
import json
import os
import sys

import numpy as np

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _REPO)

from bench.common import add_aim_lookahead_argument, print_table, route_bench_parser  # noqa: E402
from lmgendrive_jax import config as config_lib  # noqa: E402
from lmgendrive_jax.agent.lmgendrive_agent import AGENT_DEFAULTS  # noqa: E402
from lmgendrive_jax.eval import closed_loop  # noqa: E402
from lmgendrive_jax.eval import route_exit  # noqa: E402
from lmgendrive_jax.eval.ds_loss import ds_lost_by_cause  # noqa: E402
from lmgendrive_jax.eval.standing import standing_seconds_by_cause  # noqa: E402
from lmgendrive_jax.sim import scoring  # noqa: E402

AGENTS = ("lmgendrive", "expert", "lane_keeping", "blank_instruction")
DS_SHARE_TARGET = 0.70
FOLLOWING_TARGET = 90.0


def evaluate_agent(args, agent: str, seed: int) -> dict:
  ours = agent in ("lmgendrive", "blank_instruction")
  overrides = {"route_set": args.route_set, "seed": seed, "trace": args.trace,
               "agent.work_dir": args.work_dir if ours else ""}
  folder = agent
  if ours and args.light_detector:
    overrides.update({"agent.light_detector": args.light_detector,
                      "agent.red_light_threshold": args.red_light_threshold})
    folder += "+light_rule"
  if ours and args.stop_sign_detector:
    overrides["agent.stop_sign_detector"] = args.stop_sign_detector
    folder += "+stop_rule"
  if ours and args.hazard_detector:
    overrides.update({"agent.hazard_detector": args.hazard_detector,
                      "agent.hazard_threshold": args.hazard_threshold})
    folder += "+hazard_rule"
    if args.hazard_max_wait != AGENT_DEFAULTS["hazard_max_wait"]:
      overrides["agent.hazard_max_wait"] = args.hazard_max_wait
      folder += f"+hwait{args.hazard_max_wait:g}"
    if args.hazard_path_threshold != AGENT_DEFAULTS["hazard_path_threshold"]:
      overrides["agent.hazard_path_threshold"] = args.hazard_path_threshold
      folder += f"+hpath{args.hazard_path_threshold:g}"
  if ours and args.stuck_seconds > 0:
    overrides["agent.stuck_seconds"] = args.stuck_seconds
    folder += "+stuck"
    if args.forced_forward_seconds != AGENT_DEFAULTS["forced_forward_seconds"]:
      overrides["agent.forced_forward_seconds"] = args.forced_forward_seconds
      folder += f"+push{args.forced_forward_seconds:g}"
  if ours and args.aim_lookahead_m > 0:
    overrides["agent.aim_lookahead_m"] = args.aim_lookahead_m
    folder += f"+aim{args.aim_lookahead_m:g}"
  overrides["out_dir"] = os.path.join(args.out, f"{args.route_set}_s{seed}", folder)
  config = config_lib.load_config(
      os.path.join(_REPO, "configs", "eval.py") + f":preset={args.preset},agent={agent}",
      overrides)
  return closed_loop.evaluate(config)


def pooled(per_seed: list[dict]) -> dict:
  """One agent's route sets of several seeds as one: scoring.aggregate over all their routes,
  plus `total_routes` and `ds_stderr` (standard error of the mean DS over routes; 0 for one
  route) and `seed_ds` (each seed's mean DS)."""
  routes = [route for summary in per_seed for route in summary["routes"]]
  ds = np.array([route["ds"] for route in routes], np.float64)
  stderr = float(ds.std(ddof=1) / np.sqrt(len(ds))) if len(ds) > 1 else 0.0
  return {**scoring.aggregate(routes), "ds_stderr": stderr,
          "total_routes": sum(summary["total_routes"] for summary in per_seed),
          "seed_ds": [summary["mean_ds"] for summary in per_seed]}


def print_endings(summaries: dict, names: dict) -> None:
  """How each agent's routes ended (completed, route deviation, blocked, timeout) and its
  infractions by type, summed over the routes: where DS is lost, which the mean hides."""
  endings = {a: collections.Counter(r["ending"] for r in s["routes"]) for a, s in summaries.items()}
  infractions = {a: collections.Counter(i["type"] for r in s["routes"] for i in r["infractions"])
                 for a, s in summaries.items()}
  ending_names = sorted(set().union(*endings.values()))
  infraction_names = sorted(set().union(*infractions.values()))
  rows = [[names[a]] + [str(endings[a][e]) for e in ending_names]
          + [str(infractions[a][t]) for t in infraction_names] for a in AGENTS]
  print_table("How the routes ended (route counts) and infractions (counts)",
              ["agent"] + ending_names + infraction_names, rows)


def print_ds_lost(summaries: dict, names: dict) -> None:
  """The DS points each agent lost, by cause (eval/ds_loss.py): what each ending and infraction
  cost, which the counts above do not say. Causes ordered by what ours lost."""
  lost = {a: ds_lost_by_cause(s["routes"]) for a, s in summaries.items()}
  causes = list(lost["lmgendrive"]) + sorted(set().union(*lost.values()) - set(lost["lmgendrive"]))
  rows = [[cause] + [f"{lost[a].get(cause, 0.0):.1f}" for a in AGENTS] for cause in causes]
  rows.append(["total (100 - DS)"] + [f"{sum(lost[a].values()):.1f}" for a in AGENTS])
  print_table("DS lost by cause (points, mean over routes)", ["cause"] + [names[a] for a in AGENTS],
              rows)


def print_standing(summaries: dict, names: dict) -> None:
  """With traces (`--trace`): the seconds each agent's car stood per route, by why
  (eval/standing.py: held by a rule, the planner standing on after a rule's hold, after a
  collision, the planner of its own accord); a timeout does not say. Agents whose routes were
  driven without a trace show '-'."""
  traced = {a: all(r.get("trace") for r in s["routes"]) for a, s in summaries.items()}
  if not any(traced.values()):
    return
  seconds = {a: standing_seconds_by_cause(s["routes"]) if traced[a] else None
             for a, s in summaries.items()}
  causes = list(dict.fromkeys(c for a in AGENTS if seconds[a] for c in seconds[a]))
  rows = [[cause] + ["-" if seconds[a] is None else f"{seconds[a].get(cause, 0.0):.1f}"
                     for a in AGENTS] for cause in causes]
  rows.append(["driven (mean sim time)"] + [
      f"{np.mean([r['sim_time'] for r in summaries[a]['routes']]):.1f}" for a in AGENTS])
  print_table("Seconds standing per route, by why (traced routes)",
              ["cause"] + [names[a] for a in AGENTS], rows)


def print_exits(summaries: dict, names: dict) -> None:
  """Where each agent first left its routes (eval/route_exit.py: the place, and how many route
  metres it drifted to get there): a route deviation is charged to its ending above, but the
  drive went wrong here. Routes evaluated before results.json had `first_exit` count as
  unknown."""
  places = list(route_exit.PLACES) + ["never left", "unknown"]

  def place(route: dict) -> str:
    if "first_exit" not in route:
      return "unknown"
    return "never left" if route["first_exit"] is None else route["first_exit"]["place"]
  counts = {agent: collections.Counter(place(route) for route in summary["routes"])
            for agent, summary in summaries.items()}
  drifts = {agent: [route["first_exit"]["drift_m"] for route in summary["routes"]
                    if route.get("first_exit")] for agent, summary in summaries.items()}
  shown = [p for p in places if any(counts[a][p] for a in AGENTS)]
  rows = [[names[a]] + [str(counts[a][p]) for p in shown]
          + [f"{np.median(drifts[a]):.0f}" if drifts[a] else "-"] for a in AGENTS]
  print_table(f"Where the car first left its route (> {route_exit.OFF_ROUTE_M} m off; route "
              "counts) and the median drift to there (route metres)",
              ["agent"] + shown + ["drift m"], rows)


def main(argv=None) -> int:
  parser = route_bench_parser(__doc__, several_seeds=True)
  parser.add_argument("--out", default="", help="default: <work_dir>/drive_quality")
  parser.add_argument("--light_detector", default="",
                      help="a red-light detector run: ours brakes on it (agent/red_light.py)")
  parser.add_argument("--red_light_threshold", type=float, default=0.5)
  parser.add_argument("--stuck_seconds", type=float, default=0.0,
                      help="> 0: ours pushes forward after standing this long (agent/stuck.py)")
  parser.add_argument("--forced_forward_seconds", type=float,
                      default=AGENT_DEFAULTS["forced_forward_seconds"],
                      help="how long the stuck rule pushes (the big preset's evaluation: 1.5)")
  parser.add_argument("--stop_sign_detector", default="",
                      help="a stop-sign detector run: ours stops in the zones it sees "
                           "(agent/stop_sign.py)")
  parser.add_argument("--hazard_detector", default="",
                      help="a hazard detector run: ours brakes for what it sees (agent/hazard.py)")
  parser.add_argument("--hazard_threshold", type=float, default=0.5)
  parser.add_argument("--hazard_max_wait", type=float, default=AGENT_DEFAULTS["hazard_max_wait"],
                      help="the longest the hazard rule holds a standing car (the big preset's "
                           "evaluation: 10)")
  parser.add_argument("--hazard_path_threshold", type=float,
                      default=AGENT_DEFAULTS["hazard_path_threshold"],
                      help="the hazard rule also brakes for what its detector's object map sees "
                           "on the planner's path above this (agent/path_objects.py; 0: off)")
  add_aim_lookahead_argument(parser)
  parser.add_argument("--trace", action="store_true",
                      help="routes driven now record a trace (configs/eval.py: trace)")
  args = parser.parse_args(argv)
  args.out = args.out or os.path.join(args.work_dir, "drive_quality")
  summaries = {agent: pooled([evaluate_agent(args, agent, seed) for seed in args.seed])
               for agent in AGENTS}
  names = {"lmgendrive": "ours", "expert": "expert", "lane_keeping": "lane keeping (no language)",
           "blank_instruction": "ours, instruction blanked"}
  expert_ds = max(summaries["expert"]["mean_ds"], 1e-9)
  rows = []
  for agent in AGENTS:
    s = summaries[agent]
    following = s.get("instruction_following")
    rows.append([names[agent], f"{s['mean_ds']:.1f} +- {s['ds_stderr']:.1f}",
                 " / ".join(f"{ds:.1f}" for ds in s["seed_ds"]),
                 f"{s['mean_rc']:.1f}", f"{s['mean_is']:.3f}",
                 f"{s['mean_ds'] / expert_ds:.2f}",
                 "n/a" if following is None else
                 f"{following:.0f}% ({s['junctions_followed']}/"
                 f"{s['junctions_followed'] + s['junctions_missed']})",
                 f"{s['num_routes']}/{s['total_routes']}"])
  seeds = ",".join(str(seed) for seed in args.seed)
  print_table(f"Closed-loop driving on {args.route_set} (seeds {seeds}, held out; routes pooled), "
              f"run {args.work_dir}", ["agent", "DS +- stderr", "DS per seed", "RC", "IS",
                                       "DS / expert DS", "instruction following", "routes"], rows)
  print_endings(summaries, names)
  print_ds_lost(summaries, names)
  print_standing(summaries, names)
  print_exits(summaries, names)
  ours = summaries["lmgendrive"]
  following = ours.get("instruction_following") or 0.0
  checks = {
      f"ours >= {DS_SHARE_TARGET:.0%} of the expert's DS": ours["mean_ds"] >= DS_SHARE_TARGET
      * expert_ds,
      "ours above the lane-keeping baseline": ours["mean_ds"] > summaries["lane_keeping"][
          "mean_ds"],
      "ours above ours with the instruction blanked": ours["mean_ds"] > summaries[
          "blank_instruction"]["mean_ds"],
      f"instruction following >= {FOLLOWING_TARGET:.0f}%": following >= FOLLOWING_TARGET,
  }
  print_table("Targets", ["target", "met"], [[k, "yes" if v else "NO"] for k, v in checks.items()])
  out = os.path.join(args.out, f"{args.route_set}_s{'-'.join(map(str, args.seed))}.json")
  with open(out, "w") as f:
    json.dump({"route_set": args.route_set, "seeds": list(args.seed), "work_dir": args.work_dir,
               "agents": {a: closed_loop.strip_timing({k: v for k, v in s.items()
                                                       if k != "routes"})
                          for a, s in summaries.items()},
               "targets": checks}, f, indent=2)
  return 0


if __name__ == "__main__":
  sys.exit(main())
