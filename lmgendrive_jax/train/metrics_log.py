"""Where training numbers go: a tqdm bar (steps/s, ETA, loss), TensorBoard scalars, a JSONL file."""

from __future__ import annotations

import json
import os
import time
from typing import Mapping

import numpy as np
from tensorboardX import SummaryWriter
from tqdm import tqdm


class MetricsLog:
  def __init__(self, work_dir: str, total_steps: int, start_step: int = 0, enabled: bool = True):
    os.makedirs(work_dir, exist_ok=True)
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
    if self.enabled:
      self.writer.add_image(name, image_hwc, step, dataformats="HWC")

  def close(self) -> None:
    self.bar.close()
    if self.enabled:
      self.writer.close()
      self.jsonl.close()
