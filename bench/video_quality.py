"""Generated-video quality vs the copy-last-frame baseline at 0.5 s / 1 s / 2 s horizons.

  python bench/video_quality.py WORK_DIR [--split validation] [--data_dir DIR]
      [--observed 8] [--future 24] [--steps 0] [--max_clips -1] [--out DIR] [--preset small]

WORK_DIR is a trained stage-2/3 run dir (e.g. work_dirs/quickstart_small/stage3_small). Runs the
batch generation job (`lmgendrive_jax/generate/job.py`, resumable: a rerun with the same --out
reuses finished clips) and prints, per horizon, the mean PSNR/SSIM of the generated frames and
of the last observed frame repeated, with their difference (positive: the world model beats
copying). The future is long enough to reach 2 s at the run's frame interval unless --future
says otherwise.
"""

import argparse
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import print_table  # noqa: E402


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("work_dir", help="trained stage-2/3 run dir (required)")
  parser.add_argument("--preset", default="", help="configs/generate.py preset (default: the "
                      "run's preset)")
  parser.add_argument("--split", default="validation")
  parser.add_argument("--data_dir", default="", help="default: the run's data.data_dir")
  parser.add_argument("--observed", type=int, default=0, help="0: the preset's observed_frames")
  parser.add_argument("--future", type=int, default=0, help="0: enough frames to reach 2 s")
  parser.add_argument("--steps", type=int, default=0, help="sampler steps; 0: the run's")
  parser.add_argument("--max_clips", type=int, default=-1)
  parser.add_argument("--out", default="", help="default: <work_dir>/bench_video/<split>")
  args = parser.parse_args()
  if not os.path.isdir(args.work_dir):
    parser.error(f"work_dir {args.work_dir!r} is not a directory: pass a trained stage-2/3 run "
                 f"dir, e.g. work_dirs/quickstart_small/stage3_small")

  from lmgendrive_jax import config as config_lib
  from lmgendrive_jax.generate import job as job_lib
  from lmgendrive_jax.train.trained import load_run_config

  run_config = load_run_config(args.work_dir)
  preset = args.preset or run_config.get("preset", "small")
  config = config_lib.load_config(
      os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs",
                   "generate.py") + f":preset={preset}")
  config.work_dir = args.work_dir
  config.out_dir = args.out or os.path.join(args.work_dir, "bench_video", args.split)
  config.data.split = args.split
  config.data.data_dir = args.data_dir
  config.data.max_clips = args.max_clips
  if args.observed:
    config.observed_frames = args.observed
  stride = int(config.data.stride or run_config.data.stride)
  dt = stride / float(config.data.fps)
  config.future_frames = args.future or int(math.ceil(2.0 / dt - 1e-9))
  config.sampler.num_steps = args.steps
  metrics = job_lib.GenerationJob(config).run()

  rows = []
  for label, h in metrics["horizons"].items():
    gain = None if h["psnr"] is None or h["copy_last_psnr"] is None else (
        h["psnr"] - h["copy_last_psnr"])
    rows.append([label, h["frame"], h["clips"], h["psnr"], h["copy_last_psnr"], gain,
                 h["ssim"], h["copy_last_ssim"]])
  mean = metrics["mean"]
  rows.append(["all frames", "-", mean["clips_with_truth"], mean["psnr"], mean["copy_last_psnr"],
               None if mean["psnr"] is None else mean["psnr"] - mean["copy_last_psnr"],
               mean["ssim"], mean["copy_last_ssim"]])
  setup = metrics["setup"]
  print_table(f"Video quality: {args.work_dir} ({setup['split']}, {setup['observed_frames']} "
              f"observed + {setup['future_frames']} generated frames, "
              f"{setup['frame_interval_s']:.2f} s apart, {setup['sampler']['num_steps']} "
              f"{setup['sampler']['sampler']} steps)",
              ["horizon", "frame", "clips", "PSNR gen", "PSNR copy-last", "gain dB", "SSIM gen",
               "SSIM copy-last"], rows)
  print(f"\nvideos and metrics.json: {config.out_dir}")


if __name__ == "__main__":
  main()
