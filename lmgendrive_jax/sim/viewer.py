"""Route replays for people: the four camera views tiled next to a top-down map of the town with
the route, the actors, the traffic lights and the infractions so far, written as MP4 or GIF.

Where it sits: `ReplayRecorder.on_tick / on_end` plug into `host.run_routes` (drive.py --video);
`topdown(...)` draws one map frame from a world state (host numpy).
"""

from __future__ import annotations

import os

import imageio.v2 as imageio
import numpy as np

from lmgendrive_jax.sim import expert as expert_lib
from lmgendrive_jax.sim import render as render_lib

MAP_PIXELS = 256
LIGHT_RGB = {0: (255, 40, 30), 1: (255, 210, 0), 2: (40, 230, 80)}


def town_map(town, route, size: int = MAP_PIXELS) -> tuple[np.ndarray, float]:
  """(uint8[size, size, 3] map of the town with the route, metres per map pixel)."""
  h, w = town.ground.shape
  side = max(h, w)
  step = max(1, side // size)
  palette = (render_lib.GROUND_PALETTE * 255).astype(np.uint8)
  small = palette[town.ground[::step, ::step]]
  canvas = np.zeros((size, size, 3), np.uint8)
  canvas[:min(size, small.shape[0]), :min(size, small.shape[1])] = small[:size, :size]
  scale = town.raster_res * step
  for p in route.points[::2]:
    _dot(canvas, p, town, scale, (60, 120, 255), 1)
  return canvas, scale


def _to_px(p, town, scale):
  return (int((p[1] - town.raster_origin[1]) / scale), int((p[0] - town.raster_origin[0]) / scale))


def _dot(canvas, p, town, scale, colour, radius):
  r, c = _to_px(p, town, scale)
  h, w = canvas.shape[:2]
  canvas[max(0, r - radius):max(0, min(h, r + radius + 1)),
         max(0, c - radius):max(0, min(w, c + radius + 1))] = colour


def topdown(base: np.ndarray, scale: float, town, state: dict, light_states, infractions) -> np.ndarray:
  """One map frame: base map + lights, pedestrians, vehicles, ego, infraction markers."""
  canvas = base.copy()
  for i, pos in enumerate(town.light_pos):
    _dot(canvas, pos[:2], town, scale, LIGHT_RGB.get(int(light_states[i]), (128, 128, 128)), 1)
  ped_pos, _ = expert_lib.world_lib_ped_poses(state)
  for p, on in zip(ped_pos, state["ped_active"]):
    if on:
      _dot(canvas, p, town, scale, (255, 230, 120), 0)
  npc_pos, _ = expert_lib.lane_pose_np(town, np.asarray(state["npc_lane"]), np.asarray(state["npc_s"]))
  for p, on in zip(npc_pos, state["npc_active"]):
    if on:
      _dot(canvas, p, town, scale, (240, 240, 240), 1)
  for infraction in infractions:
    _dot(canvas, infraction.position, town, scale, (255, 0, 255), 2)
  _dot(canvas, state["ego_pos"], town, scale, (255, 0, 0), 2)
  return canvas


def tile(images: np.ndarray, views: tuple[str, ...], map_frame: np.ndarray) -> np.ndarray:
  """Views uint8[V, H, W, 3] (2 x 2 grid: front, left / right, rear) + the map scaled to 2H."""
  v, h, w, _ = images.shape
  order = [views.index(name) for name in ("front", "left", "right", "rear") if name in views]
  cells = [images[i] for i in order] + [np.zeros_like(images[0])] * (4 - len(order))
  grid = np.concatenate([np.concatenate(cells[:2], 1), np.concatenate(cells[2:4], 1)], 0)
  idx = (np.arange(2 * h) * map_frame.shape[0] // (2 * h))
  scaled = map_frame[idx][:, idx]
  return np.concatenate([grid, scaled], 1)


class ReplayRecorder:
  """Collects frames of each route (every second tick) and writes `<out>/<route>.<fmt>`."""

  def __init__(self, out_dir: str, fmt: str = "mp4", fps: int = 10, views=("front", "left", "right",
                                                                           "rear")):
    self.out_dir, self.fmt, self.fps, self.views = out_dir, fmt, fps, tuple(views)
    self.frames: dict[int, list] = {}
    self.bases: dict[int, tuple] = {}
    os.makedirs(out_dir, exist_ok=True)

  def on_tick(self, episode, state, info, images, control, agent) -> None:
    if images is None or episode.tick % 2:
      return
    key = id(episode)
    if key not in self.bases:
      self.bases[key] = town_map(episode.town, episode.route)
    base, scale = self.bases[key]
    frame = topdown(base, scale, episode.town, state, info["light_states"],
                    episode.scorer.infractions)
    self.frames.setdefault(key, []).append(tile(np.asarray(images), self.views, frame))

  def on_end(self, episode, result) -> str | None:
    key = id(episode)
    frames = self.frames.pop(key, [])
    self.bases.pop(key, None)
    if not frames:
      return None
    path = os.path.join(self.out_dir, f"{episode.spec.name}.{self.fmt}")
    write_video(path, frames, self.fps)
    return path


def write_video(path: str, frames: list[np.ndarray], fps: int = 10) -> None:
  """MP4 (ffmpeg, even-sized) or GIF by the file extension."""
  if path.endswith(".gif"):
    imageio.mimsave(path, frames, duration=1.0 / fps, loop=0)
    return
  h, w = frames[0].shape[:2]
  frames = [f[:h - h % 2, :w - w % 2] for f in frames]
  imageio.mimsave(path, frames, fps=fps, macro_block_size=1)
