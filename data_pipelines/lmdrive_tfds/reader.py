"""Reads one LMDrive route folder (raw or preprocessed layout) into validated frame examples.

Every problem with an input (a missing or unreadable file, a truncated JPEG, a missing
measurement key, a NaN or inf, a wrong image size) becomes a `Skip(path, reason)`; the frame is
left out and the reason reported in `build_report.json`. Nothing here raises on bad data, and no
frame is written unless all its inputs passed every check; the one optional input, the road map
(`topdown/`), leaves out only itself (`bad_topdown`: the frame is kept without a map).

Layouts (specs/lmdrive_format.md): raw = `rgb_{front,left,right,rear}/%04d.jpg` +
`measurements/%04d.json` + `actors_data/%04d.json`; preprocessed = `rgb_full/%04d.jpg` (the four
views stacked vertically, front first) + `measurements_full/%04d.json` (with `actors_data` and
`stop_sign` inside). `measurements_all.json` (a list or a {frame: measurement} map) may replace
the per-frame measurement files.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import re
from typing import Any

import numpy as np
from PIL import Image, ImageFile

from data_pipelines.lmdrive_tfds.features import (
    MEASUREMENT_FLOATS, MEASUREMENT_INTS, NUM_WAYPOINTS, REQUIRED_KEYS, VIEWS, BuildConfig)
from lmgendrive_jax.data import geometry
from lmgendrive_jax.data.topdown import TOPDOWN_GRID

ImageFile.LOAD_TRUNCATED_IMAGES = False  # A truncated JPEG must fail loudly, not decode grey.

ROUTE_NAME = re.compile(r"routes_town(\d+)_\w+?_w(\d+)_")
RED = 0  # actors_data "sta" of a red traffic light (CARLA's TrafficLightState)
# A recovery view's pose (collect.py: `view_pose`), in the measurement's own pose keys.
VIEW_POSE_KEYS = ("gps_x", "gps_y", "x", "y", "theta")


@dataclasses.dataclass(frozen=True)
class Skip:
  path: str
  reason: str
  detail: str = ""

  def to_dict(self) -> dict:
    return {"path": self.path, "reason": self.reason, "detail": self.detail}


class BadInput(Exception):
  """Internal: carries a Skip out of nested checks."""

  def __init__(self, path: str, reason: str, detail: str = ""):
    super().__init__(f"{reason}: {path} {detail}")
    self.skip = Skip(path, reason, detail)


def detect_layout(route_dir: str) -> str | None:
  if os.path.isdir(os.path.join(route_dir, "rgb_full")):
    return "preprocessed"
  if os.path.isdir(os.path.join(route_dir, "rgb_front")):
    return "raw"
  return None


def route_ids(route_name: str, measurement: dict | None) -> tuple[int, int]:
  """(town_id, weather_id) from the measurements when present, else from the folder name."""
  match = ROUTE_NAME.search(os.path.basename(route_name) + "_")
  town = int(match.group(1)) if match else -1
  weather = int(match.group(2)) if match else -1
  if measurement is not None and _is_number(measurement.get("weather_id")):
    weather = int(measurement["weather_id"])
  return town, weather


def _is_number(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def _read_json(path: str) -> Any:
  if not os.path.exists(path):
    raise BadInput(path, "missing_file")
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError, UnicodeDecodeError) as e:
    raise BadInput(path, "bad_json", str(e)) from e


def _check_finite(value: Any, path: str, key: str) -> None:
  """NaN/inf anywhere in a number or (nested) list of numbers -> BadInput."""
  if isinstance(value, bool) or value is None or isinstance(value, str):
    return
  if isinstance(value, (int, float)):
    if not math.isfinite(value):
      raise BadInput(path, "non_finite", f"{key}={value}")
  elif isinstance(value, (list, tuple)):
    for item in value:
      _check_finite(item, path, key)
  elif isinstance(value, dict):
    for k, item in value.items():
      _check_finite(item, path, f"{key}.{k}")


def _frame_numbers(route_dir: str, layout: str) -> list[int]:
  """Frame numbers present in the route: the union of image and measurement files, so that a
  frame missing one of them is reported rather than silently absent."""
  folders = ["rgb_full", "measurements_full"] if layout == "preprocessed" else (
      [f"rgb_{v}" for v in VIEWS] + ["measurements"])
  numbers = set()
  for folder in folders:
    path = os.path.join(route_dir, folder)
    if os.path.isdir(path):
      numbers.update(int(name.split(".")[0]) for name in os.listdir(path)
                     if name.split(".")[0].isdigit())
  return sorted(numbers)


class RouteReader:
  """Loads and validates the frames of one route folder. `root` is the dataset root."""

  def __init__(self, root: str, route: str, config: BuildConfig):
    self.root, self.route, self.config = root, route, config
    self.route_dir = os.path.join(root, route)
    self.layout = detect_layout(self.route_dir)
    self._all_measurements = None
    all_path = os.path.join(self.route_dir, "measurements_all.json")
    if os.path.exists(all_path):
      data = _read_json(all_path)
      self._all_measurements = ({int(k): v for k, v in data.items()} if isinstance(data, dict)
                                else dict(enumerate(data)))

  def frame_numbers(self) -> list[int]:
    numbers = set(_frame_numbers(self.route_dir, self.layout))
    if self._all_measurements is not None:
      numbers.update(self._all_measurements)
    return sorted(numbers)

  def _path(self, folder: str, frame: int, ext: str) -> str:
    return os.path.join(self.route_dir, folder, f"{frame:04d}.{ext}")

  def measurement(self, frame: int) -> dict:
    """The validated measurement dict of a frame (with `actors_data`), or BadInput."""
    folder = "measurements_full" if self.layout == "preprocessed" else "measurements"
    path = self._path(folder, frame, "json")
    if os.path.exists(path) or self._all_measurements is None:
      data = _read_json(path)
    elif frame in self._all_measurements:
      data = self._all_measurements[frame]
      path = os.path.join(self.route_dir, "measurements_all.json") + f"[{frame}]"
    else:
      raise BadInput(path, "missing_file")
    if not isinstance(data, dict):
      raise BadInput(path, "bad_json", "a measurement must be a JSON object")
    for key in REQUIRED_KEYS:
      if key not in data:
        raise BadInput(path, "missing_key", key)
    for key in MEASUREMENT_FLOATS + MEASUREMENT_INTS:
      if not _is_number(data[key]):
        raise BadInput(path, "bad_value", f"{key}={data[key]!r} is not a number")
    if "view_pose" in data:
      view = data["view_pose"]
      if not isinstance(view, dict):
        raise BadInput(path, "bad_value", f"view_pose={view!r} is not a JSON object")
      for key in VIEW_POSE_KEYS:
        if not _is_number(view.get(key)):
          raise BadInput(path, "bad_value", f"view_pose.{key}={view.get(key)!r} is not a number")
    _check_finite({k: v for k, v in data.items() if k != "actors_data"}, path, "measurement")
    if "actors_data" not in data:
      data = dict(data, actors_data=_read_json(self._path("actors_data", frame, "json")))
    actors = data["actors_data"]
    if not isinstance(actors, dict):
      raise BadInput(path, "bad_json", "actors_data must be a JSON object")
    for actor_id, actor in actors.items():
      for key in ("loc", "ori", "box", "tpe"):
        if not isinstance(actor, dict) or key not in actor:
          raise BadInput(path, "missing_key", f"actors_data.{actor_id}.{key}")
    _check_finite(actors, path, "actors_data")
    return data

  def _load_image(self, path: str) -> tuple[bytes, Image.Image]:
    if not os.path.exists(path):
      raise BadInput(path, "missing_file")
    with open(path, "rb") as f:
      data = f.read()
    try:
      image = Image.open(io.BytesIO(data))
      image.load()
    except Exception as e:  # noqa: BLE001  (PIL raises many types on corrupt data)
      raise BadInput(path, "bad_image", f"{type(e).__name__}: {e}") from e
    return data, image.convert("RGB") if image.mode != "RGB" else image

  def _load_camera_image(self, path: str) -> tuple[bytes, Image.Image]:
    """`_load_image` of one camera's file, which must be `camera_size` (else wrong_image_size)."""
    data, image = self._load_image(path)
    width, height = self.config.camera_size
    if image.size != (width, height):
      raise BadInput(path, "wrong_image_size",
                     f"{image.size[0]}x{image.size[1]}, expected {width}x{height}")
    return data, image

  def views(self, frame: int) -> tuple[dict[str, Any], dict[str, str]]:
    """{view: stored image (JPEG bytes passed through, or a uint8 array)} incl. focus, and the
    source path of each view."""
    width, height = self.config.camera_size
    sources, images = {}, {}
    if self.layout == "preprocessed":
      path = self._path("rgb_full", frame, "jpg")
      _, full = self._load_image(path)
      if full.size != (width, 4 * height):
        raise BadInput(path, "wrong_image_size",
                       f"{full.size[0]}x{full.size[1]}, expected {width}x{4 * height}")
      stacked = np.asarray(full)
      for i, view in enumerate(VIEWS):
        images[view] = stacked[i * height:(i + 1) * height]
        sources[view] = path
    else:
      for view in VIEWS:
        path = self._path(f"rgb_{view}", frame, "jpg")
        data, image = self._load_camera_image(path)
        passthrough = (self.config.view_size in (None, (width, height))
                       and self.config.image_format == "jpeg" and image.format == "JPEG")
        images[view] = data if passthrough else np.asarray(image)
        sources[view] = path
    if self.config.focus_camera:
      images["focus"], sources["focus"] = self._focus_camera(frame)
    else:
      front = images["front"]
      front = np.asarray(Image.open(io.BytesIO(front)).convert("RGB")) if isinstance(
          front, bytes) else front
      side = max(1, round(self.config.focus_fraction * height))
      top, left = (height - side) // 2, (width - side) // 2
      images["focus"] = np.ascontiguousarray(front[top:top + side, left:left + side])
    if self.config.view_size not in (None, (width, height)):
      for view in VIEWS:
        images[view] = np.asarray(Image.fromarray(images[view]).resize(
            self.config.view_size, Image.BILINEAR))
    # TFDS would encode arrays through TensorFlow; we encode with PIL (TF is not installed).
    images = {view: image if isinstance(image, bytes) else encode_image(image, self.config)
              for view, image in images.items()}
    return images, sources

  def _focus_camera(self, frame: int) -> tuple[np.ndarray, str]:
    """The frame's telephoto focus image uint8[h, w, 3] (`rgb_focus/`) and its path."""
    if self.layout != "raw":
      raise BadInput(self.route_dir, "focus_camera_layout",
                     "focus_camera needs the raw layout (rgb_focus/ beside rgb_front/)")
    path = self._path("rgb_focus", frame, "jpg")
    _, image = self._load_camera_image(path)
    return np.asarray(image), path

  def road_map(self, frame: int) -> np.ndarray | None:
    """The frame's `topdown/NNNN.png` road map uint8[200, 200] (`lmgendrive_jax/data/
    topdown.py`), None when the route has none; BadInput (`bad_topdown`) for a file that is not
    one (unreadable, not 8-bit greyscale, another size)."""
    path = self._path("topdown", frame, "png")
    if not self.config.read_topdown or not os.path.exists(path):
      return None
    try:
      with Image.open(path) as image:  # Closed here: a build opens millions of these.
        image.load()
        mode, size, pixels = image.mode, image.size, np.asarray(image, np.uint8)
    except Exception as e:  # noqa: BLE001  (PIL raises many types on corrupt data)
      raise BadInput(path, "bad_topdown", f"{type(e).__name__}: {e}") from e
    expected = (TOPDOWN_GRID.cols, TOPDOWN_GRID.rows)
    if mode != "L" or size != expected:
      raise BadInput(path, "bad_topdown", f"mode {mode} {size[0]}x{size[1]}, "
                     f"expected an 8-bit greyscale {expected[0]}x{expected[1]} road map")
    return pixels


def encode_image(pixels: np.ndarray, config: BuildConfig) -> bytes:
  """uint8[H, W, 3] -> PNG (lossless) or JPEG bytes, per `config.image_format`."""
  buffer = io.BytesIO()
  if config.image_format == "png":
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
  else:
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=config.jpeg_quality)
  return buffer.getvalue()


def blocked_flags(measurements: dict[int, dict], frames: list[int], min_run: int) -> dict[int, bool]:
  """Frames in runs of >= min_run consecutive stopped frames (speed < 0.1, no red light, brake)."""
  flags, run = {}, []
  def close():
    for f in run:
      flags[f] = len(run) >= min_run
  previous = None
  for frame in frames:
    m = measurements.get(frame)
    stopped = m is not None and m["speed"] < 0.1 and not m["is_red_light_present"] and (
        m["brake"] > 0)
    if not stopped or (previous is not None and frame != previous + 1):
      close()
      run = []
    if stopped:
      run.append(frame)
    else:
      flags[frame] = False
    previous = frame
  close()
  return flags


def expert_drove(measurement: dict) -> bool:
  """False when a frame's control was not the clean expert's (noise or the learner). Frames
  missing from `measurements` read as clean here; their waypoints are masked anyway."""
  return not (measurement.get("steer_noise") or measurement.get("learner_control"))


def frame_labels(measurements: dict[int, dict], frame: int, config: BuildConfig) -> dict:
  """Stage-1 labels of `frame` from its own and its future measurements (ego frame).

  Waypoint k is the ego's position (k + 1) * waypoint_step_frames later; it is masked out when
  that frame is missing or when, on any frame from this one up to it, the expert drove with
  steering noise (`steer_noise`, written by data_pipelines/collect.py) or the learner drove
  (`learner_control`: on-policy collection): such a future shows the noise or the learner, not
  the expert. The frames after them keep their waypoints: they are the expert's recovery, which
  a clean expert never shows.

  Every label is in the frame of the pose the cameras saw: the car's, or on a recovery view
  (data_pipelines/collect.py, lmgendrive_jax/sim/view_shift.py) the measurement's `view_pose`
  beside it. There the waypoints lead back to the expert's path: its future positions shifted by
  the view's offset, which fades with the distance the expert drove (`recovery_merge_m`); they
  are masked out where the expert drove less than `recovery_min_step_m` to the first one.
  """
  m = measurements[frame]
  view = m.get("view_pose")
  pose = {**m, **(view or {})}
  ego_gps = np.array([pose["gps_x"], pose["gps_y"]])
  theta = float(pose["theta"])
  view_offset = None if view is None else ego_gps - np.array([m["gps_x"], m["gps_y"]])
  travelled = (None if view is None else _travelled(
      measurements, frame, frame + NUM_WAYPOINTS * config.waypoint_step_frames))
  crawling = view is not None and _crawling(travelled, frame, config)
  waypoints = np.zeros((NUM_WAYPOINTS, 2), np.float32)
  mask = np.zeros((NUM_WAYPOINTS,), bool)
  last = np.zeros(2, np.float32)
  clean_until = frame  # every frame in [frame, clean_until) was driven without noise
  for k in range(NUM_WAYPOINTS):
    target = frame + (k + 1) * config.waypoint_step_frames
    while clean_until < target and expert_drove(measurements.get(clean_until, {})):
      clean_until += 1
    future = measurements.get(target)
    if future is not None:
      point = np.array([future["gps_x"], future["gps_y"]])
      if view_offset is not None:
        point = point + view_offset * _merge_weight(travelled.get(target, 0.0),
                                                     config.recovery_merge_m)
      last = geometry.gps_to_ego(point, ego_gps, theta)
      mask[k] = clean_until >= target and not crawling
    waypoints[k] = last  # Unknown future: hold the last known point, masked out.
  objects = geometry.actors_to_objects(m["actors_data"], np.array([pose["x"], pose["y"]]), theta)
  stop = m.get("stop_sign", m["is_stop_sign_present"])
  return {
      "target_point": geometry.gps_to_ego(np.array([m["x_command"], m["y_command"]]), ego_gps,
                                          theta),
      "waypoints": waypoints, "waypoint_mask": mask, "objects": objects,
      "bev_targets": geometry.bev_targets(objects, config.bev_grid),
      "traffic_light": int(bool(m["is_red_light_present"])), "stop_sign": int(bool(stop)),
      "red_light_ahead": red_light_ahead(m),
      "red_light_zone": red_light_zone(m, config.red_light_zone_m),
      "stop_sign_zone": stop_sign_zone(m),
      "hazard_ahead": hazard_ahead(m, objects, ego_gps, theta),
  }


def recovery_view_crawling(measurements: dict[int, dict], frame: int,
                           config: BuildConfig) -> bool:
  """True when `frame` is a recovery view whose waypoints `frame_labels` masks out because the
  expert drove less than `recovery_min_step_m` to the first one (the build report counts them)."""
  if measurements[frame].get("view_pose") is None:
    return False
  return _crawling(_travelled(measurements, frame, frame + config.waypoint_step_frames), frame,
                   config)


def _crawling(travelled: dict[int, float], frame: int, config: BuildConfig) -> bool:
  return travelled.get(frame + config.waypoint_step_frames, 0.0) < config.recovery_min_step_m


def _travelled(measurements: dict[int, dict], frame: int, last: int) -> dict[int, float]:
  """{later frame up to `last`: metres the car drove from `frame` to it}, over the consecutive
  frames that exist (a missing frame ends it: its waypoints are masked anyway)."""
  out, total, previous = {}, 0.0, measurements[frame]
  later = frame + 1
  while later in measurements and later <= last:
    m = measurements[later]
    total += math.hypot(m["gps_x"] - previous["gps_x"], m["gps_y"] - previous["gps_y"])
    out[later], previous, later = total, m, later + 1
  return out


def _merge_weight(travelled_m: float, merge_m: float) -> float:
  """How much of a recovery view's offset a waypoint `travelled_m` ahead still carries."""
  return math.exp(-travelled_m / merge_m) if merge_m > 0 else 0.0


# The hazard label's corridor: the route's centre line up to HAZARD_AHEAD_M past the front bumper,
# HAZARD_HALF_WIDTH_M to each side (half a 3.5-m lane and a little: a car in the next lane, ~3.5 m
# over, is not in it). 10 m is ~2.5 s at the planner's 4 m/s, a car of ~8 pixels on a 64x64 front
# camera; braking from 4 m/s takes ~1.5 m. The expert stands 10-15 m short of walkers, so its
# collections hold no walker positives; 15 m for walkers raised false alarms (experiments.md, 19th).
HAZARD_AHEAD_M = 10.0
HAZARD_HALF_WIDTH_M = 1.8
EGO_HALF_LENGTH_M = 2.45  # LMDrive's ego (a Lincoln MKZ), as the embedded simulator's


def hazard_ahead(m: dict, objects: np.ndarray, ego_gps: np.ndarray, theta: float) -> int:
  """1 when a vehicle or pedestrian is in the route's corridor ahead, 0 when none is, -1 when the
  source has no route ahead (`future_waypoints`).

  objects f32[N, 7] (`geometry.OBJECT_FIELDS`) and the route in the frame of the pose the cameras
  saw (ego_gps, theta); the route runs from the car through `future_waypoints`. An object is in
  the corridor when its centre is within HAZARD_HALF_WIDTH_M of that line and the gap from the
  front bumper to its near end is at most HAZARD_AHEAD_M (it may overlap the bumper by 1 m).

  Not LMDrive's `is_vehicle_present` (the expert's braking trigger): the expert keeps its
  distance, so that holds almost only while it stands behind a car (1% of frames above 1 m/s),
  and a detector trained on it learnt nothing (docs/experiments.md, 7th session). This one is
  what the front camera shows: a car or walker in the path close ahead, however fast the car goes.
  """
  route = m.get("future_waypoints")
  if not route:
    return -1
  if len(objects) == 0:
    return 0
  path = geometry.gps_to_ego(np.asarray([[m["gps_x"], m["gps_y"]], *route], np.float64),
                             ego_gps, theta)
  centres = np.asarray(objects[:, :2], np.float64)
  nearest, along = geometry.project_onto_polyline(path, centres)
  lateral = np.linalg.norm(centres - nearest, axis=-1)
  gap = along - EGO_HALF_LENGTH_M - objects[:, 3] / 2
  return int(np.any((lateral < HAZARD_HALF_WIDTH_M) & (gap > -1.0) & (gap < HAZARD_AHEAD_M)))


def stop_sign_zone(m: dict) -> int:
  """1 when the ego is in a stop sign's waiting zone (up to 6 m before its line, where the
  scorer wants it to stand), 0 when not, -1 when the source does not say: our collection's
  measurement (collect.py, from the simulator), not LMDrive's; its `is_stop_sign_present` is the
  expert's braking trigger, which ends once the expert has stopped."""
  return int(bool(m["stop_sign_zone"])) if "stop_sign_zone" in m else -1


def red_light_zone(m: dict, zone_m: float) -> int:
  """1 when the light of the route's next stop line is red and the front bumper is at most
  `zone_m` before that line (up to 1 m past it), 0 when not, -1 when the source does not say
  (no `light_stop_distance` measurement: LMDrive's data, our collections before it).

  What the agent's light rule should brake on: `red_light_ahead` holds from the first sight of
  the red lamp (up to 40 m before the line), so a rule braking on it stood 20-45 m short of the
  line on most holds (docs/experiments.md, 20th), where the expert stops within ~3 m. The zone
  is speed-independent (a detector reads one image): long enough for the car to stop from the
  expert's cruising speed after the detector fires (6.5 m/s: 2.4 m at 9 m/s^2, plus a model
  step), short enough that it stands close to the line.
  """
  if "light_stop_distance" not in m:
    return -1
  distance = m["light_stop_distance"]
  return int(distance is not None and -1.0 <= float(distance) <= zone_m
             and red_light_ahead(m) == 1)


def red_light_ahead(m: dict) -> int:
  """1 when the light of the route's next stop line (`affected_light_id`, a key of the frame's
  `actors_data`) is red, however far ahead and however fast the ego goes; 0 without one (or
  when it is beyond the actors' radius).

  Not LMDrive's label: its `traffic_light` (`is_red_light_present`) is the expert's braking
  trigger, set within braking distance, so it holds almost only on frames where the car stands
  (on the embedded default's data 93% of standing frames, 0.4% of those above 3 m/s), and a head
  trained on it reads the speed, not the lamp. This one holds on 13% of the frames above 3 m/s.
  """
  light = m["actors_data"].get(str(m.get("affected_light_id", -1)))
  return int(light is not None and light.get("tpe") == geometry.TRAFFIC_LIGHT_TYPE
             and light.get("sta") == RED)
