"""Writes small LMDrive-format datasets for the data tests (both layouts), with known contents.

A route: the ego drives straight at constant speed with a fixed compass heading; one vehicle sits
at a known offset from the ego; images are smooth random patterns saved as JPEG. Everything the
tests compare against (pixels, measurements, expected labels) is computed here independently of
the builder.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
from PIL import Image

from lmgendrive_jax.data.topdown import ROAD_CLASSES

VIEWS = ("front", "left", "right", "rear")


def pattern(height: int, width: int, seed: int) -> np.ndarray:
  """A smooth uint8[H, W, 3] image (JPEG-friendly) that differs per seed."""
  rng = np.random.default_rng(seed)
  coarse = rng.integers(0, 256, (4, 4, 3)).astype(np.uint8)
  return np.asarray(Image.fromarray(coarse).resize((width, height), Image.BILINEAR))


def measurement(frame: int, speed: float, theta: float, weather: int, hz: float = 10.0) -> dict:
  """Ego at frame `frame`: world position after driving `speed` m/s along compass `theta`."""
  distance = speed * frame / hz
  # Compass theta (0 north, clockwise) in CARLA's world (x east, y south): forward =
  # (sin theta, -cos theta). GPS frame: gps_x north (= -y), gps_y east (= x).
  x, y = 100.0 + distance * math.sin(theta), 50.0 - distance * math.cos(theta)
  gps_x, gps_y = -y, x
  # Target point 30 m ahead and 4 m to the right (right = (cos theta, sin theta) in world).
  tx, ty = (x + 30 * math.sin(theta) + 4 * math.cos(theta),
            y - 30 * math.cos(theta) + 4 * math.sin(theta))
  return {
      "gps_x": gps_x, "gps_y": gps_y, "x": x, "y": y, "theta": theta, "speed": speed,
      "target_speed": 6.5, "x_command": -ty, "y_command": tx, "command": 4,
      "gt_command": 2 if 26 <= frame <= 29 else 4,  # A right turn through a junction.
      "steer": 0.0, "throttle": 0.5, "brake": 0.0, "weather": 0, "weather_id": weather,
      "near_node_x": 0.0, "near_node_y": 0.0, "far_node_x": 0.0, "far_node_y": 0.0,
      "is_junction": False, "is_vehicle_present": [101] if frame % 7 == 0 else [],
      "is_bike_present": [],
      "is_lane_vehicle_present": [], "is_junction_vehicle_present": [],
      "is_pedestrian_present": [], "is_red_light_present": [7] if frame % 4 == 0 else [],
      "is_stop_sign_present": [], "should_slow": False, "should_brake": False,
      "future_waypoints": route_ahead(x, y, theta, right=2.0 if frame % 7 == 0 else 0.0),
      "affected_light_id": 7 if frame % 3 == 0 else -1,
      # That light's stop line 4 m ahead on every sixth frame, 20 m on the other third ones.
      "light_stop_distance": (4.0 if frame % 6 == 0 else 20.0) if frame % 3 == 0 else None,
      "stop_sign_zone": frame % 5 == 0,
  }


def route_ahead(x: float, y: float, theta: float, right: float) -> list[list[float]]:
  """The route's GPS points 2, 4 .. 20 m ahead of the ego at (x, y), `right` m to its right (the
  vehicle of `actors`, 2 m right, is in the route's corridor when right = 2, not when 0)."""
  points = []
  for ahead in range(2, 22, 2):
    px = x + ahead * math.sin(theta) + right * math.cos(theta)
    py = y - ahead * math.cos(theta) + right * math.sin(theta)
    points.append([-py, px])
  return points


def actors(m: dict) -> dict:
  """One vehicle 10 m ahead and 2 m right of the ego, facing the same way, plus a light."""
  theta = m["theta"]
  fx, fy = math.sin(theta), -math.cos(theta)     # forward in world
  rx, ry = math.cos(theta), math.sin(theta)      # right in world
  loc = [m["x"] + 10 * fx + 2 * rx, m["y"] + 10 * fy + 2 * ry, 0.0]
  return {
      "101": {"loc": loc, "ori": [fx, fy, 0.0], "box": [2.25, 1.0, 0.8], "vel": [3 * fx, 3 * fy, 0],
              "tpe": 0},
      "7": {"loc": [0.0, 0.0, 0.0], "ori": [1, 0, 0], "box": [0.5, 0.5, 2], "tpe": 2, "sta": 0},
  }


def road_map_pattern(frame: int) -> np.ndarray:
  """A frame's road map uint8[200, 200] (data/topdown.py format): bands of every class, shifted
  by the frame number so that records cannot be swapped unnoticed."""
  rows = np.arange(200)[:, None] + np.zeros((1, 200), int)
  return ((rows // 20 + frame) % len(ROAD_CLASSES)).astype(np.uint8)


def write_route(root: str, name: str, num_frames: int, layout: str = "raw",
                size: tuple[int, int] = (64, 48), speed: float = 4.0, theta: float = 0.3,
                weather: int = 1, seed: int = 0, topdown: bool = True) -> dict:
  """Writes one route folder; returns {frame: {"measurement", "actors", "road_map"}}. With
  `topdown`, each frame gets a `topdown/NNNN.png` road map (`road_map_pattern`)."""
  width, height = size
  route_dir = os.path.join(root, name)
  folders = (["rgb_full", "measurements_full"] if layout == "preprocessed" else
             [f"rgb_{v}" for v in VIEWS] + ["measurements", "actors_data"])
  for folder in folders + (["topdown"] if topdown else []):
    os.makedirs(os.path.join(route_dir, folder), exist_ok=True)
  contents = {}
  for frame in range(num_frames):
    m = measurement(frame, speed, theta, weather)
    acts = actors(m)
    views = {v: pattern(height, width, seed * 10000 + frame * 10 + i) for i, v in enumerate(VIEWS)}
    if layout == "preprocessed":
      stacked = np.concatenate([views[v] for v in VIEWS], axis=0)
      Image.fromarray(stacked).save(os.path.join(route_dir, "rgb_full", f"{frame:04d}.jpg"),
                                    quality=90)
      with open(os.path.join(route_dir, "measurements_full", f"{frame:04d}.json"), "w") as f:
        json.dump(dict(m, actors_data=acts, stop_sign=0), f)
    else:
      for v in VIEWS:
        Image.fromarray(views[v]).save(os.path.join(route_dir, f"rgb_{v}", f"{frame:04d}.jpg"),
                                       quality=90)
      with open(os.path.join(route_dir, "measurements", f"{frame:04d}.json"), "w") as f:
        json.dump(m, f)
      with open(os.path.join(route_dir, "actors_data", f"{frame:04d}.json"), "w") as f:
        json.dump(acts, f)
    road_map = road_map_pattern(frame) if topdown else None
    if topdown:
      Image.fromarray(road_map, mode="L").save(os.path.join(route_dir, "topdown",
                                                            f"{frame:04d}.png"))
    contents[frame] = {"measurement": m, "actors": acts, "road_map": road_map}
  return contents


def route_name(town: int, weather: int, index: int, kind: str = "short") -> str:
  return f"routes_town{town:02d}_{kind}_w{weather}_11_11_12_00_{index:02d}"


def write_dataset(root: str, routes: list[dict], clips: list[dict] = (), notices: dict = None,
                  misleading: list[dict] = ()) -> None:
  """routes: [{"name", "num_frames", ...write_route kwargs}]; clips/misleading: instruction-list
  entries (route_path given as the route name); notices: {route_name: [notice entries]}."""
  os.makedirs(root, exist_ok=True)
  with open(os.path.join(root, "dataset_index.txt"), "w") as f:
    for route in routes:
      kwargs = dict(route)
      name, frames = kwargs.pop("name"), kwargs.pop("num_frames")
      write_route(root, name, frames, **kwargs)
      f.write(f"{name} {frames}\n")
  with open(os.path.join(root, "navigation_instruction_list.txt"), "w") as f:
    for clip in clips:
      f.write(json.dumps(clip) + "\n")
  if misleading:
    with open(os.path.join(root, "misleading_data.txt"), "w") as f:
      for clip in misleading:
        f.write(json.dumps(clip) + "\n")
  with open(os.path.join(root, "notice_instruction_list.json"), "w") as f:
    json.dump(notices or {}, f)


def clip_entry(route: str, start: int, end: int, instruction_id: int = 36, args=(),
               bad_case: bool = False) -> dict:
  return {"start_frame": start, "end_frame": end, "instruction": f"rule-{instruction_id}",
          "instruction_id": instruction_id, "instruction_args": list(args), "town_id": 1,
          "weather_id": 1, "route_path": route, "route_frames": end - start + 1,
          "bad_case": "True" if bad_case else "False"}
