"""Closed-loop evaluation on the embedded simulator (`lmgendrive_jax/eval/closed_loop.py`).

  python launch/eval.py --config=configs/eval.py:preset=small --config.agent.work_dir=RUN
  python launch/eval.py --config=configs/eval.py:preset=tiny,agent=expert
  python launch/eval.py --config=configs/eval.py:preset=tiny,agent=lane_keeping \
      --config.route_set=tiny_4 --config.out_dir=/tmp/eval_lk

`agent`: lmgendrive (ours, from `agent.work_dir`), blank_instruction (ours with the instruction
blanked), hazard_oracle (ours, its hazard rule reading the expert's hazard trigger: the most a
hazard detector could buy), expert, lane_keeping (ignores instructions). Writes
`<out_dir>/results.json` after each route; rerun the same command to resume an interrupted
evaluation.
"""

from lmgendrive_jax import config as config_lib
from lmgendrive_jax.agent.lmgendrive_agent import AGENT_DEFAULTS


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, preset="small", agent="lmgendrive")
  if arg.preset not in config_lib.PRESETS:
    raise config_lib.ConfigError(f"eval: unknown preset {arg.preset!r}; choose one of "
                                 f"{config_lib.PRESETS}")
  config = config_lib.ConfigDict()
  config.preset = arg.preset
  config.sim = config_lib.sim_preset(arg.preset)
  config.route_set = {"tiny": "tiny_4", "small": "tiny", "paper": "long"}[arg.preset]
  config.seed = 0
  config.max_routes = -1        # > 0: only the first routes of the set
  config.batch_size = config.sim.batch_size  # worlds driven in lockstep
  config.max_ticks = -1         # > 0: hard cap per route (ending "running"); the spec's timeout
  config.trajectory_every = 10  # ticks between recorded trajectory points (0.5 s)
  # Also record at each trajectory point the ego speed, the control and (our agent) what it asked
  # and read (`LMGenDriveAgent.trace_fields`) as each route's `trace`: why a route went wrong.
  config.trace = False
  config.out_dir = ""           # "" = <work_dir>/eval/<route_set>_<kind> or work_dirs/eval/...
  config.agent = config_lib.ConfigDict(dict(
      kind=arg.agent, junction_policy="straight",
      **{k: v for k, v in AGENT_DEFAULTS.items() if k != "blank_instruction"}))
  return config
