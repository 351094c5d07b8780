"""A sweep file expands into runs with distinct work dirs and the right overrides."""

import importlib.util
import os
import subprocess
import sys

import pytest

from lmgendrive_jax import config as config_lib
from lmgendrive_jax.errors import ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _sweep_module():
  spec = importlib.util.spec_from_file_location("sweep_launcher",
                                                os.path.join(REPO, "launch", "sweep.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_two_point_sweep_expands_to_two_distinct_runs(tmp_path):
  sweep_file = tmp_path / "two.py"
  sweep_file.write_text(
      "import sys\n"
      f"sys.path.insert(0, {os.path.join(REPO, 'configs')!r})\n"
      "from llm_text import get_config\n"
      "def get_sweep(arg=None):\n"
      "  return [{'optim.lr': 0.001, 'train.steps': 5}, {'optim.lr': 0.01, 'train.steps': 7}]\n")
  sweep = _sweep_module()
  runs = sweep.expand(f"{sweep_file}:preset=tiny")
  assert len(runs) == 2
  assert runs[0]["work_dir"] != runs[1]["work_dir"]
  for run, lr, steps in zip(runs, (0.001, 0.01), (5, 7)):
    overrides = [a for a in run["argv"] if a.startswith("--config.")]
    config = config_lib.load_config(f"{sweep_file}:preset=tiny", overrides)
    assert config.optim.lr == lr and config.train.steps == steps
    assert config.work_dir == run["work_dir"]
  scripts = sweep.write_scripts(runs, str(tmp_path / "jobs"))
  assert len(scripts) == 2 and all(os.access(p, os.X_OK) for p in scripts)
  assert "--config.optim.lr=0.01" in open(scripts[1]).read()


def test_sweep_with_a_typo_fails_before_running(tmp_path):
  sweep_file = tmp_path / "bad.py"
  sweep_file.write_text(
      "import sys\n"
      f"sys.path.insert(0, {os.path.join(REPO, 'configs')!r})\n"
      "from llm_text import get_config\n"
      "def get_sweep(arg=None):\n"
      "  return [{'optim.lrr': 0.001}]\n")
  with pytest.raises(ConfigError, match="lrr"):
    _sweep_module().expand(f"{sweep_file}:preset=tiny")


def test_example_sweep_lists(tmp_path):
  result = subprocess.run([sys.executable, os.path.join(REPO, "launch", "sweep.py"),
                           "--config=configs/sweeps/llm_lr.py:preset=tiny"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
  assert result.returncode == 0, result.stderr
  lines = [line for line in result.stdout.splitlines() if line.startswith("sweep_")]
  assert len(lines) == 4 and len({line.split(" -> ")[1] for line in lines}) == 4
