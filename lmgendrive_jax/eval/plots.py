"""Matplotlib figures of the HTML report: training curves of one run, one route driven by one agent.

Where it sits: `eval/report.py` reads the files the training loop, the closed-loop evaluation and
the generation job write, and calls these functions to draw PNGs into the report's `assets/`.
Figures are built on `matplotlib.figure.Figure` with the Agg canvas, never through pyplot, so
nothing here touches matplotlib's global backend or leaks figures in a long-lived process.

Inputs are plain Python/numpy data, already parsed and validated by `report.py`:
- training: `series[(split, metric)] = (steps: int[N], values: f32[N])`, sorted by step.
- routes: `route_xy: f32[P, 2]`, `trajectory_xy: f32[Q, 2]` (metres, CARLA's map frame), the
  infractions `[{"type": str, "position": [x, y], ...}]`, and lane centre lines `[f32[K, 2], ...]`.
"""

from __future__ import annotations

import math
import re
from typing import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

THROUGHPUT_KEYS = ("steps_per_s", "examples_per_s", "tokens_per_s", "tflops_per_s")
LR_KEYS = ("lr", "learning_rate")
TOTAL_LOSS_KEYS = ("loss", "total", "total_loss")
HIDDEN_KEYS = ("finite",)  # a 0/1 flag per step; `skipped` counts the same thing
# Counts per step (the LM task logs `tokens`): sizes of the batch, not something learned.
COUNT_PATTERN = re.compile(r"^(num|n)_|(^|_)(tokens|examples|count|samples)$")
BOOKKEEPING_KEYS = ("grad_norm", "skipped")
# Scores that are not losses (higher is better for most): one panel each, never on the loss axes.
SCORE_PATTERN = re.compile(r"(^|_)(acc|accuracy|psnr|ssim|iou|fvd|precision|recall|f1|auc)($|_)")
MAX_OTHER_PANELS = 6  # scores beyond these are left out: keep the figure readable

# Marker and colour of each infraction type the LangAuto scorer writes (sim/scoring.py); any
# other type gets the next style of FALLBACK_STYLES.
INFRACTION_STYLES = {
    "collision_pedestrian": ("X", "#d62728"),
    "collision_vehicle": ("s", "#ff7f0e"),
    "collision_static": ("D", "#8c564b"),
    "red_light": ("o", "#e377c2"),
    "stop_sign": ("^", "#9467bd"),
    "outside_route_lanes": ("v", "#7f7f7f"),
    "route_deviation": ("P", "#17becf"),
    "agent_blocked": ("*", "#bcbd22"),
    # Not an infraction: where the car first left its route (eval/route_exit.py).
    "first_exit": ("H", "#0b6e4f"),
}
FALLBACK_STYLES = (("h", "#2ca02c"), ("p", "#1f77b4"), ("8", "#000000"), ("d", "#aec7e8"))


def infraction_style(kind: str, known: dict[str, tuple[str, str]]) -> tuple[str, str]:
  """(marker, colour) of an infraction type; unknown types take fallbacks in order of appearance."""
  if kind in INFRACTION_STYLES:
    return INFRACTION_STYLES[kind]
  if kind not in known:
    known[kind] = FALLBACK_STYLES[len(known) % len(FALLBACK_STYLES)]
  return known[kind]


def metric_kind(name: str) -> str:
  """What a logged scalar is, from its name (train/loop.py and the stage losses name them):
  'total' (the optimised loss), 'head' (a loss term of one head: stage 1 `detection`,
  `waypoints`, ...; stage 2 `waypoint_l1`, `completed_ce`, `flow`; any `*loss*`), 'term' (a
  sub-term `prefix/name`, e.g. `detection/box`), 'lr', 'throughput', 'bookkeeping' (`grad_norm`,
  `skipped`), 'score' (accuracy, PSNR, ...) or 'hidden' (`finite`, counts like `tokens`)."""
  if name in TOTAL_LOSS_KEYS:
    return "total"
  if name in LR_KEYS:
    return "lr"
  if name in THROUGHPUT_KEYS:
    return "throughput"
  if name in HIDDEN_KEYS or COUNT_PATTERN.search(name):
    return "hidden"
  if name in BOOKKEEPING_KEYS:
    return "bookkeeping"
  if "loss" not in name and SCORE_PATTERN.search(name.lower()):
    return "score"
  if "/" in name:
    return "term"
  return "head"


def _panel_groups(metrics: Sequence[str]) -> list[tuple[str, list[str]]]:
  """Metric names -> panels: total loss, loss heads, each head's sub-terms, lr, each throughput,
  grad_norm and skipped, then scores (one each, up to MAX_OTHER_PANELS)."""
  kinds = {m: metric_kind(m) for m in metrics}
  of = lambda kind: [m for m in metrics if kinds[m] == kind]  # noqa: E731
  groups = [("loss", of("total")), ("loss heads", of("head"))]
  prefixes = sorted({m.split("/", 1)[0] for m in of("term")})
  groups += [(f"{p}/* terms", [m for m in of("term") if m.split("/", 1)[0] == p])
             for p in prefixes]
  groups += [(m, [m]) for m in LR_KEYS + THROUGHPUT_KEYS + BOOKKEEPING_KEYS if m in metrics]
  groups += [(m, [m]) for m in of("score")[:MAX_OTHER_PANELS]]
  return [(panel, names) for panel, names in groups if names]


def training_curves(series: Mapping[tuple[str, str], tuple[np.ndarray, np.ndarray]], title: str,
                    out_png: str, dpi: int = 90) -> list[str]:
  """Draws one run's curves (total loss, loss per head, lr, throughput, ...) into `out_png`.

  Panels and what goes in them: `metric_kind` and `_panel_groups`. Train curves are solid, eval
  curves dashed with dots. A loss panel is on a log scale when every value is positive and they
  span more than a factor of 20 (the heads differ by orders of size).
  Returns the metric names that were drawn.
  """
  # `skipped` stays at 0 in a healthy run: only worth a panel when a step was skipped.
  metrics = sorted({metric for (_, metric), (_, values) in series.items()
                    if metric_kind(metric) != "hidden" and (
                        metric != "skipped" or np.nanmax(values, initial=0) > 0)})
  groups = _panel_groups(metrics)
  cols = 2 if len(groups) > 1 else 1
  rows = max(1, math.ceil(len(groups) / cols))
  fig = Figure(figsize=(6.0 * cols, 3.2 * rows), dpi=dpi, layout="constrained")
  FigureCanvasAgg(fig)
  fig.suptitle(title, fontsize=11)
  drawn = []
  for index, (panel, names) in enumerate(groups):
    ax = fig.add_subplot(rows, cols, index + 1)
    finite_values = []
    for name in names:
      for split in ("train", "eval"):
        if (split, name) not in series:
          continue
        steps, values = series[(split, name)]
        style = dict(linestyle="-", linewidth=1.4) if split == "train" else dict(
            linestyle="--", marker=".", linewidth=1.2)
        if len(steps) <= 25:  # few log points (or one): a line alone would not show them
          style["marker"] = "o" if split == "train" else "."
          style["markersize"] = 3.5
        label = name if split == "train" else f"{name} (eval)"
        ax.plot(steps, values, label=label, **style)
        finite_values.append(values[np.isfinite(values)])
        drawn.append(name)
    finite = np.concatenate(finite_values) if finite_values else np.zeros(0)
    is_loss = metric_kind(names[0]) in ("total", "head", "term")
    if is_loss and finite.size and finite.min() > 0 and finite.max() / finite.min() > 20:
      ax.set_yscale("log")
    ax.set_title(panel, fontsize=10)
    ax.set_xlabel("step", fontsize=9)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.tick_params(labelsize=8)
    ax.grid(True, alpha=0.3)
    if len(names) > 1 or any(("eval", n) in series for n in names):
      ax.legend(fontsize=7, loc="best")
  fig.savefig(out_png)
  return sorted(set(drawn))


def route_map(route_xy: np.ndarray | None, trajectory_xy: np.ndarray | None,
              infractions: Sequence[Mapping], lanes: Sequence[np.ndarray], title: str,
              out_png: str, dpi: int = 80, margin_m: float = 25.0) -> None:
  """Top-down plot of one route: lanes (grey), planned route (blue, dashed; a dot at the start, a
  star at the goal), driven trajectory (orange), and every infraction with a position as a marker
  of its type (in the legend with its count).

  The view is cropped to the route, the trajectory and the infractions plus `margin_m`, so a town
  larger than the route does not shrink it to a speck; CARLA's map frame has y pointing down on
  screen (x east, y south), so the y axis is inverted to match what the simulator shows.
  """
  fig = Figure(figsize=(4.6, 4.6), dpi=dpi, layout="constrained")
  FigureCanvasAgg(fig)
  ax = fig.add_subplot(1, 1, 1)
  points = []
  if route_xy is not None and len(route_xy):
    points.append(route_xy)
  if trajectory_xy is not None and len(trajectory_xy):
    points.append(trajectory_xy)
  placed = [np.asarray(i["position"], np.float64)[:2] for i in infractions
            if i.get("position") is not None]
  if placed:
    points.append(np.stack(placed))
  if points:
    everything = np.concatenate(points)
    low, high = everything.min(0) - margin_m, everything.max(0) + margin_m
  else:
    low, high = np.array([-margin_m, -margin_m]), np.array([margin_m, margin_m])
  # A square view (the figure is square): equal metres per pixel on both axes.
  centre, half = (low + high) / 2, (high - low).max() / 2
  low, high = centre - half, centre + half
  for lane in lanes:
    inside = np.all((lane >= low) & (lane <= high), axis=1)
    if inside.any():  # skip lanes far outside the view: big towns have thousands
      ax.plot(lane[:, 0], lane[:, 1], color="#c8c8c8", linewidth=0.8, zorder=1)
  if route_xy is not None and len(route_xy):
    ax.plot(route_xy[:, 0], route_xy[:, 1], color="#1f77b4", linestyle="--", linewidth=2.0,
            label="planned route", zorder=2)
    ax.plot(*route_xy[0], marker="o", color="#1f77b4", markersize=7, zorder=4, linestyle="none")
    ax.plot(*route_xy[-1], marker="*", color="#1f77b4", markersize=12, zorder=4,
            linestyle="none")
  if trajectory_xy is not None and len(trajectory_xy):
    ax.plot(trajectory_xy[:, 0], trajectory_xy[:, 1], color="#ff7f0e", linewidth=1.6,
            label="driven", zorder=3)
  known: dict[str, tuple[str, str]] = {}
  by_type: dict[str, list[np.ndarray]] = {}
  for infraction in infractions:
    if infraction.get("position") is not None:
      by_type.setdefault(str(infraction["type"]), []).append(
          np.asarray(infraction["position"], np.float64)[:2])
  for kind, positions in by_type.items():
    marker, colour = infraction_style(kind, known)
    xy = np.stack(positions)
    ax.scatter(xy[:, 0], xy[:, 1], marker=marker, c=colour, s=80, edgecolors="black",
               linewidths=0.6, zorder=5, label=f"{kind} ({len(positions)})")
  ax.set_xlim(low[0], high[0])
  ax.set_ylim(high[1], low[1])
  ax.set_aspect("equal", adjustable="box")
  ax.set_title(title, fontsize=9)
  ax.tick_params(labelsize=7)
  ax.set_xlabel("x (m)", fontsize=8)
  ax.set_ylabel("y (m)", fontsize=8)
  if ax.get_legend_handles_labels()[0]:
    ax.legend(fontsize=6.5, loc="best", framealpha=0.85)
  fig.savefig(out_png)
