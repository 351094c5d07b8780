"""Test setup: 8 simulated CPU devices (set before jax is imported anywhere) and shared fixtures."""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import jax  # noqa: E402  (after XLA_FLAGS on purpose)
import pytest  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: takes more than ~20 s; still part of the full suite")


@pytest.fixture(scope="session")
def num_devices():
  assert jax.device_count() == 8, "tests expect 8 simulated CPU devices (see tests/conftest.py)"
  return jax.device_count()


# transformers and timm import torchvision eagerly; make that import work before any test module
# imports them (see tests/torch_refs.py for why).
import torch_refs  # noqa: E402

torch_refs.define_missing_torchvision_ops()
