"""One process of the multi-host test: `python multihost_worker.py PROCESS_ID NUM_PROCESSES PORT OUT`.

Each process owns 8 / NUM_PROCESSES CPU devices and loads only its share of a fixed global batch;
`parallel.global_batch` assembles the global array; a sharded train step runs; the loss and a
parameter checksum are saved for the test to compare with a single-process run.
"""

import os
import sys

process_id, num_processes, port, out_dir = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={8 // num_processes}"

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import flax.linen as nn  # noqa: E402

from lmgendrive_jax import config as config_lib  # noqa: E402
from lmgendrive_jax import parallel  # noqa: E402
from lmgendrive_jax.models.llm import LLM  # noqa: E402
from lmgendrive_jax.train.lm_loss import next_token_loss  # noqa: E402
from lmgendrive_jax.train.optimizer import make_optimizer  # noqa: E402
from lmgendrive_jax.train.state import create_sharded_state  # noqa: E402
from lmgendrive_jax.train.step import make_train_step  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")
if num_processes > 1:
  parallel.initialize_distributed(f"localhost:{port}", num_processes, process_id)
assert jax.device_count() == 8 and jax.process_count() == num_processes

model = LLM(**config_lib.llm_preset("tiny").to_dict())
mesh = parallel.make_mesh(config_lib.mesh_config((2, 2, 2)))
rules = config_lib.logical_axis_rules()
tokens = np.random.default_rng(0).integers(0, 1024, size=(8, 16)).astype(np.int32)
per_process = 8 // num_processes
local = {"tokens": tokens[process_id * per_process:(process_id + 1) * per_process],
         "mask": np.ones((per_process, 16), bool)}
batch = parallel.global_batch(local, mesh, rules)
assert batch["tokens"].shape == (8, 16)

init = lambda key: model.init(key, jnp.zeros((1, 4), jnp.int32))  # noqa: E731
optim = config_lib.optim_config(lr=1e-3, warmup_steps=0)
state, _, tx = create_sharded_state(init, lambda p: make_optimizer(optim, p), mesh, rules,
                                    jax.random.key(0))
with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
  step = jax.jit(make_train_step(lambda p, b, r, s: next_token_loss(model, p, b), tx))
  losses = []
  for _ in range(2):
    state, metrics = step(state, batch, jax.random.key(1))
    losses.append(metrics["loss"])
  checksum = jax.jit(lambda p: sum(jnp.sum(jnp.abs(x)) for x in jax.tree.leaves(p)),
                     out_shardings=parallel.replicated(mesh))(state.params)
result = np.array([float(l) for l in losses] + [float(checksum)])
np.save(os.path.join(out_dir, f"result_{num_processes}proc_{process_id}.npy"), result)
print("ok", result)
