"""grain input pipelines of the three stages, per host, resumable.

  records (array_record, this host's shard) -> seeded shuffle (new order each epoch) -> repeat
  -> decode + augment + label / clip-sample + tokenise (grain workers) -> batch (static shapes)
  -> DataIterator: next() gives this host's numpy share of the global batch; `global_batch`
     turns it into global jax.Arrays; get_state()/set_state() is the JSON the trainer checkpoints.

Sharding: host `i` of `n` reads records i, i + n, i + 2n, ... (`ds[i::n]`), so hosts are
disjoint and together cover every record once per epoch. `shard_index`/`shard_count` default to
`jax.process_index()`/`jax.process_count()`; tests pass them to simulate several hosts.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import grain
import numpy as np

from lmgendrive_jax.data import clips, examples, sources, topdown, view_layout
from lmgendrive_jax.errors import ConfigError, DataError


class DataIterator:
  """This host's batches of a grain pipeline, with a checkpointable position.

  `next(it)` -> dict of numpy arrays (leading axis = this host's share of the global batch).
  `it.batch(step)` is the trainer's `BatchSource` protocol: it must be called with consecutive
  steps, starting at the restored step. `get_state()` is JSON (Orbax `JsonSave`); `set_state()`
  restores it and checks that the pipeline config is the same (a changed config would silently
  read different data).
  """

  def __init__(self, dataset: grain.IterDataset, fingerprint: dict, local_batch_size: int):
    self._dataset = dataset
    self._iterator = iter(dataset)
    self.fingerprint = fingerprint
    self.local_batch_size = local_batch_size
    self.step = 0

  def __iter__(self):
    return self

  def __next__(self) -> dict:
    batch = next(self._iterator)
    self.step += 1
    return batch

  def batch(self, step: int) -> dict:
    if step != self.step:
      raise DataError(f"data iterator is at step {self.step} but step {step} was asked for; "
                      f"restore the iterator state saved with that step (set_state)")
    return next(self)

  def get_state(self) -> dict:
    return {"step": self.step, "fingerprint": self.fingerprint,
            "grain": json.loads(json.dumps(self._iterator.get_state()))}

  def set_state(self, state: dict) -> None:
    if not state:
      return
    check_fingerprint(state, self.fingerprint, "the data iterator state", "pipeline config",
                      "resume with the same data config or start the data from scratch")
    self._iterator.set_state(state["grain"])
    self.step = int(state["step"])

  def global_batch(self, batch: dict, mesh, rules) -> dict:
    """This host's numpy batch -> global jax.Arrays sharded over the batch axes."""
    from lmgendrive_jax import parallel  # Local: the pipeline itself needs no jax.
    return parallel.global_batch(batch, mesh, rules)

  def close(self) -> None:
    close = getattr(self._iterator, "close", None)
    if close is not None:
      close()


def check_fingerprint(state: dict, fingerprint: dict, what: str, source: str, remedy: str
                      ) -> None:
  """Raises DataError unless a saved batch source's state carries this source's fingerprint: a
  position saved by another config would silently read different data. `what` names the state,
  `source` what the fingerprint stands for."""
  if state.get("fingerprint") != fingerprint:
    raise DataError(f"{what} was saved by another {source} ({state.get('fingerprint')}) than "
                    f"this one ({fingerprint}); {remedy}")


def _shard(shard_index: int | None, shard_count: int | None) -> tuple[int, int]:
  if shard_index is None or shard_count is None:
    import jax
    shard_index, shard_count = jax.process_index(), jax.process_count()
  if not 0 <= shard_index < shard_count:
    raise ConfigError(f"shard_index {shard_index} is not in [0, {shard_count})")
  return shard_index, shard_count


def _fingerprint(cfg, kind: str, shard: tuple[int, int], train: bool) -> dict:
  """What must match for a saved iterator state to mean the same position."""
  text = json.dumps({"kind": kind, "config": cfg.to_dict()}, sort_keys=True, default=str)
  return {"kind": kind, "shard": list(shard), "train": train,
          "config_sha": hashlib.sha256(text.encode()).hexdigest()[:16]}


def _local_batch_size(cfg, shard_count: int) -> int:
  if cfg.batch_size % shard_count:
    raise ConfigError(f"data.batch_size={cfg.batch_size} (global) is not divisible by the "
                      f"{shard_count} hosts; make it a multiple of {shard_count}")
  return cfg.batch_size // shard_count


def _assemble(ds: grain.MapDataset, transform, cfg, shard: tuple[int, int], train: bool,
              num_epochs: int | None, kind: str, record_filter=None) -> DataIterator:
  shard_index, shard_count = shard
  local = _local_batch_size(cfg, shard_count)
  if len(ds) < shard_count:
    raise DataError(f"{kind}: {len(ds)} records cannot be shared by {shard_count} hosts")
  ds = ds.seed(int(cfg.seed))[shard_index::shard_count]
  if train and cfg.shuffle:
    ds = ds.shuffle()
  ds = ds.repeat(num_epochs)
  if record_filter is not None:
    ds = ds.filter(record_filter)
  ds = ds.random_map(transform)
  it = ds.to_iter_dataset(grain.ReadOptions(num_threads=int(cfg.read_threads),
                                            prefetch_buffer_size=int(cfg.prefetch)))
  it = it.batch(local, drop_remainder=train)
  if cfg.num_workers > 0:
    from absl import flags  # grain's workers read absl flags; a plain script never parsed them.
    if not flags.FLAGS.is_parsed():
      flags.FLAGS.mark_as_parsed()
    it = it.mp_prefetch(grain.MultiprocessingOptions(
        num_workers=int(cfg.num_workers), per_worker_buffer_size=int(cfg.worker_buffer)))
  fingerprint = _fingerprint(cfg, kind, shard, train)
  fingerprint["num_workers"] = int(cfg.num_workers)
  return DataIterator(it, fingerprint, local)


def _not_blocked(record: dict) -> bool:
  return not bool(record["blocked"])


def make_frame_iterator(cfg, split: str | None = None, *, train: bool = True,
                        shard_index: int | None = None, shard_count: int | None = None,
                        num_epochs: int | None = None) -> DataIterator:
  """Stage 1: batches of single frames from `lmdrive_frames` (see the schema in `data/__init__`).

  cfg: `config.data_preset(name, stage=1)` (or the `data` block of a stage-1 config).
  num_epochs: None repeats forever (training); an int stops after that many passes.
  """
  split = split or cfg.split
  source = sources.frame_source(cfg.data_dir, split)
  transform = examples.FrameExample(cfg, examples._stored_grid(source), train,
                                     source.build_config)
  return _assemble(grain.MapDataset.source(source), transform, cfg,
                   _shard(shard_index, shard_count), train, num_epochs, "frames",
                   _not_blocked if cfg.drop_blocked else None)


def make_clip_iterator(cfg, split: str | None = None, *, train: bool = True,
                       shard_index: int | None = None, shard_count: int | None = None,
                       num_epochs: int | None = None) -> DataIterator:
  """Stages 2-3: batches of instruction clips from `lmdrive_clips` (+ their frames)."""
  split = split or cfg.split
  clip_records = sources.clip_source(cfg.data_dir, split)
  frames = sources.frame_source(cfg.data_dir, split)
  transform = examples.ClipExample(cfg, frames, train)
  records = clip_records
  repeats = int(cfg.get("junction_clip_repeats", 1))  # Older saved configs: no repeats.
  if train and repeats > 1:
    records = _Reindexed(clip_records, junction_repeated_indices(clip_records, repeats))
  return _assemble(grain.MapDataset.source(records), transform, cfg,
                   _shard(shard_index, shard_count), train, num_epochs, "clips")


class _Reindexed(grain.sources.RandomAccessDataSource):
  """`source[indices[i]]` as record i (a clip may appear several times an epoch)."""

  def __init__(self, source, indices: list[int]):
    self.source, self.indices = source, list(indices)

  def __len__(self) -> int:
    return len(self.indices)

  def __getitem__(self, index: int) -> dict:
    return self.source[self.indices[index]]


def junction_repeated_indices(clip_records, repeats: int) -> list[int]:
  """Every clip's index once, then those of clips that pass a junction `repeats - 1` more times:
  one epoch's clips, with the few where the instruction picks a branch (~half the clips, a fifth
  of the windows) drawn more often. Reads each clip record once (no frames)."""
  junction = [i for i in range(len(clip_records))
              if np.isin(clip_records[i]["road_option"], clips.JUNCTION_OPTIONS).any()]
  return list(range(len(clip_records))) + junction * (repeats - 1)


def make_iterator(cfg, stage: int, **kwargs) -> DataIterator:
  """The iterator of training stage 1, 2 or 3."""
  if stage == 1:
    return make_frame_iterator(cfg, **kwargs)
  if stage in (2, 3):
    return make_clip_iterator(cfg, **kwargs)
  raise ConfigError(f"stage must be 1, 2 or 3; got {stage!r}")


def _view_layout_spec(cfg, lead: tuple[int, ...], v: int) -> dict:
  """Per-view road-layout labels of each frame, when `cfg.view_layout_size` asks for them."""
  rows, cols = (int(s) for s in cfg.view_layout_size)
  if rows <= 0 or cols <= 0:
    return {}
  return {"view_layout": (lead + (v, rows, cols, len(view_layout.VIEW_LAYOUT_CLASSES)),
                          np.float32),
          "view_layout_mask": (lead, np.bool_)}


def _view_objects_spec(cfg, b: int, v: int) -> dict:
  """Per-view object cover of each frame (stage 1), when `cfg.view_objects_size` asks for it."""
  rows, cols = (int(s) for s in cfg.get("view_objects_size", (0, 0)))
  if rows <= 0 or cols <= 0:
    return {}
  return {"view_objects": ((b, v, rows, cols), np.float32)}


def batch_spec(cfg, stage: int) -> dict[str, tuple[tuple[int, ...], Any]]:
  """{key: (global shape, dtype)} of a stage's batches: for building abstract inputs and tests."""
  b = int(cfg.batch_size)
  v, (h, w) = len(cfg.views), tuple(int(s) for s in cfg.view_size)
  if stage == 1:
    return {
        "images": ((b, v, h, w, 3), np.uint8), "speed": ((b,), np.float32),
        "target_point": ((b, 2), np.float32), "waypoints": ((b, 5, 2), np.float32),
        "waypoint_mask": ((b, 5), np.bool_),
        "detection": ((b, int(cfg.bev_rows), int(cfg.bev_cols), 8), np.float32),
        "road_layout": ((b, int(cfg.bev_rows), int(cfg.bev_cols), len(topdown.ROAD_CLASSES)),
                        np.float32),
        "road_layout_mask": ((b,), np.bool_),
        "traffic_light": ((b,), np.int32), "stop_sign": ((b,), np.int32),
        "red_light_ahead": ((b,), np.int32), "red_light_zone": ((b,), np.int32),
        "stop_sign_zone": ((b,), np.int32),
        "hazard_ahead": ((b,), np.int32), "command": ((b,), np.int32),
        "town_id": ((b,), np.int32), "frame": ((b,), np.int32),
        **_view_layout_spec(cfg, (b,), v), **_view_objects_spec(cfg, b, v)}
  t, f = int(cfg.window_frames), len(cfg.future_offsets)
  li, ln = int(cfg.max_instruction_tokens), int(cfg.max_notice_tokens)
  return {
      "images": ((b, t, v, h, w, 3), np.uint8), "frame_mask": ((b, t), np.bool_),
      "speed": ((b, t), np.float32),
      "instruction_tokens": ((b, li), np.int32), "instruction_mask": ((b, li), np.bool_),
      "notice_tokens": ((b, ln), np.int32), "notice_mask": ((b, ln), np.bool_),
      "notice_frame": ((b,), np.int32), "waypoints": ((b, t, 5, 2), np.float32),
      "waypoint_mask": ((b, t, 5), np.bool_), "completed": ((b, t), np.int32),
      "misleading": ((b,), np.bool_),
      "instruction_id": ((b,), np.int32), "future_index": ((b, t, f), np.int32),
      "future_mask": ((b, t, f), np.bool_), **_view_layout_spec(cfg, (b, t), v)}
