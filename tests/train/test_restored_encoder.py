"""A stage that restores the vision encoder from an earlier run refuses one built with other
settings: the backbone's output stride changes no parameter shape, so those weights would load
and silently compute other features."""

import ml_collections
import pytest

from lmgendrive_jax import config as config_lib
from lmgendrive_jax.errors import ConfigError
from lmgendrive_jax.train import stage2, trained


def _config(run_dir: str) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.model = ml_collections.ConfigDict({"lmgendrive": config_lib.lmgendrive_preset("tiny")})
  config.init_from = [dict(run_dir=run_dir, root="params",
                           subtrees={"vision": "perception/encoder"}, skip=""),
                      dict(run_dir="llm", root="params", subtrees={"llm": ""}, skip="")]
  return config


def test_a_restored_encoder_built_otherwise_is_refused(monkeypatch):
  ours = config_lib.vision_preset("tiny").encoder.to_dict()
  saved = {"same": ours, "strided": {**ours, "backbone": {**ours["backbone"],
                                                          "output_stride": 8}}}
  # A run's config comes back from JSON: lists where ours has tuples.
  saved["same"] = {k: list(v) if isinstance(v, tuple) else v for k, v in ours.items()}
  monkeypatch.setattr(trained, "encoder_config", lambda run_dir: saved[run_dir])
  stage2.check_restored_encoder(_config("same"))
  with pytest.raises(ConfigError, match=r"backbone.output_stride: 8 there, 32 here"):
    stage2.check_restored_encoder(_config("strided"))


def test_a_whole_model_restore_is_checked_too(monkeypatch):
  """configs/stage2.py's from_run restores every weight (subtree ""), the encoder among them."""
  ours = config_lib.vision_preset("tiny").encoder.to_dict()
  strided = {**ours, "backbone": {**ours["backbone"], "output_stride": 16}}
  monkeypatch.setattr(trained, "encoder_config", lambda run_dir: strided)
  config = _config("whole")
  config.init_from = [dict(run_dir="whole", root="params", subtrees={"": ""}, skip="")]
  with pytest.raises(ConfigError, match="output_stride: 16 there"):
    stage2.check_restored_encoder(config)
