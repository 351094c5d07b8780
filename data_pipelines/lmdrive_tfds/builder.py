"""The build: LMDrive route folders -> TFDS array_record datasets, in parallel and resumable.

1. Routes are listed (`dataset_index.txt`, else every folder with a known layout) and each is
   processed by a worker process into `OUT/_work/routes/<route>/` (`frames.array_record`, one
   record per valid frame, and `done.json`: frames written, their waypoints, skipped inputs). A
   route whose `done.json` exists is not redone, so an interrupted build resumes where it stopped.
2. The instruction lists are read (navigation, misleading, notices) and turned into clip
   examples that point at their frames' record indices.
3. Finalize: each route's frame file becomes one shard of its split (hard-linked into TFDS file
   names, routes in name order), clips are written per split, TFDS metadata (`dataset_info.json`,
   `features.json`) is written for both datasets, and `build_report.json` lists every skipped
   input: `skipped` [{path, reason, detail}], `counts` {reason: n}, `examples` {split: frames
   written}, `clip_examples` {split: clips written}, `recovery_views` {written, crawl_masked}.
"""

from __future__ import annotations

import collections
import json
import logging
import multiprocessing
import os
import shutil
import zlib
from typing import Any, Iterable

import numpy as np
import tensorflow_datasets as tfds
import tqdm
from array_record.python.array_record_module import ArrayRecordWriter

from data_pipelines.lmdrive_tfds import reader as reader_lib
from data_pipelines.lmdrive_tfds.features import (
    CLIPS_NAME, FRAMES_NAME, MEASUREMENT_FLOATS, MEASUREMENT_INTS, VERSION, BuildConfig,
    clip_features, frame_features)
from lmgendrive_jax.data.topdown import TOPDOWN_GRID
from lmgendrive_jax.errors import DataError

FILE_TEMPLATE = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"
SPLITS = ("train", "validation")
WRITER_OPTIONS = "group_size:1"  # One record per chunk: cheap random access for grain.


def _inside(root: str, path: str) -> bool:
  root, path = os.path.realpath(root), os.path.realpath(path)
  return path == root or path.startswith(root + os.sep)


def _route_key(route: str) -> str:
  return route.strip("/").replace("/", "__")


def list_routes(root: str) -> tuple[list[str], list[reader_lib.Skip]]:
  """Route folders (relative to root) to build, and the listed ones that cannot be used."""
  routes, skipped = [], []
  index = os.path.join(root, "dataset_index.txt")
  if os.path.exists(index):
    with open(index) as f:
      names = [line.split()[0] for line in f if line.strip()]
  else:
    names = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    names = [d for d in names if reader_lib.detect_layout(os.path.join(root, d))]
  for name in names:
    path = name if os.path.isabs(name) else os.path.join(root, name)
    if not _inside(root, path):
      skipped.append(reader_lib.Skip(name, "route_outside_root",
                                     f"resolves to {os.path.realpath(path)}"))
    elif not os.path.isdir(path):
      skipped.append(reader_lib.Skip(path, "missing_file", "route folder"))
    elif reader_lib.detect_layout(path) is None:
      skipped.append(reader_lib.Skip(path, "unknown_layout", "no rgb_front/ or rgb_full/"))
    else:
      routes.append(os.path.relpath(os.path.realpath(path), os.path.realpath(root)))
  return sorted(set(routes)), skipped


def _frame_example(route: str, frame: int, town: int, weather: int, m: dict, labels: dict,
                   images: dict, blocked: bool) -> dict:
  measurements = {k: float(m[k]) for k in MEASUREMENT_FLOATS}
  measurements.update({k: int(m[k]) for k in MEASUREMENT_INTS})
  gt = m.get("gt_command", m["command"])
  measurements["gt_command"] = int(gt) if reader_lib._is_number(gt) else int(m["command"])
  return dict(route=route, frame=frame, town_id=town, weather_id=weather, images=images,
              measurements=measurements, speed=float(m["speed"]), blocked=blocked, **labels)


def process_route(task: tuple[str, str, str, str]) -> dict:
  """Worker: validates and writes one route's frames; returns (and saves) its done.json."""
  root, route, config_json, work_dir = task
  config = BuildConfig.from_json(config_json)
  route_work = os.path.join(work_dir, "routes", _route_key(route))
  done_path = os.path.join(route_work, "done.json")
  if os.path.exists(done_path):
    with open(done_path) as f:
      done = json.load(f)
    if done.get("version") == VERSION:  # else written by an older build: redo the route
      return done
  os.makedirs(route_work, exist_ok=True)
  skipped: list[reader_lib.Skip] = []
  try:
    reader = reader_lib.RouteReader(root, route, config)
  except reader_lib.BadInput as e:
    reader, skipped = None, [e.skip]
  frames = reader.frame_numbers() if reader else []
  measurements: dict[int, dict] = {}
  for frame in frames:
    try:
      measurements[frame] = reader.measurement(frame)
    except reader_lib.BadInput as e:
      skipped.append(e.skip)
  first = measurements[min(measurements)] if measurements else None
  town, weather = reader_lib.route_ids(route, first)
  split = "validation" if weather in config.validation_weathers else "train"
  blocked = reader_lib.blocked_flags(measurements, frames, config.blocked_min_frames)
  features = frame_features(config)
  written, waypoints, waypoint_masks, road_options = [], {}, {}, {}
  recovery_views = crawl_masked = 0
  tmp_path = os.path.join(route_work, "frames.array_record.tmp")
  writer = ArrayRecordWriter(tmp_path, WRITER_OPTIONS)
  for frame in frames:
    if frame not in measurements:
      continue
    try:
      images, _ = reader.views(frame)
      labels = reader_lib.frame_labels(measurements, frame, config)
      try:
        road_map = reader.road_map(frame)
      except reader_lib.BadInput as e:  # The frame stays; only its road map is left out.
        skipped.append(e.skip)
        road_map = None
      labels["has_road_map"] = road_map is not None
      labels["road_map"] = road_map if road_map is not None else np.zeros(
          (TOPDOWN_GRID.rows, TOPDOWN_GRID.cols), np.uint8)
      example = _frame_example(route, frame, town, weather, measurements[frame], labels, images,
                               blocked[frame])
      writer.write(features.serialize_example(example))
    except reader_lib.BadInput as e:
      skipped.append(e.skip)
      continue
    written.append(frame)
    waypoints[str(frame)] = labels["waypoints"].tolist()
    waypoint_masks[str(frame)] = labels["waypoint_mask"].tolist()
    road_options[str(frame)] = example["measurements"]["gt_command"]
    if measurements[frame].get("view_pose") is not None:
      recovery_views += 1
      crawl_masked += reader_lib.recovery_view_crawling(measurements, frame, config)
  writer.close()
  os.replace(tmp_path, os.path.join(route_work, "frames.array_record"))
  done = {"version": VERSION, "route": route, "split": split, "town_id": town,
          "weather_id": weather, "frames": written, "waypoints": waypoints,
          "waypoint_masks": waypoint_masks, "road_options": road_options,
          "recovery_views": recovery_views, "recovery_views_crawl_masked": crawl_masked,
          "skipped": [s.to_dict() for s in skipped]}
  with open(done_path + ".tmp", "w") as f:
    json.dump(done, f)
  os.replace(done_path + ".tmp", done_path)  # Written last: its presence means "route done".
  return done


# ----------------------------------------------------------------------------------------------
# Instruction lists -> clips.


def _json_lines(path: str, skipped: list) -> list[tuple[str, dict]]:
  entries = []
  if not os.path.exists(path):
    return entries
  with open(path) as f:
    for number, line in enumerate(f, 1):
      if not line.strip():
        continue
      where = f"{path}:{number}"
      try:
        entry = json.loads(line)
      except ValueError as e:
        skipped.append(reader_lib.Skip(where, "bad_json", str(e)))
        continue
      if not isinstance(entry, dict):
        skipped.append(reader_lib.Skip(where, "bad_json", "a line must be a JSON object"))
        continue
      entries.append((where, entry))
  return entries


def _truthy(value: Any) -> bool:
  if isinstance(value, str):
    return value.strip().lower() in ("true", "1", "yes")
  return bool(value)


def _resolve_route(root: str, route_path: str) -> str | None:
  """route_path of an instruction list -> route folder relative to root (None if outside)."""
  path = route_path if os.path.isabs(route_path) else os.path.join(root, route_path)
  if not _inside(root, path):
    return None
  return os.path.relpath(os.path.realpath(path), os.path.realpath(root))


def default_render():
  """`lmgendrive_jax.sim.instructions.render`: the LangAuto vocabulary (id, args, rng) -> text."""
  try:
    from lmgendrive_jax.sim import instructions
  except ImportError as e:
    raise DataError("rendering instruction texts needs lmgendrive_jax.sim.instructions "
                    f"(the LangAuto instruction vocabulary), which failed to import: {e}") from e
  return instructions.render


def _texts(render, instruction_id: int, args: Any, count: int, seed: int) -> list[str]:
  texts = []
  for k in range(count):
    text = render(instruction_id, args, np.random.default_rng([seed, k]))
    if text not in texts:
      texts.append(text)
  return texts


def read_instruction_lists(root: str, skipped: list) -> tuple[list[dict], dict[str, list]]:
  """(clip entries with a resolved `route` and a `misleading` flag, notices by route)."""
  clips = []
  for name, misleading in (("navigation_instruction_list.txt", False),
                           ("misleading_data.txt", True)):
    for where, entry in _json_lines(os.path.join(root, name), skipped):
      missing = [k for k in ("start_frame", "end_frame", "instruction_id", "route_path")
                 if k not in entry]
      if missing:
        skipped.append(reader_lib.Skip(where, "missing_key", ",".join(missing)))
        continue
      route = _resolve_route(root, str(entry["route_path"]))
      if route is None:
        skipped.append(reader_lib.Skip(where, "route_outside_root", str(entry["route_path"])))
        continue
      if _truthy(entry.get("bad_case", False)):
        skipped.append(reader_lib.Skip(where, "bad_case"))
        continue
      clips.append(dict(entry, route=route, misleading=misleading, where=where))
  notices: dict[str, list] = collections.defaultdict(list)
  path = os.path.join(root, "notice_instruction_list.json")
  if os.path.exists(path):
    try:
      with open(path) as f:
        data = json.load(f)
      if not isinstance(data, dict):
        raise ValueError("expected {route_path: [notices]}")
    except ValueError as e:
      skipped.append(reader_lib.Skip(path, "bad_json", str(e)))
      data = {}
    for route_path, items in data.items():
      route = _resolve_route(root, route_path)
      if route is None:
        skipped.append(reader_lib.Skip(f"{path}[{route_path}]", "route_outside_root"))
        continue
      for item in items:
        if not all(k in item for k in ("frame_id", "instruction_id")):
          skipped.append(reader_lib.Skip(f"{path}[{route_path}]", "missing_key",
                                         "frame_id,instruction_id"))
          continue
        notices[route].append(item)
  return clips, notices


def make_clip(entry: dict, done: dict, offset: int, notices: list, config: BuildConfig,
              render) -> dict:
  """One clip example (raises BadInput when its frames are not all present)."""
  start, end = int(entry["start_frame"]), int(entry["end_frame"])
  written = done["frames"]
  if end < start:
    raise reader_lib.BadInput(entry["where"], "bad_value", f"end_frame {end} < start {start}")
  last = written[-1] if written else -1
  stop = end if entry["misleading"] else min(end + config.completed_tail_frames, last)
  position = {f: i for i, f in enumerate(written)}
  frames = list(range(start, end + 1))
  for frame in frames:
    if frame not in position:
      raise reader_lib.BadInput(entry["where"], "clip_frame_missing",
                                f"frame {frame} of {entry['route']} was not written")
  # The completed tail is extra supervision: it stops at the first frame that was not written.
  while frames[-1] < stop and frames[-1] + 1 in position:
    frames.append(frames[-1] + 1)
  completed_from = start + config.misleading_completed_after if entry["misleading"] else end + 1
  instruction_id = int(entry["instruction_id"])
  args = entry.get("instruction_args", [])
  seed = zlib.crc32(f"{entry['route']}:{start}:{instruction_id}".encode())  # Stable per clip.
  try:
    texts = _texts(render, instruction_id, args, config.num_paraphrases, seed)
    clip_notices = [
        {"frame": int(n["frame_id"]), "instruction_id": int(n["instruction_id"]),
         "texts_json": json.dumps(_texts(render, int(n["instruction_id"]),
                                         n.get("instruction_args", []), config.num_paraphrases,
                                         seed + 1))}
        for n in notices if start <= int(n["frame_id"]) <= stop]
  except (KeyError, IndexError, ValueError, TypeError) as e:
    raise reader_lib.BadInput(entry["where"], "bad_instruction", f"{type(e).__name__}: {e}") from e
  return {
      "route": entry["route"], "town_id": done["town_id"], "weather_id": done["weather_id"],
      "instruction_id": instruction_id, "instruction_name": str(entry.get("instruction", "")),
      "instruction_args": json.dumps(args), "texts": texts,
      "misleading": bool(entry["misleading"]), "start_frame": start, "end_frame": end,
      "frames": np.asarray(frames, np.int32),
      "frame_records": np.asarray([offset + position[f] for f in frames], np.int64),
      "waypoints": np.asarray([done["waypoints"][str(f)] for f in frames], np.float32).reshape(
          len(frames), 5, 2),
      "waypoint_mask": np.asarray([done["waypoint_masks"][str(f)] for f in frames],
                                  bool).reshape(len(frames), 5),
      "completed": np.asarray([f >= completed_from for f in frames], bool),
      "road_option": np.asarray([done["road_options"][str(f)] for f in frames], np.int32),
      "notices": clip_notices,
  }


# ----------------------------------------------------------------------------------------------
# Finalize: shards, metadata, report.


def _link(src: str, dst: str) -> None:
  if os.path.exists(dst):
    os.remove(dst)
  try:
    os.link(src, dst)
  except OSError:
    shutil.copyfile(src, dst)


def _shard_name(dataset: str, split: str, index: int, count: int) -> str:
  return f"{dataset}-{split}.array_record-{index:05d}-of-{count:05d}"


def _write_metadata(data_dir: str, features, shard_lengths: dict[str, list[int]],
                    num_bytes: dict[str, int], config: BuildConfig, description: str) -> None:
  split_infos = [
      tfds.core.SplitInfo(name=split, shard_lengths=lengths, num_bytes=num_bytes[split],
                          filename_template=tfds.core.ShardedFileTemplate(
                              data_dir=data_dir, template=FILE_TEMPLATE,
                              dataset_name=os.path.basename(os.path.dirname(data_dir)),
                              split=split, filetype_suffix="array_record"))
      for split, lengths in shard_lengths.items() if lengths]
  # As tfds.folder_dataset.write_metadata, minus its scan for files (a split may be empty).
  identity = tfds.core.dataset_info.DatasetIdentity(
      name=os.path.basename(os.path.dirname(data_dir)), version=tfds.core.Version(VERSION),
      data_dir=data_dir, module_name="")
  info = tfds.core.DatasetInfo(
      builder=identity, features=features, description=description,
      metadata=tfds.core.MetadataDict(build_config=json.loads(config.to_json())))
  info.set_file_format("array_record")
  info.set_splits(tfds.core.SplitDict(split_infos))
  info.write_to_directory(data_dir)


def _clear_shards(data_dir: str) -> None:
  if os.path.isdir(data_dir):
    for name in os.listdir(data_dir):
      if ".array_record-" in name or name.endswith(".json"):
        os.remove(os.path.join(data_dir, name))
  os.makedirs(data_dir, exist_ok=True)


def build(data_dir: str, out: str, config: BuildConfig = BuildConfig(), workers: int = 0,
          progress: bool = True, render=None) -> dict:
  """Builds both datasets under `out` from the LMDrive-format dataset at `data_dir`.

  workers: processes for the route stage (0: in this process). render: (instruction_id, args,
  rng) -> text, the instruction vocabulary (default: `sim.instructions.render`, LangAuto's).
  Returns the build report (also written to `out/build_report.json`). An existing `out/_work` from the same config is resumed;
  from another config it is an error (delete it or pick another `out`).
  """
  if not os.path.isdir(data_dir):
    raise DataError(f"--data_dir {data_dir!r} is not a directory; point it at the LMDrive "
                    f"dataset root (the folder holding the routes_town* folders)")
  root = os.path.realpath(data_dir)
  work_dir = os.path.join(out, "_work")
  os.makedirs(work_dir, exist_ok=True)
  config_path = os.path.join(work_dir, "build_config.json")
  if os.path.exists(config_path):
    with open(config_path) as f:
      previous = f.read()
    if json.loads(previous) != json.loads(config.to_json()):
      raise DataError(f"{work_dir} holds a partial build with another config ({previous}); "
                      f"delete {work_dir} or build into another --out")
  else:
    with open(config_path, "w") as f:
      f.write(config.to_json())
  routes, skipped = list_routes(root)
  tasks = [(root, route, config.to_json(), work_dir) for route in routes]
  results: list[dict] = []
  bar = tqdm.tqdm(total=len(tasks), desc="routes", unit="route", disable=not progress)
  if workers > 0 and len(tasks) > 1:
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
      for done in pool.imap_unordered(process_route, tasks):
        results.append(done)
        bar.update(1)
        bar.set_postfix(frames=sum(len(r["frames"]) for r in results))
  else:
    for task in tasks:
      results.append(process_route(task))
      bar.update(1)
  bar.close()
  results.sort(key=lambda r: r["route"])
  for done in results:
    skipped.extend(reader_lib.Skip(**s) for s in done["skipped"])

  # Frames: one shard per non-empty route, routes in name order within a split.
  frames_dir = os.path.join(out, FRAMES_NAME, VERSION)
  _clear_shards(frames_dir)
  by_split = {split: [r for r in results if r["split"] == split and r["frames"]]
              for split in SPLITS}
  offsets, shard_lengths, num_bytes = {}, {}, {}
  for split, split_routes in by_split.items():
    offset, lengths, size = 0, [], 0
    for index, done in enumerate(split_routes):
      src = os.path.join(work_dir, "routes", _route_key(done["route"]), "frames.array_record")
      _link(src, os.path.join(frames_dir, _shard_name(FRAMES_NAME, split, index,
                                                      len(split_routes))))
      offsets[done["route"]] = offset
      offset += len(done["frames"])
      lengths.append(len(done["frames"]))
      size += os.path.getsize(src)
    shard_lengths[split], num_bytes[split] = lengths, size
  _write_metadata(frames_dir, frame_features(config), shard_lengths, num_bytes, config,
                  "LMDrive-format frames: views, measurements and stage-1 labels.")

  # Clips.
  entries, notices = read_instruction_lists(root, skipped)
  done_by_route = {r["route"]: r for r in results}
  clips = {split: [] for split in SPLITS}
  render = (render or default_render()) if entries else None
  for entry in entries:
    done = done_by_route.get(entry["route"])
    if done is None or not done["frames"]:
      skipped.append(reader_lib.Skip(entry["where"], "missing_route",
                                     f"{entry['route']} was not built (see its own skips)"))
      continue
    try:
      clips[done["split"]].append(make_clip(entry, done, offsets[entry["route"]],
                                            notices.get(entry["route"], []), config,
                                            render))
    except reader_lib.BadInput as e:
      skipped.append(e.skip)
  clips_dir = os.path.join(out, CLIPS_NAME, VERSION)
  _clear_shards(clips_dir)
  features = clip_features()
  clip_lengths, clip_bytes = {}, {}
  for split, examples in clips.items():
    clip_lengths[split], clip_bytes[split] = ([len(examples)] if examples else []), 0
    if examples:
      path = os.path.join(clips_dir, _shard_name(CLIPS_NAME, split, 0, 1))
      writer = ArrayRecordWriter(path, WRITER_OPTIONS)
      for example in examples:
        writer.write(features.serialize_example(example))
      writer.close()
      clip_bytes[split] = os.path.getsize(path)
  _write_metadata(clips_dir, features, clip_lengths, clip_bytes, config,
                  "LMDrive-format instruction clips; frame_records index lmdrive_frames.")

  report = {
      "data_dir": root, "build_config": json.loads(config.to_json()),
      "examples": {split: sum(shard_lengths[split]) for split in SPLITS},
      "clip_examples": {split: len(clips[split]) for split in SPLITS},
      # Frames written with cameras at a shifted pose (data_pipelines/collect.py view_shift), and
      # those whose waypoints are masked because the expert crawled (recovery_min_step_m).
      "recovery_views": {
          "written": sum(r.get("recovery_views", 0) for r in results),
          "crawl_masked": sum(r.get("recovery_views_crawl_masked", 0) for r in results)},
      "counts": dict(collections.Counter(s.reason for s in skipped)),
      "skipped": [s.to_dict() for s in skipped],
  }
  with open(os.path.join(out, "build_report.json"), "w") as f:
    json.dump(report, f, indent=1)
  if skipped:
    logging.warning("build skipped %d inputs: %s (details in %s)", len(skipped), report["counts"],
                    os.path.join(out, "build_report.json"))
  return report
