"""Camera images -> the model's views, exactly as the training data made them.

Where it sits: `LMGenDriveAgent.run_step` hands the raw camera images of a tick (the simulator's
or CARLA's `input_data["rgb_*"]`, uint8[h, w, 3] RGB) to `ViewPreprocessor`, which returns
`uint8[V, H, W, 3]` for `LMGenDrive.extend`.

The training path (data_pipelines/lmdrive_tfds/reader.py at build time, then
lmgendrive_jax/data/examples.py + augment.py at load time) is reproduced step by step:
  1. build: focus = centre square of the full-size front image, side `focus_fraction * h`
     (LMDrive: 128 of 600 px), cut before any resize, or with the build's `focus_camera` the
     telephoto focus camera's image (`rgb_focus`) whole; the four views are resized to the
     build's `view_size` when it had one;
  2. load: each view is resized so that a (H/crop_scale, W/crop_scale) box fits and centre
     cropped to (H, W) (evaluation crop: centred, no colour jitter); the stored focus view is only
     resized (crop_scale 1).
The stored JPEG round trip of the training data is not repeated (raw pixels go in).
"""

from __future__ import annotations

import json
import os

import numpy as np
from PIL import Image

from lmgendrive_jax.data import augment, sources
from lmgendrive_jax.errors import ConfigError, SimulatorError

CAMERA_VIEWS = ("front", "left", "right", "rear")
DEFAULT_FOCUS_FRACTION = 128 / 600  # data_pipelines/lmdrive_tfds/features.py: BuildConfig


def read_build_config(data_dir: str) -> dict:
  """The TFDS build's `build_config` (camera_size, view_size, focus_fraction), {} if unreadable."""
  if not data_dir:
    return {}
  for name in ("lmdrive_frames", "lmdrive_clips"):
    path = os.path.join(data_dir, name, sources.VERSION, "metadata.json")
    if os.path.exists(path):
      with open(path) as f:
        config = json.load(f).get("build_config", {})
      return json.loads(config) if isinstance(config, str) else dict(config)
  return {}


def for_run_data(data, data_dir: str, views=None,
                 focus_fraction: float = 0.0) -> tuple["ViewPreprocessor", dict]:
  """(the ViewPreprocessor that makes a run's views as its data pipeline did, the build config of
  `data_dir`, {} if unreadable). data: the run's data config (view_size, crop_scale, views);
  views: instead of data.views; focus_fraction > 0: instead of the build's."""
  build = read_build_config(data_dir)
  preprocessor = ViewPreprocessor(
      tuple(views or data.views), data.view_size, data.crop_scale,
      float(focus_fraction) or float(build.get("focus_fraction", DEFAULT_FOCUS_FRACTION)),
      stored_size=build.get("view_size"), focus_camera=bool(build.get("focus_camera", False)))
  return preprocessor, build


class ViewPreprocessor:
  """Raw camera images {view: uint8[h, w, 3]} -> uint8[V, H, W, 3] in the model's view order.

  views: the run's `data.views` (any of front, left, right, rear, focus); view_size: (H, W);
  crop_scale: the run's `data.crop_scale`; focus_fraction: the build's; stored_size: the build's
  `view_size` (W, H) the four views were resized to before storing, or None; focus_camera: the
  build's (the focus view is the `focus` camera's image, not a crop of the front one).
  """

  def __init__(self, views, view_size, crop_scale: float,
               focus_fraction: float = DEFAULT_FOCUS_FRACTION, stored_size=None,
               focus_camera: bool = False):
    self.views = tuple(views)
    unknown = [v for v in self.views if v not in CAMERA_VIEWS + ("focus",)]
    if unknown:
      raise ConfigError(f"views {unknown} are not camera views; use {CAMERA_VIEWS + ('focus',)}")
    self.height, self.width = (int(s) for s in view_size)
    self.crop_scale = float(crop_scale)
    self.focus_fraction = float(focus_fraction)
    self.stored_size = None if stored_size is None else tuple(int(s) for s in stored_size)
    self.focus_camera = bool(focus_camera)
    if not 0 < self.focus_fraction <= 1 or not 0 < self.crop_scale <= 1:
      raise ConfigError(f"focus_fraction {focus_fraction} and crop_scale {crop_scale} must be in "
                        "(0, 1]")

  @property
  def camera_views(self) -> tuple[str, ...]:
    """The cameras needed: the non-focus views, plus the focus camera or (to crop the focus view
    from) the front one when focus is used."""
    needed = [v for v in self.views if v != "focus"]
    source = "focus" if self.focus_camera else "front"
    if "focus" in self.views and source not in needed:
      needed.append(source)
    return tuple(needed)

  def focus(self, front: np.ndarray) -> np.ndarray:
    """Centre square of side round(focus_fraction * h) of the full-size front image."""
    h, w = front.shape[:2]
    side = max(1, round(self.focus_fraction * h))
    top, left = (h - side) // 2, (w - side) // 2
    return np.ascontiguousarray(front[top:top + side, left:left + side])

  def __call__(self, cameras: dict) -> np.ndarray:
    """cameras {view: uint8[h, w, 3]} -> uint8[V, H, W, 3]."""
    missing = [v for v in self.camera_views if v not in cameras]
    if missing:
      raise SimulatorError(f"camera images {missing} missing from input_data; the agent's "
                           f"sensors() asks for {list(self.camera_views)}")
    out = np.empty((len(self.views), self.height, self.width, 3), np.uint8)
    for i, view in enumerate(self.views):
      if view == "focus":
        image = Image.fromarray(np.asarray(cameras["focus"], np.uint8) if self.focus_camera
                                else self.focus(np.asarray(cameras["front"], np.uint8)))
        out[i] = augment.resize_crop(image, self.height, self.width, 1.0)
        continue
      image = Image.fromarray(np.asarray(cameras[view], np.uint8))
      if self.stored_size is not None and image.size != self.stored_size:
        image = image.resize(self.stored_size, Image.BILINEAR)
      out[i] = augment.resize_crop(image, self.height, self.width, self.crop_scale)
    return out
