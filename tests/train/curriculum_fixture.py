"""The tiny curriculum's fixture dataset and stage configs, shared by the curriculum test files
(`test_curriculum.py`: the hand-offs; `test_stage2_tiny.py`: the stage-2 losses), which run in
separate test workers."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "data"))
import lmdrive_fixture as fx  # noqa: E402

from data_pipelines.lmdrive_tfds import BuildConfig, build  # noqa: E402
from lmgendrive_jax import config as config_lib  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build_dataset(root) -> tuple[str, str]:
  """Two routes with four instruction clips built into TFDS under `root` (a pathlib.Path) ->
  (data_dir, runs_root)."""
  r0, r1 = fx.route_name(1, 1, 0), fx.route_name(2, 12, 1)
  fx.write_dataset(str(root / "src"), [dict(name=r0, num_frames=40), dict(name=r1, num_frames=30,
                                                                          weather=12)],
                   clips=[fx.clip_entry(r0, 0, 12, 60), fx.clip_entry(r0, 10, 25, 62),
                          fx.clip_entry(r0, 20, 30, 61), fx.clip_entry(r1, 5, 20, 60)],
                   notices={r0: [{"frame_id": 5, "instruction_id": 57, "instruction_args": []}]})
  build(str(root / "src"), str(root / "out"), BuildConfig(camera_size=(64, 48)), progress=False)
  return str(root / "out"), str(root / "runs")


def tiny_config(name, data_dir, runs_root, steps):
  """configs/<name>.py:preset=tiny on the fixture dataset, `steps` steps, one checkpoint."""
  config = config_lib.load_config(os.path.join(REPO, "configs", f"{name}.py") + ":preset=tiny")
  config.runs_root = runs_root
  config.train.steps = steps
  config.train.checkpoint_every = steps
  if "data" in config and "data_dir" in config.data:
    config.data.data_dir = data_dir
  return config_lib.resolve_run_dirs(config)
