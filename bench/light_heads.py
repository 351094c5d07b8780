"""Do the light heads see the lamp or the speedometer? Recall and precision by speed.

  python bench/light_heads.py --work_dir work_dirs/quickstart_small/stage1_small [--batches 200]
  python bench/light_heads.py --work_dir RUNS/light_detector_small   # the agent's light rule
  python bench/light_heads.py --work_dir RUNS/stop_sign_detector_small   # or hazard_detector

Runs a stage-1 run's perception model over a seeded shuffle of its data's frames (validation
split by default, no augmentation) and prints, per ego-speed bin, how often each red-light label
holds and the recall / precision of its head (probability > `--threshold`):
- `traffic_light`, LMDrive's label (`is_red_light_present`: the expert's braking trigger, set
  within braking distance, so almost only while the car stands) and its head `light_logits`;
- `red_light_ahead`, ours (the light of the route's next stop line is red, at any distance and
  speed: `data_pipelines/lmdrive_tfds/reader.py`) and its head `red_ahead_logits`.
Each head runs twice: with the recorded speed, and with the speed input zeroed (the BEV decoder
reads the ego speed). A head that reads the lamp keeps its recall on moving frames and does not
call every frame red when the speed is zeroed; one that reads the speed does neither (on the
bigger run before `red_light_ahead`: LMDrive's head called 95% of standing frames red and none
above 1 m/s; with the speed zeroed, 78% of the moving ones).
Given a detector run (`configs/light_detector.py`, `stop_sign_detector.py`,
`hazard_detector.py`: the agent's rules), it rates that detector against its own label the same
way (it has no speed input: "none"); frames whose label is unknown (-1) are left out. A
detector with an object map (`object_map`, the hazard detector) also gets the map rated against
the frames' object cover: recall and precision over the cells at least half covered. A map that
finds the cars on training frames and not on the validation split has learnt the scenes (the
18th session: 0.69 vs 0.30). It is also read as the agent's hazard rule reads it with
`hazard_path_threshold` (`agent/path_objects.py`), on the path of each frame's recorded
waypoints, against an object there by the frame's object cover, per threshold.
"""

from __future__ import annotations

import os
import sys

import jax
import numpy as np

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _REPO)

from bench.common import print_table, run_data_parser  # noqa: E402
from bench.planner_inputs import evaluation_data  # noqa: E402
from lmgendrive_jax.agent import path_objects  # noqa: E402
from lmgendrive_jax.agent.detector import ViewDetector  # noqa: E402
from lmgendrive_jax.data import pipeline  # noqa: E402
from lmgendrive_jax.train import light_detector  # noqa: E402
from lmgendrive_jax.train.trained import (load_light_detector, load_perception,  # noqa: E402
                                          load_run_config)

SPEED_BINS = ((0.0, 0.1), (0.1, 1.0), (1.0, 3.0), (3.0, np.inf))  # m/s
HEADS = (("traffic_light", "light_logits"), ("red_light_ahead", "red_ahead_logits"))
PATH_THRESHOLDS = (0.3, 0.5, 0.7, 0.9)


def collect_over_frames(batches, num_batches: int, predict, heads=HEADS) -> dict:
  """{"speed": f32[N], label: int[N] (the `heads` labels the batches hold), and each key of
  `predict(batch)` (P f32[N])} over the frames of `num_batches` batches."""
  labels = sorted({label for label, _ in heads})
  out: dict[str, list] = {}
  for step in range(num_batches):
    try:
      batch = batches.batch(step)
    except StopIteration:
      break
    out.setdefault("speed", []).append(np.asarray(batch["speed"]))
    if "view_objects" in batch:
      out.setdefault("view_objects", []).append(np.asarray(batch["view_objects"])[:, 0])
      out.setdefault("waypoints", []).append(np.asarray(batch["waypoints"]))
    for label in labels:
      if label in batch:
        out.setdefault(label, []).append(np.asarray(batch[label]))
    for key, value in predict(batch).items():
      out.setdefault(key, []).append(np.asarray(value))
  return {k: np.concatenate(v) for k, v in out.items()}


def perception_predictor(model, variables):
  """batch -> {f"{logits}@{speed input}": P(red)}: a stage-1 model's light heads, with the
  recorded and the zeroed speed."""
  @jax.jit
  def probabilities(images, speed):
    predictions, _ = model.apply(variables, images[:, None], speed[:, None],
                                 jax.numpy.zeros(speed.shape + (1, 2)))
    return {k: jax.nn.softmax(predictions[k][:, 0])[..., 1] for _, k in HEADS
            if k in predictions}

  def predict(batch):
    return {f"{key}@{name}": value
            for name, speed in (("recorded", batch["speed"]),
                                ("zeroed", np.zeros_like(batch["speed"])))
            for key, value in probabilities(batch["images"], speed).items()}
  return predict


def detector_predictor(model, variables):
  """batch -> {"detector@none": P(label)}, and "objects": P(object) f32[N, h, w] per cell of a
  detector with an object map: a detector on its one view of each frame."""
  if model.object_map:
    @jax.jit
    def predict(images):
      logits, object_logits = model.apply(variables, images, return_objects=True)
      return {"detector@none": jax.nn.sigmoid(logits), "objects": jax.nn.sigmoid(object_logits)}
  else:
    predict = jax.jit(lambda images: {"detector@none": jax.nn.sigmoid(
        model.apply(variables, images))})
  return lambda batch: predict(batch["images"][:, 0])


def object_map_row(values: dict, threshold: float) -> list:
  """[cells at least half covered, share of cells said, recall, precision] of an object map."""
  held, said = values["view_objects"] >= 0.5, values["objects"] > threshold
  hits = (held & said).sum()
  return [int(held.sum()), f"{said.mean():.4f}",
          f"{hits / held.sum():.3f}" if held.any() else "-",
          f"{hits / said.sum():.3f}" if said.any() else "-"]


def path_rows(values: dict, path: path_objects.PathObjects, thresholds=PATH_THRESHOLDS
              ) -> list[list]:
  """The object map read on each frame's path (`path_objects`, the hazard rule's
  `hazard_path_threshold`; the path here is the expert's own recorded waypoints) against an
  object there (the frame's object cover read on the same cells >= 0.5), per threshold: [P >,
  frames, object on the path, said, recall, precision, recall on the `hazard_ahead` frames, said
  on frames above 3 m/s]."""
  waypoints = values["waypoints"]
  said_p = np.array([path.reading(o, w) for o, w in zip(values["objects"], waypoints)])
  held = np.array([path.reading(c, w) for c, w in zip(values["view_objects"], waypoints)]) >= 0.5
  hazard = values.get("hazard_ahead", np.full(len(held), -1)) == 1
  fast = values["speed"] >= 3.0
  rows = []
  for threshold in thresholds:
    said = said_p > threshold
    rows.append([f"{threshold:g}", len(held), f"{held.mean():.3f}", f"{said.mean():.3f}",
                 f"{(said & held).sum() / held.sum():.3f}" if held.any() else "-",
                 f"{(said & held).sum() / said.sum():.3f}" if said.any() else "-",
                 f"{(said & hazard).sum() / hazard.sum():.3f}" if hazard.any() else "-",
                 f"{said[fast].mean():.3f}" if fast.any() else "-"])
  return rows


def detector_path(work_dir: str) -> path_objects.PathObjects:
  """The path reading of a detector run's object map, as the agent's hazard rule builds it, on
  the cameras its data was collected with."""
  detector = ViewDetector.from_run(work_dir)
  camera_size = detector.camera_size or detector.preprocess.stored_size
  if camera_size is None:
    raise ValueError(f"{work_dir}: its data's build records no camera size; the path reading "
                     f"needs the camera's geometry")
  return path_objects.for_detector(detector, camera_size, work_dir)


def rows_by_speed(values: dict, threshold: float, heads=HEADS) -> list[list]:
  rows = []
  for label, logits in heads:
    for speed_input in ("recorded", "zeroed", "none"):
      key = f"{logits}@{speed_input}"
      if label not in values or key not in values:
        continue
      for low, high in SPEED_BINS:
        in_bin = (values["speed"] >= low) & (values["speed"] < high) & (values[label] >= 0)
        truth, said = values[label][in_bin] == 1, values[key][in_bin] > threshold
        rows.append([label, speed_input, f"{low:g}-{high:g}", int(in_bin.sum()),
                     f"{truth.mean():.3f}" if in_bin.any() else "-",
                     f"{said.mean():.3f}" if in_bin.any() else "-",
                     f"{(said & truth).sum() / truth.sum():.3f}" if truth.any() else "-",
                     f"{(said & truth).sum() / said.sum():.3f}" if said.any() else "-"])
  return rows


def main(argv=None) -> int:
  parser = run_data_parser(__doc__, "trained stage-1 run dir", "validation", batches=200)
  parser.add_argument("--threshold", type=float, default=0.5)
  args = parser.parse_args(argv)
  is_detector = load_run_config(args.work_dir).get("stage") == "light_detector"
  model, variables, config = (load_light_detector if is_detector else load_perception)(
      args.work_dir)
  data = evaluation_data(config, args)
  data.random_crop, data.colour_jitter = False, 0.0
  # A seeded shuffle: in record order the first batches are one route's first seconds.
  batches = pipeline.make_iterator(data, 1, train=True, num_epochs=1)
  if is_detector:
    heads = ((light_detector.check_detector_data(config), "detector"),)
    predict = detector_predictor(model, variables)
  else:
    heads, predict = HEADS, perception_predictor(model, variables)
  values = collect_over_frames(batches, args.batches, predict, heads)
  print_table(f"Heads of {args.work_dir} on {len(values['speed'])} {data.split} frames "
              f"(P > {args.threshold})",
              ["label", "speed input", "speed (m/s)", "frames", "label rate", "said yes",
               "recall", "precision"], rows_by_speed(values, args.threshold, heads))
  if "objects" in values and "view_objects" in values:
    print_table(f"Object map of {args.work_dir} on the same frames (cells covered >= 0.5, "
                f"P > {args.threshold})", ["covered cells", "cells said", "recall", "precision"],
                [object_map_row(values, args.threshold)])
    print_table(f"Object map read on each frame's path (the expert's waypoints; "
                f"agent/path_objects.py) vs an object there", [
                    "P >", "frames", "object on path", "said", "recall", "precision",
                    "recall on hazard_ahead", "said above 3 m/s"],
                path_rows(values, detector_path(args.work_dir)))
  return 0


if __name__ == "__main__":
  sys.exit(main())
