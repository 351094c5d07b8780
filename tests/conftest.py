"""Test setup: 8 simulated CPU devices (set before jax is imported anywhere) and shared fixtures."""

import atexit
import os
import shutil
import sys
import tempfile

# Test helpers (torch_refs, fixtures) import by name from this folder, whatever the import mode.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# LLVM at -O0 for XLA:CPU: most of the suite's time is compiling hundreds of small programs,
# which this roughly halves (the curriculum test's stage-2 tests: 146 -> 87 s), while the tiny
# models run about as fast. The HLO, and so what is computed, is the same (fast math stays off).
# A flag given in XLA_FLAGS comes last and wins.
os.environ["XLA_FLAGS"] = ("--xla_backend_optimization_level=0 " +
                           os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# One XLA compilation cache for this test session, shared with the processes tests start (they
# inherit the environment): the kill -9 test compiles the same training step in three processes.
# A fresh folder per session, so nothing carries over between runs.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _cache = tempfile.mkdtemp(prefix="lmgd-xla-cache-")
  atexit.register(shutil.rmtree, _cache, ignore_errors=True)
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "1")

import jax  # noqa: E402  (after XLA_FLAGS on purpose)
import pytest  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")


@pytest.fixture(scope="session")
def num_devices():
  assert jax.device_count() == 8, "tests expect 8 simulated CPU devices (see tests/conftest.py)"
  return jax.device_count()


# transformers and timm import torchvision eagerly; make that import work before any test module
# imports them (see tests/torch_refs.py for why).
import torch_refs  # noqa: E402

torch_refs.define_missing_torchvision_ops()
