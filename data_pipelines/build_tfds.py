"""Command: build the LMDrive-format dataset into TFDS array_record (frames + clips).

  python -m data_pipelines.build_tfds --data_dir /data/lmdrive --out /data/lmdrive_tfds \
      [--workers 8] [--view_size 400x300] [--camera_size 800x600] [--image_format jpeg]
      [--no_topdown] [--recovery_merge_m 4.5] [--recovery_min_step_m 0]

Resumable: rerun the same command after an interruption and finished routes are not redone.
Bad inputs are skipped and listed in OUT/build_report.json (see data_pipelines/lmdrive_tfds).
"""

from __future__ import annotations

import argparse
import json
import os

from data_pipelines.lmdrive_tfds import BuildConfig, build
from lmgendrive_jax.errors import ConfigError


def _size(text: str | None) -> tuple[int, int] | None:
  if text in (None, "", "none", "None"):
    return None
  try:
    width, height = (int(v) for v in text.lower().split("x"))
  except ValueError as e:
    raise ConfigError(f"image size {text!r} must look like WIDTHxHEIGHT, e.g. 800x600") from e
  return width, height


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--data_dir", required=True, help="LMDrive dataset root")
  parser.add_argument("--out", required=True, help="output folder (TFDS data dir)")
  parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
  parser.add_argument("--camera_size", default="800x600", help="source view size WxH")
  parser.add_argument("--view_size", default=None, help="stored view size WxH (default: source)")
  parser.add_argument("--image_format", default="jpeg", choices=("jpeg", "png"))
  parser.add_argument("--jpeg_quality", type=int, default=95)
  parser.add_argument("--validation_weathers", default="12,13,20")
  parser.add_argument("--bev_grid", default="50,50,30,20,25",
                      help="rows,cols,ahead_m,behind_m,side_m of the stored detection grid")
  parser.add_argument("--no_topdown", action="store_true",
                      help="ignore topdown/ (for data whose topdown/ is not our road-map format, "
                           "e.g. LMDrive's CARLA renders)")
  parser.add_argument("--focus_camera", action="store_true",
                      help="focus view from rgb_focus/ (the collector's telephoto focus camera) "
                           "instead of a crop of the front image")
  parser.add_argument("--recovery_merge_m", type=float, default=BuildConfig.recovery_merge_m,
                      help="recovery views (collect view_shift): metres over which their "
                           "waypoints merge into the expert's path (0: onto it at once)")
  parser.add_argument("--recovery_min_step_m", type=float,
                      default=BuildConfig.recovery_min_step_m,
                      help="recovery views: mask their waypoints where the expert drove less "
                           "than this to the first one (0: keep all)")
  parser.add_argument("--red_light_zone_m", type=float, default=BuildConfig.red_light_zone_m,
                      help="the red_light_zone label: metres before a red light's stop line")
  parser.add_argument("--no_progress", action="store_true")
  args = parser.parse_args(argv)
  rows, cols, ahead, behind, side = (float(v) for v in args.bev_grid.split(","))
  config = BuildConfig(
      camera_size=_size(args.camera_size), view_size=_size(args.view_size),
      image_format=args.image_format, jpeg_quality=args.jpeg_quality,
      validation_weathers=tuple(int(w) for w in args.validation_weathers.split(",") if w),
      bev_rows=int(rows), bev_cols=int(cols), bev_ahead=ahead, bev_behind=behind, bev_side=side,
      read_topdown=not args.no_topdown, focus_camera=args.focus_camera,
      recovery_merge_m=args.recovery_merge_m, recovery_min_step_m=args.recovery_min_step_m,
      red_light_zone_m=args.red_light_zone_m)
  report = build(args.data_dir, args.out, config, workers=args.workers,
                 progress=not args.no_progress)
  print(json.dumps({k: report[k] for k in ("examples", "clip_examples", "recovery_views",
                                           "counts")}, indent=1))
  print(f"report: {os.path.join(args.out, 'build_report.json')}")
  return report


if __name__ == "__main__":
  main()
