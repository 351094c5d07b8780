"""Stage 3: multi-step long-horizon planning and generation (long clips, lower learning rate).

  python launch/train.py --config=configs/stage3.py:preset=small --config.data.data_dir=DATA
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from stage2 import stage_config  # noqa: E402


def get_config(arg=None):
  return stage_config(3, arg)
