"""Train the LLM alone on the instruction-text corpus (next-token prediction).

The first job of the quickstart: it exercises the LLM, sharding, the optimizer, checkpoints and
logging before the driving model exists, and gives the language model the instruction vocabulary.

  python launch/train.py --config=configs/llm_text.py:preset=small --config.train.steps=300
"""

from lmgendrive_jax import config as config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, preset="small", runlocal=False)
  config = config_lib.ConfigDict()
  config.stage = "llm_text"
  config.preset = arg.preset
  config.seed = 0
  config.runs_root = "work_dirs"
  config.run_name = f"llm_text_{arg.preset}"
  config.work_dir = ""  # default: <runs_root>/<run_name> (config.resolve_run_dirs)

  config.model = config_lib.ConfigDict()
  config.model.llm = config_lib.llm_preset(arg.preset)
  config.model.llm.lora_rank = 0  # Full training: the text model learns from scratch.

  config.data = config_lib.ConfigDict(dict(
      tokenizer="assets/tokenizer", seq_len=64, corpus_seed=0, samples_per_paraphrase=8,
      validation_fraction=0.05))

  config.train = config_lib.ConfigDict(dict(
      steps={"tiny": 20, "small": 300, "paper": 10000}[arg.preset],
      batch_size={"tiny": 8, "small": 16, "paper": 256}[arg.preset],
      log_every=25, eval_every=100, checkpoint_every=100, keep_checkpoints=2,
      max_skipped_in_a_row=5))
  config.optim = config_lib.optim_config(
      lr={"tiny": 1e-3, "small": 1e-3, "paper": 3e-4}[arg.preset], warmup_steps=20,
      total_steps=config.train.steps, weight_decay=0.01)
  config.mesh = config_lib.mesh_config((-1, 1, 1))
  config.logical_axis_rules = config_lib.logical_axis_rules()
  if arg.runlocal:
    config.train.steps = 10
    config.train.log_every = 2
  return config
