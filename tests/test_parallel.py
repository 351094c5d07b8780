"""Sharding on a simulated (2, 2, 2) mesh: parameter specs follow the rules, and a sharded train
step gives the single-device loss; multi-host global batches over 2 local processes."""

import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from lmgendrive_jax import config as config_lib
from lmgendrive_jax import parallel
from lmgendrive_jax.models.llm import LLM
from lmgendrive_jax.train.lm_loss import next_token_loss
from lmgendrive_jax.train.optimizer import make_optimizer
from lmgendrive_jax.train.state import create_sharded_state
from lmgendrive_jax.train.step import make_train_step

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _setup(num_devices_mesh):
  cfg = config_lib.llm_preset("tiny")
  model = LLM(**cfg.to_dict())
  mesh = parallel.make_mesh(config_lib.mesh_config(num_devices_mesh),
                            devices=jax.devices()[:int(np.prod(num_devices_mesh))])
  return model, mesh, config_lib.logical_axis_rules()


def _batch():
  tokens = np.random.default_rng(0).integers(0, 1024, size=(8, 16)).astype(np.int32)
  mask = np.ones_like(tokens, bool)
  mask[3, 10:] = False
  return {"tokens": tokens, "mask": mask}


def _run_steps(model, mesh, rules, batch, steps=2):
  init = lambda key: model.init(key, jnp.zeros((1, 4), jnp.int32))  # noqa: E731
  optim = config_lib.optim_config(lr=1e-3, warmup_steps=0)
  state, state_shardings, tx = create_sharded_state(
      init, lambda p: make_optimizer(optim, p), mesh, rules, jax.random.key(0))
  batch = parallel.global_batch(batch, mesh, rules)
  step = make_train_step(lambda p, b, r, s: next_token_loss(model, p, b), tx)
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    step = jax.jit(step, in_shardings=(state_shardings, jax.tree.map(lambda x: x.sharding, batch),
                                       None), out_shardings=(state_shardings, None),
                   donate_argnums=(0,))
    losses = []
    for _ in range(steps):
      state, metrics = step(state, batch, jax.random.key(1))
      losses.append(float(metrics["loss"]))
  return state.params, losses


def test_params_sharded_per_rules_and_loss_matches_single_device(num_devices):
  model, mesh, rules = _setup((2, 2, 2))
  params, sharded_losses = _run_steps(model, mesh, rules, _batch())
  spec = lambda x: x.sharding.spec  # noqa: E731
  assert spec(params["layers"]["attn"]["q_proj"]["kernel"]) == P(None, "fsdp", "tensor", None)
  assert spec(params["layers"]["attn"]["k_proj"]["kernel"]) == P(None, "fsdp", "tensor", None)
  assert spec(params["layers"]["attn"]["o_proj"]["kernel"]) == P(None, "tensor", None, "fsdp")
  assert spec(params["layers"]["mlp"]["gate_proj"]["kernel"]) == P(None, "fsdp", "tensor")
  assert spec(params["layers"]["mlp"]["down_proj"]["kernel"]) == P(None, "tensor", "fsdp")
  assert spec(params["embedder"]["embedding"]) == P("tensor", "fsdp")
  assert spec(params["lm_head"]["kernel"]) == P("fsdp", "tensor")
  q = params["layers"]["attn"]["q_proj"]["kernel"]
  assert q.addressable_shards[0].data.shape == (2, 32, 2, 16)  # [2, 64/2, 4/2, 16]

  single_model, single_mesh, _ = _setup((1, 1, 1))
  _, single_losses = _run_steps(single_model, single_mesh, rules, _batch())
  np.testing.assert_allclose(sharded_losses, single_losses, rtol=1e-5, atol=1e-5)
  assert sharded_losses[1] < sharded_losses[0]


def test_mesh_fills_minus_one_and_rejects_impossible_shapes(num_devices):
  mesh = parallel.make_mesh(config_lib.mesh_config((-1, 2, 2)))
  assert dict(mesh.shape) == {"data": 2, "fsdp": 2, "tensor": 2}
  with pytest.raises(config_lib.ConfigError, match="needs 12 devices but 8"):
    parallel.make_mesh(config_lib.mesh_config((3, 2, 2)))


@pytest.mark.slow
def test_two_processes_build_global_batch_and_match_one_process(tmp_path):
  """2 local processes x 4 CPU devices (jax.distributed over gloo) == 1 process x 8 devices."""
  script = os.path.join(REPO, "tests", "multihost_worker.py")
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env["PYTHONPATH"] = REPO
  env["JAX_PLATFORMS"] = "cpu"
  port = 20000 + os.getpid() % 20000
  procs = [subprocess.Popen([sys.executable, script, str(i), "2", str(port), str(tmp_path)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(2)]
  outputs = [p.communicate(timeout=300)[0] for p in procs]
  for p, out in zip(procs, outputs):
    assert p.returncode == 0, out[-3000:]
  single = subprocess.run([sys.executable, script, "0", "1", "0", str(tmp_path)], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
  assert single.returncode == 0, single.stdout[-3000:]
  two = [np.load(tmp_path / f"result_2proc_{i}.npy") for i in range(2)]
  one = np.load(tmp_path / "result_1proc_0.npy")
  np.testing.assert_array_equal(two[0], two[1])  # every process sees the same global result
  np.testing.assert_allclose(two[0], one, rtol=1e-5, atol=1e-6)
