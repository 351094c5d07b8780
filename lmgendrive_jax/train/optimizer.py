"""Optimizer from config: schedules, clipping, gradient accumulation, and freezing by regex.

Frozen parameters are declared in the config as regexes over '/'-joined parameter paths
(big_vision style). They go through `optax.set_to_zero`, so the optimizer keeps no state for them
(no Adam moments for a frozen 7B base) and their updates are exactly zero.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import jax
import optax
from flax import traverse_util

from lmgendrive_jax.errors import ConfigError


def path_labels(params: Any, frozen_patterns: Sequence[str]) -> Any:
  """Tree of 'frozen' / 'trainable' labels, one per leaf, by full-match of any regex."""
  compiled = []
  for pattern in frozen_patterns:
    try:
      compiled.append(re.compile(pattern))
    except re.error as e:
      raise ConfigError(f"optim.frozen pattern {pattern!r} is not a valid regex: {e}") from e
  flat = traverse_util.flatten_dict(params, sep="/")
  labels = {path: "frozen" if any(p.fullmatch(path) for p in compiled) else "trainable"
            for path in flat}
  return traverse_util.unflatten_dict(labels, sep="/")


def frozen_paths(params: Any, frozen_patterns: Sequence[str]) -> list[str]:
  flat = traverse_util.flatten_dict(path_labels(params, frozen_patterns), sep="/")
  return sorted(path for path, label in flat.items() if label == "frozen")


def learning_rate_schedule(cfg) -> optax.Schedule:
  """Linear warmup to `cfg.lr`, then cosine (or constant) decay to `cfg.lr * cfg.end_lr_ratio`."""
  decay_steps = max(cfg.total_steps - cfg.warmup_steps, 1)
  if cfg.schedule == "constant":
    decay = optax.constant_schedule(cfg.lr)
  elif cfg.schedule == "cosine":
    decay = optax.cosine_decay_schedule(cfg.lr, decay_steps, alpha=cfg.end_lr_ratio)
  else:
    raise ConfigError(f"optim.schedule={cfg.schedule!r}; choose 'cosine' or 'constant'")
  if cfg.warmup_steps <= 0:
    return decay
  warmup = optax.linear_schedule(cfg.lr / cfg.warmup_steps, cfg.lr, cfg.warmup_steps)
  return optax.join_schedules([warmup, decay], [cfg.warmup_steps])


def make_optimizer(cfg, params: Any) -> optax.GradientTransformation:
  """AdamW (+ clipping, accumulation) on trainable leaves; zero updates and no state on frozen ones.

  cfg fields: lr, schedule, warmup_steps, total_steps, end_lr_ratio, weight_decay, b1, b2,
  grad_clip_norm, accumulate_steps, frozen (list of regexes).
  """
  labels = path_labels(params, cfg.frozen)
  if not any(label == "trainable" for label in jax.tree.leaves(labels)):
    raise ConfigError(f"optim.frozen {list(cfg.frozen)} freezes every parameter; nothing to train")
  chain = []
  if cfg.grad_clip_norm:
    chain.append(optax.clip_by_global_norm(cfg.grad_clip_norm))
  chain.append(optax.adamw(learning_rate_schedule(cfg), b1=cfg.b1, b2=cfg.b2,
                           weight_decay=cfg.weight_decay))
  trainable = optax.chain(*chain)
  tx = optax.multi_transform({"trainable": trainable, "frozen": optax.set_to_zero()}, labels)
  if cfg.accumulate_steps > 1:
    tx = optax.MultiSteps(tx, every_k_schedule=cfg.accumulate_steps)
  return tx
