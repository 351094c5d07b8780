"""Which inputs a trained planner uses: open-loop waypoint L1 with its images or instruction removed.

  python bench/planner_inputs.py --work_dir work_dirs/quickstart_small/stage3_small [--batches 20]

Runs a stage-2/3 run's model (dense forward, `LMGenDrive.__call__`) over clips of its own data
config (`--data_dir` overrides the run's) three times per batch: as recorded, with every camera
image zeroed, and with the instruction blanked (BOS only). Prints the waypoint L1 and its lateral
part (metres, over the known waypoints: `waypoint_mask`) of each, and the ratios to the recorded
inputs. A planner that reads its cameras gets clearly worse without them (ratio well above 1); a
ratio of ~1.00 says it drives from speed and language alone and will drift off the lane in
closed loop. Cheap (a few minutes on 2 cores) next to `bench/drive_quality.py`.
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import numpy as np

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _REPO)

from bench.common import print_table  # noqa: E402
from lmgendrive_jax.data import pipeline  # noqa: E402
from lmgendrive_jax.train import stage2  # noqa: E402
from lmgendrive_jax.train.trained import load_lmgendrive  # noqa: E402


def ablations(batch: dict) -> dict[str, dict]:
  """The batch as recorded, with its images zeroed, and with its instruction blanked."""
  bos_only = np.zeros_like(batch["instruction_mask"])
  bos_only[:, 0] = True
  return {"recorded inputs": batch,
          "images zeroed": {**batch, "images": np.zeros_like(batch["images"])},
          "instruction blanked": {**batch, "instruction_mask": bos_only}}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--work_dir", required=True, help="trained stage-2/3 run dir")
  parser.add_argument("--data_dir", default="", help="TFDS build (default: the run's)")
  parser.add_argument("--batches", type=int, default=20, help="batches of the run's batch size")
  args = parser.parse_args(argv)

  model, variables, config = load_lmgendrive(args.work_dir)
  data = config.data
  data.unlock()
  data.num_workers = 0
  if args.data_dir:
    data.data_dir = args.data_dir
  batches = pipeline.make_iterator(data, 2, train=False, num_epochs=1)
  forward = jax.jit(lambda v, *inputs: model.apply(v, *inputs)[0])
  sums, done = {}, 0
  for step in range(args.batches):
    try:
      batch = batches.batch(step)
    except StopIteration:  # fewer clips than asked for: one pass over them
      break
    done += 1
    known = (batch["frame_mask"][..., None] & batch["waypoint_mask"])[..., None]
    for name, inputs in ablations(batch).items():
      error = np.abs(np.asarray(forward(variables, *stage2.model_inputs(inputs)))
                     - batch["waypoints"]) * known
      total, lateral, count = sums.get(name, (0.0, 0.0, 0.0))
      # error: f32[B, T, 5, 2] (x = right, y = forward); lateral is the x part.
      sums[name] = (total + error.sum(), lateral + error[..., 0].sum(), count + known.sum())
  recorded_l1 = sums["recorded inputs"][0] / (2 * sums["recorded inputs"][2])
  rows = []
  for name, (total, lateral, count) in sums.items():
    l1, lateral_l1 = total / (2 * count), lateral / count
    rows.append([name, f"{l1:.3f}", f"{lateral_l1:.3f}", f"{l1 / recorded_l1:.2f}"])
  print_table(f"Open-loop waypoint L1 of {args.work_dir} ({done} batches)",
              ["inputs", "L1 (m)", "lateral L1 (m)", "L1 / recorded inputs' L1"], rows)
  return 0


if __name__ == "__main__":
  sys.exit(main())
