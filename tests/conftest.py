"""Test setup: 8 simulated CPU devices (set before jax is imported anywhere) and shared fixtures."""

import os
import sys

# Test helpers (torch_refs, fixtures) import by name from this folder, whatever the import mode.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

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
