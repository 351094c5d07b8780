"""The hazard detector the agent's hazard rule reads (`lmgendrive_jax/agent/hazard.py`).

  python launch/train.py --config=configs/hazard_detector.py:preset=small --config.data.data_dir=DATA

The red-light detector's task and model (`configs/light_detector.py`, `train/light_detector.py`)
on the front view against `hazard_ahead`: a vehicle or pedestrian in the route's corridor up to
10 m past the front bumper (`data_pipelines/lmdrive_tfds/reader.py: hazard_ahead`, from the
frame's `actors_data` and `future_waypoints`), where the small presets' 64x64 front camera shows
a car as a block of ~8 pixels or more. Whether a car is in the car's own lane or the next one is
where it is in the image, so the model reads each pixel's coordinates too (`position_channels`).
Positives are ~7% of the frames, most of them standing behind a car: they count 4 times.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import light_detector  # noqa: E402


def get_config(arg=None):
  config = light_detector.front_view_config(arg, "hazard_detector", "hazard_ahead")
  config.model.light_detector.position_channels = True
  config.loss.positive_weight = 4.0
  return config
