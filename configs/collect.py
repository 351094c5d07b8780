"""Collect LMDrive-format driving data with the expert in the embedded simulator.

  python -m data_pipelines.collect --config=configs/collect.py:preset=tiny --config.out_dir=DIR

`sim` is the simulator preset (`config.sim_preset`: town, cameras, traffic, instructions, expert);
`route_sets` the named route sets driven (`sim/routes.py: route_set`), each with `seed`. LMDrive
collected at 800x600 (`preset=paper`); `tiny` writes 64x64 frames in seconds for tests.
"""

from lmgendrive_jax import config as config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, preset="small")
  config = config_lib.ConfigDict()
  config.preset = arg.preset
  config.sim = config_lib.sim_preset(arg.preset)
  config.route_sets = {
      "tiny": ("tiny_2_notice",),
      "small": ("tiny_notice", "short_notice"),
      "paper": ("tiny_notice", "short_notice", "long_notice"),
  }[arg.preset]
  config.seed = 0
  config.out_dir = f"data/lmdrive_sim_{arg.preset}"
  config.batch_size = config.sim.batch_size
  config.jpeg_quality = 95
  # Steering-noise episodes per second of driving (0 = clean expert). The frames after an episode
  # show the expert steering back to the lane centre: the only examples of recovering from an
  # offset that behaviour cloning gets (a clean expert on a grid town drives straight, and a model
  # trained on it drifts off the lane in closed loop). The waypoints the noise affected are masked.
  config.expert_noise = {"tiny": 0.0, "small": 0.1, "paper": 0.05}[arg.preset]
  # Recovery views (lmgendrive_jax/sim/view_shift.py): during shift episodes (a mean `gap_m` route
  # metres apart, 0 = off) the cameras are rendered from up to `max_offset_m` beside the car, as
  # if it had drifted off its lane over `length_m`, and the frame's waypoints (the expert's own
  # future) lead back to the path. The car and every other frame stay the clean expert's.
  # Off: gap_m=20 on the small preset's collection (stage 2 only) drove 41.6 +- 3.9 on 40 held-out
  # routes, the clean collection 45.5 +- 3.0 (docs/experiments.md, 2026-12-06 10th); with the
  # other labels `build_tfds` offers (--recovery_merge_m, --recovery_min_step_m) 34.8-46.6 (11th).
  config.view_shift = config_lib.ConfigDict(dict(
      gap_m=0.0, length_m=(15.0, 30.0), min_offset_m=0.3, max_offset_m=1.5))
  config.max_routes = -1  # -1: every route of the sets
  config.actor_radius = 60.0  # actors_data lists actors within this many metres of the ego
  # On-policy collection (DAgger, lmgendrive_jax/agent/takeover.py): a trained stage-2/3 run
  # drives and the expert takes over when the car is `offset_m` off the route, when the expert
  # brakes and the learner does not, or when the car has stood `stand_seconds` while the expert
  # would drive; it keeps the wheel `hold_seconds`. "" = the expert drives (the default).
  # `agent`: the learner's agent options (agent/lmgendrive_agent.py: AGENT_DEFAULTS).
  config.learner = config_lib.ConfigDict(dict(
      work_dir="", offset_m=1.0, stand_seconds=1.5, hold_seconds=3.0,
      agent=config_lib.ConfigDict()))
  return config
