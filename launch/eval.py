"""Closed-loop evaluation: `python launch/eval.py --config=configs/eval.py:preset=small
--config.agent.work_dir=RUN [--config.route_set=tiny_4] [--config.a.b=v]`.

Drives the agent over the route set in the embedded simulator and writes `<out_dir>/results.json`
(per route DS/RC/IS, infractions, ending, route and trajectory polylines; the set's means) after
every route. Rerun the same command to resume.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "configs/eval.py:arg",
                                          lock_config=True)
flags.mark_flags_as_required(["config"])


def main(argv):
  del argv
  from absl import logging
  logging.set_verbosity(logging.WARNING)
  from lmgendrive_jax.eval import closed_loop

  config = _CONFIG.value
  summary = closed_loop.evaluate(config)
  path = os.path.join(closed_loop.out_dir(config), closed_loop.RESULTS)
  print(f"[eval] {config.route_set} ({config.agent.kind}): mean DS {summary['mean_ds']:.2f}  "
        f"RC {summary['mean_rc']:.2f}  IS {summary['mean_is']:.3f} over "
        f"{summary['num_routes']}/{summary['total_routes']} routes -> {path}", flush=True)


if __name__ == "__main__":
  app.run(main)
