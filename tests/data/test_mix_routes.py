"""Mixing collections for a DAgger round (data_pipelines/mix_routes.py): finished routes are
hard-linked into one raw folder with its index rebuilt, reruns are no-ops, unfinished routes stay
out, and a route name held by two sources is refused by name."""

import json
import os

import pytest

from data_pipelines import collect, mix_routes


def write_route(root, name, n_frames=3, done=True):
  """A route folder as collect.py writes it (the files mix_routes and write_index read)."""
  route = os.path.join(root, name)
  os.makedirs(os.path.join(route, "measurements"))
  for frame in range(n_frames):
    with open(os.path.join(route, "measurements", f"{frame:04d}.json"), "w") as f:
      json.dump({"frame": frame, "route": name}, f)
  clip = dict(start_frame=0, end_frame=n_frames - 1, instruction="Go straight.",
              instruction_id=1, instruction_args=[], bad_case=False, misleading=False)
  with open(os.path.join(route, collect.META), "w") as f:
    json.dump(dict(n_frames=n_frames, clips=[clip], town_id=1, weather_id=0, notices=[]), f)
  if done:
    open(os.path.join(route, collect.DONE), "w").close()
  return route


@pytest.fixture
def sources(tmp_path):
  expert, learner = str(tmp_path / "expert"), str(tmp_path / "learner")
  write_route(expert, "routes_town01_tiny_w00_000002", n_frames=4)
  write_route(expert, "routes_town01_tiny_w00_000001", n_frames=3)
  write_route(learner, "routes_town01_tiny_w00_000801", n_frames=5)
  write_route(learner, "routes_town01_tiny_w00_000802", done=False)  # interrupted
  return expert, learner


def test_routes_are_linked_and_indexed_in_name_order(tmp_path, sources):
  out = str(tmp_path / "mix")
  report = mix_routes.main(["--out", out, *reversed(sources)])
  assert report["routes"] == 3 and report["linked"] == 3
  assert report["per_source"] == {sources[1]: 1, sources[0]: 2}
  index = [line.split() for line in open(os.path.join(out, "dataset_index.txt"))]
  assert index == [["routes_town01_tiny_w00_000001", "3"], ["routes_town01_tiny_w00_000002", "4"],
                   ["routes_town01_tiny_w00_000801", "5"]]
  clips = [json.loads(line) for line in open(os.path.join(out, "navigation_instruction_list.txt"))]
  assert [c["route_path"] for c in clips] == [row[0] for row in index]
  src = os.path.join(sources[1], "routes_town01_tiny_w00_000801", "measurements", "0004.json")
  dst = os.path.join(out, "routes_town01_tiny_w00_000801", "measurements", "0004.json")
  assert os.path.samefile(src, dst)  # a hard link: no copy
  assert not os.path.exists(os.path.join(out, "routes_town01_tiny_w00_000802"))

  again = mix_routes.mix(out, list(sources))
  assert again["routes"] == 3 and again["linked"] == 0


def test_an_interrupted_link_is_finished_by_the_rerun(tmp_path, sources):
  out = str(tmp_path / "mix")
  name = "routes_town01_tiny_w00_000002"
  partial = os.path.join(out, name, "measurements")
  os.makedirs(partial)
  os.link(os.path.join(sources[0], name, "measurements", "0000.json"),
          os.path.join(partial, "0000.json"))
  assert collect.finished_routes(out) == []  # no marker: not a route yet
  mix_routes.mix(out, [sources[0]])
  assert len(os.listdir(partial)) == 4
  assert os.path.exists(os.path.join(out, name, collect.DONE))


def test_a_route_in_two_sources_is_refused_by_name(tmp_path, sources):
  other = str(tmp_path / "other")
  write_route(other, "routes_town01_tiny_w00_000001")
  with pytest.raises(FileExistsError, match="routes_town01_tiny_w00_000001.*expert.*other"):
    mix_routes.mix(str(tmp_path / "mix"), [sources[0], other])


def test_a_different_file_already_in_the_output_is_refused(tmp_path, sources):
  out = str(tmp_path / "mix")
  write_route(out, "routes_town01_tiny_w00_000001")  # same name, its own files
  with pytest.raises(FileExistsError, match="mix/routes_town01_tiny_w00_000001/.* exists and is not"):
    mix_routes.mix(out, [sources[0]])


def test_a_missing_source_is_named(tmp_path):
  with pytest.raises(FileNotFoundError, match="nowhere is not a folder"):
    mix_routes.mix(str(tmp_path / "mix"), [str(tmp_path / "nowhere")])
