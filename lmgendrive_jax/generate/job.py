"""Offline batch video generation: every clip of a dataset split -> an MP4 and PSNR/SSIM(/FVD).

Where it sits: `launch/generate.py --config=configs/generate.py:preset` builds a
`GenerationJob` from a trained stage-2/3 run (`train/trained.py: load_lmgendrive`) and runs it;
the quickstart's HTML report (`eval/report.py`) reads what it writes.

Per batch of clips (the TFDS clips of `data_pipelines/build_tfds.py`, decoded by the training
pipeline's own transform `data/examples.py: ClipExample` in eval mode: window from the clip's
first frame, no augmentation, first instruction text, no notice):
  window images uint8[B, To + N, V, H, W, 3] at `stride` source frames (frame_mask marks the
  frames the clip has; the last N slots are the ground-truth future)
    -> LMGenDrive.__call__ over the To observed frames (instruction + frame blocks)
       -> generation-query states of the last observed frame: the condition f32[B, G, D]
    -> VAE-encode the last `chunk.context_frames` observed frames: context f32[B, Fc, V, h, w, c]
    -> chunked autoregressive rollout (`generate/rollout.py: iter_rollout`), each chunk VAE-decoded
       on the device: generated uint8[B, N, V, H, W, 3] on the host
    -> per clip: PSNR/SSIM per future frame vs the ground truth where it exists, the same for the
       copy-last-observed-frame baseline, (video features for FVD), the MP4.

The condition is computed once per clip and reused by every chunk. Recomputing it would need the
LLM to read generated frames (vision encoder on imagined images, with an ego speed nobody
observed); keeping the last observed frame's states is what the world generator was trained with
(the anchor frame's states condition its future) and keeps a chunk's cost constant, so memory
and time per chunk do not grow with the horizon.

Randomness: clip k (its index in the split) draws from `fold_in(key(seed), k)`, chunk c of it from
`fold_in(that, c)`: a clip's video does not depend on which clips share its batch, the host count
or on resuming.

Outputs in `out_dir`, each written atomically (a temp file in `out_dir/.tmp`, then rename):
  <clip_id>.mp4           generated views (top row) over the ground truth (bottom row), views as
                          columns, a label row on top; observed frames first (both rows real)
  clips/<clip_id>.json    the clip's scores; written last: it marks the clip done
  clips/<clip_id>.npz     video features of real/generated views (only with `fvd_features`)
  metrics.json            {"clips": {id: {...}}, "mean": {...}, "horizons": {"0.5s": {...}},
                          "fvd": ..., "config": {...}} (merged by process 0 over every host's clips)
A clip whose MP4 and clips/<id>.json both exist is skipped, so a killed job resumes where it
stopped. Hosts: process i of n takes clips i, i + n, ... (`jax.process_index/process_count`);
after a barrier, process 0 merges.

PSNR is capped at `PSNR_CAP` dB (identical frames would give +inf, which JSON cannot hold).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import time
from typing import Any, Iterator

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lmgendrive_jax import diffusion
from lmgendrive_jax.data import examples, sources
from lmgendrive_jax.errors import ConfigError, DataError
from lmgendrive_jax.generate import rollout as rollout_lib
from lmgendrive_jax.metrics import image as image_metrics
from lmgendrive_jax.models.lmgendrive import LMGenDrive, WorldView
from lmgendrive_jax.models.vae import unit_to_images
from lmgendrive_jax.train.trained import load_lmgendrive

PSNR_CAP = 100.0
CLIP_DIR = "clips"
TMP_DIR = ".tmp"
_MODEL_INPUTS = ("images", "speed", "instruction_tokens", "instruction_mask", "notice_tokens",
                 "notice_mask", "notice_frame", "frame_mask")


# ----------------------------------------------------------------------------------------------
# Clip ids and files.


def clip_id(index: int, record: dict) -> str:
  """`<index in split>-<route folder>-f<start frame>`, file-name safe (unique per split)."""
  route = record["route"]
  route = route.decode() if isinstance(route, bytes) else str(route)
  route = re.sub(r"[^A-Za-z0-9_.-]+", "_", route.strip("/")) or "route"
  return f"{index:05d}-{route}-f{int(record['start_frame'])}"


def _atomic_write(path: str, write_fn, tmp_dir: str) -> None:
  """write_fn(tmp_path) then rename onto `path` (same filesystem): readers never see half files."""
  os.makedirs(tmp_dir, exist_ok=True)
  base, ext = os.path.splitext(os.path.basename(path))
  tmp = os.path.join(tmp_dir, f"{base}.{os.getpid()}{ext}")
  write_fn(tmp)
  os.replace(tmp, path)


def _write_json(path: str, value: Any, tmp_dir: str) -> None:
  def write(tmp):
    with open(tmp, "w") as f:
      json.dump(value, f, indent=1, sort_keys=True, allow_nan=False)
  _atomic_write(path, write, tmp_dir)


# ----------------------------------------------------------------------------------------------
# Video frames.


def _label(text: str, height: int, width: int) -> np.ndarray:
  """uint8[height, width, 3]: white text on dark grey (PIL's built-in bitmap font)."""
  from PIL import Image, ImageDraw
  canvas = Image.new("RGB", (width, height), (32, 32, 32))
  ImageDraw.Draw(canvas).text((2, max(0, (height - 11) // 2)), text, fill=(255, 255, 255))
  return np.asarray(canvas)


def video_frame_size(num_views: int, height: int, width: int, scale: int,
                     label_height: int) -> tuple[int, int]:
  """(rows, cols) of a video frame: label + 2 rows of views, padded to multiples of 16 (H.264)."""
  rows = label_height + 2 * height * scale
  cols = num_views * width * scale
  return -(-rows // 16) * 16, -(-cols // 16) * 16


def tile_frame(generated: np.ndarray, truth: np.ndarray | None, label: str, scale: int,
               label_height: int) -> np.ndarray:
  """generated/truth uint8[V, H, W, 3] (truth None: black) -> uint8[rows, cols, 3]."""
  views, height, width = generated.shape[:3]
  rows, cols = video_frame_size(views, height, width, scale, label_height)
  frame = np.zeros((rows, cols, 3), np.uint8)
  frame[:label_height, :] = _label(label, label_height, cols) if label_height else 0
  for row, source in enumerate((generated, truth)):
    if source is None:
      continue
    top = label_height + row * height * scale
    for v in range(views):
      tile = np.repeat(np.repeat(source[v], scale, axis=0), scale, axis=1)
      frame[top:top + height * scale, v * width * scale:(v + 1) * width * scale] = tile
  return frame


def write_video(path: str, frames: Iterator[np.ndarray], fps: float) -> None:
  import imageio.v2 as imageio
  writer = imageio.get_writer(path, format="FFMPEG", fps=fps, codec="libx264", quality=8,
                              macro_block_size=16, pixelformat="yuv420p")
  try:
    for frame in frames:
      writer.append_data(frame)
  finally:
    writer.close()


# ----------------------------------------------------------------------------------------------
# Scores.


def _scores(generated: jax.Array, truth: jax.Array, last_observed: jax.Array):
  """generated/truth uint8[B, N, V, H, W, 3], last_observed uint8[B, V, H, W, 3] ->
  dict of f32[B, N] (mean over views): psnr, ssim, copy_last_psnr, copy_last_ssim."""
  copy_last = jnp.broadcast_to(last_observed[:, None], truth.shape)
  out = {}
  for name, prediction in (("", generated), ("copy_last_", copy_last)):
    out[name + "psnr"] = jnp.minimum(image_metrics.psnr(prediction, truth), PSNR_CAP).mean(-1)
    out[name + "ssim"] = image_metrics.ssim(prediction, truth).mean(-1)
  return out


_SCORE_NAMES = ("psnr", "ssim", "copy_last_psnr", "copy_last_ssim")


def _mean_or_none(values) -> float | None:
  values = [v for v in values if v is not None]
  return float(np.mean(values)) if values else None


def merge_metrics(clip_metrics: dict[str, dict], horizons: dict[str, int],
                  fvd: dict | None = None, extra: dict | None = None) -> dict:
  """Per-clip records -> the metrics.json object.

  horizons: {"0.5s": k} with k the 1-based future frame at that horizon. A horizon's value is the
  mean over clips that have a ground-truth frame there.
  """
  mean = {name: _mean_or_none(m.get(name) for m in clip_metrics.values())
          for name in _SCORE_NAMES}
  mean["clips_with_truth"] = sum(1 for m in clip_metrics.values() if m.get("psnr") is not None)
  by_horizon = {}
  for label, k in horizons.items():
    entry = {"frame": k}
    for name in _SCORE_NAMES:
      entry[name] = _mean_or_none(
          m["per_frame"][name][k - 1] for m in clip_metrics.values()
          if len(m["per_frame"][name]) >= k)
    entry["clips"] = sum(1 for m in clip_metrics.values() if len(m["per_frame"]["psnr"]) >= k)
    if entry["clips"]:
      by_horizon[label] = entry
  result = {"clips": dict(sorted(clip_metrics.items())), "mean": mean, "horizons": by_horizon}
  if fvd is not None:
    result["fvd"] = fvd
    if fvd.get("fvd") is not None:
      mean["fvd"] = fvd["fvd"]
  result.update(extra or {})
  return result


def horizon_frames(horizons_s, dt: float, future_frames: int) -> dict[str, int]:
  """{"0.5s": k}: the 1-based generated frame at each horizon (frame k sits k * dt after the last
  observed frame), for the horizons the rollout reaches."""
  out = {}
  for h in horizons_s:
    k = int(np.floor(float(h) / dt + 0.5 + 1e-9))  # nearest frame, ties to the later one
    if 1 <= k <= future_frames:
      out[f"{float(h):g}s"] = k
  return out


def fvd_from_features(features: list[dict]) -> dict:
  """[{"real": f[V, D], "generated": f[V, D]}] per clip -> {"fvd", "videos"} over all views."""
  from lmgendrive_jax.metrics import frechet
  real = np.concatenate([f["real"] for f in features]) if features else np.zeros((0, 1))
  fake = np.concatenate([f["generated"] for f in features]) if features else np.zeros((0, 1))
  if len(real) < 2:
    return {"fvd": None, "videos": int(len(real)),
            "note": "FVD needs at least 2 clips with enough ground-truth frames"}
  real_stats, fake_stats = frechet.GaussianStats().add(real), frechet.GaussianStats().add(fake)
  value = frechet.frechet_distance(real_stats.mean, real_stats.cov, fake_stats.mean,
                                   fake_stats.cov)
  out = {"fvd": float(value), "videos": int(len(real))}
  if len(real) <= real.shape[1]:
    out["note"] = (f"{len(real)} videos for {real.shape[1]}-dim features: the covariances are "
                   f"rank-deficient; compare such numbers only between runs on the same clips")
  return out


# ----------------------------------------------------------------------------------------------
# The job.


@dataclasses.dataclass
class ClipResult:
  clip_id: str
  metrics: dict


class GenerationJob:
  """Loads the run, the data and the compiled steps once; `run()` (re)does the missing clips.

  `config` is `configs/generate.py`'s ConfigDict. `shard_index`/`shard_count` default to
  `jax.process_index()`/`process_count()` (tests pass them to act as one of several hosts).
  """

  def __init__(self, config: ml_collections.ConfigDict, shard_index: int | None = None,
               shard_count: int | None = None):
    if not config.work_dir:
      raise ConfigError("generate: config.work_dir is empty; pass the trained stage-2/3 run dir, "
                        "e.g. --config.work_dir=work_dirs/stage3_small")
    self.config = config
    self.shard_index = jax.process_index() if shard_index is None else int(shard_index)
    self.shard_count = jax.process_count() if shard_count is None else int(shard_count)
    self.model, variables, self.run_config = load_lmgendrive(config.work_dir)
    if self.model.world is None or self.model.vae is None:
      raise ConfigError(f"{config.work_dir}: the model has no world generator or VAE "
                        f"(model.lmgendrive.world / vae are empty); nothing to generate with")
    self.context_frames = int(self.run_config.model.chunk.context_frames)
    self.chunk_frames = int(self.run_config.model.chunk.future_frames)
    self.observed, self.future = int(config.observed_frames), int(config.future_frames)
    if self.observed < 1 or self.future < 1:
      raise ConfigError(f"generate: observed_frames={self.observed} and future_frames="
                        f"{self.future} must be at least 1")
    if self.context_frames + self.chunk_frames > int(self.model.world["max_frames"]):
      raise ConfigError(f"run's chunk context {self.context_frames} + future {self.chunk_frames} "
                        f"exceeds the world generator's max_frames {self.model.world['max_frames']}")
    flow = dict(self.run_config.model.flow.to_dict())
    if config.sampler.num_steps:
      flow["num_steps"] = int(config.sampler.num_steps)
    if config.sampler.guidance_scale:
      flow["guidance_scale"] = float(config.sampler.guidance_scale)
    self.flow = diffusion.flow_config(flow)
    self.data_cfg = self._data_config()
    self.dt = int(self.data_cfg.stride) / float(config.data.fps)
    self.clips = sources.clip_source(self.data_cfg.data_dir, self.data_cfg.split)
    self.frames = sources.frame_source(self.data_cfg.data_dir, self.data_cfg.split)
    self.transform = examples.ClipExample(self.data_cfg, self.frames, train=False)
    self.out_dir = config.out_dir or os.path.join(config.work_dir, "generate",
                                                  self.data_cfg.split)
    self.clip_dir = os.path.join(self.out_dir, CLIP_DIR)
    self.tmp_dir = os.path.join(self.out_dir, TMP_DIR)
    self.batch_size = int(config.batch_size)
    self._place(variables)
    self._build_steps()
    self.fvd_extractor = None
    if config.fvd_features:
      from lmgendrive_jax.metrics import features
      self.fvd_extractor = features.video_extractor(config.fvd_features)

  # --- setup -------------------------------------------------------------------------------------

  def _data_config(self) -> ml_collections.ConfigDict:
    """The run's data config re-windowed: observed + future frames from the clip's start."""
    run_data = self.run_config.data
    cfg = ml_collections.ConfigDict(run_data.to_dict())
    cfg.data_dir = self.config.data.data_dir or run_data.data_dir
    if not cfg.data_dir:
      raise ConfigError("generate: neither config.data.data_dir nor the run's data.data_dir "
                        "names a dataset; pass --config.data.data_dir=<build_tfds --out>")
    cfg.split = self.config.data.split
    cfg.stride = int(self.config.data.stride or run_data.stride)
    cfg.window_frames = self.observed + self.future
    cfg.future_offsets = (1,)
    cfg.views = tuple(run_data.views)
    cfg.view_size = tuple(run_data.view_size)
    cfg.random_crop, cfg.colour_jitter, cfg.notice_probability = False, 0.0, 0.0
    cfg.tokenizer = self._tokenizer_path(cfg.tokenizer)
    return cfg

  def _tokenizer_path(self, path: str) -> str:
    """A relative tokenizer path of the run is relative to the repo root (configs' convention)."""
    if os.path.isabs(path) or os.path.exists(path):
      return path
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    candidate = os.path.join(repo, path)
    return candidate if os.path.exists(candidate) else path

  def _place(self, variables) -> None:
    """Variables replicated on a mesh of this host's devices; batches split over its 'batch'."""
    local = jax.local_devices()
    count = 1
    if self.config.shard_batch:
      count = max(d for d in range(1, len(local) + 1) if self.batch_size % d == 0)
    mesh = jax.sharding.Mesh(np.asarray(local[:count]), ("batch",))
    self.batch_sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("batch"))
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    self.variables = jax.device_put(variables, replicated)

  def _build_steps(self) -> None:
    model, context_frames = self.model, self.context_frames
    world, flow, chunk_frames = WorldView(model), self.flow, self.chunk_frames

    def condition(variables, inputs):
      """Observed window -> (cond f32[B, G, D], context latents f32[B, Fc, V, h, w, c])."""
      _, out = model.apply(variables, *(inputs[k] for k in _MODEL_INPUTS))
      frame_mask = inputs["frame_mask"]
      last = jnp.maximum(frame_mask.sum(axis=1) - 1, 0)
      cond = jnp.take_along_axis(out["generation_states"], last[:, None, None, None], axis=1)[:, 0]
      # The training context of anchor a: frames a - Fc + 1 .. a, clamped at the clip start.
      index = jnp.maximum(last[:, None] - jnp.arange(context_frames - 1, -1, -1)[None], 0)
      images = jnp.take_along_axis(inputs["images"], index[:, :, None, None, None, None], axis=1)
      context = model.apply(variables, images, method=LMGenDrive.encode_latents)
      last_images = jnp.take_along_axis(inputs["images"], last[:, None, None, None, None, None],
                                        axis=1)[:, 0]
      return cond, context, last_images

    def chunk_step(variables, _, context, conditions, keys, chunk_index):
      """The `rollout.iter_rollout` step with one key per clip (vmapped sampler)."""
      def one(clip_context, clip_cond, key):
        return diffusion.sample_future(world, variables, clip_context[None], clip_cond[None],
                                       jax.random.fold_in(key, chunk_index), chunk_frames,
                                       flow)[0]
      future = jax.vmap(one)(context, conditions["cond"], keys)
      next_context = jnp.concatenate([context, future], axis=1)[:, -context_frames:]
      images = unit_to_images(model.apply(variables, future, method=LMGenDrive.decode_latents))
      return future, next_context, images

    self.condition_fn = jax.jit(condition)
    self.chunk_step = jax.jit(chunk_step, donate_argnums=(2,))
    self.scores_fn = jax.jit(_scores)

  # --- clips -------------------------------------------------------------------------------------

  def all_clip_ids(self) -> list[tuple[int, str]]:
    """[(index, clip_id)] of every clip of the split (up to data.max_clips)."""
    count = len(self.clips)
    if int(self.config.data.max_clips) >= 0:
      count = min(count, int(self.config.data.max_clips))
    return [(i, clip_id(i, self.clips[i])) for i in range(count)]

  def is_done(self, cid: str) -> bool:
    return (os.path.exists(os.path.join(self.out_dir, f"{cid}.mp4"))
            and os.path.exists(os.path.join(self.clip_dir, f"{cid}.json")))

  def _examples(self, todo: list[tuple[int, str]]) -> Iterator[dict]:
    """Batches (numpy) of eval-mode clip examples + "clip_index"; the last one may be short."""
    def load(item):
      index, _ = item
      example = self.transform.random_map(self.clips[int(index)], None)
      example["clip_index"] = np.int32(index)
      return example
    ds = grain.MapDataset.source([(i, c) for i, c in todo]).map(load)
    it = ds.to_iter_dataset(grain.ReadOptions(num_threads=int(self.config.data.read_threads),
                                              prefetch_buffer_size=2))
    return iter(it.batch(self.batch_size, drop_remainder=False))

  # --- one batch ---------------------------------------------------------------------------------

  def _pad(self, batch: dict) -> tuple[dict, int]:
    """Repeats the last clip so every call has batch_size rows (one compiled program)."""
    real = len(batch["clip_index"])
    if real == self.batch_size:
      return batch, real
    pad = self.batch_size - real
    return {k: np.concatenate([v, np.repeat(v[-1:], pad, axis=0)]) for k, v in batch.items()}, real

  def generate_batch(self, batch: dict) -> dict:
    """A padded numpy batch -> {"generated": uint8[B, N, V, H, W, 3], "last_observed",
    "scores": {name: f32[B, N]}}."""
    check_data(batch)
    to = self.observed
    inputs = {k: batch[k] for k in _MODEL_INPUTS}
    for key in ("images", "speed", "frame_mask"):
      inputs[key] = batch[key][:, :to]
    inputs = jax.device_put(inputs, self.batch_sharding)
    cond, context, last_images = self.condition_fn(self.variables, inputs)
    base = jax.random.key(int(self.config.seed))
    keys = jax.device_put(jax.vmap(lambda i: jax.random.fold_in(base, i))(
        jnp.asarray(batch["clip_index"])), self.batch_sharding)
    generated = np.empty((self.batch_size, self.future) + batch["images"].shape[2:], np.uint8)
    for chunk in rollout_lib.iter_rollout(self.chunk_step, self.variables, context,
                                          {"cond": cond}, self.future, keys):
      generated[:, chunk.start:chunk.start + chunk.images.shape[1]] = chunk.images
    truth = batch["images"][:, to:]
    scores = self.scores_fn(jax.device_put(generated, self.batch_sharding),
                            jax.device_put(truth, self.batch_sharding), last_images)
    return {"generated": generated, "last_observed": np.asarray(last_images),
            "scores": {k: np.asarray(v) for k, v in scores.items()}}

  def _clip_record(self, b: int, batch: dict, result: dict) -> dict:
    to = self.observed
    frame_mask = batch["frame_mask"][b]
    observed = int(frame_mask[:to].sum())
    # Ground truth exists for future frame t when the clip holds window slot To + t and the
    # window is full up to it (a clip shorter than To has no future at all).
    truth_frames = int(frame_mask[to:].sum()) if observed == to else 0
    per_frame = {name: [float(x) for x in result["scores"][name][b, :truth_frames]]
                 for name in _SCORE_NAMES}
    record = {name: _mean_or_none(per_frame[name]) for name in _SCORE_NAMES}
    record.update(per_frame=per_frame, truth_frames=truth_frames, observed_frames=observed,
                  generated_frames=self.future, clip_index=int(batch["clip_index"][b]))
    return record

  def _video_frames(self, b: int, batch: dict, result: dict, cid: str) -> Iterator[np.ndarray]:
    video = self.config.video
    scale, label_height = int(video.scale), int(video.label_height)
    to = self.observed
    frame_mask = batch["frame_mask"][b]
    if video.show_observed:
      for t in range(to):
        if frame_mask[t]:
          images = batch["images"][b, t]
          yield tile_frame(images, images, f"t={(t - to + 1) * self.dt:+.1f}s observed",
                           scale, label_height)
    truth_frames = int(frame_mask[to:].sum()) if frame_mask[:to].all() else 0
    for t in range(self.future):
      truth = batch["images"][b, to + t] if t < truth_frames else None
      yield tile_frame(result["generated"][b, t], truth,
                       f"t={(t + 1) * self.dt:+.1f}s top: generated, bottom: truth",
                       scale, label_height)

  def _features(self, b: int, batch: dict, result: dict, truth_frames: int) -> dict | None:
    length = int(self.config.fvd_frames)
    if self.fvd_extractor is None or truth_frames < length or length > self.future:
      return None
    real = batch["images"][b, self.observed:self.observed + length]      # [T, V, H, W, 3]
    fake = result["generated"][b, :length]
    to_views = lambda x: np.moveaxis(x, 1, 0)  # noqa: E731  [V, T, H, W, 3]: one video per view
    return {"real": self.fvd_extractor(to_views(real)), "generated": self.fvd_extractor(
        to_views(fake))}

  def _write_clip(self, b: int, batch: dict, result: dict, cid: str) -> dict:
    record = self._clip_record(b, batch, result)
    fps = float(self.config.video.fps) or 1.0 / self.dt
    _atomic_write(os.path.join(self.out_dir, f"{cid}.mp4"),
                  lambda tmp: write_video(tmp, self._video_frames(b, batch, result, cid), fps),
                  self.tmp_dir)
    features = self._features(b, batch, result, record["truth_frames"])
    if features is not None:
      _atomic_write(os.path.join(self.clip_dir, f"{cid}.npz"),
                    lambda tmp: np.savez(tmp, **features), self.tmp_dir)
    _write_json(os.path.join(self.clip_dir, f"{cid}.json"), record, self.tmp_dir)  # done marker
    return record

  # --- the whole job -----------------------------------------------------------------------------

  def run(self) -> dict | None:
    """Generates this host's missing clips; process 0 then merges and returns metrics.json."""
    os.makedirs(self.clip_dir, exist_ok=True)
    all_ids = self.all_clip_ids()
    mine = all_ids[self.shard_index::self.shard_count]
    todo = [(i, c) for i, c in mine if not self.is_done(c)]
    bar = None
    if self.config.progress:
      from tqdm.auto import tqdm
      bar = tqdm(total=len(mine), initial=len(mine) - len(todo), unit="clip",
                 desc=f"generate {self.data_cfg.split}", dynamic_ncols=True)
    start = time.time()
    if todo:
      ids = dict(todo)
      for batch in self._examples(todo):
        padded, real = self._pad(batch)
        result = self.generate_batch(padded)
        for b in range(real):
          self._write_clip(b, padded, result, ids[int(padded["clip_index"][b])])
        if bar is not None:
          bar.update(real)
    if bar is not None:
      bar.close()
    logging.info("generated %d clips in %.1f s", len(todo), time.time() - start)
    if self.shard_count > 1 and jax.process_count() > 1:
      from jax.experimental import multihost_utils
      multihost_utils.sync_global_devices("lmgendrive_generate_done")
    if self.shard_index != 0:
      return None
    return self.merge(all_ids)

  def merge(self, all_ids: list[tuple[int, str]]) -> dict:
    """Reads every clip's record (all hosts') and writes `out_dir/metrics.json`."""
    records, missing, features = {}, [], []
    for _, cid in all_ids:
      path = os.path.join(self.clip_dir, f"{cid}.json")
      if not os.path.exists(path):
        missing.append(cid)
        continue
      with open(path) as f:
        records[cid] = json.load(f)
      npz = os.path.join(self.clip_dir, f"{cid}.npz")
      if self.fvd_extractor is not None and os.path.exists(npz):
        with np.load(npz, allow_pickle=False) as data:
          features.append({k: data[k] for k in ("real", "generated")})
    if missing:
      logging.warning("%d clips have no results yet (e.g. %s): metrics.json covers the others",
                      len(missing), missing[0])
    fvd = None
    if self.fvd_extractor is not None:
      fvd = fvd_from_features(features)
      fvd["frames"] = int(self.config.fvd_frames)
    extra = {"missing": missing, "setup": {
        "work_dir": os.path.abspath(self.config.work_dir), "split": self.data_cfg.split,
        "observed_frames": self.observed, "future_frames": self.future,
        "stride": int(self.data_cfg.stride), "frame_interval_s": self.dt,
        "context_frames": self.context_frames, "chunk_frames": self.chunk_frames,
        "sampler": dataclasses.asdict(self.flow), "seed": int(self.config.seed),
        "psnr_cap_db": PSNR_CAP}}
    metrics = merge_metrics(records, horizon_frames(self.config.horizons, self.dt, self.future),
                            fvd, extra)
    _write_json(os.path.join(self.out_dir, "metrics.json"), metrics, self.tmp_dir)
    return metrics


def run(config: ml_collections.ConfigDict) -> dict | None:
  """Builds and runs the job; process 0 returns the merged metrics (others None)."""
  return GenerationJob(config).run()


def check_data(batch: dict) -> None:
  """A batch with no observed frame cannot be conditioned."""
  if not batch["frame_mask"][:, 0].all():
    raise DataError("a clip with no frames reached the generation job; rebuild the dataset")
