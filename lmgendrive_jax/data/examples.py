"""Record -> training example transforms (grain `RandomMapTransform`s, run in grain workers).

`FrameExample` turns an `lmdrive_frames` record into a stage-1 example; `ClipExample` turns an
`lmdrive_clips` record into a stage-2/3 example by reading its window's frames from the frame
source. Both produce fixed shapes only (see the batch schema in `lmgendrive_jax/data/__init__.py`).
"""

from __future__ import annotations

import json
import logging
import threading

import grain
import numpy as np

from lmgendrive_jax.data import augment, camera_rig, clips, geometry, topdown, view_layout
from lmgendrive_jax.data.sources import RecordSource
from lmgendrive_jax.data.tokenizer import encode_padded, load_tokenizer
from lmgendrive_jax.errors import DataError

ALL_VIEWS = ("front", "left", "right", "rear", "focus")
RIG_VIEWS = ("front", "left", "right", "rear")  # one rig: a turn of the car turns them all
_TOKENIZER_LOCK = threading.Lock()


class _ViewDecoder:
  """Decodes + augments the configured views of frame records at one size."""

  def __init__(self, cfg):
    self.views = tuple(cfg.views)
    for view in self.views:
      if view not in ALL_VIEWS:
        raise DataError(f"data.views has unknown view {view!r}; choose from {ALL_VIEWS}")
    self.height, self.width = (int(s) for s in cfg.view_size)
    self.crop_scale = float(cfg.crop_scale)
    self.random_crop = bool(cfg.random_crop)
    # .get: configs saved before the key read as they were trained (independent crops).
    self.rig_crop = self.random_crop and bool(cfg.get("rig_crop", False))
    self.jitter = float(cfg.colour_jitter)

  def draw(self, rng: np.random.Generator | None) -> dict:
    """Per-example augmentation parameters (shared by all frames of a clip). With `rig_crop` the
    rig's views share one column offset: the crop turns the whole rig by one yaw."""
    crop_rng = rng if self.random_crop else None
    offsets = {v: augment.crop_params(crop_rng) for v in self.views}
    if self.rig_crop:
      column = float(crop_rng.random())
      offsets = {v: (row, column) if v in RIG_VIEWS else (row, col)
                 for v, (row, col) in offsets.items()}
    return {"offsets": offsets, "jitter": augment.jitter_factors(rng, self.jitter)}

  def rig_yaw(self, windows: list[tuple]) -> float:
    """The yaw (radians, + right) the rig's views were turned by from the evaluation's centred
    crop (0 without `rig_crop`). From the centred crop, not the camera's axis: an odd margin
    puts that crop half a pixel off-axis (~1 degree at 64 px), and the planner must read the
    evaluation views as the car's own heading."""
    if not self.rig_crop:
      return 0.0
    window = windows[next(i for i, v in enumerate(self.views) if v in RIG_VIEWS)]
    return (camera_rig.crop_yaw(window)
            - camera_rig.crop_yaw(augment.centred_window(window, self.width)))

  def __call__(self, record: dict, params: dict) -> np.ndarray:
    """-> uint8[V, H, W, 3]."""
    return self.decode(record, params)[0]

  def decode(self, record: dict, params: dict) -> tuple[np.ndarray, list[tuple]]:
    """-> (uint8[V, H, W, 3], per view the part of the stored image it shows as fractions
    (u0, u1, v0, v1), for labels that must follow the crop: `view_layout.sub_window`)."""
    out = np.empty((len(self.views), self.height, self.width, 3), np.uint8)
    windows = []
    for i, view in enumerate(self.views):
      image = augment.decode(record["images"][view], self.height, self.width)
      # The stored focus view is already the centre crop: it is only resized (and not cropped).
      scale = 1.0 if view == "focus" else self.crop_scale
      offsets = (0.5, 0.5) if view == "focus" else params["offsets"][view]
      out[i] = augment.resize_crop(image, self.height, self.width, scale, offsets)
      windows.append(augment.crop_window(*image.size, self.height, self.width, scale, offsets))
    return augment.colour_jitter(out, params["jitter"]), windows


def _bev_grid(cfg) -> geometry.BevGrid:
  return geometry.BevGrid(int(cfg.bev_rows), int(cfg.bev_cols), float(cfg.bev_ahead),
                          float(cfg.bev_behind), float(cfg.bev_side))


def _detection(record: dict, grid: geometry.BevGrid, stored: geometry.BevGrid) -> np.ndarray:
  if grid == stored:
    return np.asarray(record["bev_targets"], np.float32)
  return geometry.bev_targets(np.asarray(record["objects"], np.float32).reshape(-1, 7), grid)


def _road_layout(record: dict, grid: geometry.BevGrid) -> dict:
  """The record's road map as per-cell class shares on the model's grid, and whether it has one
  (datasets built before 1.2.0, or from data without `topdown/`, have none)."""
  has_map = bool(record.get("has_road_map", False))
  if has_map:
    layout = topdown.road_fractions(np.asarray(record["road_map"], np.uint8), grid)
  else:
    layout = np.zeros((grid.rows, grid.cols, len(topdown.ROAD_CLASSES)), np.float32)
  return {"road_layout": layout, "road_layout_mask": np.bool_(has_map)}


class _ViewLayouts:
  """Per-view road-layout labels (`data/view_layout.py`) of a frame's decoded views."""

  def __init__(self, cfg, build_config: dict):
    self.rows, self.cols = (int(s) for s in cfg.view_layout_size)
    self.cameras, self.aspect = _view_cameras(cfg, build_config)

  @property
  def enabled(self) -> bool:
    return self.rows > 0 and self.cols > 0

  def __call__(self, record: dict, windows: list[tuple]) -> dict:
    """-> {"view_layout": f32[V, rows, cols, C], "view_layout_mask": bool (has a road map)}."""
    layouts = np.zeros((len(self.cameras), self.rows, self.cols,
                        len(view_layout.VIEW_LAYOUT_CLASSES)), np.float32)
    has_map = bool(record.get("has_road_map", False))
    if has_map:
      road_map = np.asarray(record["road_map"], np.uint8)
      objects = np.asarray(record["objects"], np.float32).reshape(-1, 7)
      for i, (view, window) in enumerate(zip(self.cameras, windows)):
        camera, camera_part = self.cameras[view]
        layouts[i] = view_layout.view_layout(
            road_map, camera, view_layout.sub_window(camera_part, window), self.aspect,
            self.rows, self.cols, objects=objects)
    return {"view_layout": layouts, "view_layout_mask": np.bool_(has_map)}


class _ViewObjects:
  """Per-view object cover (`view_layout.object_cover`) of a frame's decoded views: where the
  vehicles and pedestrians are in each image, from the frame's boxes alone (no road map)."""

  def __init__(self, cfg, build_config: dict):
    # .get: configs saved before the key existed ask for none.
    self.rows, self.cols = (int(s) for s in cfg.get("view_objects_size", (0, 0)))
    self.cameras, self.aspect = _view_cameras(cfg, build_config)

  @property
  def enabled(self) -> bool:
    return self.rows > 0 and self.cols > 0

  def __call__(self, record: dict, windows: list[tuple]) -> dict:
    """-> {"view_objects": f32[V, rows, cols]}."""
    objects = np.asarray(record["objects"], np.float32).reshape(-1, 7)
    cover = np.zeros((len(self.cameras), self.rows, self.cols), np.float32)
    for i, (view, window) in enumerate(zip(self.cameras, windows)):
      camera, camera_part = self.cameras[view]
      cover[i] = view_layout.object_cover(
          objects, camera, view_layout.sub_window(camera_part, window), self.aspect,
          self.rows, self.cols)
    return {"view_objects": cover}


def _view_cameras(cfg, build_config: dict) -> tuple[dict, float]:
  """({view: (camera, window)}: the camera each of `cfg.views` comes from and the part of its
  image the stored view shows, the cameras' height / width)."""
  camera_size = tuple(int(s) for s in build_config.get("camera_size") or (800, 600))
  focus_fraction = float(build_config.get("focus_fraction", 128 / 600))
  cameras = {v: view_layout.camera_window(v, camera_size, focus_fraction) for v in cfg.views}
  return cameras, camera_size[1] / camera_size[0]


def _stored_grid(source: RecordSource) -> geometry.BevGrid:
  b = source.build_config
  return geometry.BevGrid(int(b["bev_rows"]), int(b["bev_cols"]), float(b["bev_ahead"]),
                          float(b["bev_behind"]), float(b["bev_side"]))


class FrameExample(grain.transforms.RandomMap):
  """lmdrive_frames record -> stage-1 example (see the batch schema)."""

  def __init__(self, cfg, stored_grid: geometry.BevGrid, train: bool,
               build_config: dict | None = None):
    self.decoder = _ViewDecoder(cfg)
    if self.decoder.rig_crop and train:
      # Its BEV targets and road map would have to turn with the views; nothing turns them yet.
      raise DataError("data.rig_crop turns the waypoints of stage-2/3 clips only; stage-1 frames "
                      "(BEV detection, road layout) would train on turned views with unturned "
                      "targets: set data.rig_crop=False or data.random_crop=False")
    self.grid, self.stored_grid, self.train = _bev_grid(cfg), stored_grid, train
    self.layouts = _ViewLayouts(cfg, build_config or {})
    self.objects = _ViewObjects(cfg, build_config or {})

  def random_map(self, record: dict, rng: np.random.Generator) -> dict:
    rng = rng if self.train else None
    images, windows = self.decoder.decode(record, self.decoder.draw(rng))
    example = {
        "images": images,
        "speed": np.float32(record["speed"]),
        "target_point": np.asarray(record["target_point"], np.float32),
        "waypoints": np.asarray(record["waypoints"], np.float32),
        "waypoint_mask": np.asarray(record["waypoint_mask"], bool),
        "detection": _detection(record, self.grid, self.stored_grid),
        **_road_layout(record, self.grid),
        "traffic_light": np.int32(record["traffic_light"]),
        "stop_sign": np.int32(record["stop_sign"]),
        "red_light_ahead": np.int32(record["red_light_ahead"]),
        # -1 (unknown) in builds from before the label, or from sources without it.
        "stop_sign_zone": np.int32(record.get("stop_sign_zone", -1)),
        "red_light_zone": np.int32(record.get("red_light_zone", -1)),
        "hazard_ahead": np.int32(record.get("hazard_ahead", -1)),
        "command": np.int32(record["measurements"]["command"]),
        "town_id": np.int32(record["town_id"]), "frame": np.int32(record["frame"]),
    }
    if self.layouts.enabled:
      example.update(self.layouts(record, windows))
    if self.objects.enabled:
      example.update(self.objects(record, windows))
    return example


class ClipExample(grain.transforms.RandomMap):
  """lmdrive_clips record (+ its frames from `frames`) -> stage-2/3 example (see the schema)."""

  def __init__(self, cfg, frames: RecordSource, train: bool):
    self.decoder = _ViewDecoder(cfg)
    self.frames, self.train = frames, train
    self.layouts = _ViewLayouts(cfg, frames.build_config)
    self.window, self.stride = int(cfg.window_frames), int(cfg.stride)
    self.future_offsets = tuple(int(o) for o in cfg.future_offsets)
    self.start_jitter = int(cfg.start_jitter)
    # .get: configs saved before these keys existed read uniformly, as they were trained.
    self.junction_window_boost = float(cfg.get("junction_window_boost", 0.0)) if train else 0.0
    self.pull_away_window_boost = float(cfg.get("pull_away_window_boost", 0.0)) if train else 0.0
    self.slowing_window_boost = float(cfg.get("slowing_window_boost", 0.0)) if train else 0.0
    self.labelled_windows = bool(cfg.get("labelled_windows", False)) if train else False
    # A window "decides a junction" when one lies within its waypoints' horizon (5 waypoints).
    self.junction_lookahead = 5 * int(frames.build_config.get("waypoint_step_frames", 5))
    self.notice_probability = float(cfg.notice_probability)
    self.instruction_len, self.notice_len = int(cfg.max_instruction_tokens), int(
        cfg.max_notice_tokens)
    self.tokenizer_path = cfg.tokenizer
    self._tokenizer = None
    self.truncated = 0
    self.tokenizer  # Loads now: a wrong path fails here, not in a worker.

  @property
  def tokenizer(self):
    if self._tokenizer is None:  # Reloaded in each worker process (not pickled).
      with _TOKENIZER_LOCK:  # grain's read threads must not import transformers concurrently.
        if self._tokenizer is None:
          self._tokenizer = load_tokenizer(self.tokenizer_path)
    return self._tokenizer

  def __getstate__(self):
    return dict(self.__dict__, _tokenizer=None)

  def _tokens(self, text: str, length: int) -> tuple[np.ndarray, np.ndarray]:
    tokens, mask, truncated = encode_padded(self.tokenizer, text, length)
    if truncated:
      self.truncated += 1
      if self.truncated in (1, 100, 10000):
        logging.warning("%d texts longer than %d tokens were cut (e.g. %r); raise "
                        "data.max_instruction_tokens / max_notice_tokens", self.truncated,
                        length, text)
    return tokens, mask

  def random_map(self, record: dict, rng: np.random.Generator) -> dict:
    rng = rng if self.train else None
    frame_records = np.asarray(record["frame_records"], np.int64)
    start_weights = None
    if self.junction_window_boost > 0:
      start_weights = clips.junction_start_weights(
          np.asarray(record["road_option"]), self.window, self.stride, self.junction_lookahead,
          self.junction_window_boost)
    for boost, event_frames in ((self.pull_away_window_boost, clips.pull_away_frames),
                                (self.slowing_window_boost, clips.slowing_frames)):
      if boost > 0:
        held = clips.window_holds_event(event_frames(record["waypoints"]), self.window,
                                        self.stride, 0)
        start_weights = (1.0 if start_weights is None else start_weights) + boost * held
    if self.labelled_windows:
      labelled = clips.labelled_start_weights(record["waypoint_mask"], self.window, self.stride)
      if labelled.sum() > 0:  # a clip with no target at all keeps its weights (world loss)
        start_weights = (1.0 if start_weights is None else start_weights) * labelled
    window = clips.sample_window(len(frame_records), self.window, self.stride,
                                 self.future_offsets, rng, self.start_jitter, start_weights)
    params = self.decoder.draw(rng)
    num_views = len(self.decoder.views)
    images = np.zeros((self.window, num_views, self.decoder.height, self.decoder.width, 3),
                      np.uint8)
    speed = np.zeros((self.window,), np.float32)
    layouts = []
    yaw = 0.0
    for t in range(self.window):
      if not window.frame_mask[t]:
        layouts.append(None)
        continue
      frame = self.frames[int(frame_records[window.positions[t]])]
      images[t], windows = self.decoder.decode(frame, params)
      yaw = self.decoder.rig_yaw(windows)
      speed[t] = frame["speed"]
      layouts.append(self.layouts(frame, windows) if self.layouts.enabled else None)
    texts = list(record["texts"])
    text = texts[int(rng.integers(len(texts)))] if rng is not None else texts[0]
    text = text.decode() if isinstance(text, bytes) else text
    instruction, instruction_mask = self._tokens(text, self.instruction_len)
    notices = record["notices"]
    window_frames = np.asarray(record["frames"])[window.positions]
    which, slot = clips.notice_slot(np.asarray(notices["frame"], np.int64), window_frames,
                                    window.frame_mask, rng, self.notice_probability)
    if which >= 0:
      notice_texts = json.loads(notices["texts_json"][which])
      notice_text = notice_texts[int(rng.integers(len(notice_texts)))]
      notice, notice_mask = self._tokens(notice_text, self.notice_len)
    else:
      notice = np.full((self.notice_len,), self.tokenizer.pad_token_id, np.int32)
      notice_mask = np.zeros((self.notice_len,), bool)
    mask = window.frame_mask
    # Views of a turned rig, waypoints as that turned car sees them: the path stays on the road
    # while the heading the cameras show changes (`rig_crop`; config.data_preset says why).
    waypoints = geometry.turn_ego(np.asarray(record["waypoints"], np.float32)[window.positions],
                                  yaw)
    waypoint_mask = np.asarray(record["waypoint_mask"], bool)[window.positions] & mask[:, None]
    completed = np.asarray(record["completed"], bool)[window.positions]
    return {
        "images": images,
        "frame_mask": mask,
        "speed": speed,
        "instruction_tokens": instruction, "instruction_mask": instruction_mask,
        "notice_tokens": notice, "notice_mask": notice_mask, "notice_frame": np.int32(slot),
        "waypoints": np.where(mask[:, None, None], waypoints, 0).astype(np.float32),
        "waypoint_mask": waypoint_mask,
        "completed": (completed & mask).astype(np.int32),
        "misleading": np.bool_(record["misleading"]),
        "instruction_id": np.int32(record["instruction_id"]),
        "future_index": window.future_index, "future_mask": window.future_mask,
        **(self._stack_layouts(layouts) if self.layouts.enabled else {}),
    }

  def _stack_layouts(self, layouts: list[dict | None]) -> dict:
    """Per-frame layouts (None for padded slots) -> view_layout f32[T, V, r, c, C] and
    view_layout_mask bool[T]."""
    empty = self.layouts({}, [])  # zeros, masked: the shapes of a slot without a frame
    return {key: np.stack([(layout or empty)[key] for layout in layouts])
            for key in ("view_layout", "view_layout_mask")}
