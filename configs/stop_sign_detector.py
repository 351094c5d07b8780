"""The stop-sign detector the agent's stop-sign rule reads (`lmgendrive_jax/agent/stop_sign.py`).

  python launch/train.py --config=configs/stop_sign_detector.py:preset=small --config.data.data_dir=DATA

The red-light detector's task and model (`configs/light_detector.py`, `train/light_detector.py`)
on the front view against `stop_sign_zone`: the ego is in a stop sign's waiting zone, up to 6 m
before its line, where the scorer wants it to stand (the sign's red plate stands at the line's
right end, 2 m up; the 100-degree front camera keeps it in view until ~2.5 m before the line, the
telephoto focus camera loses it ~15 m before). DATA: a build of a collection made with the
`stop_sign_zone` measurement (data_pipelines.collect since 2026-12-05); older builds have the
label unknown (-1), and training on them stops with an error.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import light_detector  # noqa: E402


def get_config(arg=None):
  return light_detector.front_view_config(arg, "stop_sign_detector", "stop_sign_zone")
