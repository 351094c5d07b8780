"""The batch generation job on a fixture dataset and a random-init tiny LMGenDrive run dir:
one MP4 per clip (decoded back: frame count and size), metrics in range, the copy-last baseline
equal to a numpy PSNR on the pipeline's own frames, horizons, and resume (only a deleted clip is
regenerated, identically; the other files are untouched; the merged metrics are the same)."""

import json
import os
import sys

import flax.linen as nn
import imageio.v2 as imageio
import jax
import numpy as np
import optax
import pytest
from flax import traverse_util

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "data"))
import lmdrive_fixture as fx  # noqa: E402

from data_pipelines.lmdrive_tfds import BuildConfig, build  # noqa: E402
from lmgendrive_jax import config as config_lib  # noqa: E402
from lmgendrive_jax.data import pipeline  # noqa: E402
from lmgendrive_jax.errors import ConfigError  # noqa: E402
from lmgendrive_jax.generate import job as job_lib  # noqa: E402
from lmgendrive_jax.models.lmgendrive import LMGenDrive  # noqa: E402
from lmgendrive_jax.train import stage2  # noqa: E402
from lmgendrive_jax.train import state as train_state  # noqa: E402
from lmgendrive_jax.train.checkpoints import Checkpointer  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OBSERVED, FUTURE = 2, 6
# Clips 0 and 1 hold the whole window (8 frames); clip 2 (frames 24..29 with its completed tail)
# has ground truth for 4 of the 6 generated frames.
CLIPS = ((0, 12), (8, 20), (24, 26))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("generate")
  route = fx.route_name(1, 1, 0)
  fx.write_dataset(str(root / "src"), [dict(name=route, num_frames=30)],
                   clips=[fx.clip_entry(route, s, e, 60) for s, e in CLIPS])
  build(str(root / "src"), str(root / "data"), BuildConfig(camera_size=(64, 48)), progress=False)
  # A stage-2 run dir as train/loop.py writes it: TrainState + meta config, random weights.
  config = config_lib.load_config(os.path.join(REPO, "configs", "stage2.py") + ":preset=tiny")
  config.data.data_dir = str(root / "data")
  config.runs_root = str(root / "runs")
  config = config_lib.resolve_run_dirs(config)
  model = LMGenDrive(**config.model.lmgendrive.to_dict())
  inputs = stage2.dummy_inputs(config, 2)
  # Random weights on the init's shapes (tracing only: compiling the whole init takes ~50 s here).
  abstract = jax.eval_shape(lambda k: nn.meta.unbox(
      model.init(k, *inputs, method=LMGenDrive.initialize)), jax.random.key(0))
  variables = _random_variables(abstract)
  params = variables.pop("params")
  state = train_state.create_state(params, optax.set_to_zero(), dict(variables))
  checkpointer = Checkpointer(config.work_dir, keep=1)
  checkpointer.save(1, state, {}, {"config": json.loads(config.to_json_best_effort()),
                                   "versions": {"jax": jax.__version__}})
  checkpointer.close()
  return config.work_dir, str(root / "data"), str(root / "out")


def _random_variables(abstract):
  """Norm scales / running variances 1, biases / running means 0, other weights N(0, 1/fan_in)."""
  rng = np.random.default_rng(0)
  flat = traverse_util.flatten_dict(abstract)
  out = {}
  for path, leaf in flat.items():
    name = path[-1]
    if name in ("scale", "var"):
      value = np.ones(leaf.shape)
    elif name in ("bias", "mean"):
      value = np.zeros(leaf.shape)
    else:
      fan_in = int(np.prod(leaf.shape[:-1])) if len(leaf.shape) > 1 else 1
      value = rng.normal(size=leaf.shape) / np.sqrt(max(fan_in, 1)) * (
          1.0 if len(leaf.shape) > 1 else 0.02)
    out[path] = jax.numpy.asarray(value, leaf.dtype)
  return traverse_util.unflatten_dict(out)


def _job_config(work_dir, out_dir):
  config = config_lib.load_config(os.path.join(REPO, "configs", "generate.py") + ":preset=tiny")
  config.work_dir, config.out_dir = work_dir, out_dir
  config.data.split = "train"
  config.observed_frames, config.future_frames = OBSERVED, FUTURE
  config.sampler.num_steps = 2
  config.video.scale = 1
  config.progress = False
  return config


@pytest.fixture(scope="module")
def job(run_dir):
  work_dir, _, out_dir = run_dir
  generation = job_lib.GenerationJob(_job_config(work_dir, out_dir))
  metrics = generation.run()
  return generation, metrics


def _psnr(a, b):
  mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2, axis=(-3, -2, -1))
  return np.minimum(10 * np.log10(255.0 ** 2 / mse), job_lib.PSNR_CAP)


def test_one_video_per_clip(job):
  generation, metrics = job
  ids = [cid for _, cid in generation.all_clip_ids()]
  assert len(ids) == len(CLIPS) and sorted(metrics["clips"]) == sorted(ids)
  videos = sorted(f for f in os.listdir(generation.out_dir) if f.endswith(".mp4"))
  assert videos == sorted(f"{cid}.mp4" for cid in ids)
  for cid in ids:
    frames = list(imageio.get_reader(os.path.join(generation.out_dir, f"{cid}.mp4")).iter_data())
    assert len(frames) == OBSERVED + FUTURE  # observed frames first, then the generated ones
    # label row 16 + generated row 32 + truth row 32; five 32-wide views.
    assert frames[0].shape == (80, 160, 3)


def test_metrics_in_range_and_baseline_matches_numpy(job, run_dir):
  generation, metrics = job
  _, data_dir, _ = run_dir
  truth_frames = [FUTURE, FUTURE, 4]
  for (_, cid), expected in zip(generation.all_clip_ids(), truth_frames):
    clip = metrics["clips"][cid]
    assert clip["truth_frames"] == expected
    assert np.isfinite(clip["psnr"]) and clip["psnr"] > 0
    assert -1 <= clip["ssim"] <= 1 and -1 <= clip["copy_last_ssim"] <= 1
    assert all(np.isfinite(v) and v > 0 for v in clip["per_frame"]["psnr"])
  # The baseline, recomputed from the training pipeline's eval-mode windows with numpy.
  cfg = config_lib.data_preset("tiny", stage=2)
  cfg.data_dir, cfg.batch_size, cfg.shuffle = data_dir, 1, False
  cfg.window_frames, cfg.random_crop, cfg.colour_jitter = OBSERVED + FUTURE, False, 0.0
  it = pipeline.make_clip_iterator(cfg, "train", train=False, shard_index=0, shard_count=1,
                                   num_epochs=1)
  for (_, cid), batch, expected in zip(generation.all_clip_ids(), it, truth_frames):
    images = batch["images"][0]
    reference = _psnr(images[OBSERVED - 1][None], images[OBSERVED:OBSERVED + expected]).mean(-1)
    np.testing.assert_allclose(metrics["clips"][cid]["per_frame"]
                               ["copy_last_psnr"], reference, rtol=1e-4)
  # 0.5 s at 10 Hz (stride 1) is generated frame 5: clips 0 and 1 have truth there, clip 2 not.
  assert set(metrics["horizons"]) == {"0.5s"}
  horizon = metrics["horizons"]["0.5s"]
  assert horizon["frame"] == 5 and horizon["clips"] == 2
  expected = np.mean([metrics["clips"][c]["per_frame"]["psnr"][4]
                      for _, c in generation.all_clip_ids()[:2]])
  np.testing.assert_allclose(horizon["psnr"], expected, rtol=1e-6)
  with open(os.path.join(generation.out_dir, "metrics.json")) as f:
    assert json.load(f) == metrics


def test_resume_regenerates_only_missing_clips(job):
  generation, metrics = job
  ids = [cid for _, cid in generation.all_clip_ids()]
  paths = {cid: (os.path.join(generation.out_dir, f"{cid}.mp4"),
                 os.path.join(generation.clip_dir, f"{cid}.json")) for cid in ids}
  before = {p: os.stat(p).st_mtime_ns for pair in paths.values() for p in pair}
  victim = ids[1]
  for path in paths[victim]:
    os.remove(path)
  again = generation.run()
  for cid in ids:
    for path in paths[cid]:
      assert os.path.exists(path)
      if cid != victim:
        assert os.stat(path).st_mtime_ns == before[path], path
  assert again == metrics  # the regenerated clip scores exactly as before


def test_missing_work_dir_is_a_config_error():
  config = config_lib.load_config(os.path.join(REPO, "configs", "generate.py") + ":preset=tiny")
  with pytest.raises(ConfigError, match="work_dir"):
    job_lib.GenerationJob(config)
