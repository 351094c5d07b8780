"""Training survives kill -9: a run killed at a random step and restarted ends with parameters
bit-identical to an uninterrupted run of the same length (data and RNG resume exactly)."""

import os
import random
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STEPS = 16


def _command(work_dir):
  return [sys.executable, os.path.join(REPO, "launch", "train.py"),
          f"--config={os.path.join(REPO, 'configs', 'llm_text.py')}:preset=tiny",
          f"--config.work_dir={work_dir}", f"--config.train.steps={STEPS}",
          "--config.train.checkpoint_every=2", "--config.train.log_every=2",
          "--config.train.eval_every=1000", "--config.train.keep_checkpoints=3"]


def _env():
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  # One device per process; LLVM -O0 as in conftest (compiling is most of this test's time).
  env.update(PYTHONPATH=REPO, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_backend_optimization_level=0")
  return env


def _final_params(work_dir):
  path = os.path.join(work_dir, "checkpoints", str(STEPS), "state")
  restored = ocp.PyTreeCheckpointer().restore(path)
  return jax.tree.map(np.asarray, restored["params"])


def _committed_steps(work_dir):
  directory = os.path.join(work_dir, "checkpoints")
  if not os.path.isdir(directory):
    return []
  return sorted(int(d) for d in os.listdir(directory)
                if d.isdigit() and os.path.exists(os.path.join(directory, d, "commit_success.txt")))


@pytest.mark.slow
def test_sigkill_and_resume_is_bit_identical(tmp_path):
  reference = str(tmp_path / "uninterrupted")
  subprocess.run(_command(reference), env=_env(), cwd=REPO, check=True, capture_output=True,
                 timeout=600)

  resumed = str(tmp_path / "killed")
  proc = subprocess.Popen(_command(resumed), env=_env(), cwd=REPO, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  kill_after = random.Random(os.getpid()).choice([2, 4, 6, 8])
  deadline = time.time() + 600
  while time.time() < deadline and proc.poll() is None:
    if _committed_steps(resumed) and _committed_steps(resumed)[-1] >= kill_after:
      break
    time.sleep(0.05)
  assert proc.poll() is None, "training finished before it could be killed; raise STEPS"
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  killed_at = _committed_steps(resumed)[-1]
  assert killed_at < STEPS
  result = subprocess.run(_command(resumed), env=_env(), cwd=REPO, capture_output=True,
                          text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  ours, ref = _final_params(resumed), _final_params(reference)
  jax.tree.map(np.testing.assert_array_equal, ours, ref)
