"""A single-view detector run read behind the agent's cameras, for its detector rules.

Where it sits: each `rules.DetectorRule` of `LMGenDriveAgent` asks its
`ViewDetector.probability(cameras)` each model step, on the raw camera images of the tick: the
light rule (`agent/red_light.py`: a `configs/light_detector.py` run, P(the route's light is red)),
the stop-sign rule (`agent/stop_sign.py`: a `configs/stop_sign_detector.py` run, P(in a stop
sign's waiting zone)) and the hazard rule (`agent/hazard.py`). The view is preprocessed as the
detector's training data was (`preprocess.ViewPreprocessor` with its own build's settings),
whatever the planner's views are. One detector per run is shared by all agents of an evaluation
(`detector_for_run`).
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from lmgendrive_jax.agent import preprocess
from lmgendrive_jax.agent.planner import resolve_path
from lmgendrive_jax.data import augment
from lmgendrive_jax.errors import ConfigError


class ViewDetector:
  """A detector behind the agent's camera images (see the module docstring).

  model / variables: a `RedLightDetector` and its {"params"}; view_preprocess: a
  `ViewPreprocessor` of the single view the detector's data made; camera_size: (W, H) of the
  cameras that data was collected with, None if unknown; label: the frame label it learnt.
  `from_run(work_dir)` builds one from a detector run.
  """

  def __init__(self, model, variables: dict, view_preprocess: preprocess.ViewPreprocessor,
               camera_size: tuple[int, int] | None = None, label: str = "red_light_ahead"):
    if len(view_preprocess.views) != 1:
      raise ConfigError(f"a detector reads one view; its preprocessing makes "
                        f"{view_preprocess.views}")
    self.preprocess = view_preprocess
    self.camera_size = None if camera_size is None else tuple(int(s) for s in camera_size)
    self.label = label
    # With an object head (the hazard detector) one pass gives the per-cell object map too.
    self.object_map_size = (model.feature_size(view_preprocess.height, view_preprocess.width)
                            if getattr(model, "object_map", False) else None)
    if self.object_map_size is None:
      self._read = jax.jit(lambda images: (jax.nn.sigmoid(model.apply(variables, images)), None))
    else:
      self._read = jax.jit(lambda images: jax.tree.map(
          jax.nn.sigmoid, model.apply(variables, images, return_objects=True)))

  @classmethod
  def from_run(cls, work_dir: str) -> "ViewDetector":
    from lmgendrive_jax.train import trained  # Local: keeps the agent module import light.
    model, variables, config = trained.load_light_detector(work_dir)
    view_preprocess, build = preprocess.for_run_data(
        config.data, resolve_path(config.data.get("data_dir", "")),
        views=tuple(config.data.views))
    return cls(model, variables, view_preprocess, build.get("camera_size"),
               str(config.get("label", "red_light_ahead")))

  @property
  def camera_views(self) -> tuple[str, ...]:
    return self.preprocess.camera_views

  def probability(self, cameras: dict) -> float:
    """cameras {view: uint8[h, w, 3]} (at least `camera_views`) -> P(label)."""
    return self.read(cameras)[0]

  def read(self, cameras: dict) -> tuple[float, np.ndarray | None]:
    """cameras {view: uint8[h, w, 3]} -> (P(label), f32[rows, cols] P(an object in each cell of
    the object map), or None for a detector without an object head)."""
    prob, objects = self._read(self.preprocess(cameras))
    return (float(np.asarray(prob)[0]),
            None if objects is None else np.asarray(objects, np.float32)[0])

  def view_window(self, camera_size: tuple[int, int]) -> tuple[str, tuple[float, ...]]:
    """(the camera the detector's view comes from, the part of its image the view shows as
    (u0, u1, v0, v1)) for cameras of `camera_size` (W, H): the preprocessing's centred crop."""
    view = self.preprocess.views[0]
    if view == "focus":
      raise ConfigError("the path reading needs a detector of a rig view (front, left, right, "
                        "rear); this one reads the focus view")
    width, height = (int(s) for s in (self.preprocess.stored_size or camera_size))
    return view, augment.crop_window(width, height, self.preprocess.height,
                                     self.preprocess.width, self.preprocess.crop_scale)


@functools.lru_cache(maxsize=8)
def detector_for_run(work_dir: str, labels: tuple[str, ...]) -> ViewDetector:
  """One shared detector per run (the jitted detector compiles once per evaluation), checked to
  have learnt one of `labels` (a stop-sign detector given as the light detector is an error)."""
  detector = ViewDetector.from_run(resolve_path(work_dir))
  if detector.label not in labels:
    raise ConfigError(f"{work_dir} is a detector of {detector.label!r}; this rule needs one of "
                      f"{' or '.join(repr(label) for label in labels)}")
  return detector
