"""Benchmark: examples/s of the stage-2 input pipeline (read, decode, augment, tokenise, batch).

  python bench/data.py [--frames 80] [--camera 800x600] [--batches 12]

Writes an LMDrive-format dataset at the real camera size (800x600 JPEG views, raw layout) into a
temporary folder, builds it with `data_pipelines.build_tfds`, then times the `small` stage-2
pipeline with 0 and 2 grain workers, next to the clips/s a `small` stage-2 train step consumes,
measured in the same run (bench/train_step.py's step: random weights, a batch of the pipeline's
shapes, forward + backward + AdamW). Target: pipeline >= 3x the train step.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _REPO)
sys.path.insert(0, os.path.join(_REPO, "tests", "data"))  # The fixture writer of the data tests.

import lmdrive_fixture as fx  # noqa: E402

from bench import train_step  # noqa: E402
from bench.common import print_table  # noqa: E402
from data_pipelines.lmdrive_tfds import BuildConfig, build  # noqa: E402
from lmgendrive_jax.config import data_preset  # noqa: E402
from lmgendrive_jax.data import pipeline  # noqa: E402


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--frames", type=int, default=80, help="frames per route (2 routes)")
  parser.add_argument("--camera", default="800x600")
  parser.add_argument("--batches", type=int, default=12)
  parser.add_argument("--view_size", default=None,
                      help="stored view size WxH at build time (default: the camera size)")
  parser.add_argument("--train_preset", default="small",
                      help="preset of the stage-2 train step timed beside the pipeline")
  args = parser.parse_args()
  camera = tuple(int(v) for v in args.camera.split("x"))
  step = train_step.measure(args.train_preset, shares=False)
  train_rate = step["samples_per_s"]
  with tempfile.TemporaryDirectory() as tmp:
    routes = [fx.route_name(1, 1, i) for i in range(2)]
    clips = [fx.clip_entry(r, s, s + 20, 60) for r in routes
             for s in range(0, args.frames - 25, 10)]
    start = time.perf_counter()
    fx.write_dataset(os.path.join(tmp, "src"),
                     [dict(name=r, num_frames=args.frames, size=camera, seed=i)
                      for i, r in enumerate(routes)], clips=clips)
    write_s = time.perf_counter() - start
    start = time.perf_counter()
    report = build(os.path.join(tmp, "src"), os.path.join(tmp, "out"),
                   BuildConfig(camera_size=camera, view_size=tuple(
                       int(v) for v in args.view_size.split("x")) if args.view_size else None),
                   workers=2, progress=False)
    build_s = time.perf_counter() - start
    frames = report["examples"]["train"]
    rows = []
    for workers in (0, 2):
      cfg = data_preset("small", 2)
      cfg.data_dir, cfg.num_workers = os.path.join(tmp, "out"), workers
      it = pipeline.make_clip_iterator(cfg, "train", shard_index=0, shard_count=1)
      next(it)  # Warm-up (worker start-up, tokenizer load).
      start = time.perf_counter()
      for _ in range(args.batches):
        next(it)
      seconds = time.perf_counter() - start
      it.close()
      rate = args.batches * cfg.batch_size / seconds
      rows.append([f"stage-2 small, {workers} workers", f"{rate:.1f}",
                   f"{rate * cfg.window_frames:.0f}", f"{train_rate:.2f}",
                   f"{rate / train_rate:.2f}x"])
  print(f"dataset: 2 routes x {args.frames} frames of 4 {camera[0]}x{camera[1]} JPEG views "
        f"(written in {write_s:.1f} s), stored at {args.view_size or args.camera}; build: {frames} frames, {sum(report['clip_examples'].values())}"
        f" clips in {build_s:.1f} s = {frames / build_s:.1f} frames/s with 2 workers")
  cfg = data_preset("small", 2)
  print_table(f"Stage-2 input pipeline (batch {cfg.batch_size} clips of {cfg.window_frames} frames,"
              f" {len(cfg.views)} views at {cfg.view_size[0]}x{cfg.view_size[1]})",
              ["pipeline", "clips/s", "frames/s",
               f"{args.train_preset} train step clips/s ({step['seconds']:.2f} s/step)",
               "pipeline / step"], rows)


if __name__ == "__main__":
  main()
