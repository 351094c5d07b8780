"""The quickstart's HTML report (eval/report.py, launch/report.py) built from fixture files written
here in the formats of the training log, the closed-loop evaluation and the generation job.

Checks the rendered page with the stdlib HTML parser: the agent table's numbers against the
fixtures' own values (and hand-averaged means where a file has none), the best cell per column,
that every link resolves (also after the folder is moved), that route maps show infraction
markers, and that missing or broken inputs give notes (or a DataError when strict) instead of a
crash.
"""

import html.parser
import json
import os
import platform
import shutil
import sys

import imageio.v2 as imageio
import jax
import numpy as np
import pytest

from lmgendrive_jax.errors import DataError
from lmgendrive_jax.eval import plots
from lmgendrive_jax.eval import report as report_lib

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
from launch import report as report_cli  # noqa: E402

RED_LIGHT_RGB = (0xE3, 0x77, 0xC2)  # plots.INFRACTION_STYLES["red_light"], written out here


class Page(html.parser.HTMLParser):
  """Tables (by id) as lists of rows of (text, classes), every linked file, every note."""

  def __init__(self):
    super().__init__()
    self.tables: dict[str, list[list[tuple[str, set]]]] = {}
    self.links: list[str] = []
    self.notes: list[tuple[set, str]] = []
    self._table_id = None
    self._cell = None
    self._note = None
    self._stack = []
    self.facts: list[tuple[str, str]] = []  # header (key, value); "run presets" split per run
    self._fact = None
    self._fact_parts = []

  def handle_starttag(self, tag, attrs):
    attrs = dict(attrs)
    classes = set((attrs.get("class") or "").split())
    if tag == "table":
      self._stack.append(self._table_id)
      self._table_id = attrs.get("id")
      if self._table_id:
        self.tables[self._table_id] = []
    elif tag == "tr" and self._table_id:
      self.tables[self._table_id].append([])
    elif tag in ("td", "th") and self._table_id:
      self._cell = ["", classes]
    elif tag == "p" and "note" in classes:
      self._note = [classes, ""]
    elif tag in ("dt", "dd"):
      self._fact = [tag, ""]
    for key in ("src", "href", "poster"):
      if key in attrs and not attrs[key].startswith("#"):
        self.links.append(attrs[key])

  def handle_endtag(self, tag):
    if tag == "table":
      self._table_id = self._stack.pop()
    elif tag in ("td", "th") and self._cell is not None:
      self.tables[self._table_id][-1].append((self._cell[0].strip(), self._cell[1]))
      self._cell = None
    elif tag == "p" and self._note is not None:
      self.notes.append((self._note[0], self._note[1]))
      self._note = None
    elif tag in ("dt", "dd") and self._fact is not None:
      self._fact_parts.append(self._fact[1].strip())
      self._fact = None
      if tag == "dd":
        key, value = self._fact_parts
        self._fact_parts = []
        for item in value.split(", ") if key == "run presets" else []:
          self.facts.append(tuple(item.split(": ", 1)))
        self.facts.append((key, value))

  def handle_data(self, data):
    if self._cell is not None:
      self._cell[0] += data
    if self._note is not None:
      self._note[1] += data
    if self._fact is not None:
      self._fact[1] += data


def parse(path):
  page = Page()
  with open(path, encoding="utf-8") as f:
    page.feed(f.read())
  return page


def write_training_run(work_dir, steps=10, resumed=True):
  """Falling losses of two heads, lr warmup, throughput; eval every 5 steps; a resume that
  re-logs steps 6..7 with new values (the later ones must win)."""
  os.makedirs(work_dir, exist_ok=True)
  lines = []
  for step in range(1, steps + 1):
    lines.append({"step": step, "split": "train", "loss": 3.0 * 0.8 ** step,
                  "waypoint_loss": 2.0 * 0.8 ** step, "flow_loss": 1.0 * 0.9 ** step,
                  "lr": 1e-3 * min(1.0, step / 5), "steps_per_s": 4.0, "examples_per_s": 64.0})
    if step % 5 == 0:
      lines.append({"step": step, "split": "eval", "loss": 3.3 * 0.8 ** step})
  if resumed:
    for step in (6, 7):
      lines.append({"step": step, "split": "train", "loss": 0.5, "waypoint_loss": 0.25,
                    "flow_loss": 0.25, "lr": 1e-3, "steps_per_s": 3.0, "examples_per_s": 48.0})
  with open(os.path.join(work_dir, "metrics.jsonl"), "w") as f:
    f.write("".join(json.dumps(line) + "\n" for line in lines))
  with open(os.path.join(work_dir, "config.json"), "w") as f:
    json.dump({"stage": "stage2", "preset": "tiny"}, f)


def route(route_id, ds, rc, infractions, ending, offset=0.0, town=None, junctions=None,
          first_exit=None):
  xs = np.linspace(0.0, 60.0, 31)
  record = {"route_id": route_id, "ds": ds, "rc": rc, "is": ds / rc if rc else 0.0,
            "infractions": infractions, "ending": ending,
            "route_xy": [[x, 0.0] for x in xs],
            "trajectory_xy": [[x, offset * np.sin(x / 10.0)] for x in xs]}
  if town is not None:
    record["town"] = town
  if first_exit is not None:
    record["first_exit"] = first_exit
  if junctions is not None:  # (entered, followed, missed), as sim/following.py records them
    (record["junctions_entered"], record["junctions_followed"],
     record["junctions_missed"]) = junctions
  return record


def write_results(path, agent, routes, means=True):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  data = {"agent": agent, "route_set": "langauto_tiny", "routes": routes}
  if means:
    for key in ("ds", "rc", "is"):
      data[f"mean_{key}"] = float(np.mean([r[key] for r in routes]))
  with open(path, "w") as f:
    json.dump(data, f)
  return data


def write_videos(video_dir):
  os.makedirs(video_dir, exist_ok=True)
  frames = np.zeros((4, 64, 128, 3), np.uint8)
  for t in range(4):
    frames[t, :, : 64] = 40 * t  # "generated" half
    frames[t, :, 64:] = 200  # "ground truth" half
  imageio.mimwrite(os.path.join(video_dir, "clip_000.mp4"), frames, fps=4, macro_block_size=16)
  imageio.imwrite(os.path.join(video_dir, "clip_001.gif"), frames[0])
  metrics = {"clips": {"clip_000": {"psnr": 21.5, "ssim": 0.71},
                       "clip_001": {"psnr": 18.5, "ssim": 0.65},
                       "clip_002": {"psnr": 20.0, "ssim": 0.70}},
             "mean": {"psnr": 20.0, "ssim": 0.6867},
             "horizons": {"0.5s": {"psnr": 24.0, "copy_last_psnr": 22.0},
                          "1s": {"psnr": 20.0, "copy_last_psnr": 19.0}}}
  with open(os.path.join(video_dir, "metrics.json"), "w") as f:
    json.dump(metrics, f)


@pytest.fixture(scope="module")
def fixture_inputs(tmp_path_factory):
  root = tmp_path_factory.mktemp("report_inputs")
  write_training_run(str(root / "run" / "stage2"))
  ours = write_results(str(root / "eval" / "ours" / "results.json"), "ours", [
      route(0, 30.0, 50.0, [{"type": "collision_vehicle", "time": 3.0, "position": [20.0, 0.0]},
                            {"type": "red_light", "time": 5.0, "position": [40.0, 1.0]}],
            "route_deviation", offset=4.0, town="Town01", junctions=(3, 1, 1),
            first_exit={"t": 4.0, "position": [16.0, 3.0], "route_s": 16.0, "place": "lane",
                        "drift_m": 12.0, "max_off_m": 4.0}),
      route(1, 50.0, 100.0, [{"type": "collision_vehicle", "time": 8.0, "position": [10.0, 0.0]},
                             {"type": "outside_route_lanes", "time": 9.0, "percentage": 3.5}],
            "completed", offset=1.0, town="Town01", junctions=(1, 1, 0)),
  ])
  with open(root / "eval" / "ours" / "town_map.json", "w") as f:
    json.dump({"lanes": [[[-10.0, 3.5], [80.0, 3.5]], [[-10.0, -3.5], [80.0, -3.5]]]}, f)
  expert = write_results(str(root / "eval" / "expert" / "results.json"), "expert", [
      route(0, 90.0, 100.0, [{"type": "red_light", "time": 2.0, "position": [30.0, 0.0]}],
            "completed", junctions=(2, 2, 0)),
      route(1, 100.0, 100.0, [], "completed", junctions=(1, 1, 0)),
  ])
  # A baseline whose file has no means: the report averages its routes.
  baseline_routes = [route(0, 10.0, 20.0, [], "agent_blocked"),
                     route(1, 25.0, 40.0, [], "timeout"), route(2, 40.0, 40.0, [], "timeout")]
  write_results(str(root / "eval" / "baseline" / "results.json"), "lane_keeping",
                baseline_routes, means=False)
  write_videos(str(root / "generate"))
  return {"root": root, "ours": ours, "expert": expert, "baseline_routes": baseline_routes}


@pytest.fixture(scope="module")
def rendered(fixture_inputs, tmp_path_factory):
  root = fixture_inputs["root"]
  out = tmp_path_factory.mktemp("report_out")
  path = report_lib.write_report(
      str(out), [str(root / "run")],
      [str(root / "eval" / a / "results.json") for a in ("ours", "expert")] +
      [str(root / "eval" / "baseline")],
      str(root / "generate"), title="test report", extra={"preset": "tiny", "devices": "8 cpu"})
  return path, parse(path)


def _row(table, label):
  rows = [r for r in table if r and r[0][0] == label]
  assert len(rows) == 1, (label, table)
  return rows[0]


def test_agent_table_numbers_and_best(fixture_inputs, rendered):
  _, page = rendered
  table = page.tables["agent-metrics"]
  header = [text for text, _ in table[0]]
  assert header[:7] == ["agent", "route set", "routes", "mean DS", "mean RC", "mean IS",
                        "completed"]
  ds, rc, is_, done = (header.index(h) for h in ("mean DS", "mean RC", "mean IS", "completed"))
  ours, expert, base = (_row(table, a) for a in ("ours", "expert", "lane_keeping"))
  assert float(ours[ds][0]) == pytest.approx(40.0)  # (30 + 50) / 2
  assert float(expert[ds][0]) == pytest.approx(95.0)
  # The baseline's file has no means: averaged by hand from its routes.
  assert float(base[ds][0]) == pytest.approx((10 + 25 + 40) / 3, abs=0.005)
  assert float(base[rc][0]) == pytest.approx((20 + 40 + 40) / 3, abs=0.005)
  expected_is = np.mean([r["is"] for r in fixture_inputs["baseline_routes"]])
  assert float(base[is_][0]) == pytest.approx(expected_is, abs=0.0005)
  assert (ours[done][0], expert[done][0], base[done][0]) == ("1/2", "2/2", "0/3")
  # Highest DS/RC/IS/completions and fewest collisions are the expert's; red lights: the
  # lane-keeper ran none.
  for column in (ds, rc, is_, done):
    assert "best" in expert[column][1] and "best" not in ours[column][1]
    assert "best" not in base[column][1]
  vehicle, red = header.index("collision_vehicle"), header.index("red_light")
  assert [r[vehicle][0] for r in (ours, expert, base)] == ["2", "0", "0"]
  assert ["best" in r[vehicle][1] for r in (ours, expert, base)] == [False, True, True]
  assert [r[red][0] for r in (ours, expert, base)] == ["1", "1", "0"]
  assert ["best" in r[red][1] for r in (ours, expert, base)] == [False, False, True]
  assert _row(table, "ours")[header.index("outside_route_lanes")][0] == "1"
  # Junctions followed of those decided: ours 2 of 3 (one more entered but undecided), the
  # expert all 3 (best), the baseline's file has none.
  followed = header.index("junctions followed")
  assert [r[followed][0] for r in (ours, expert, base)] == ["67% (2/3)", "100% (3/3)", "n/a"]
  assert ["best" in r[followed][1] for r in (ours, expert, base)] == [False, True, False]


def test_links_resolve_and_survive_a_move(rendered, tmp_path):
  path, page = rendered
  links = [link for link in page.links]
  media = sorted({link for link in links if link.endswith((".png", ".mp4", ".gif"))})
  # 1 training figure, 2 + 2 + 3 route maps, 2 clips and the MP4's poster.
  assert len([m for m in media if "/train_" in m]) == 1
  assert len([m for m in media if "/route_" in m]) == 7
  assert len([m for m in media if "/videos/" in m]) == 3
  moved = tmp_path / "moved"
  shutil.copytree(os.path.dirname(path), moved)
  for link in links:
    assert not os.path.isabs(link) and "://" not in link, link
    assert os.path.isfile(moved / link), link
  # The copied MP4 is a real video: its frames decode with the fixture's pixel values.
  clip = next(m for m in media if m.endswith(".mp4"))
  frames = imageio.mimread(moved / clip, format="ffmpeg")
  assert len(frames) == 4
  assert abs(int(frames[0][32, 100, 0]) - 200) <= 6


def test_route_map_draws_infractions(rendered):
  path, page = rendered
  route_pngs = [link for link in page.links if "/route_" in link]
  ours_with_red_light = next(p for p in route_pngs if "ours" in p and p.endswith("_0.png"))
  expert_clean = next(p for p in route_pngs if "expert" in p and p.endswith("_1.png"))

  def red_light_pixels(png):
    image = imageio.imread(os.path.join(os.path.dirname(path), png))[..., :3].astype(int)
    return int((np.abs(image - np.array(RED_LIGHT_RGB)).sum(-1) < 12).sum())

  assert red_light_pixels(ours_with_red_light) > 20
  assert red_light_pixels(expert_clean) == 0
  # Where ours first left its route: its own marker, and the caption says where and how.
  exit_rgb = tuple(int(plots.INFRACTION_STYLES["first_exit"][1][i:i + 2], 16) for i in (1, 3, 5))

  def exit_pixels(png):
    image = imageio.imread(os.path.join(os.path.dirname(path), png))[..., :3].astype(int)
    return int((np.abs(image - np.array(exit_rgb)).sum(-1) < 12).sum())
  assert exit_pixels(ours_with_red_light) > 20 and exit_pixels(expert_clean) == 0
  assert "left its route at 4.0 s (lane, drifting 12.0 m)" in open(path).read()


def test_video_section_and_training_summary(rendered):
  path, page = rendered
  mean = page.tables["video-mean"]
  assert [t for t, _ in mean[0]] == ["clips", "psnr", "ssim"]
  assert [t for t, _ in mean[1]] == ["3", "20.0000", "0.6867"]
  horizons = page.tables["video-horizons"]
  assert [t for t, _ in horizons[1]] == ["0.5s", "24.0000", "22.0000"]
  clips = page.tables["video-clips"]
  assert [t for t, _ in clips[3]] == ["clip_002", "20.0000", "0.7000"]
  with open(path, encoding="utf-8") as f:
    text = f.read()
  facts = dict(page.facts)
  assert facts["preset"] == "tiny" and facts["stage2"] == "tiny" and facts["devices"] == "8 cpu"
  assert facts["CPU count"] == str(os.cpu_count())
  assert facts["jax"] == jax.__version__ and facts["python"] == platform.python_version()
  assert "stage=stage2, preset=tiny" in text
  assert not [n for n in page.notes], page.notes  # every input was there


def test_training_run_last_write_wins(fixture_inputs):
  run = report_lib.read_training_run(str(fixture_inputs["root"] / "run" / "stage2"))
  steps, loss = run.series[("train", "loss")]
  assert steps.tolist() == list(range(1, 11))
  expected = [3.0 * 0.8 ** s for s in range(1, 11)]
  expected[5] = expected[6] = 0.5  # steps 6 and 7 re-logged after the resume
  np.testing.assert_allclose(loss, expected)
  assert run.series[("eval", "loss")][0].tolist() == [5, 10]
  assert run.config == {"stage": "stage2", "preset": "tiny"}


def test_stage_metric_names_from_the_real_log(tmp_path):
  """Written by the training loop's own MetricsLog with stage-1's names: the heads (no "loss" in
  their names) are in the loss table; sub-terms, grad_norm and the finite flag are not."""
  from lmgendrive_jax.train.metrics_log import MetricsLog
  work_dir = tmp_path / "stage1"
  log = MetricsLog(str(work_dir), total_steps=4)
  for step in (2, 4):
    log.scalars(step, {"detection": 4.0 / step, "waypoints": 2.0 / step, "traffic_light": 0.7,
                       "detection/box": 1.0 / step, "detection/heatmap": 3.0 / step,
                       "total": 6.7 / step, "loss": 6.7 / step, "grad_norm": 1.5,
                       "finite": 1.0, "skipped": 0.0, "steps_per_s": 2.0, "lr": 1e-4})
  log.scalars(4, {"loss": 1.9}, prefix="eval")
  log.close()
  # No config.json: the run's config comes from the newest checkpoint's meta item.
  from lmgendrive_jax.train.checkpoints import Checkpointer
  checkpointer = Checkpointer(str(work_dir), async_save=False)
  for step in (2, 4):
    checkpointer.save(step, {"w": np.zeros(2, np.float32)}, {},
                      {"config": {"stage": "stage1", "preset": f"preset_at_{step}"}})
  checkpointer.close()
  page = parse(report_lib.write_report(str(tmp_path / "out"), [str(work_dir)], [], None))
  assert ("stage1", "preset_at_4") in page.facts
  rows = [[text for text, _ in row] for row in page.tables["train-losses-0"][1:]]
  assert [(r[0], r[1]) for r in rows] == [("loss", "train"), ("loss", "eval"), ("total", "train"),
                                          ("detection", "train"), ("traffic_light", "train"),
                                          ("waypoints", "train")]
  assert rows[3][3:6] == ["2.0000", "4", "1.0000"]  # detection: first 4/2, last 4/4 at step 4
  assert rows[1][2:] == ["4", "1.9000", "4", "1.9000", "1.9000 @ 4"]
  kinds = {m: plots.metric_kind(m) for m in ("detection/box", "grad_norm", "finite", "val_acc",
                                             "accuracy", "psnr", "flow", "waypoint_l1", "lr",
                                             "tokens", "num_boxes", "box_loss")}
  assert kinds == {"detection/box": "term", "grad_norm": "bookkeeping", "finite": "hidden",
                   "val_acc": "score", "accuracy": "score", "psnr": "score", "flow": "head",
                   "waypoint_l1": "head", "lr": "lr", "tokens": "hidden", "num_boxes": "hidden",
                   "box_loss": "head"}


def test_missing_inputs_give_notes(tmp_path):
  video_dir = tmp_path / "generate"
  video_dir.mkdir()  # exists, but the job wrote no clips and no metrics.json yet
  path = report_lib.write_report(str(tmp_path / "out"), [str(tmp_path / "no_run")],
                                 [str(tmp_path / "no_eval" / "results.json")], str(video_dir))
  page = parse(path)
  missing = [text for classes, text in page.notes if "missing" in classes]
  assert any("no_run" in t and "metrics.jsonl" in t for t in missing)
  assert any("no_eval" in t and "results.json" in t for t in missing)
  assert any("metrics.json" in t for t in missing)
  assert any("no clip files" in t for t in missing)
  assert "agent-metrics" not in page.tables
  # Nothing given at all still renders.
  page = parse(report_lib.write_report(str(tmp_path / "empty"), [], [], None))
  assert len([c for c, _ in page.notes if "missing" in c]) == 3


def test_broken_inputs_are_named_not_hidden(fixture_inputs, tmp_path):
  root = fixture_inputs["root"]
  broken = tmp_path / "broken" / "results.json"
  broken.parent.mkdir()
  broken.write_text('{"agent": "ours", "routes": [{"ds": 1.0, "rc": "lots"')
  bad_route = tmp_path / "bad_route" / "results.json"
  write_results(str(bad_route), "bad", [route(0, 1.0, 2.0, [], "timeout")])
  data = json.loads(bad_route.read_text())
  data["routes"][0]["rc"] = "lots"
  bad_route.write_text(json.dumps(data))
  killed = tmp_path / "killed"
  write_training_run(str(killed), resumed=False)
  with open(killed / "metrics.jsonl", "a") as f:
    f.write('{"step": 11, "split": "tra')  # the writer died mid-line
  path = report_lib.write_report(
      str(tmp_path / "out"), [str(killed)],
      [str(broken), str(bad_route), str(root / "eval" / "expert" / "results.json")], None)
  page = parse(path)
  errors = [text for classes, text in page.notes if "error" in classes]
  assert any(str(broken) in t and "not valid JSON" in t for t in errors)
  assert any("routes[0]" in t and "rc='lots'" in t for t in errors)
  assert [r[0][0] for r in page.tables["agent-metrics"][1:]] == ["expert"]  # the good file stays
  with open(path, encoding="utf-8") as f:
    assert "skipped the cut-off last line 13" in f.read()
  with pytest.raises(DataError, match="not valid JSON"):
    report_lib.write_report(str(tmp_path / "strict"), [], [str(broken)], None, strict=True)
  corrupt = tmp_path / "corrupt"
  write_training_run(str(corrupt), resumed=False)
  lines = (corrupt / "metrics.jsonl").read_text().split("\n")
  lines[2] = "not json"
  (corrupt / "metrics.jsonl").write_text("\n".join(lines))
  with pytest.raises(DataError, match="line 3 is not JSON"):
    report_lib.read_training_run(str(corrupt))


def test_cli_prints_the_path(fixture_inputs, tmp_path, capsys):
  root = fixture_inputs["root"]
  out = tmp_path / "cli"
  code = report_cli.main(["--out", str(out), "--train_dir", str(root / "run" / "stage2"),
                          "--eval_results", str(root / "eval" / "ours" / "results.json"),
                          "--eval_results", str(root / "eval" / "expert"),
                          "--extra", "preset=tiny", "--max_routes", "1", "--max_clips", "0"])
  assert code == 0
  printed = capsys.readouterr().out.strip()
  assert printed == f"[report] {out / 'report.html'}"
  page = parse(out / "report.html")
  assert len([link for link in page.links if "/route_" in link]) == 2  # one per agent
  assert not [link for link in page.links if "/videos/" in link]
  assert [r[0][0] for r in page.tables["agent-metrics"][1:]] == ["ours", "expert"]
