"""Train one stage: `python launch/train.py --config=configs/<stage>.py:preset=small [--config.a.b=v]`.

Runs on one CPU, one GPU, or every host of a TPU/GPU pod (start the same command on each host;
`jax.distributed` connects them). Resumes from the newest checkpoint in `config.work_dir`.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "configs/<stage>.py:arg",
                                          lock_config=True)
flags.mark_flags_as_required(["config"])

TASKS = {
    "llm_text": "lmgendrive_jax.train.llm_text",
    "stage1": "lmgendrive_jax.train.stage1",
    "qformer": "lmgendrive_jax.train.qformer_align",
    "stage2": "lmgendrive_jax.train.stage2",
    "stage3": "lmgendrive_jax.train.stage2",
    "light_detector": "lmgendrive_jax.train.light_detector",
}


def main(argv):
  del argv
  from absl import logging
  logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO.
  from lmgendrive_jax import config as config_lib
  from lmgendrive_jax import parallel
  parallel.initialize_distributed()
  import importlib
  import jax

  from lmgendrive_jax.train import loop

  config = config_lib.resolve_probes(config_lib.resolve_run_dirs(_CONFIG.value))
  config_lib.validate(config)
  if config.stage not in TASKS:
    raise SystemExit(f"config.stage={config.stage!r} has no trainer; known: {sorted(TASKS)}")
  task, _ = importlib.import_module(TASKS[config.stage]).build_task(config)
  if jax.process_index() == 0:
    print(f"[train] {config.stage} preset={config.get('preset')} on {jax.device_count()} "
          f"{jax.default_backend()} device(s), work_dir={config.work_dir}", flush=True)
  result = loop.run(config, task)
  if jax.process_index() == 0:
    print("[train] final: " + json.dumps({k: round(v, 5) if isinstance(v, float) else v
                                          for k, v in result.items()}), flush=True)


if __name__ == "__main__":
  app.run(main)
