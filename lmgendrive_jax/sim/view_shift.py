"""Recovery views for data collection: the cameras rendered from beside the expert's path.

Why: behaviour cloning from a clean expert never shows a car off its lane centre, so a planner
trained on it holds a small heading error until it leaves the route (docs/experiments.md,
2026-12-06). The expert's steering-noise episodes show a few recoveries; this shows many, with no
frame lost to masking. While a shift episode lasts, the collector renders the cameras (and the
road map) from a pose `right_m` to the right of the car and turned `yaw_rad` to the right, as if
the car had drifted there, and the TFDS reader computes that frame's labels (waypoints, target
point, objects) in the shifted pose's frame: the waypoints are still the expert's own future
positions, so from the shifted pose they lead back to its path (what the expert's own pure-pursuit
steering, aim ~4-5 m ahead, would do from there). The car itself drives unshifted: physics,
scoring and every other frame are the clean collection's. PilotNet's side cameras and
ChauffeurNet's perturbations are the same idea.

An episode is a smooth excursion over `length_m` of route progress: the lateral offset
`A sin^2(pi u)` (u from 0 to 1 along it) drifts out to `A` and back, and the heading follows
the shifted path (`atan` of its slope), so consecutive frames look like a car drifting off its
lane and steering back. Episodes start a random gap (exponential, mean `gap_m`) after the
previous one ends; |A| is uniform in [min_offset_m, max_offset_m], either side.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np


@dataclasses.dataclass(frozen=True)
class ViewShiftConfig:
  """gap_m: mean route metres between episodes (0: off). length_m: (min, max) of an episode's
  length. min_offset_m / max_offset_m: the range of its peak lateral offset."""
  gap_m: float = 0.0
  length_m: tuple[float, float] = (15.0, 30.0)
  min_offset_m: float = 0.3
  max_offset_m: float = 1.5

  @classmethod
  def from_config(cls, cfg) -> "ViewShiftConfig":
    return cls(gap_m=float(cfg.gap_m), length_m=tuple(float(x) for x in cfg.length_m),
               min_offset_m=float(cfg.min_offset_m), max_offset_m=float(cfg.max_offset_m))

  @property
  def enabled(self) -> bool:
    return self.gap_m > 0


class ViewShift:
  """The shift episodes of one route, drawn lazily along its progress (deterministic per seed)."""

  def __init__(self, config: ViewShiftConfig, seed):
    if config.gap_m < 0 or min(config.length_m) <= 0 or config.length_m[0] > config.length_m[1]:
      raise ValueError(f"view_shift {config}: gap_m >= 0 and 0 < length_m[0] <= length_m[1]")
    if not 0 <= config.min_offset_m <= config.max_offset_m:
      raise ValueError(f"view_shift {config}: 0 <= min_offset_m <= max_offset_m")
    self.config = config
    self.rng = np.random.default_rng(seed)
    self.start = self.length = self.peak = 0.0
    self._draw(after_m=0.0)

  def _draw(self, after_m: float) -> None:
    cfg = self.config
    self.start = after_m + float(self.rng.exponential(cfg.gap_m))
    self.length = float(self.rng.uniform(*cfg.length_m))
    side = 1.0 if self.rng.random() < 0.5 else -1.0
    self.peak = side * float(self.rng.uniform(cfg.min_offset_m, cfg.max_offset_m))

  def offset(self, progress_m: float) -> tuple[float, float]:
    """(right_m, yaw_rad) of the rendered pose from the car at this route progress; (0, 0) between
    episodes. Progress must not decrease between calls (the route scorer's never does)."""
    if not self.config.enabled:
      return 0.0, 0.0
    while progress_m >= self.start + self.length:
      self._draw(after_m=self.start + self.length)
    u = (progress_m - self.start) / self.length
    if u <= 0.0:
      return 0.0, 0.0
    right = self.peak * math.sin(math.pi * u) ** 2
    slope = self.peak * math.pi / self.length * math.sin(2.0 * math.pi * u)  # d right / d progress
    return right, math.atan(slope)


def shifted_pose(pos, yaw: float, right_m: float, yaw_rad: float) -> tuple[np.ndarray, float]:
  """The CARLA-frame pose `right_m` to the ego's right and turned `yaw_rad` to its right.
  CARLA's frame is left-handed (y south): the ego's right is (-sin yaw, cos yaw), and a turn to
  the right increases yaw."""
  pos = np.asarray(pos, np.float64)
  right = np.array([-math.sin(yaw), math.cos(yaw)])
  return pos + right_m * right, float(yaw) + yaw_rad
