"""Random-access sources over the TFDS array_record datasets that `data_pipelines/lmdrive_tfds`
writes: `lmdrive_frames` (one record per frame) and `lmdrive_clips` (one per instruction clip).

Records come back as numpy dicts with the images still encoded (bytes), so decoding happens in the
grain workers at the size the pipeline needs. Sources pickle as (directory, split) and reopen their
files lazily in each worker process.
"""

from __future__ import annotations

import json
import os
import threading

import grain
import tensorflow_datasets as tfds

from lmgendrive_jax.errors import DataError

FRAMES_NAME = "lmdrive_frames"
CLIPS_NAME = "lmdrive_clips"
VERSION = "1.4.0"  # of the datasets; data_pipelines/lmdrive_tfds builds under this number


def dataset_dir(data_dir: str, name: str) -> str:
  """`<data_dir>/<name>/<VERSION>` (data_dir is the builder's --out), or the path itself if it
  is one."""
  if os.path.exists(os.path.join(data_dir, "dataset_info.json")):
    return data_dir
  path = os.path.join(data_dir, name, VERSION)
  if not os.path.exists(os.path.join(path, "dataset_info.json")):
    raise DataError(f"no TFDS dataset {name!r} under {data_dir!r} (looked for {path}/"
                    f"dataset_info.json); build it with `python -m data_pipelines.build_tfds "
                    f"--data_dir <LMDrive root> --out {data_dir}`")
  return path


class RecordSource(grain.sources.RandomAccessDataSource):
  """One split of one built dataset: `len(source)`, `source[i]` -> dict of numpy values."""

  def __init__(self, directory: str, split: str):
    self.directory, self.split = directory, split
    self._lock = threading.Lock()
    self._open()

  def _open(self) -> None:
    builder = tfds.builder_from_directory(self.directory)
    if self.split not in builder.info.splits:
      raise DataError(f"{self.directory} has no split {self.split!r}; it has "
                      f"{sorted(builder.info.splits)} (validation exists only when some route "
                      f"has a validation weather)")
    split_info = builder.info.splits[self.split]
    self.features = builder.info.features
    self.metadata = dict(builder.info.metadata or {})
    self.paths = [os.fspath(p) for p in split_info.filepaths]
    self._length = split_info.num_examples
    self._records = None
    images = self.features["images"].keys() if "images" in self.features else ()
    self._decoders = {"images": {v: tfds.decode.SkipDecoding() for v in images}} if images else None

  @property
  def build_config(self) -> dict:
    config = self.metadata.get("build_config", {})
    return json.loads(config) if isinstance(config, str) else dict(config)

  def __len__(self) -> int:
    return self._length

  def _reader(self):
    if self._records is None:
      with self._lock:
        if self._records is None:
          self._records = grain.sources.ArrayRecordDataSource(self.paths)
    return self._records

  def raw(self, index: int) -> bytes:
    return self._reader()[index]

  def __getitem__(self, index: int) -> dict:
    if not 0 <= index < self._length:
      raise DataError(f"record {index} is outside {self.directory} split {self.split!r} "
                      f"({self._length} records)")
    return self.features.deserialize_example_np(self.raw(index), decoders=self._decoders)

  def __getstate__(self):
    return {"directory": self.directory, "split": self.split}

  def __setstate__(self, state):
    self.directory, self.split = state["directory"], state["split"]
    self._lock = threading.Lock()
    self._open()

  def __repr__(self) -> str:
    return f"RecordSource({self.directory!r}, split={self.split!r}, len={self._length})"


def frame_source(data_dir: str, split: str) -> RecordSource:
  return RecordSource(dataset_dir(data_dir, FRAMES_NAME), split)


def clip_source(data_dir: str, split: str) -> RecordSource:
  return RecordSource(dataset_dir(data_dir, CLIPS_NAME), split)
