"""The TFDS feature specs of the two datasets the builder writes, and the build configuration.

frames (`lmdrive_frames`), one example per frame:
  route: text (route folder, relative to the dataset root), frame: int32 (number in the route),
  town_id, weather_id: int32,
  images/{front,left,right,rear}: encoded image (stored size = source or `BuildConfig.view_size`),
  images/focus: encoded centre crop of the full-resolution front image (`focus_fraction` of its
    height, square), or with `focus_camera` the frame's telephoto focus camera image,
  measurements/<key>: float32 per `MEASUREMENT_FLOATS`, command/gt_command: int32,
  speed: float32, target_point: f32[2] (ego frame, see `lmgendrive_jax/data/geometry.py`),
  waypoints: f32[5, 2] (ego position at +0.5 s ... +2.5 s), waypoint_mask: bool[5],
  objects: f32[N, 7] ego-frame boxes (`geometry.OBJECT_FIELDS`),
  bev_targets: f32[rows, cols, 8] dense detection targets on `BuildConfig.bev_grid` (zlib),
  road_map: uint8[200, 200] the ego-centred road map of `topdown/` (`lmgendrive_jax/data/
    topdown.py`; zlib), has_road_map: bool (False: the route has no such map, zeros stored),
  traffic_light: int32 (1 = a red light affects ego), stop_sign: int32, blocked: bool,
  red_light_ahead: int32 (1 = the light of the route's next stop line is red, at any distance:
    `reader.red_light_ahead`),
  red_light_zone: int32 (1 = that light is red and its stop line at most
    `BuildConfig.red_light_zone_m` ahead, 0 = not,
    -1 = unknown: the source has no `light_stop_distance`: `reader.red_light_zone`; absent from
    builds before it),
  stop_sign_zone: int32 (1 = the ego is in a stop sign's waiting zone, 0 = not, -1 = unknown:
    the source has no `stop_sign_zone` measurement; absent from builds before it),
  hazard_ahead: int32 (1 = a vehicle or pedestrian is in the route's corridor up to 10 m past
    the front bumper, 0 = none, -1 = the source has no `future_waypoints`: `reader.hazard_ahead`;
    builds before the 17th session hold the expert's braking trigger instead).
clips (`lmdrive_clips`), one example per instruction clip:
  route, town_id, weather_id, instruction_id: int32, instruction_name: text,
  instruction_args: text (JSON), texts: Sequence(text) (paraphrases rendered at build time),
  misleading: bool, start_frame, end_frame: int32 (the instruction's range in the route),
  frames: Sequence(int32) (route frame numbers of the clip: start .. end + completed tail),
  frame_records: Sequence(int64) (their indices in the same split of `lmdrive_frames`),
  waypoints: f32[n, 5, 2], waypoint_mask: bool[n, 5] (False: past the route's end, or driven
    with the expert's steering noise), completed: Sequence(bool) (per clip frame),
  notices: Sequence({frame: int32 (route frame), instruction_id: int32, texts_json: text}).
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import tensorflow_datasets as tfds

from lmgendrive_jax.data import sources
from lmgendrive_jax.data.geometry import BEV_CHANNELS, OBJECT_FIELDS, BevGrid
from lmgendrive_jax.data.topdown import TOPDOWN_GRID
from lmgendrive_jax.errors import ConfigError

VIEWS = ("front", "left", "right", "rear")
STORED_VIEWS = VIEWS + ("focus",)
MEASUREMENT_FLOATS = ("gps_x", "gps_y", "x", "y", "theta", "speed", "target_speed", "x_command",
                      "y_command", "steer", "throttle", "brake")
MEASUREMENT_INTS = ("command",)
# Keys whose absence makes a frame unusable (the labels are computed from them).
REQUIRED_KEYS = MEASUREMENT_FLOATS + MEASUREMENT_INTS + ("is_red_light_present",
                                                         "is_stop_sign_present")
NUM_WAYPOINTS = 5
# How far before a red light's stop line `red_light_zone` starts (BuildConfig.red_light_zone_m).
# The lamp stands at the junction's far-right corner (sim/town.py), 2 x junction_half + 4 m past
# the line and one road's half-width right of it: on a two-lane approach it leaves the telephoto
# focus view (21.6 degrees wide) about 6 m before the line.
RED_LIGHT_ZONE_M = 8.0

FRAMES_NAME = "lmdrive_frames"
CLIPS_NAME = "lmdrive_clips"
# Dataset version. 1.1.0: clips carry waypoint_mask; frame waypoints after the expert's steering
# noise are masked. 1.2.0: frames carry the road map of `topdown/`. 1.3.0: clips carry each
# frame's road option (stage 2-3 windows are drawn towards junctions: data/clips.py). 1.4.0:
# frames carry `red_light_ahead` (reader.red_light_ahead). The readers
# (lmgendrive_jax/data/sources.py) own the number; the builder writes that version.
VERSION = sources.VERSION


@dataclasses.dataclass(frozen=True)
class BuildConfig:
  """What the builder stores. Recorded in both datasets' metadata (`build_config`).

  camera_size: (width, height) every source view must have (LMDrive: 800x600); a frame whose
    images differ is skipped as `wrong_image_size` (the preprocessed `rgb_full` must be
    width x 4*height).
  view_size: (width, height) to store the four views at, or None to keep the source size (JPEG
    bytes then pass through untouched when `image_format` is jpeg).
  focus_fraction: side of the focus crop as a fraction of the source height (LMDrive: 128/600).
  focus_camera: take the focus view from each frame's `rgb_focus/NNNN.jpg` (our collector's
    telephoto focus camera, raw layout; `camera_size` too) instead of cropping the front image;
    a frame without one is skipped (`missing_file`). Not LMDrive's layout.
  image_format / jpeg_quality: encoding of re-encoded images (png is lossless).
  validation_weathers: weather ids whose routes form the validation split (LMDrive's).
  waypoint_step_frames: frames between waypoints (10 Hz data: 5 = 0.5 s).
  completed_tail_frames: frames kept after an instruction ends, labelled completed (about 1 s).
  misleading_completed_after: frames after a misleading clip starts from which it is completed.
  blocked_min_frames: a run of this many stopped frames (speed < 0.1, no red light, braking) is
    marked blocked (stage 1 drops them).
  num_paraphrases: paraphrase samples rendered per instruction (deduplicated).
  read_topdown: store each frame's `topdown/NNNN.png` road map (our collector's format,
    `lmgendrive_jax/data/topdown.py`). A file in another format (LMDrive's CARLA data has RGB
    renders there) is reported as `bad_topdown` and its frame kept without a map: build such data
    with read_topdown=False.
  recovery_merge_m: on a recovery view (collect.py `view_pose`), how the waypoints lead back to
    the expert's path: its future positions shifted by the view's offset times
    exp(-travelled / recovery_merge_m), `travelled` the metres the expert drove to each; 4.5 m
    is about the expert's own pure-pursuit lookahead (sim/expert.py), so they follow the path the
    expert would drive back on. A standing car's waypoints stay at the view pose (0: onto the
    path at once, which asks a creeping car for a sideways jump).
  recovery_min_step_m: on a recovery view, mask the waypoints (keep the images) when the expert
    drove less than this to the first waypoint (at 10 Hz and 0.5 s: 1.5 m = 3 m/s). Another way
    out of the creeping car's sideways jump than merging: such frames then teach nothing about
    steering back. 0: keep every frame.
  red_light_zone_m: the `red_light_zone` label holds from this many metres before a red light's
    stop line (front bumper to line) to 1 m past it (`reader.red_light_zone`).
  """
  camera_size: tuple[int, int] = (800, 600)
  view_size: tuple[int, int] | None = None
  focus_fraction: float = 128 / 600
  focus_camera: bool = False
  image_format: str = "jpeg"
  jpeg_quality: int = 95
  validation_weathers: tuple[int, ...] = (12, 13, 20)
  bev_rows: int = 50
  bev_cols: int = 50
  bev_ahead: float = 30.0
  bev_behind: float = 20.0
  bev_side: float = 25.0
  waypoint_step_frames: int = 5
  completed_tail_frames: int = 10
  misleading_completed_after: int = 10
  blocked_min_frames: int = 10
  num_paraphrases: int = 8
  read_topdown: bool = True
  recovery_merge_m: float = 4.5
  recovery_min_step_m: float = 0.0
  red_light_zone_m: float = RED_LIGHT_ZONE_M

  def __post_init__(self):
    for name in ("recovery_merge_m", "recovery_min_step_m"):
      if getattr(self, name) < 0:
        raise ConfigError(f"BuildConfig.{name}={getattr(self, name)} must be >= 0 (0: off)")
    if self.red_light_zone_m < 0:
      raise ConfigError(f"BuildConfig.red_light_zone_m={self.red_light_zone_m} must be >= 0 "
                        f"(metres before a red light's stop line)")

  @property
  def bev_grid(self) -> BevGrid:
    return BevGrid(self.bev_rows, self.bev_cols, self.bev_ahead, self.bev_behind, self.bev_side)

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), sort_keys=True)

  @classmethod
  def from_json(cls, text: str) -> "BuildConfig":
    fields = json.loads(text)
    for key in ("camera_size", "view_size", "validation_weathers"):
      if fields.get(key) is not None:
        fields[key] = tuple(fields[key])
    return cls(**fields)


def frame_features(config: BuildConfig) -> tfds.features.FeaturesDict:
  image = lambda: tfds.features.Image(shape=(None, None, 3), encoding_format=config.image_format)  # noqa: E731
  grid = config.bev_grid
  return tfds.features.FeaturesDict({
      "route": tfds.features.Text(),
      "frame": np.int32,
      "town_id": np.int32,
      "weather_id": np.int32,
      "images": tfds.features.FeaturesDict({view: image() for view in STORED_VIEWS}),
      "measurements": tfds.features.FeaturesDict(
          {**{k: np.float32 for k in MEASUREMENT_FLOATS},
           **{k: np.int32 for k in MEASUREMENT_INTS + ("gt_command",)}}),
      "speed": np.float32,
      "target_point": tfds.features.Tensor(shape=(2,), dtype=np.float32),
      "waypoints": tfds.features.Tensor(shape=(NUM_WAYPOINTS, 2), dtype=np.float32),
      "waypoint_mask": tfds.features.Tensor(shape=(NUM_WAYPOINTS,), dtype=np.bool_),
      "objects": tfds.features.Tensor(shape=(None, len(OBJECT_FIELDS)), dtype=np.float32),
      "bev_targets": tfds.features.Tensor(shape=(grid.rows, grid.cols, len(BEV_CHANNELS)),
                                          dtype=np.float32,
                                          encoding=tfds.features.Encoding.ZLIB),
      "road_map": tfds.features.Tensor(shape=(TOPDOWN_GRID.rows, TOPDOWN_GRID.cols),
                                       dtype=np.uint8, encoding=tfds.features.Encoding.ZLIB),
      "has_road_map": np.bool_,
      "traffic_light": np.int32,
      "stop_sign": np.int32,
      "red_light_ahead": np.int32,
      "red_light_zone": np.int32,
      "stop_sign_zone": np.int32,
      "hazard_ahead": np.int32,
      "blocked": np.bool_,
  })


def clip_features() -> tfds.features.FeaturesDict:
  return tfds.features.FeaturesDict({
      "route": tfds.features.Text(),
      "town_id": np.int32,
      "weather_id": np.int32,
      "instruction_id": np.int32,
      "instruction_name": tfds.features.Text(),
      "instruction_args": tfds.features.Text(),
      "texts": tfds.features.Sequence(tfds.features.Text()),
      "misleading": np.bool_,
      "start_frame": np.int32,
      "end_frame": np.int32,
      "frames": tfds.features.Tensor(shape=(None,), dtype=np.int32),
      "frame_records": tfds.features.Tensor(shape=(None,), dtype=np.int64),
      "waypoints": tfds.features.Tensor(shape=(None, NUM_WAYPOINTS, 2), dtype=np.float32),
      "waypoint_mask": tfds.features.Tensor(shape=(None, NUM_WAYPOINTS), dtype=np.bool_),
      "completed": tfds.features.Tensor(shape=(None,), dtype=np.bool_),
      "road_option": tfds.features.Tensor(shape=(None,), dtype=np.int32),
      "notices": tfds.features.Sequence({
          "frame": np.int32, "instruction_id": np.int32, "texts_json": tfds.features.Text()}),
  })
