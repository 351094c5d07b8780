"""Configs: locked (typos name the key), presets, and validation before anything compiles."""

import os
import subprocess
import sys

import pytest

from lmgendrive_jax import config as config_lib
from lmgendrive_jax.errors import ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LLM_TEXT = os.path.join(REPO, "configs", "llm_text.py")


def test_overrides_are_typed_and_unknown_keys_are_named():
  config = config_lib.load_config(f"{LLM_TEXT}:preset=tiny",
                                  ["--config.train.steps=7", "--config.optim.lr=1e-2"])
  assert config.train.steps == 7 and config.optim.lr == 0.01
  assert config.model.llm.num_layers == 2
  with pytest.raises(ConfigError, match=r"'model.llm.num_layer'.*no field 'num_layer'"):
    config_lib.load_config(f"{LLM_TEXT}:preset=tiny", ["--config.model.llm.num_layer=3"])
  with pytest.raises(AttributeError, match="num_layer"):
    config.model.llm.num_layer = 3  # locked
  with pytest.raises(ConfigError, match="unknown config argument 'presett'"):
    config_lib.load_config(f"{LLM_TEXT}:presett=tiny")
  with pytest.raises(ConfigError, match="unknown preset 'huge'"):
    config_lib.llm_preset("huge")


def test_validation_names_what_to_change():
  config = config_lib.load_config(f"{LLM_TEXT}:preset=tiny")
  config.mesh.shape = (3, 2, 2)
  with pytest.raises(ConfigError, match=r"needs 12 devices but 8 are present"):
    config_lib.validate(config, num_devices=8)
  config.mesh.shape = (1, 1, 8)
  with pytest.raises(ConfigError, match=r"num_heads=4 is not divisible by the 8 shards"):
    config_lib.validate(config, num_devices=8)
  config.mesh.shape = (2, 1, 4)
  with pytest.raises(ConfigError, match=r"num_kv_heads=2 is not divisible by the 4 shards"):
    config_lib.validate(config, num_devices=8)
  config.mesh.shape = (-1, 1, 2)
  config.data.seq_len = 1000
  with pytest.raises(ConfigError, match=r"data.seq_len=1000 exceeds model.llm.max_positions=256"):
    config_lib.validate(config, num_devices=8)
  config.data.seq_len = 64
  config.train.batch_size = 6
  with pytest.raises(ConfigError, match=r"train.batch_size=6 is not divisible by the 4 shards"):
    config_lib.validate(config, num_devices=8)
  config.train.batch_size = 8
  config_lib.validate(config, num_devices=8)


def test_validation_names_a_view_reader_that_does_not_fit_the_llm():
  config = config_lib.load_config(os.path.join(REPO, "configs", "stage2.py:preset=tiny"))
  config.model.lmgendrive.view_reader_heads = 5
  with pytest.raises(ConfigError, match=r"view_reader_heads=5 does not divide the LLM width 64"):
    config_lib.validate(config, num_devices=8)
  config.model.lmgendrive.view_reader_heads = 4
  config_lib.validate(config, num_devices=8)


def test_paper_preset_is_llama_7b_shape():
  llm = config_lib.llm_preset("paper")
  assert (llm.embed_dim, llm.num_layers, llm.num_heads, llm.mlp_dim, llm.vocab_size) == (
      4096, 32, 32, 11008, 32000)


def test_launcher_rejects_a_typo_with_the_key_name():
  result = subprocess.run(
      [sys.executable, os.path.join(REPO, "launch", "train.py"),
       f"--config={LLM_TEXT}:preset=tiny", "--config.train.stepz=3"],
      capture_output=True, text=True, timeout=120, cwd=REPO,
      env={**os.environ, "PYTHONPATH": REPO})
  assert result.returncode != 0
  assert "stepz" in result.stderr


@pytest.mark.parametrize("from_run,run_dir", [
    ("stage2_small_v1", os.path.join("runs", "stage2_small_v1")),   # a run name under runs_root
    ("work_dirs/big/stage2_small", "work_dirs/big/stage2_small"),   # a run directory
])
def test_stage2_from_run_restores_the_whole_model(from_run, run_dir):
  config = config_lib.load_config(
      os.path.join(REPO, "configs", f"stage2.py:preset=small,from_run={from_run}"),
      ["--config.runs_root=runs"])
  config = config_lib.resolve_run_dirs(config)
  assert [(e["run_dir"], e["root"], dict(e["subtrees"])) for e in config.init_from] == [
      (run_dir, "params", {"": ""}), (run_dir, "model_state/batch_stats", {"vision": "vision"})]


def test_probes_follow_their_weights_after_the_command_line():
  """A fine-tune that turns the layout probe off on the command line must not build it: stage
  configs set the probe size from the weight before the overrides apply."""
  spec = os.path.join(REPO, "configs", "stage2.py:preset=small,from_run=runs/stage2_small")
  default = config_lib.load_config(spec)
  assert tuple(default.model.lmgendrive.layout_probe_size) == (8, 8)
  assert tuple(default.data.view_layout_size) == (8, 8) and default.model.lmgendrive.visual_probe
  config = config_lib.load_config(
      spec, ["--config.loss.layout_probe_weight=0", "--config.loss.visual_probe_weight=0"])
  assert tuple(config.model.lmgendrive.layout_probe_size) == (0, 0)
  assert tuple(config.data.view_layout_size) == (0, 0)
  assert not config.model.lmgendrive.visual_probe
