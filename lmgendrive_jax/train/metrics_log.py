"""Where training numbers go: a tqdm bar (steps/s, ETA, loss), TensorBoard scalars, a JSONL file,
and sample images (TensorBoard and `<work_dir>/samples/<name>_<step>.png`)."""

from __future__ import annotations

import json
import os
import time
from typing import Mapping

import imageio.v3 as imageio
import numpy as np
from tensorboardX import SummaryWriter
from tqdm import tqdm


class MetricsLog:
  def __init__(self, work_dir: str, total_steps: int, start_step: int = 0, enabled: bool = True):
    os.makedirs(work_dir, exist_ok=True)
    self.work_dir = work_dir
    self.enabled = enabled
    self.writer = SummaryWriter(os.path.join(work_dir, "tensorboard")) if enabled else None
    self.jsonl = open(os.path.join(work_dir, "metrics.jsonl"), "a") if enabled else None
    self.bar = tqdm(total=total_steps, initial=start_step, dynamic_ncols=True, disable=not enabled,
                    unit="step")
    self.start_time = time.time()

  def step(self, n: int = 1) -> None:
    self.bar.update(n)

  def scalars(self, step: int, values: Mapping[str, float], prefix: str = "train") -> None:
    if not self.enabled:
      return
    values = {k: float(np.asarray(v)) for k, v in values.items()}
    for name, value in values.items():
      self.writer.add_scalar(f"{prefix}/{name}", value, step)
    self.jsonl.write(json.dumps({"step": step, "split": prefix, **values}) + "\n")
    self.jsonl.flush()
    if prefix == "train" and "loss" in values:
      self.bar.set_postfix(loss=f"{values['loss']:.4f}")

  def image(self, step: int, name: str, image_hwc: np.ndarray) -> None:
    """uint8[H, W, 3] to TensorBoard under `name` and to samples/<name's last part>_<step>.png."""
    if not self.enabled:
      return
    self.writer.add_image(name, image_hwc, step, dataformats="HWC")
    folder = os.path.join(self.work_dir, "samples")
    os.makedirs(folder, exist_ok=True)
    imageio.imwrite(os.path.join(folder, f"{name.rsplit('/', 1)[-1]}_{step:07d}.png"), image_hwc)

  def close(self) -> None:
    self.bar.close()
    if self.enabled:
      self.writer.close()
      self.jsonl.close()
