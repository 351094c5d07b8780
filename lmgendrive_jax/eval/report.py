"""The HTML report at the end of the quickstart: training curves, closed-loop metrics and route
maps, generated videos beside ground truth, in one `report.html` that opens in any browser offline.

Where it sits: last step of `launch/quickstart.sh` (CLI: `launch/report.py`). It only reads the
files that the training loop (train/metrics_log.py), the closed-loop evaluation (eval/) and the
batch generation job (generate/) write; it never imports models or the simulator. Every section
stands alone: a missing input gives a "missing" note in place of its section, an unreadable one an
"error" note naming the file and the fault (or a DataError with `strict=True`), and the rest of the
report still renders.

Inputs
------
1. Training runs: work dirs, each holding
   - `metrics.jsonl`: one JSON object per line, `{"step": int, "split": "train"|"eval",
     "<metric>": float, ...}` (MetricsLog.scalars). A resumed run appends from its restart step, so
     a (split, step) may appear twice: the last line written wins. A cut-off last line (the job was
     killed mid-write) is skipped with a note; any other bad line is an error.
   - `config.json` (optional): the run's config; its `preset` and `stage` go into the header.
     Without it, the config saved in the newest checkpoint's meta item is read instead
     (`checkpoints/<step>/meta/metadata`, plain JSON `{"config": {...}}`, train/checkpoints.py).
   A given dir without `metrics.jsonl` whose sub-dirs have one (e.g. the quickstart's run dir with
   one sub-dir per stage) stands for those sub-dirs, in name order.
   Plotted per run, one PNG (eval curves dashed): the total loss (`loss`), the loss per head
   (every other key that is not one of the kinds below: the stage losses name their heads
   `detection`, `waypoints`, `waypoint_l1`, `flow`, ..., and any key containing "loss"), each
   head's sub-terms `head/term` in a panel of their own, the learning rate (`lr`), each
   throughput key (`steps_per_s`, `examples_per_s`, `tokens_per_s`, `tflops_per_s`),
   `grad_norm`, `skipped` (only when non-zero), and up to 6 scores (accuracy, PSNR, SSIM, IoU,
   ...); see `plots.metric_kind`. A table gives the first, last and best value of the total loss
   and of each head.
2. Closed-loop results: `results.json` files (or dirs holding one), each
   `{"agent": str, "route_set": str, "routes": [route, ...], "mean_ds": float, "mean_rc": float,
   "mean_is": float}` with route =
   `{"route_id": str|int (or "route", as sim/scoring.py writes), "ds": float, "rc": float,
   "is": float, "infractions": [{"type": str, "time": float, "position": [x, y] (optional)}, ...],
   "ending": str, "route_xy": [[x, y], ...] (optional, the planned route),
   "trajectory_xy": [[x, y], ...] (optional, where the car drove), "town": str (optional)}`.
   DS and RC are per cent (0-100), IS a factor (0-1), as the LangAuto scorer writes them. A
   missing `mean_*` is averaged from the routes (and said so). Lane centre lines for the route
   maps come from `town_map_<town>.json` beside the results file when the route names its town
   (`town`, or `town_id` as sim/scoring.py writes), else `town_map.json` there: `{"lanes": [[[x, y], ...], ...]}`; without one the maps show the
   route alone.
   Shown: one row per results file (mean DS/RC/IS, routes completed = ending "completed",
   infraction counts per type), the best value of each column highlighted (highest DS/RC/IS and
   completions, fewest infractions; only when at least two rows differ); a collapsible per-route
   table per agent; route maps for the first `max_routes_per_agent` routes of each agent (the same
   routes for every agent, file order, so agents compare side by side).
3. Generated videos: a dir with one clip per file, `<clip_id>.mp4` (or `.webm`, `.gif`, `.png`;
   generated views tiled, ground truth beside them), and `metrics.json`:
   `{"clips": {clip_id: {"psnr": float, "ssim": float, ...}}, "mean": {metric: float},
   "horizons": {"0.5s": {metric: float}, ...} (optional)}`. A missing `mean` is averaged from the
   clips. The first `max_clips` clips (by id) are copied to `assets/videos/` and shown with their
   metrics (MP4 with `<video controls>` and a first-frame poster); every clip is in the
   collapsible per-clip table.

Output
------
`<out_dir>/report.html` and `<out_dir>/assets/` (PNGs, copied clips). All links are relative and
point inside `out_dir`, so the folder can be copied anywhere. No JavaScript, no network.
"""

from __future__ import annotations

import dataclasses
import datetime
import html
import importlib.metadata
import json
import math
import os
import platform
import re
import shutil
import sys
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from lmgendrive_jax.errors import DataError
from lmgendrive_jax.eval import plots
from lmgendrive_jax.sim import following

VIDEO_TYPES = {".mp4": "video/mp4", ".webm": "video/webm"}
IMAGE_TYPES = (".gif", ".png")
# Column order of infraction counts; types not listed follow in name order.
INFRACTION_ORDER = ("collision_pedestrian", "collision_vehicle", "collision_static", "red_light",
                    "stop_sign", "outside_route_lanes")
VERSION_PACKAGES = ("jax", "jaxlib", "flax", "optax", "numpy")


# ----------------------------------------------------------------------------------------------
# Reading the inputs. Each reader raises DataError naming the file and the fault.


@dataclasses.dataclass
class TrainingRun:
  """One work dir's metrics: `series[(split, metric)] = (steps int[N], values f64[N])` by step."""
  name: str
  path: str
  series: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]
  config: dict | None
  notes: list[str]


def expand_train_dirs(train_dirs: Sequence[str]) -> list[str]:
  """A dir without metrics.jsonl but with sub-dirs that have one stands for those sub-dirs."""
  expanded = []
  for path in train_dirs:
    if os.path.isdir(path) and not os.path.exists(os.path.join(path, "metrics.jsonl")):
      children = sorted(os.path.join(path, c) for c in os.listdir(path)
                        if os.path.isfile(os.path.join(path, c, "metrics.jsonl")))
      if children:
        expanded.extend(children)
        continue
    expanded.append(path)
  return expanded


def read_training_run(work_dir: str, name: str | None = None) -> TrainingRun:
  """Parses `work_dir/metrics.jsonl` (and `config.json` if present) into per-metric series."""
  path = os.path.join(work_dir, "metrics.jsonl")
  with open(path) as f:
    text = f.read()
  lines = text.split("\n")
  notes = []
  by_key: dict[tuple[str, str], dict[int, float]] = {}
  for number, line in enumerate(lines, start=1):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
    except json.JSONDecodeError as e:
      if number == len(lines):  # no newline after it: the writer was killed mid-line
        notes.append(f"skipped the cut-off last line {number} of {path}")
        continue
      raise DataError(f"{path} line {number} is not JSON ({e.msg}): {line[:120]!r}; each line "
                      "must be one MetricsLog record") from e
    if not isinstance(record, dict) or not isinstance(record.get("step"), int) or isinstance(
        record.get("step"), bool):
      raise DataError(f"{path} line {number} has no integer 'step': {line[:120]!r}")
    split = record.get("split", "train")
    if split not in ("train", "eval"):
      raise DataError(f"{path} line {number}: split={split!r}, expected 'train' or 'eval'")
    for metric, value in record.items():
      if metric in ("step", "split") or isinstance(value, bool) or not isinstance(
          value, (int, float)):
        continue
      by_key.setdefault((split, metric), {})[record["step"]] = float(value)
  series = {}
  for key, values in by_key.items():
    steps = np.array(sorted(values), np.int64)
    series[key] = (steps, np.array([values[s] for s in steps], np.float64))
  config = None
  config_path = os.path.join(work_dir, "config.json")
  if not os.path.exists(config_path):
    config_path = _checkpoint_meta_path(work_dir)
  if config_path is not None:
    config = _read_json(config_path)
    if config_path.endswith("metadata"):  # {"config": {...}, "versions": {...}}
      config = config.get("config") if isinstance(config, dict) else config
    if not isinstance(config, dict):
      raise DataError(f"{config_path} holds a {type(config).__name__}, expected a JSON object")
  return TrainingRun(name or os.path.basename(os.path.normpath(work_dir)), work_dir, series,
                     config, notes)


def _checkpoint_meta_path(work_dir: str) -> str | None:
  """The newest checkpoint's `meta` item (train/checkpoints.py saves it with Orbax's JsonSave:
  a plain JSON file `checkpoints/<step>/meta/metadata` holding the run's config)."""
  root = os.path.join(work_dir, "checkpoints")
  if not os.path.isdir(root):
    return None
  steps = sorted((int(d) for d in os.listdir(root) if d.isdigit()), reverse=True)
  for step in steps:
    path = os.path.join(root, str(step), "meta", "metadata")
    if os.path.isfile(path):
      return path
  return None


@dataclasses.dataclass
class EvalResults:
  """One results.json, validated; `computed_means` says which means were averaged here."""
  path: str
  agent: str
  route_set: str
  routes: list[dict]
  means: dict[str, float | None]
  computed_means: list[str]


def resolve_results_path(path: str) -> str:
  return os.path.join(path, "results.json") if os.path.isdir(path) else path


def read_eval_results(path: str) -> EvalResults:
  """Parses and checks one closed-loop results.json (see the module docstring for its format)."""
  data = _read_json(path)
  if not isinstance(data, dict):
    raise DataError(f"{path} holds a {type(data).__name__}, expected a JSON object with 'agent' "
                    "and 'routes'")
  if not isinstance(data.get("routes"), list):
    raise DataError(f"{path} has no 'routes' list (keys: {sorted(data)})")
  routes = []
  for index, route in enumerate(data["routes"]):
    where = f"{path} routes[{index}]"
    if not isinstance(route, dict):
      raise DataError(f"{where} is a {type(route).__name__}, expected an object")
    for key in ("ds", "rc", "is"):
      if not _is_number(route.get(key)):
        raise DataError(f"{where} has {key}={route.get(key)!r}, expected a number")
    if not isinstance(route.get("infractions"), list):
      raise DataError(f"{where} has no 'infractions' list (an empty list means none)")
    for j, infraction in enumerate(route["infractions"]):
      if not isinstance(infraction, dict) or "type" not in infraction:
        raise DataError(f"{where} infractions[{j}] = {infraction!r} has no 'type'")
      position = infraction.get("position")
      if position is not None and not (isinstance(position, (list, tuple)) and len(position) >= 2
                                       and all(_is_number(p) for p in position[:2])):
        raise DataError(f"{where} infractions[{j}] position={position!r}, expected [x, y]")
    route_id = route.get("route_id", route.get("route", index))
    checked = dict(route, route_id=route_id)
    for key in ("route_xy", "trajectory_xy"):
      if route.get(key) is not None:
        checked[key] = _points(route[key], f"{where} {key}")
    routes.append(checked)
  means, computed = {}, []
  for key in ("ds", "rc", "is"):
    given = data.get(f"mean_{key}")
    if given is not None and not _is_number(given):
      raise DataError(f"{path} mean_{key}={given!r}, expected a number")
    if given is None and routes:
      given = float(np.mean([r[key] for r in routes]))
      computed.append(f"mean_{key}")
    means[key] = None if given is None else float(given)
  agent = data.get("agent")
  if not isinstance(agent, str) or not agent:
    raise DataError(f"{path} has agent={agent!r}, expected the agent's name")
  return EvalResults(path, agent, str(data.get("route_set", "?")), routes, means, computed)


def read_town_lanes(path: str) -> list[np.ndarray]:
  """`town_map.json` -> lane centre lines `[f64[K, 2], ...]`."""
  data = _read_json(path)
  if not isinstance(data, dict) or not isinstance(data.get("lanes"), list):
    raise DataError(f"{path} has no 'lanes' list; expected {{\"lanes\": [[[x, y], ...], ...]}}")
  return [_points(lane, f"{path} lanes[{i}]") for i, lane in enumerate(data["lanes"])]


@dataclasses.dataclass
class VideoResults:
  """Media files by clip id and the generation job's metrics.json (None when absent)."""
  path: str
  media: dict[str, str]
  metrics: dict | None


def read_video_dir(video_dir: str) -> VideoResults:
  """Lists `<clip_id>.<mp4|webm|gif|png>` and parses `metrics.json` when it is there."""
  media = {}
  for name in sorted(os.listdir(video_dir)):
    stem, ext = os.path.splitext(name)
    if ext.lower() in VIDEO_TYPES or ext.lower() in IMAGE_TYPES:
      if stem.endswith(".poster"):
        continue
      if stem in media:  # prefer a playable video over a still of the same clip
        if os.path.splitext(media[stem])[1].lower() in VIDEO_TYPES:
          continue
      media[stem] = os.path.join(video_dir, name)
  metrics = None
  metrics_path = os.path.join(video_dir, "metrics.json")
  if os.path.exists(metrics_path):
    metrics = _read_json(metrics_path)
    if not isinstance(metrics, dict) or not isinstance(metrics.get("clips", {}), dict):
      raise DataError(f"{metrics_path}: expected {{\"clips\": {{clip_id: {{metric: value}}}}, "
                      "\"mean\": {...}}")
    for clip_id, values in metrics.get("clips", {}).items():
      if not isinstance(values, dict):
        raise DataError(f"{metrics_path} clips[{clip_id!r}] = {values!r}, expected an object")
  return VideoResults(video_dir, media, metrics)


def _read_json(path: str) -> Any:
  try:
    with open(path) as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise DataError(f"{path} is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}; "
                    "rewrite it (was its job killed while writing?)") from e
  except UnicodeDecodeError as e:
    raise DataError(f"{path} is not UTF-8 text JSON ({e})") from e


def _is_number(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def _points(value, where: str) -> np.ndarray:
  try:
    points = np.asarray(value, np.float64)
  except (TypeError, ValueError) as e:
    raise DataError(f"{where} is not a list of [x, y] points ({e})") from e
  if points.size == 0:
    return points.reshape(0, 2)
  if points.ndim != 2 or points.shape[1] < 2:
    raise DataError(f"{where} has shape {points.shape}, expected [N, 2] points [[x, y], ...]")
  return points[:, :2]


# ----------------------------------------------------------------------------------------------
# HTML pieces.

CSS = """
:root { --fg: #1d232b; --muted: #5d6875; --line: #d9dee4; --bg-alt: #f5f7f9; --accent: #1f5fa8;
        --best: #dff3e1; --best-fg: #13632a; --warn: #fff4d6; --warn-line: #e2b93b;
        --err: #fde2e1; --err-line: #d0463b; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--fg); font: 14px/1.45 -apple-system, "Segoe UI", Roboto,
       "Helvetica Neue", Arial, sans-serif; background: #fff; }
header { padding: 22px 32px 14px; border-bottom: 1px solid var(--line); background: var(--bg-alt); }
header h1 { margin: 0 0 8px; font-size: 24px; }
nav { padding: 8px 32px; border-bottom: 1px solid var(--line); font-size: 13px; }
nav a { margin-right: 18px; color: var(--accent); text-decoration: none; }
main { padding: 8px 32px 40px; max-width: 1500px; }
section { margin-top: 22px; }
h2 { font-size: 20px; border-bottom: 2px solid var(--accent); padding-bottom: 4px; }
h3 { font-size: 16px; margin: 22px 0 6px; }
.path, .muted { color: var(--muted); font-size: 12px; }
code { font-size: 12px; background: var(--bg-alt); padding: 1px 4px; border-radius: 3px; }
table { border-collapse: collapse; margin: 8px 0 12px; font-size: 13px; }
th, td { border: 1px solid var(--line); padding: 4px 9px; text-align: right; white-space: nowrap; }
th { background: var(--bg-alt); font-weight: 600; }
td.label, th.label { text-align: left; }
tbody tr:nth-child(even) td { background: #fbfcfd; }
td.best, tbody tr:nth-child(even) td.best { background: var(--best); color: var(--best-fg);
                                             font-weight: 700; }
table.kv td, table.kv th { text-align: left; border: none; padding: 1px 14px 1px 0;
                           background: none !important; }
table.kv th { color: var(--muted); font-weight: 500; }
dl.facts { display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr));
           gap: 2px 24px; margin: 0; font-size: 13px; }
dl.facts div { display: flex; gap: 10px; }
dl.facts dt { color: var(--muted); min-width: 90px; }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
.note { padding: 8px 12px; border-left: 4px solid var(--warn-line); background: var(--warn);
        margin: 8px 0; }
.note.error { border-left-color: var(--err-line); background: var(--err); }
details { margin: 6px 0 10px; }
summary { cursor: pointer; color: var(--accent); }
img.curves { max-width: 100%; border: 1px solid var(--line); }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr)); gap: 14px; }
figure { margin: 0; border: 1px solid var(--line); padding: 6px; background: #fff; }
figure img, figure video { width: 100%; display: block; }
figcaption { font-size: 12px; color: var(--muted); margin-top: 4px; }
.clips { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: 16px; }
.clips table { font-size: 12px; margin: 4px 0 0; }
footer { padding: 14px 32px; color: var(--muted); font-size: 12px;
         border-top: 1px solid var(--line); }
"""


def _e(value) -> str:
  return html.escape(str(value), quote=True)


def _fmt(value, digits: int = 2) -> str:
  if value is None:
    return "—"
  if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
    return str(value)
  value = float(value)
  if math.isnan(value) or math.isinf(value):
    return str(value)
  if value != 0 and (abs(value) < 10 ** -digits or abs(value) >= 1e6):
    return f"{value:.{max(digits, 2)}e}"
  return f"{value:.{digits}f}"


def _note(text: str, kind: str = "missing") -> str:
  css = "note error" if kind == "error" else "note missing"
  prefix = "Missing" if kind == "missing" else "Could not read"
  return f'<p class="{css}"><b>{prefix}:</b> {_e(text)}</p>\n'


def _slug(text, limit: int = 40) -> str:
  slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)).strip("-.")
  return slug[:limit] or "x"


def _best_rows(values: Sequence[float | None], higher_is_better: bool) -> set[int]:
  """Row indices holding the best value; none when fewer than two rows or all rows are equal."""
  valid = [(i, v) for i, v in enumerate(values) if v is not None and not math.isnan(v)]
  if len(valid) < 2 or len({v for _, v in valid}) == 1:
    return set()
  best = max(v for _, v in valid) if higher_is_better else min(v for _, v in valid)
  return {i for i, v in valid if v == best}


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], label_columns: int = 1,
           best: Mapping[tuple[int, int], bool] | None = None, table_id: str | None = None) -> str:
  """`rows` are pre-formatted cell texts; `best[(row, col)]` marks highlighted cells."""
  best = best or {}
  attrs = f' id="{_e(table_id)}"' if table_id else ""
  out = [f"<table{attrs}><thead><tr>"]
  for c, header in enumerate(headers):
    cls = ' class="label"' if c < label_columns else ""
    out.append(f"<th{cls}>{_e(header)}</th>")
  out.append("</tr></thead><tbody>\n")
  for r, row in enumerate(rows):
    out.append("<tr>")
    for c, cell in enumerate(row):
      classes = (["label"] if c < label_columns else []) + (["best"] if best.get((r, c)) else [])
      cls = f' class="{" ".join(classes)}"' if classes else ""
      out.append(f"<td{cls}>{_e(cell)}</td>")
    out.append("</tr>\n")
  out.append("</tbody></table>\n")
  return "".join(out)


def _kv_table(items: Iterable[tuple[str, Any]]) -> str:
  rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in items)
  return f'<table class="kv">{rows}</table>\n'


# ----------------------------------------------------------------------------------------------
# Sections.


class _Section:
  """Collects one section's HTML; `fail` turns a DataError into a note unless `strict`."""

  def __init__(self, strict: bool):
    self.strict = strict
    self.parts: list[str] = []
    self.problems: list[str] = []

  def add(self, text: str) -> None:
    self.parts.append(text)

  def missing(self, text: str) -> None:
    self.problems.append(f"missing: {text}")
    self.add(_note(text, "missing"))

  def fail(self, error: DataError) -> None:
    if self.strict:
      raise error
    self.problems.append(f"error: {error}")
    self.add(_note(str(error), "error"))

  def html(self) -> str:
    return "".join(self.parts)


def _training_section(train_dirs: Sequence[str], assets: str, strict: bool,
                      presets: dict[str, str]) -> _Section:
  section = _Section(strict)
  section.add('<section id="training"><h2>Training</h2>\n')
  if not train_dirs:
    section.missing("no training work dirs were given (--train_dir)")
  names = _unique_names([os.path.basename(os.path.normpath(d)) or d for d in train_dirs],
                        train_dirs)
  for index, (work_dir, name) in enumerate(zip(train_dirs, names)):
    section.add(f'<h3>{_e(name)}</h3><p class="path">{_e(os.path.abspath(work_dir))}</p>\n')
    if not os.path.exists(os.path.join(work_dir, "metrics.jsonl")):
      where = "the work dir does not exist" if not os.path.isdir(work_dir) else \
          "the run has not logged any metrics"
      section.missing(f"{os.path.join(work_dir, 'metrics.jsonl')} ({where})")
      continue
    try:
      run = read_training_run(work_dir, name)
    except DataError as e:
      section.fail(e)
      continue
    for note in run.notes:
      section.add(f'<p class="muted">{_e(note)}</p>\n')
    if run.config:
      described = ", ".join(f"{k}={run.config[k]}" for k in ("stage", "preset") if k in run.config)
      if described:
        section.add(f'<p class="muted">config: {_e(described)}</p>\n')
      if "preset" in run.config:
        presets[name] = str(run.config["preset"])
    if not run.series:
      section.missing(f"{work_dir}/metrics.jsonl has no numeric metrics yet")
      continue
    section.add(_training_summary(run, f"train-losses-{index}"))
    png = f"train_{index:02d}_{_slug(name)}.png"
    plots.training_curves(run.series, f"{name}: training curves", os.path.join(assets, png))
    section.add(f'<img class="curves" src="assets/{_e(png)}" alt="training curves of '
                f'{_e(name)}">\n')
  section.add("</section>\n")
  return section


def _training_summary(run: TrainingRun, table_id: str) -> str:
  """First, last and best value of each loss, per split; the step range and final lr/throughput."""
  rows = []
  def order(item):  # the total loss first, then heads by name; train before eval
    (split, metric), _ = item
    return (plots.metric_kind(metric) != "total", metric, split != "train")

  for (split, metric), (steps, values) in sorted(run.series.items(), key=order):
    if plots.metric_kind(metric) not in ("total", "head"):
      continue
    finite = np.isfinite(values)
    best_index = int(np.argmin(np.where(finite, values, np.inf))) if finite.any() else None
    rows.append([metric, split, str(int(steps[0])), _fmt(values[0], 4), str(int(steps[-1])),
                 _fmt(values[-1], 4),
                 "—" if best_index is None else f"{_fmt(values[best_index], 4)} @ "
                 f"{int(steps[best_index])}"])
  steps_all = np.concatenate([s for s, _ in run.series.values()])
  info = [("steps logged", f"{int(steps_all.min())} – {int(steps_all.max())}")]
  for key in plots.LR_KEYS + plots.THROUGHPUT_KEYS:
    if ("train", key) in run.series:
      info.append((f"last {key}", _fmt(run.series[("train", key)][1][-1], 4)))
  out = _kv_table(info)
  if rows:
    out += _table(["loss / head", "split", "first step", "first", "last step", "last",
                   "best @ step"], rows, label_columns=2, table_id=table_id)
  return out


def _unique_names(names: Sequence[str], paths: Sequence[str]) -> list[str]:
  """Disambiguates equal base names with their parent dir (stage1 of two quickstart runs)."""
  out = []
  for name, path in zip(names, paths):
    if names.count(name) > 1:
      parent = os.path.basename(os.path.dirname(os.path.normpath(path)))
      name = f"{parent}/{name}" if parent else name
    out.append(name)
  seen: dict[str, int] = {}
  unique = []
  for name in out:
    seen[name] = seen.get(name, 0) + 1
    unique.append(name if seen[name] == 1 else f"{name} #{seen[name]}")
  return unique


def _infraction_counts(routes: Sequence[dict]) -> dict[str, int]:
  counts: dict[str, int] = {}
  for route in routes:
    for infraction in route["infractions"]:
      counts[str(infraction["type"])] = counts.get(str(infraction["type"]), 0) + 1
  return counts


def _ordered_types(types: Iterable[str]) -> list[str]:
  types = set(types)
  return [t for t in INFRACTION_ORDER if t in types] + sorted(types - set(INFRACTION_ORDER))


def _eval_section(result_paths: Sequence[str], assets: str, strict: bool,
                  max_routes: int) -> _Section:
  section = _Section(strict)
  section.add('<section id="evaluation"><h2>Closed-loop evaluation</h2>\n')
  if not result_paths:
    section.missing("no closed-loop results were given (--eval_results)")
  loaded: list[EvalResults] = []
  for path in result_paths:
    path = resolve_results_path(path)
    if not os.path.exists(path):
      section.missing(f"{path} (the evaluation has not written results for this agent)")
      continue
    try:
      loaded.append(read_eval_results(path))
    except DataError as e:
      section.fail(e)
  if loaded:
    section.add(_metrics_table(loaded))
    section.add("<h3>Per route</h3>\n")
    labels = _agent_labels(loaded)
    for results, label in zip(loaded, labels):
      section.add(_route_table(results, label))
    section.add("<h3>Routes on the map</h3>\n"
                '<p class="muted">Planned route dashed blue (dot: start, star: goal), driven '
                "trajectory orange, infractions by type (legend); grey lines are the town's "
                "lanes when a town_map.json sits beside the results.</p>\n")
    for agent_index, (results, label) in enumerate(zip(loaded, labels)):
      _route_maps(section, results, label, agent_index, assets, max_routes)
  section.add("</section>\n")
  return section


def _agent_labels(loaded: Sequence[EvalResults]) -> list[str]:
  route_sets = {r.route_set for r in loaded}
  labels = [r.agent if len(route_sets) == 1 else f"{r.agent} ({r.route_set})" for r in loaded]
  return _unique_names(labels, [r.path for r in loaded])


def _metrics_table(loaded: Sequence[EvalResults]) -> str:
  types = _ordered_types(t for r in loaded for t in _infraction_counts(r.routes))
  headers = ["agent", "route set", "routes", "mean DS", "mean RC", "mean IS", "completed",
             "junctions followed"] + types
  rows, columns = [], {c: [] for c in range(3, len(headers))}
  for results in loaded:
    completed = sum(1 for r in results.routes if r.get("ending") == "completed")
    junctions = following.summarize(results.routes)
    share = junctions["instruction_following"]
    counts = _infraction_counts(results.routes)
    values = [results.means["ds"], results.means["rc"], results.means["is"], completed,
              share] + [counts.get(t, 0) for t in types]
    for c, value in enumerate(values, start=3):
      columns[c].append(value)
    rows.append([None, results.route_set, str(len(results.routes)),
                 _fmt(values[0], 2), _fmt(values[1], 2), _fmt(values[2], 3),
                 f"{completed}/{len(results.routes)}",
                 "n/a" if share is None else f"{share:.0f}% ({junctions['junctions_followed']}/"
                 f"{junctions['junctions_followed'] + junctions['junctions_missed']})"] +
                [str(v) for v in values[5:]])
  for row, label in zip(rows, _agent_labels(loaded)):
    row[0] = label
  best = {}
  for c, values in columns.items():
    higher = c <= 7  # DS, RC, IS, completions, junctions: more is better; infractions: fewer
    for r in _best_rows(values, higher):
      best[(r, c)] = True
  notes = [f"{os.path.basename(os.path.dirname(r.path)) or r.path}: "
           f"{', '.join(r.computed_means)} averaged from its {len(r.routes)} routes"
           for r in loaded if r.computed_means]
  out = _table(headers, rows, label_columns=2, best=best, table_id="agent-metrics")
  out += ('<p class="muted">DS = RC × IS per route (LangAuto); DS and RC in per cent. '
          "Junctions followed: of the junctions an agent drove through, those it left the way its "
          "route (and so its instruction) said. Infraction columns count events over all routes. "
          "Best per column highlighted.</p>\n")
  for note in notes:
    out += f'<p class="muted">{_e(note)}</p>\n'
  return out


def _route_table(results: EvalResults, label: str) -> str:
  types = _ordered_types(_infraction_counts(results.routes))
  rows = []
  for route in results.routes:
    counts = _infraction_counts([route])
    rows.append([str(route["route_id"]), str(route.get("town", route.get("town_id", "—"))),
                 _fmt(route["ds"], 2), _fmt(route["rc"], 2), _fmt(route["is"], 3),
                 str(route.get("ending", "?"))] + [str(counts.get(t, 0)) for t in types])
  table = _table(["route", "town", "DS", "RC", "IS", "ending"] + types, rows, label_columns=2)
  return (f"<details><summary>{_e(label)}: {len(results.routes)} routes "
          f'<span class="muted">({_e(results.path)})</span></summary>\n{table}</details>\n')


def _route_maps(section: _Section, results: EvalResults, label: str, agent_index: int,
                assets: str, max_routes: int) -> None:
  section.add(f"<h3>{_e(label)}</h3>\n")
  shown = results.routes[:max_routes]
  if len(results.routes) > len(shown):
    section.add(f'<p class="muted">first {len(shown)} of {len(results.routes)} routes '
                "(max_routes_per_agent)</p>\n")
  lanes_cache: dict[str, list[np.ndarray]] = {}
  figures = []
  for route_index, route in enumerate(shown):
    if route.get("route_xy") is None and route.get("trajectory_xy") is None:
      figures.append(f'<figure><figcaption>{_e(_route_caption(route))}<br>no route_xy or '
                     "trajectory_xy in the results: nothing to draw</figcaption></figure>")
      continue
    lanes = []
    town_map = _town_map_path(results.path, route.get("town", route.get("town_id")))
    if town_map is not None:
      if town_map not in lanes_cache:
        try:
          lanes_cache[town_map] = read_town_lanes(town_map)
        except DataError as e:
          section.fail(e)
          lanes_cache[town_map] = []
      lanes = lanes_cache[town_map]
    png = (f"route_{agent_index:02d}_{route_index:03d}_{_slug(label, 24)}_"
           f"{_slug(route['route_id'], 24)}.png")
    title = f"{label} · route {route['route_id']}"
    marks = list(route["infractions"])
    exit_ = _first_exit(route)
    if exit_.get("position") is not None:
      marks.append({"type": "first_exit", "position": exit_["position"]})
    plots.route_map(route.get("route_xy"), route.get("trajectory_xy"), marks, lanes, title,
                    os.path.join(assets, png))
    figures.append(f'<figure><img src="assets/{_e(png)}" alt="{_e(title)}">'
                   f"<figcaption>{_e(_route_caption(route))}</figcaption></figure>")
  section.add('<div class="grid">\n' + "\n".join(figures) + "\n</div>\n")


def _route_caption(route: dict) -> str:
  parts = [f"route {route['route_id']}", f"DS {_fmt(route['ds'])}", f"RC {_fmt(route['rc'])}",
           f"IS {_fmt(route['is'], 3)}", f"ending: {route.get('ending', '?')}"]
  described = []
  for kind, count in _infraction_counts([route]).items():
    unplaced = [i for i in route["infractions"] if i["type"] == kind and i.get("position") is None]
    text = f"{kind} ×{count}"
    percentages = [i["percentage"] for i in unplaced if _is_number(i.get("percentage"))]
    if percentages:
      text += f" ({_fmt(sum(percentages))} % of the route)"
    elif unplaced:
      text += f" ({len(unplaced)} without position)"
    described.append(text)
  exit_ = _first_exit(route)
  if "place" in exit_:
    parts.append(f"left its route at {_fmt(exit_.get('t'), 1)} s ({exit_['place']}, drifting "
                 f"{_fmt(exit_.get('drift_m'), 1)} m)")
  return " · ".join(parts) + ("; infractions: " + ", ".join(described) if described else
                              "; no infractions")


def _first_exit(route: dict) -> dict:
  """The route's `first_exit` record (eval/route_exit.py); {} when it never left its route or
  its results predate the record."""
  exit_ = route.get("first_exit")
  return exit_ if isinstance(exit_, dict) else {}


def _town_map_path(results_path: str, town) -> str | None:
  folder = os.path.dirname(os.path.abspath(results_path))
  candidates = ([f"town_map_{_slug(town)}.json"] if town is not None else []) + ["town_map.json"]
  for name in candidates:
    if os.path.exists(os.path.join(folder, name)):
      return os.path.join(folder, name)
  return None


def _video_section(video_dir: str | None, assets: str, strict: bool, max_clips: int) -> _Section:
  section = _Section(strict)
  section.add('<section id="videos"><h2>Generated videos</h2>\n')
  if not video_dir:
    section.missing("no generation output dir was given (--videos)")
  elif not os.path.isdir(video_dir):
    section.missing(f"{video_dir} (the generation job has not written its output)")
  else:
    section.add(f'<p class="path">{_e(os.path.abspath(video_dir))}</p>\n')
    try:
      videos = read_video_dir(video_dir)
    except DataError as e:
      section.fail(e)
      videos = None
    if videos is not None:
      _video_metrics(section, videos)
      _video_clips(section, videos, assets, max_clips)
  section.add("</section>\n")
  return section


def _video_metrics(section: _Section, videos: VideoResults) -> None:
  if videos.metrics is None:
    section.missing(f"{os.path.join(videos.path, 'metrics.json')} (no PSNR/SSIM for these clips)")
    return
  clips = videos.metrics.get("clips", {})
  mean = videos.metrics.get("mean")
  computed = False
  if not isinstance(mean, dict):
    mean = _mean_over_clips(clips)
    computed = bool(mean)
  if mean:
    section.add("<h3>Mean over clips</h3>\n")
    names = [k for k, v in mean.items() if not isinstance(v, (dict, list))]
    section.add(_table(["clips"] + names, [[str(len(clips))] + [_fmt(mean[n], 4) for n in names]],
                       label_columns=0, table_id="video-mean"))
    if computed:
      section.add('<p class="muted">metrics.json has no "mean": averaged here over the clips.'
                  "</p>\n")
  horizons = videos.metrics.get("horizons")
  if isinstance(horizons, dict) and horizons:
    names = []
    for values in horizons.values():
      names += [k for k in (values if isinstance(values, dict) else {}) if k not in names]
    rows = [[str(h)] + [_fmt(v.get(n) if isinstance(v, dict) else None, 4) for n in names]
            for h, v in horizons.items()]
    section.add("<h3>By horizon</h3>\n" + _table(["horizon"] + names, rows,
                                                 table_id="video-horizons"))


def _mean_over_clips(clips: Mapping[str, Mapping]) -> dict[str, float]:
  names = []
  for values in clips.values():
    names += [k for k, v in values.items() if _is_number(v) and k not in names]
  return {n: float(np.mean([v[n] for v in clips.values() if _is_number(v.get(n))]))
          for n in names}


def _video_clips(section: _Section, videos: VideoResults, assets: str, max_clips: int) -> None:
  clips = (videos.metrics or {}).get("clips", {})
  if not videos.media:
    section.missing(f"no clip files (.mp4/.webm/.gif/.png) in {videos.path}")
  else:
    ids = sorted(videos.media)
    shown = ids[:max_clips]
    section.add("<h3>Clips</h3>\n")
    if len(ids) > len(shown):
      section.add(f'<p class="muted">first {len(shown)} of {len(ids)} clips (max_clips); all are '
                  f"in {_e(videos.path)}</p>\n")
    section.add('<p class="muted">Each clip: generated views tiled, ground truth beside them.'
                "</p>\n")
    video_assets = os.path.join(assets, "videos")
    os.makedirs(video_assets, exist_ok=True)
    cards = []
    for index, clip_id in enumerate(shown):
      source = videos.media[clip_id]
      ext = os.path.splitext(source)[1].lower()
      name = f"{index:03d}_{_slug(clip_id)}{ext}"
      shutil.copyfile(source, os.path.join(video_assets, name))
      link = f"assets/videos/{name}"
      if ext in VIDEO_TYPES:
        poster = _poster(source, os.path.join(video_assets, f"{index:03d}_{_slug(clip_id)}"
                                              ".poster.png"))
        poster_attr = f' poster="assets/videos/{_e(os.path.basename(poster))}"' if poster else ""
        media = (f'<video controls loop muted preload="metadata"{poster_attr}>'
                 f'<source src="{_e(link)}" type="{VIDEO_TYPES[ext]}">'
                 f'<a href="{_e(link)}">{_e(clip_id)}{ext}</a></video>')
      else:
        media = f'<img src="{_e(link)}" alt="clip {_e(clip_id)}">'
      values = clips.get(clip_id)
      metrics = (_table(list(values), [[_fmt(v, 4) for v in values.values()]], label_columns=0)
                 if values else '<p class="muted">no metrics for this clip</p>')
      cards.append(f"<figure>{media}<figcaption><b>{_e(clip_id)}</b></figcaption>{metrics}"
                   "</figure>")
    section.add('<div class="clips">\n' + "\n".join(cards) + "\n</div>\n")
  if clips:
    names = []
    for values in clips.values():
      names += [k for k in values if k not in names]
    rows = [[str(c)] + [_fmt(v.get(n), 4) for n in names] for c, v in sorted(clips.items())]
    without = sorted(set(clips) - set(videos.media))
    extra = f" ({len(without)} without a clip file)" if without else ""
    section.add(f"<details><summary>Per-clip metrics: {len(clips)} clips{_e(extra)}</summary>\n"
                + _table(["clip"] + names, rows, table_id="video-clips") + "</details>\n")


def _poster(video_path: str, out_png: str) -> str | None:
  """First frame of a video as PNG, so the page shows something before (or without) playback."""
  try:
    import imageio.v2 as imageio
    reader = imageio.get_reader(video_path, format="ffmpeg")
    try:
      frame = reader.get_data(0)
    finally:
      reader.close()
    imageio.imwrite(out_png, frame)
    return out_png
  except Exception:  # noqa: BLE001  (no ffmpeg or an unusual codec: the video still plays)
    return None


# ----------------------------------------------------------------------------------------------
# The report.


def machine_info() -> list[tuple[str, str]]:
  """Python, library versions (without importing them) and this machine's CPU count."""
  info = [("python", sys.version.split()[0]), ("platform", platform.platform()),
          ("host", platform.node()), ("CPU count", str(os.cpu_count()))]
  for package in VERSION_PACKAGES:
    try:
      info.append((package, importlib.metadata.version(package)))
    except importlib.metadata.PackageNotFoundError:
      info.append((package, "not installed"))
  return info


def write_report(out_dir: str, train_dirs: Sequence[str] | str = (),
                 eval_results: Sequence[str] | str = (), video_dir: str | None = None,
                 title: str = "LMGenDrive report", extra: Mapping[str, Any] | None = None,
                 max_routes_per_agent: int = 6, max_clips: int = 12,
                 strict: bool = False) -> str:
  """Writes `<out_dir>/report.html` (+ `assets/`) and returns its absolute path.

  Args:
    out_dir: created if needed; report.html and assets/ go here (existing assets are overwritten).
    train_dirs: training work dirs (metrics.jsonl, optional config.json); a dir of such dirs too.
    eval_results: closed-loop results.json files (or dirs holding one), one table row each.
    video_dir: the generation job's output dir (clips + metrics.json).
    title: the page's heading.
    extra: more header lines, e.g. {"preset": "small", "devices": "8 cpu"}.
    max_routes_per_agent: route maps drawn per agent.
    max_clips: clips embedded (and copied into assets/videos).
    strict: raise DataError on an unreadable input instead of noting it in the report.
  """
  if isinstance(train_dirs, (str, os.PathLike)):
    train_dirs = [train_dirs]
  if isinstance(eval_results, (str, os.PathLike)):
    eval_results = [eval_results]
  if max_routes_per_agent < 0 or max_clips < 0:
    raise DataError(f"max_routes_per_agent={max_routes_per_agent}, max_clips={max_clips}: "
                    "give counts >= 0")
  train_dirs = expand_train_dirs([os.fspath(d) for d in train_dirs])
  eval_results = [os.fspath(p) for p in eval_results]
  out_dir = os.path.abspath(out_dir)
  assets = os.path.join(out_dir, "assets")
  os.makedirs(assets, exist_ok=True)
  extra = dict(extra or {})

  presets: dict[str, str] = {}
  sections = [
      _training_section(train_dirs, assets, strict, presets),
      _eval_section(eval_results, assets, strict, max_routes_per_agent),
      _video_section(os.fspath(video_dir) if video_dir else None, assets, strict, max_clips),
  ]
  header = [("date", datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z"))]
  if "preset" in extra:
    header.append(("preset", str(extra.pop("preset"))))
  if presets:
    header.append(("run presets", ", ".join(f"{k}: {v}" for k, v in presets.items())))
  header += [(str(k), str(v)) for k, v in extra.items()]
  header += machine_info()
  problems = [p for s in sections for p in s.problems]

  page = [
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
      '<meta name="viewport" content="width=device-width, initial-scale=1">',
      f"<title>{_e(title)}</title><style>{CSS}</style></head><body>\n",
      f"<header><h1>{_e(title)}</h1>\n<dl class=\"facts\">" + "".join(
          f"<div><dt>{_e(k)}</dt><dd>{_e(v)}</dd></div>" for k, v in header) + "</dl></header>\n",
      '<nav><a href="#training">Training</a><a href="#evaluation">Closed-loop evaluation</a>'
      '<a href="#videos">Generated videos</a></nav>\n<main>\n',
  ]
  if problems:
    page.append(f'<p class="muted">{len(problems)} input(s) missing or unreadable; see the notes '
                "in each section.</p>\n")
  page += [s.html() for s in sections]
  sources = [("training", d) for d in train_dirs] + [("evaluation", resolve_results_path(p))
                                                      for p in eval_results]
  if video_dir:
    sources.append(("videos", os.fspath(video_dir)))
  page.append("</main>\n<footer>Inputs: " + "; ".join(
      f"{_e(k)} <code>{_e(os.path.abspath(v))}</code>" for k, v in sources) +
      "<br>Written by lmgendrive_jax/eval/report.py.</footer>\n</body></html>\n")

  path = os.path.join(out_dir, "report.html")
  partial = path + ".partial"
  with open(partial, "w", encoding="utf-8") as f:
    f.write("".join(page))
  os.replace(partial, path)  # a reader never sees half a report
  return path
