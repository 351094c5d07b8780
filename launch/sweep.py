"""Expand a config's sweep into runs: run them here one after another, or write job scripts.

  python launch/sweep.py --config=configs/sweeps/llm_lr.py:preset=tiny --mode=local
  python launch/sweep.py --config=configs/sweeps/llm_lr.py --mode=scripts --out=sweep_jobs

A sweep file is a config file that also defines `get_sweep(arg) -> list[dict]`, each dict a set
of overrides (`{"optim.lr": 1e-3}`). Every run gets its own work dir
`<config.work_dir>/sweep_<i>_<key=value...>` and is launched as
`launch/train.py --config=<file>:<arg> --config.<key>=<value> ...`.
"""

import argparse
import importlib.util
import os
import re
import shlex
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from lmgendrive_jax import config as config_lib  # noqa: E402
from lmgendrive_jax.errors import ConfigError  # noqa: E402


def _slug(overrides: dict) -> str:
  text = "_".join(f"{k.split('.')[-1]}={v}" for k, v in overrides.items())
  return re.sub(r"[^A-Za-z0-9_.=-]+", "-", text)[:80]


def expand(spec: str) -> list[dict]:
  """Runs of a sweep: [{"name", "work_dir", "overrides", "argv"}], validated against the config."""
  path, _, arg = spec.partition(":")
  module_spec = importlib.util.spec_from_file_location("_sweep_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  if not hasattr(module, "get_sweep"):
    raise ConfigError(f"{path} defines no get_sweep(arg); nothing to sweep")
  base = config_lib.resolve_run_dirs(config_lib.load_config(spec))
  runs = []
  for i, overrides in enumerate(module.get_sweep(arg or None)):
    name = f"sweep_{i:03d}_{_slug(overrides)}"
    work_dir = os.path.join(base.work_dir, name)
    all_overrides = {**overrides, "work_dir": work_dir}
    config_lib.load_config(spec, {k: repr(v) if not isinstance(v, str) else v
                                  for k, v in all_overrides.items()})  # Fails early on typos.
    argv = [sys.executable, os.path.join(REPO, "launch", "train.py"), f"--config={spec}"]
    argv += [f"--config.{k}={v}" for k, v in all_overrides.items()]
    runs.append({"name": name, "work_dir": work_dir, "overrides": overrides, "argv": argv})
  return runs


def write_scripts(runs: list[dict], out_dir: str) -> list[str]:
  """One bash job script per run (submit with sbatch/qsub or run directly) plus run_all.sh."""
  os.makedirs(out_dir, exist_ok=True)
  paths = []
  for run in runs:
    path = os.path.join(out_dir, f"{run['name']}.sh")
    with open(path, "w") as f:
      f.write("#!/usr/bin/env bash\n#SBATCH --job-name=" + run["name"] + "\nset -euo pipefail\n")
      f.write(f"cd {shlex.quote(REPO)}\n" + " ".join(shlex.quote(a) for a in run["argv"]) + "\n")
    os.chmod(path, 0o755)
    paths.append(path)
  with open(os.path.join(out_dir, "run_all.sh"), "w") as f:
    f.write("#!/usr/bin/env bash\nset -euo pipefail\n" +
            "".join(f"{shlex.quote(p)}\n" for p in paths))
  os.chmod(os.path.join(out_dir, "run_all.sh"), 0o755)
  return paths


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--config", required=True)
  parser.add_argument("--mode", choices=["local", "scripts", "list"], default="list")
  parser.add_argument("--out", default="sweep_jobs")
  args = parser.parse_args()
  runs = expand(args.config)
  for run in runs:
    print(f"{run['name']}: {run['overrides']} -> {run['work_dir']}")
  if args.mode == "scripts":
    print("wrote", len(write_scripts(runs, args.out)), "job scripts to", args.out)
  elif args.mode == "local":
    for run in runs:
      print(f"== {run['name']}", flush=True)
      subprocess.run(run["argv"], check=True, cwd=REPO)


if __name__ == "__main__":
  main()
