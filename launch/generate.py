"""Offline batch video generation:
`python launch/generate.py --config=configs/generate.py:preset=small --config.work_dir=RUN`.

Writes `<out_dir>/<clip_id>.mp4` per clip and `<out_dir>/metrics.json` (PSNR/SSIM by clip and
horizon, the copy-last-frame baseline, FVD with `--config.fvd_features=DIR`). Start the same
command on every host of a pod: host i takes clips i::n, host 0 merges. Rerun to resume.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "configs/generate.py:arg",
                                          lock_config=True)
flags.mark_flags_as_required(["config"])


def main(argv):
  del argv
  from absl import logging
  logging.set_verbosity(logging.WARNING)
  from lmgendrive_jax import parallel
  parallel.initialize_distributed()
  import jax

  from lmgendrive_jax.generate import job

  config = _CONFIG.value
  generation = job.GenerationJob(config)
  if jax.process_index() == 0:
    print(f"[generate] {config.work_dir} split={generation.data_cfg.split} "
          f"{generation.observed}+{generation.future} frames at {generation.dt:.2f} s, "
          f"{len(generation.all_clip_ids())} clips on {jax.process_count()} host(s) -> "
          f"{generation.out_dir}", flush=True)
  metrics = generation.run()
  if metrics is not None:
    summary = {"mean": metrics["mean"], "horizons": metrics["horizons"]}
    if "fvd" in metrics:
      summary["fvd"] = metrics["fvd"]
    print("[generate] " + json.dumps(summary), flush=True)
    print(f"[generate] wrote {os.path.join(generation.out_dir, 'metrics.json')}", flush=True)


if __name__ == "__main__":
  app.run(main)
