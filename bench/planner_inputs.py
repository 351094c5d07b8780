"""Which inputs a trained planner uses: open-loop waypoint L1 with its images or instruction removed.

  python bench/planner_inputs.py --work_dir work_dirs/quickstart_small/stage3_small [--batches 20]
  python bench/planner_inputs.py --work_dir work_dirs/quickstart_small/stage1_small   # stage 1

Runs a stage-2/3 run's model (dense forward, `LMGenDrive.__call__`) over clips of its own data
config (`--data_dir` overrides the run's) three times per batch: as recorded, with every camera
image zeroed, and with the instruction blanked (BOS only). Prints the waypoint L1 and its lateral
part (metres, over the known waypoints: `waypoint_mask`) of each, and the ratios to the recorded
inputs. A planner that reads its cameras gets clearly worse without them (ratio well above 1); a
ratio of ~1.00 says it drives from speed and language alone and will drift off the lane in
closed loop. For a model trained with the visual probe (`loss.visual_probe_weight`), the probe's
L1 (waypoints from the Q-Former's tokens alone) is a column too: it tells whether the Q-Former
carries the camera content at all, separately from whether the LLM's action queries read it.
A second table asks whether it reads the instruction where that decides the path: over the
frames whose recorded 2.5-s waypoint lies more than 2 m sideways (the path turns), the lateral
L1 of that waypoint and how often its side (left/right) is the recorded one. Images carry most
of a turn once the car is in it; the gap between "recorded inputs" and "instruction blanked"
there is what the language adds. Windows are drawn at random from each clip (seeded, without the
training augmentation or the junction weighting) so that turns are among them.
A third table asks whether it holds a sideways bias where it should keep its line: over the
frames whose recorded 2.5-s waypoint lies within 0.5 m of straight ahead, the signed mean
sideways position (+ right) of each predicted waypoint and of the recorded ones. A few
centimetres at 0.5-1 s are LMDrive's aim point (the mean of the first two waypoints) held off
the car's line: in closed loop the car drifts that way until the camera's correction, weak at
those horizons, balances it (the 8th-session planner: -5 cm at 0.5 s, drifting left in
`bench/lane_recovery.py` from either side). Its sign differs between otherwise equal runs.
Cheap (a few minutes on 2 cores) next to `bench/drive_quality.py`.

Given a stage-1 run, it asks the same of the encoder every later stage reads: its perception
model's waypoint head (target point zeroed, as stages 2-3 drive without one) over frames of the
run's data, as recorded and with the images zeroed, plus the road-layout KLs (BEV:
`data/topdown.py`; per view: `data/view_layout.py`) when the model has those heads. If the stage-1 waypoints hardly change without images, no planner
on top of this encoder can read the lane from it.
"""

from __future__ import annotations

import os
import sys

import jax
import numpy as np

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _REPO)

from bench.common import print_table, run_data_parser  # noqa: E402
from lmgendrive_jax.data import pipeline  # noqa: E402
from lmgendrive_jax.train import stage2  # noqa: E402
from lmgendrive_jax.train.losses_vision import road_layout_loss, view_layout_loss  # noqa: E402
from lmgendrive_jax.train.trained import (  # noqa: E402
    load_lmgendrive, load_perception, load_run_config)


TURN_M = 2.0  # metres sideways at 2.5 s: a turn, not lane keeping
STRAIGHT_M = 0.5  # metres sideways at 2.5 s within which the recorded path keeps its line
# The straight table's rows: a sideways bias needs the cameras to mean anything.
STRAIGHT_ROWS = ("recorded inputs", "instruction blanked")


def straight_frames(recorded_x: np.ndarray, known: np.ndarray) -> np.ndarray:
  """bool[B, T]: frames whose recorded 2.5-s waypoint is known and within STRAIGHT_M of the
  car's line. recorded_x, known: [B, T, W] (sideways metres, + right; waypoint known)."""
  return known[..., -1] & (np.abs(recorded_x[..., -1]) < STRAIGHT_M)


def signed_means(parts: list[np.ndarray]) -> tuple[np.ndarray, int]:
  """Per-horizon mean of the rows of `parts` (each f32[N_i, W]) -> (f32[W], N); NaN for none."""
  rows = np.concatenate(parts) if parts else np.zeros((0, 0))
  if not len(rows):
    return np.full(rows.shape[1:] or (0,), np.nan), 0
  return rows.mean(0), len(rows)


def ablations(batch: dict) -> dict[str, dict]:
  """The batch as recorded, with its images zeroed, and with its instruction blanked."""
  bos_only = np.zeros_like(batch["instruction_mask"])
  bos_only[:, 0] = True
  return {"recorded inputs": batch,
          "images zeroed": {**batch, "images": np.zeros_like(batch["images"])},
          "instruction blanked": {**batch, "instruction_mask": bos_only}}


def evaluation_data(config, args):
  data = config.data
  data.unlock()
  data.num_workers = 0
  data.data_dir = args.data_dir or data.data_dir
  data.split = args.split or data.split
  return data


def stage1_inputs(args) -> int:
  """The stage-1 table: waypoint L1 (target point zeroed) and road-layout KL, images as recorded
  and zeroed."""
  model, variables, config = load_perception(args.work_dir)
  data = evaluation_data(config, args)
  # Frames in a seeded shuffle (in record order, 20 batches would be the first route's first
  # seconds), without the training augmentation.
  data.random_crop, data.colour_jitter = False, 0.0
  batches = pipeline.make_iterator(data, 1, train=True, num_epochs=1)

  @jax.jit
  def evaluate(variables, batch):
    zero_target = jax.numpy.zeros_like(batch["target_point"])[:, None]
    predictions, _ = model.apply(variables, batch["images"][:, None], batch["speed"][:, None],
                                 zero_target)
    known = batch["waypoint_mask"][:, None, :, None]
    error = jax.numpy.abs(predictions["waypoints"] - batch["waypoints"][:, None]) * known
    frames = jax.numpy.ones(batch["speed"].shape[:1] + (1,), bool)
    kls = []
    for name, loss in (("road_layout", road_layout_loss), ("view_layout", view_layout_loss)):
      kls.append(jax.numpy.float32(np.nan))
      if f"{name}_logits" in predictions:
        labels = {k: batch[k][:, None] for k in (name, f"{name}_mask")}
        kls[-1] = loss(predictions[f"{name}_logits"], labels, frames)
    return (error.sum(), error[..., 0].sum(), known.sum(), *kls)

  sums, done = {}, 0
  for step in range(args.batches):
    try:
      batch = batches.batch(step)
    except StopIteration:
      break
    done += 1
    for name, images in (("recorded images", batch["images"]),
                         ("images zeroed", np.zeros_like(batch["images"]))):
      values = [float(x) for x in evaluate(variables, {**batch, "images": images})]
      sums[name] = [a + b for a, b in zip(sums.get(name, [0.0] * len(values)), values)]
  recorded_l1 = sums["recorded images"][0] / (2 * sums["recorded images"][2])
  rows = []
  for name, (total, lateral, count, road_kl, view_kl) in sums.items():
    l1 = total / (2 * count)
    rows.append([name, f"{l1:.3f}", f"{lateral / count:.3f}", f"{l1 / recorded_l1:.2f}",
                 f"{road_kl / done:.3f}", f"{view_kl / done:.3f}"])
  print_table(f"Stage-1 waypoint head (target point zeroed) of {args.work_dir} ({done} batches)",
              ["images", "L1 (m)", "lateral L1 (m)", "L1 / recorded images' L1",
               "road-layout KL", "view-layout KL"], rows)
  return 0


def main(argv=None) -> int:
  parser = run_data_parser(__doc__, "trained stage-1, 2 or 3 run dir")
  args = parser.parse_args(argv)
  if load_run_config(args.work_dir).get("stage") == "stage1":
    return stage1_inputs(args)

  model, variables, config = load_lmgendrive(args.work_dir)
  data = evaluation_data(config, args)
  data.random_crop, data.colour_jitter = False, 0.0
  data.junction_window_boost, data.junction_clip_repeats = 0.0, 1
  batches = pipeline.make_iterator(data, 2, train=True, num_epochs=1)

  def predict(v, *inputs):
    waypoints, out = model.apply(v, *inputs)
    return waypoints, out.get("probe_waypoints", waypoints)
  forward = jax.jit(predict)
  has_probe = bool(model.visual_probe)
  sums, turn_predicted, turn_recorded, done = {}, {}, [], 0
  straight_predicted, straight_recorded = {}, []
  for step in range(args.batches):
    try:
      batch = batches.batch(step)
    except StopIteration:  # fewer clips than asked for: one pass over them
      break
    done += 1
    known = np.asarray(stage2.known_waypoints(batch))[..., None]
    recorded_x = batch["waypoints"][..., -1, 0]  # f32[B, T]: 2.5-s waypoint, metres right
    turning = known[..., -1, 0] & (np.abs(recorded_x) > TURN_M)
    turn_recorded.append(recorded_x[turning])
    straight = straight_frames(batch["waypoints"][..., 0], known[..., 0])
    straight_recorded.append(batch["waypoints"][..., 0][straight])
    for name, inputs in ablations(batch).items():
      waypoints, probe = (np.asarray(x) for x in forward(variables,
                                                         *stage2.model_inputs(inputs)))
      # error: f32[B, T, 5, 2] (x = right, y = forward); lateral is the x part.
      error = np.abs(waypoints - batch["waypoints"]) * known
      probe_error = np.abs(probe - batch["waypoints"]) * known
      total, lateral, probe_total, count = sums.get(name, (0.0, 0.0, 0.0, 0.0))
      sums[name] = (total + error.sum(), lateral + error[..., 0].sum(),
                    probe_total + probe_error.sum(), count + known.sum())
      turn_predicted.setdefault(name, []).append(waypoints[..., -1, 0][turning])
      if name in STRAIGHT_ROWS:
        straight_predicted.setdefault(name, []).append(waypoints[..., 0][straight])
  recorded_l1 = sums["recorded inputs"][0] / (2 * sums["recorded inputs"][3])
  rows = []
  for name, (total, lateral, probe_total, count) in sums.items():
    l1, lateral_l1 = total / (2 * count), lateral / count
    row = [name, f"{l1:.3f}", f"{lateral_l1:.3f}", f"{l1 / recorded_l1:.2f}"]
    rows.append(row + ([f"{probe_total / (2 * count):.3f}"] if has_probe else []))
  columns = ["inputs", "L1 (m)", "lateral L1 (m)", "L1 / recorded inputs' L1"]
  print_table(f"Open-loop waypoint L1 of {args.work_dir} ({done} batches)",
              columns + (["visual probe L1 (m)"] if has_probe else []), rows)
  recorded = np.concatenate(turn_recorded) if turn_recorded else np.zeros(0)
  if len(recorded):
    rows = []
    for name, parts in turn_predicted.items():
      predicted = np.concatenate(parts)
      rows.append([name, str(len(recorded)), f"{np.abs(predicted - recorded).mean():.2f}",
                   f"{np.mean(np.sign(predicted) == np.sign(recorded)):.2f}"])
    print_table(f"Where the recorded path turns (2.5-s waypoint > {TURN_M:g} m sideways; "
                f"{int(np.sum(recorded < 0))} left)", ["inputs", "frames",
                                                       "lateral L1 at 2.5 s (m)",
                                                       "turns the recorded way"], rows)
  recorded_means, frames = signed_means(straight_recorded)
  if frames:
    horizons = [f"{(i + 1) * 0.5:g} s" for i in range(len(recorded_means))]
    rows = [["recorded path", str(frames)] + [f"{m:+.3f}" for m in recorded_means]]
    for name in STRAIGHT_ROWS:
      rows.append([name, str(frames)] + [f"{m:+.3f}" for m in signed_means(
          straight_predicted[name])[0]])
    print_table(f"Where the recorded path keeps its line (2.5-s waypoint within {STRAIGHT_M:g} m):"
                " signed mean sideways position of each waypoint (m, + right)",
                ["waypoints", "frames"] + horizons, rows)
  return 0


if __name__ == "__main__":
  sys.exit(main())
