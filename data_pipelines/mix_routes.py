"""Command: mix the finished routes of several collections into one raw folder, by hard links.

  python -m data_pipelines.mix_routes --out DIR SOURCE [SOURCE ...]

A DAgger round (README: on-policy data) trains on the expert's routes and the routes the learner
drove, as one dataset: `build_tfds` reads one raw folder. Hard links cost no disk and leave the
sources as they were. Only finished routes (with collect.py's `done` marker) are mixed; the
marker is linked last, so an interrupted mix leaves no route that looks finished. The root files
(`dataset_index.txt`, the instruction lists) are rebuilt from every finished route of `--out`
(`collect.write_index`: ordered by folder name, so the mix does not depend on the sources'
order). Rerunning is a no-op; two sources with a route of the same name are refused (a route
folder is named by its route seed: collect each source with its own `--config.seed`).
"""

from __future__ import annotations

import argparse
import os

from data_pipelines import collect


def _same_file(a: str, b: str) -> bool:
  return os.path.exists(b) and os.path.samefile(a, b)


def link_route(src: str, dst: str) -> None:
  """Hard-links every file of route folder `src` into `dst` (sub-folders alike), `done` last.
  Raises FileExistsError when `dst` holds a different file of the same name."""
  marker = os.path.join(src, collect.DONE)
  for root, _, files in os.walk(src):
    target_root = os.path.join(dst, os.path.relpath(root, src))
    os.makedirs(target_root, exist_ok=True)
    for name in files:
      source, target = os.path.join(root, name), os.path.join(target_root, name)
      if source == marker or _same_file(source, target):
        continue
      if os.path.lexists(target):
        raise FileExistsError(f"{target} exists and is not {source}: two sources hold a route "
                              f"named {os.path.basename(dst)} (collect each with its own seed)")
      os.link(source, target)
  target_marker = os.path.join(dst, collect.DONE)
  if not _same_file(marker, target_marker):
    os.link(marker, target_marker)


def mix(out_dir: str, sources: list[str]) -> dict:
  """Links the finished routes of `sources` into `out_dir` and rebuilds its index.

  Returns {"routes": finished routes in out_dir, "linked": routes new to it, "per_source":
  {source: its finished routes}}."""
  for source in sources:
    if not os.path.isdir(source):
      raise FileNotFoundError(f"source {source} is not a folder")
    if os.path.abspath(source) == os.path.abspath(out_dir):
      raise ValueError(f"source {source} is the output folder")
  owner: dict[str, str] = {}
  for source in sources:
    for route in collect.finished_routes(source):
      if route in owner:
        raise FileExistsError(f"route {route} is in both {owner[route]} and {source} (collect "
                              f"each source with its own --config.seed)")
      owner[route] = source
  os.makedirs(out_dir, exist_ok=True)
  before = set(collect.finished_routes(out_dir))
  for route, source in sorted(owner.items()):
    link_route(os.path.join(source, route), os.path.join(out_dir, route))
  collect.write_index(out_dir)
  routes = collect.finished_routes(out_dir)
  return dict(routes=len(routes), linked=len(set(routes) - before),
              per_source={s: sum(1 for o in owner.values() if o == s) for s in sources})


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--out", required=True, help="the mixed raw folder (created)")
  parser.add_argument("sources", nargs="+", help="raw folders written by data_pipelines.collect")
  args = parser.parse_args(argv)
  report = mix(args.out, args.sources)
  for source, count in report["per_source"].items():
    print(f"  {count} finished routes from {source}")
  print(f"mixed into {args.out}: {report['routes']} routes ({report['linked']} new)")
  return report


if __name__ == "__main__":
  main()
