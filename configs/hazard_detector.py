"""The hazard detector the agent's hazard rule reads (`lmgendrive_jax/agent/hazard.py`).

  python launch/train.py --config=configs/hazard_detector.py:preset=small --config.data.data_dir=DATA

The red-light detector's task and model (`configs/light_detector.py`, `train/light_detector.py`)
on the front view against `hazard_ahead`: the expert brakes for a vehicle, bike or pedestrian in
its path (LMDrive's `is_vehicle_present`, `is_bike_present`, `is_pedestrian_present`, which every
LMDrive-format collection records: any build trains it). The expert checks ~4.6 m + 1.2 s of
driving ahead, where the small presets' 64x64 front camera shows a car as a block of pixels.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import light_detector  # noqa: E402


def get_config(arg=None):
  return light_detector.front_view_config(arg, "hazard_detector", "hazard_ahead")
