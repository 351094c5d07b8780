"""Task: the LLM alone on the instruction-text corpus (quickstart's first job, `configs/llm_text.py`).

The corpus is every paraphrase of the LangAuto instruction vocabulary with sampled arguments
(`sim.instructions.instruction_corpus`), tokenised with the configured tokenizer, wrapped in
BOS/EOS and packed into rows of `seq_len` tokens.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lmgendrive_jax.data.tokenizer import load_tokenizer
from lmgendrive_jax.models.llm import LLM
from lmgendrive_jax.sim.instructions import instruction_corpus
from lmgendrive_jax.train.lm_loss import next_token_loss
from lmgendrive_jax.train.loop import Task


def pack_corpus(texts: list[str], tokenizer, seq_len: int) -> np.ndarray:
  """BOS + tokens + EOS per text, concatenated and cut into int32[N, seq_len] rows."""
  stream = []
  for text in texts:
    stream.append(tokenizer.bos_token_id)
    stream.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
    stream.append(tokenizer.eos_token_id)
  rows = len(stream) // seq_len
  return np.asarray(stream[:rows * seq_len], np.int32).reshape(rows, seq_len)


class PackedTextBatches:
  """Deterministic epochs over packed rows: batch(step) depends only on (seed, step), so a resumed
  run reads exactly what an uninterrupted one would. Each process takes its slice of the global
  batch."""

  def __init__(self, rows: np.ndarray, global_batch_size: int, seed: int):
    if len(rows) < global_batch_size:
      raise ValueError(f"corpus has {len(rows)} rows, fewer than the batch size "
                       f"{global_batch_size}; lower train.batch_size or data.seq_len")
    self.rows, self.batch_size, self.seed = rows, global_batch_size, seed
    self.per_process = global_batch_size // jax.process_count()
    self.process = jax.process_index()

  def batch(self, step: int) -> dict:
    steps_per_epoch = len(self.rows) // self.batch_size
    epoch, within = divmod(step, steps_per_epoch)
    order = np.random.default_rng([self.seed, epoch]).permutation(len(self.rows))
    start = within * self.batch_size + self.process * self.per_process
    tokens = self.rows[order[start:start + self.per_process]]
    return {"tokens": tokens, "mask": np.ones_like(tokens, bool)}

  def get_state(self) -> dict:
    return {"kind": "stateless_by_step", "seed": self.seed}

  def set_state(self, state: dict) -> None:
    if state and state.get("seed", self.seed) != self.seed:
      raise ValueError(f"checkpoint was written with data seed {state['seed']}, config has "
                       f"{self.seed}")


def build_task(config) -> tuple[Task, LLM]:
  tokenizer = load_tokenizer(config.data.tokenizer)
  model = LLM(**config.model.llm.to_dict())
  if len(tokenizer) > model.vocab_size:
    raise ValueError(f"tokenizer {config.data.tokenizer} has {len(tokenizer)} tokens but "
                     f"model.llm.vocab_size is {model.vocab_size}")
  texts = instruction_corpus(seed=config.data.corpus_seed,
                             samples_per_paraphrase=config.data.samples_per_paraphrase)
  rows = pack_corpus(texts, tokenizer, config.data.seq_len + 1)
  n_val = max(1, int(len(rows) * config.data.validation_fraction))
  val_rows, train_rows = rows[:n_val], rows[n_val:]
  batches = PackedTextBatches(train_rows, config.train.batch_size, config.seed)
  dummy = jnp.zeros((1, config.data.seq_len), jnp.int32)

  def loss_fn(params, batch, rng, model_state):
    del model_state
    return next_token_loss(model, params, batch, rng)

  val_batch = {"tokens": jnp.asarray(val_rows), "mask": jnp.ones(val_rows.shape, bool)}
  eval_loss = jax.jit(lambda p: next_token_loss(model, p, val_batch)[0])

  return Task(
      init_fn=lambda key: model.init(key, dummy),
      loss_fn=loss_fn, batches=batches,
      eval_fn=lambda params: {"loss": float(eval_loss(params))},
      examples_per_step=config.train.batch_size,
      tokens_per_step=config.train.batch_size * config.data.seq_len), model
