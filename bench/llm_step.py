"""LLM train-step speed: ours (JAX, jit) vs transformers' LlamaForCausalLM (torch), both fp32.

  python bench/llm_step.py [--preset small] [--batch 16] [--seq 128]

Prints one table: seconds per train step (forward, backward, AdamW update) of each, their ratio,
and our achieved FLOP/s (model FLOPs counted analytically) as a fraction of a matmul peak
measured in the same run. Targets: ours
>= 1.5x faster than torch and >= 50% of the measured peak.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from bench.common import matmul_peak_flops, print_table, time_call  # noqa: E402
from lmgendrive_jax import config as config_lib  # noqa: E402
from lmgendrive_jax.models.llm import LLM  # noqa: E402
from lmgendrive_jax.train.lm_loss import next_token_loss  # noqa: E402
from lmgendrive_jax.train.optimizer import make_optimizer  # noqa: E402
from lmgendrive_jax.train.state import create_state  # noqa: E402
from lmgendrive_jax.train.step import make_train_step  # noqa: E402


def ours(cfg, tokens):
  model = LLM(**cfg.to_dict())
  import flax.linen as nn
  params = nn.meta.unbox(model.init(jax.random.key(0), tokens))["params"]
  tx = make_optimizer(config_lib.optim_config(warmup_steps=0, grad_clip_norm=0.0), params)
  state = create_state(params, tx)
  step = jax.jit(make_train_step(lambda p, b, r, s: next_token_loss(model, p, b), tx),
                 donate_argnums=(0,))
  batch = {"tokens": jnp.asarray(tokens), "mask": jnp.ones(tokens.shape, bool)}
  rng = jax.random.key(0)
  compiled = step.lower(state, batch, rng).compile()
  holder = [state]

  def run():
    holder[0], metrics = compiled(holder[0], batch, rng)
    jax.block_until_ready(metrics["loss"])
  return time_call(run, repeats=10)


def train_step_flops(cfg, batch: int, seq: int) -> float:
  """Model FLOPs of one train step (forward + backward = 3x forward), counted analytically:
  every matmul (projections, MLP, LM head) plus attention scores and mixing."""
  q_width, kv_width = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
  per_layer = cfg.embed_dim * (2 * q_width + 2 * kv_width) + 3 * cfg.embed_dim * cfg.mlp_dim
  tokens = batch * seq
  forward = 2 * tokens * (cfg.num_layers * per_layer + cfg.embed_dim * cfg.vocab_size)
  forward += cfg.num_layers * 4 * batch * seq * seq * q_width
  return 3.0 * forward


def reference(cfg, tokens):
  sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                  "tests"))
  import torch_refs
  torch_refs.define_missing_torchvision_ops()
  import torch
  from transformers import LlamaConfig, LlamaForCausalLM
  torch.manual_seed(0)
  hf = LlamaForCausalLM(LlamaConfig(
      vocab_size=cfg.vocab_size, hidden_size=cfg.embed_dim, intermediate_size=cfg.mlp_dim,
      num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
      num_key_value_heads=cfg.num_kv_heads, head_dim=cfg.head_dim,
      max_position_embeddings=cfg.max_positions, attn_implementation="sdpa"))
  hf.train()
  opt = torch.optim.AdamW(hf.parameters(), lr=1e-4)
  ids = torch.tensor(tokens, dtype=torch.long)

  def run():
    opt.zero_grad(set_to_none=True)
    out = hf(input_ids=ids[:, :-1], labels=ids[:, 1:].contiguous())
    out.loss.backward()
    opt.step()
  return time_call(run, repeats=10), torch.get_num_threads()


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--preset", default="small")
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--seq", type=int, default=128)
  parser.add_argument("--attention", default="xla", help="xla | cudnn | auto (jax.nn.dot_product_attention implementation)")
  args = parser.parse_args()
  cfg = config_lib.llm_preset(args.preset)
  cfg.lora_rank = 0
  cfg.attention_impl = args.attention
  tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, (args.batch, args.seq + 1))
  peak = matmul_peak_flops()
  our_seconds = ours(cfg, tokens)
  flops = train_step_flops(cfg, args.batch, args.seq)
  ref_seconds, threads = reference(cfg, tokens)
  print_table(
      f"LLM train step, preset={args.preset}, batch={args.batch}, seq={args.seq}, fp32, "
      f"{jax.device_count()} {jax.default_backend()} device(s), torch threads={threads}",
      ["impl", "s/step", "speed-up vs torch", "GFLOP/s", "fraction of matmul peak"],
      [["lmgendrive-jax", our_seconds, ref_seconds / our_seconds, flops / our_seconds / 1e9,
        flops / our_seconds / peak],
       ["transformers (torch)", ref_seconds, 1.0, flops / ref_seconds / 1e9,
        flops / ref_seconds / peak],
       ["matmul peak (2048^2, jit)", float("nan"), float("nan"), peak / 1e9, 1.0]])


if __name__ == "__main__":
  main()
