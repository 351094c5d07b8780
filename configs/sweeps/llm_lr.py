"""Example sweep: the text LLM at two learning rates and two warm-ups.

  python launch/sweep.py --config=configs/sweeps/llm_lr.py:preset=tiny --mode=local
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from llm_text import get_config as _base_config  # noqa: E402


def get_config(arg=None):
  config = _base_config(arg)
  config.run_name = config.run_name + "_lr_sweep"
  return config


def get_sweep(arg=None):
  del arg
  return [{"optim.lr": lr, "optim.warmup_steps": warmup}
          for lr in (3e-4, 1e-3) for warmup in (10, 50)]
