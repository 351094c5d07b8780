"""Write the HTML report of a run and print its path (the quickstart's last step).

  python launch/report.py --out work_dirs/quickstart_small/report \
    --train_dir work_dirs/quickstart_small/stage1 work_dirs/quickstart_small/stage2 \
    --eval_results work_dirs/quickstart_small/eval/ours/results.json \
                   work_dirs/quickstart_small/eval/expert/results.json \
    --videos work_dirs/quickstart_small/generate --extra preset=small

`--train_dir` and `--eval_results` take several values and may be repeated. The input formats are
in the docstring of lmgendrive_jax/eval/report.py. A missing input becomes a note in the report;
an unreadable one too, unless `--strict` (then it is an error and the exit status is 1).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", required=True, help="folder for report.html and assets/")
  parser.add_argument("--train_dir", nargs="+", action="extend", default=[],
                      help="training work dirs (metrics.jsonl, config.json), or a dir of them")
  parser.add_argument("--eval_results", nargs="+", action="extend", default=[],
                      help="closed-loop results.json files (or dirs holding one)")
  parser.add_argument("--videos", default=None, help="the generation job's output dir")
  parser.add_argument("--title", default="LMGenDrive report")
  parser.add_argument("--extra", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                      help="more header lines, e.g. preset=small devices='1 cpu'")
  parser.add_argument("--max_routes", type=int, default=6, help="route maps per agent")
  parser.add_argument("--max_clips", type=int, default=12, help="clips embedded")
  parser.add_argument("--strict", action="store_true",
                      help="fail on an unreadable input instead of noting it")
  args = parser.parse_args(argv)
  extra = {}
  for item in args.extra:
    if "=" not in item:
      parser.error(f"--extra {item!r}: expected KEY=VALUE")
    key, value = item.split("=", 1)
    extra[key] = value
  args.extra = extra
  return args


def main(argv=None) -> int:
  args = parse_args(argv)
  from lmgendrive_jax.errors import DataError
  from lmgendrive_jax.eval.report import write_report
  try:
    path = write_report(args.out, args.train_dir, args.eval_results, args.videos, title=args.title,
                        extra=args.extra, max_routes_per_agent=args.max_routes,
                        max_clips=args.max_clips, strict=args.strict)
  except DataError as e:
    print(f"[report] {e}", file=sys.stderr)
    return 1
  print(f"[report] {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
