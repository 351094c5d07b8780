"""Shared by the benchmarks: timing with warm-up, the machine's measured matmul peak, tables,
the arguments of the closed-loop route benches and of the benches that run a model over data."""

import argparse
import time

import jax
import jax.numpy as jnp


def time_call(fn, *, warmup: int = 2, repeats: int = 10) -> float:
  """Median seconds per call of `fn()` (which must block until its result is ready)."""
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  times.sort()
  return times[len(times) // 2]


def matmul_peak_flops(n: int = 2048, dtype=jnp.float32) -> float:
  """FLOP/s of one large jitted square matmul: the practical peak of this device."""
  a = jax.random.normal(jax.random.key(0), (n, n), dtype)
  b = jax.random.normal(jax.random.key(1), (n, n), dtype)
  matmul = jax.jit(jnp.dot)
  seconds = time_call(lambda: matmul(a, b).block_until_ready(), repeats=5)
  return 2 * n ** 3 / seconds


def view_size(preset: str) -> int:
  """The preset's training view size in pixels (square views: data_preset's view_size)."""
  from lmgendrive_jax import config as config_lib  # Local: common.py stays light to import.
  height, _ = config_lib.data_preset(preset).view_size
  return int(height)


def print_table(title: str, header: list[str], rows: list[list]) -> None:
  widths = [max(len(str(h)), *(len(_fmt(r[i])) for r in rows)) for i, h in enumerate(header)]
  print(f"\n{title}")
  print("  ".join(str(h).ljust(w) for h, w in zip(header, widths)))
  print("  ".join("-" * w for w in widths))
  for row in rows:
    print("  ".join(_fmt(v).ljust(w) for v, w in zip(row, widths)))


def _fmt(value) -> str:
  if isinstance(value, float):
    return f"{value:.4g}"
  return str(value)


def add_aim_lookahead_argument(parser: argparse.ArgumentParser) -> None:
  """--aim_lookahead_m: the agent option `aim_lookahead_m` (sim/pid.py: WaypointController);
  a negative value is refused by argparse, naming it."""
  def metres(text: str) -> float:
    value = float(text)
    if value < 0:
      raise argparse.ArgumentTypeError(f"{value:g}: give 0 (LMDrive's aim) or metres > 0")
    return value
  parser.add_argument("--aim_lookahead_m", type=metres, default=0.0,
                      help="> 0: our agent steers at the expert's aim point on its predicted path "
                           "instead of LMDrive's (sim/pid.py: WaypointController)")


def run_data_parser(doc: str, work_dir_help: str, split_default: str = "",
                    batches: int = 20) -> argparse.ArgumentParser:
  """argparse parser with the arguments of the benches that run a trained model over frames of
  its data: --work_dir, --data_dir (default: the run's), --split ("" = the run's), --batches."""
  parser = argparse.ArgumentParser(description=doc,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--work_dir", required=True, help=work_dir_help)
  parser.add_argument("--data_dir", default="", help="TFDS build (default: the run's)")
  where = "" if split_default else " (default: the run's)"
  parser.add_argument("--split", default=split_default, help=f"train or validation{where}")
  parser.add_argument("--batches", type=int, default=batches,
                      help="batches of the run's batch size")
  return parser


def route_bench_parser(doc: str, preset_help: str = "simulator/eval preset",
                       several_seeds: bool = False):
  """argparse parser with the arguments every closed-loop route bench takes: --work_dir (a
  trained stage-2/3 run), --preset, --route_set and --seed (held out from the collection's 0;
  with `several_seeds`, a comma-separated list whose route sets the bench pools)."""
  parser = argparse.ArgumentParser(description=doc,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--work_dir", required=True, help="trained stage-2/3 run dir")
  parser.add_argument("--preset", default="small", help=preset_help)
  parser.add_argument("--route_set", default="tiny_8")
  if several_seeds:
    parser.add_argument("--seed", type=_seed_list, default=(1,),
                        help="comma-separated, e.g. 1,5; held out: collection uses seed 0")
  else:
    parser.add_argument("--seed", type=int, default=1, help="held out: collection uses seed 0")
  return parser


def _seed_list(text: str) -> tuple[int, ...]:
  try:
    seeds = tuple(int(part) for part in text.split(","))
  except ValueError:
    raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated integers, e.g. 1,5")
  if len(set(seeds)) != len(seeds):
    raise argparse.ArgumentTypeError(f"{text!r}: a seed is repeated")
  return seeds
