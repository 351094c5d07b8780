"""The one training loop of every stage: sharded jitted steps, resume, guards, logs, checkpoints.

A stage is described by a `Task` (how to init, the loss, where batches come from); this loop does
the rest. Resume precedence (MaxText's): this run's latest readable checkpoint -> the task's
`init_from` (the previous stage's checkpoint, by subtree) -> fresh init.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from typing import Any, Callable, Protocol

import flax.linen as nn
import jax
import numpy as np

from lmgendrive_jax import parallel
from lmgendrive_jax.errors import LMGenDriveError
from lmgendrive_jax.train.checkpoints import Checkpointer
from lmgendrive_jax.train.metrics_log import MetricsLog
from lmgendrive_jax.train.optimizer import learning_rate_schedule, make_optimizer
from lmgendrive_jax.train.state import abstract_state
from lmgendrive_jax.train.step import make_train_step


class BatchSource(Protocol):
  """Per-host batches, resumable: `batch(step)` returns this host's numpy share of step's batch."""

  def batch(self, step: int) -> dict: ...
  def get_state(self) -> dict: ...
  def set_state(self, state: dict) -> None: ...


@dataclasses.dataclass
class Task:
  init_fn: Callable[[jax.Array], dict]            # key -> annotated variables {"params": ...}
  loss_fn: Callable[..., tuple]  # (params, batch, rng, model_state) -> (loss, metrics)
  batches: BatchSource
  eval_fn: Callable[[Any], dict] | None = None    # params -> metrics (host floats)
  init_from: Callable[[Any], Any] | None = None   # fresh TrainState -> with a stage's weights
  # (params, model_state, batch, rng) -> uint8[H, W, 3]: an image of what the model generates,
  # logged every `config.train.sample_every` steps (stage2.py: make_sample_fn).
  sample_fn: Callable[..., Any] | None = None
  examples_per_step: int = 0
  tokens_per_step: int = 0
  # loss_fn returns (loss, (metrics, model_state)): it updates batch statistics (step.py).
  updates_model_state: bool = False


class TrainingStopped(LMGenDriveError):
  """Too many non-finite steps in a row; the last good state was checkpointed."""


def run(config, task: Task, log_enabled: bool | None = None) -> dict:
  """Trains `config.train.steps` steps; returns the last logged metrics (host floats)."""
  if log_enabled is None:
    log_enabled = jax.process_index() == 0
  mesh = parallel.make_mesh(config.mesh)
  rules = parallel.logical_rules(config)
  key = jax.random.key(config.seed)
  init_key, step_key = jax.random.split(key)
  sample_key = jax.random.fold_in(key, 0x5A3)  # apart from the training stream
  make_tx = lambda params: make_optimizer(config.optim, params)  # noqa: E731
  abstract, shardings, tx, make_state = abstract_state(task.init_fn, make_tx, mesh, rules,
                                                       init_key)
  checkpointer = Checkpointer(config.work_dir, keep=config.train.keep_checkpoints)
  restored = checkpointer.restore_latest(abstract)
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    if restored is not None:
      start_step, state, data_state, _ = restored
      task.batches.set_state(data_state)
      logging.info("resuming %s from step %d", config.work_dir, start_step)
    else:
      start_step = 0
      state = jax.jit(lambda k: nn.meta.unbox(make_state(k)), out_shardings=shardings)(init_key)
      if task.init_from is not None:
        state = task.init_from(state)
    step_fn = jax.jit(make_train_step(task.loss_fn, tx, config.optim.frozen,
                                      task.updates_model_state),
                      in_shardings=(shardings, None, None), out_shardings=(shardings, None),
                      donate_argnums=(0,))
    meta = {"config": json.loads(config.to_json_best_effort()),
            "versions": {"jax": jax.__version__}}
    log = MetricsLog(config.work_dir, config.train.steps, start_step, enabled=log_enabled)
    flops_per_step = None
    sample_every = int(config.train.get("sample_every", 0))
    sample_fn = jax.jit(task.sample_fn) if task.sample_fn and sample_every > 0 else None
    schedule = learning_rate_schedule(config.optim)
    last = {}
    timer_start, timer_steps = time.time(), 0
    try:
      for step in range(start_step, config.train.steps):
        batch = parallel.global_batch(task.batches.batch(step), mesh, rules)
        rng = jax.random.fold_in(step_key, step)
        if flops_per_step is None:
          compiled = step_fn.lower(state, batch, rng).compile()
          flops_per_step = _flops(compiled)
          _print_memory(compiled, log_enabled)
        state, metrics = step_fn(state, batch, rng)
        timer_steps += 1
        log.step()
        done = step + 1
        if int(state.skipped_in_a_row) >= config.train.max_skipped_in_a_row:
          raise TrainingStopped(
              f"{int(state.skipped_in_a_row)} non-finite steps in a row at step {done} "
              f"(total skipped {int(state.skipped)}); last good state is in "
              f"{checkpointer.directory}. Lower optim.lr or inspect the data near this step.")
        if done % config.train.log_every == 0 or done == config.train.steps:
          metrics = jax.device_get(metrics)
          elapsed = time.time() - timer_start
          rate = timer_steps / max(elapsed, 1e-9)
          last = {k: float(np.asarray(v)) for k, v in metrics.items()}
          last.update(steps_per_s=rate, lr=float(schedule(step)))
          if task.examples_per_step:
            last["examples_per_s"] = rate * task.examples_per_step
          if task.tokens_per_step:
            last["tokens_per_s"] = rate * task.tokens_per_step
          if flops_per_step:
            last["tflops_per_s"] = rate * flops_per_step / 1e12
          log.scalars(done, last)
          timer_start, timer_steps = time.time(), 0
        if task.eval_fn is not None and done % config.train.eval_every == 0:
          log.scalars(done, task.eval_fn(state.params), prefix="eval")
        if sample_fn is not None and done % sample_every == 0:
          # Its own key: sampling never changes the training stream (resume stays exact).
          image = sample_fn(state.params, state.model_state, batch,
                            jax.random.fold_in(sample_key, done))
          log.image(done, "samples/world", np.asarray(jax.device_get(image)))
        if done % config.train.checkpoint_every == 0 or done == config.train.steps:
          checkpointer.save(done, state, task.batches.get_state(), meta)
    except TrainingStopped:
      checkpointer.save(int(state.step), state, task.batches.get_state(), meta, force=True)
      raise
    finally:
      checkpointer.close()
      log.close()
  last["final_step"] = config.train.steps
  last["skipped"] = int(state.skipped)
  return last


def _flops(compiled) -> float | None:
  try:
    analysis = compiled.cost_analysis()
    if isinstance(analysis, list):
      analysis = analysis[0]
    return float(analysis.get("flops", 0.0)) or None
  except Exception:  # noqa: BLE001  (cost analysis is optional on some backends)
    return None


def _print_memory(compiled, enabled: bool) -> None:
  if not enabled:
    return
  try:
    mem = compiled.memory_analysis()
    gib = lambda b: b / 2**30  # noqa: E731
    print(f"[train] compiled step memory per device: arguments {gib(mem.argument_size_in_bytes):.3f}"
          f" GiB, outputs {gib(mem.output_size_in_bytes):.3f} GiB, temporaries "
          f"{gib(mem.temp_size_in_bytes):.3f} GiB, generated code "
          f"{gib(mem.generated_code_size_in_bytes):.3f} GiB", flush=True)
  except Exception as e:  # noqa: BLE001
    print(f"[train] memory analysis unavailable: {e}", flush=True)
