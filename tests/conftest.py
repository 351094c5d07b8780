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


@pytest.fixture
def straight_place():
  """(tiny sim preset, episode, arc length): the first route of held-out tiny_8 seed 1 with a
  straight lane-follow stretch (bench/lane_response.py: straight_places), and its first place."""
  from bench.lane_response import straight_places
  from lmgendrive_jax.config import sim_preset
  from lmgendrive_jax.sim import host, routes
  sim = sim_preset("tiny")
  for spec in routes.route_set("tiny_8", 1):
    episode = host.Episode(spec, sim, int(sim.traffic.num_vehicles) + host.EXTRA_ACTORS,
                           int(sim.traffic.num_pedestrians) + host.EXTRA_ACTORS)
    places = straight_places(episode.route, 1)
    if places:
      return sim, episode, places[0]
  raise AssertionError("no straight lane-follow stretch on tiny_8 seed 1")


# transformers and timm import torchvision eagerly; make that import work before any test module
# imports them (see tests/torch_refs.py for why).
import torch_refs  # noqa: E402

torch_refs.define_missing_torchvision_ops()
