"""Closed-loop evaluation: an evaluation interrupted after its first route and rerun gives the
same results.json as an uninterrupted one (all but timing); the file has what report.py reads."""

import json

import pytest

from lmgendrive_jax.agent import lmgendrive_agent
from lmgendrive_jax.errors import ConfigError
from lmgendrive_jax.eval import closed_loop, report


class Interrupted(Exception):
  pass


def _config(out_dir):
  import configs.eval as eval_config
  config = eval_config.get_config("preset=tiny,agent=expert")
  config.route_set, config.batch_size, config.max_ticks = "tiny_3", 2, 160
  config.out_dir = str(out_dir)
  return config


def test_interrupted_evaluation_resumes_to_the_uninterrupted_result(tmp_path):
  whole = closed_loop.evaluate(_config(tmp_path / "whole"), progress=False)
  assert whole["complete"] and whole["num_routes"] == 3

  def stop_after_first(summary):
    raise Interrupted
  with pytest.raises(Interrupted):
    closed_loop.evaluate(_config(tmp_path / "cut"), progress=False, after_write=stop_after_first)
  partial = json.loads((tmp_path / "cut" / "results.json").read_text())
  assert partial["num_routes"] == 1 and not partial["complete"]
  resumed = closed_loop.evaluate(_config(tmp_path / "cut"), progress=False)
  on_disk = json.loads((tmp_path / "cut" / "results.json").read_text())
  assert closed_loop.strip_timing(on_disk) == closed_loop.strip_timing(
      json.loads((tmp_path / "whole" / "results.json").read_text()))
  assert closed_loop.strip_timing(resumed) == closed_loop.strip_timing(whole)
  route = on_disk["routes"][0]
  assert set(route) >= {"route_id", "town", "ds", "rc", "is", "infractions", "ending",
                        "route_xy", "trajectory_xy"}
  assert len(route["trajectory_xy"]) >= 160 // 10
  assert "trace" not in route  # only when asked for (config.trace)
  assert "first_exit" in route and all(r["first_exit"] is None for r in on_disk["routes"])
  # The report reads it and finds the town maps.
  results = report.read_eval_results(str(tmp_path / "cut" / "results.json"))
  assert len(results.routes) == 3
  assert (tmp_path / "cut" / f"town_map_{route['town']}.json").exists()


def test_trace_records_speed_and_control_at_each_trajectory_point(tmp_path):
  config = _config(tmp_path)
  config.max_routes, config.trace = 1, True
  route = closed_loop.evaluate(config, progress=False)["routes"][0]
  trace = route["trace"]
  assert len(trace) == len(route["trajectory_xy"]) >= 160 // 10
  assert [p["t"] for p in trace[:3]] == pytest.approx([0.0, 0.5, 1.0])
  assert all(set(p) == {"t", "speed", "throttle", "steer", "brake"} for p in trace)  # expert
  assert max(p["speed"] for p in trace) > 1.0 and max(p["throttle"] for p in trace) > 0.0
  assert all(0.0 <= p["throttle"] <= 1.0 and 0.0 <= p["brake"] <= 1.0 for p in trace)


def test_out_dir_of_another_evaluation_is_an_error(tmp_path):
  config = _config(tmp_path)
  config.max_routes = 1
  closed_loop.evaluate(config, progress=False)
  config.route_set = "tiny_2"
  with pytest.raises(Exception, match="another evaluation"):
    closed_loop.evaluate(config, progress=False)


def test_our_agent_with_other_options_is_another_evaluation(tmp_path):
  """Our agent's results are resumed only under the same agent options: the scorer cannot tell
  routes driven with, say, another `max_frames` from the earlier ones."""
  config = _config(tmp_path)
  config.agent.kind, config.agent.work_dir = "lmgendrive", str(tmp_path / "run")
  path = str(tmp_path / "results.json")
  closed_loop.write_json_atomic(path, {**closed_loop.identity(config), "routes": []})
  assert closed_loop.read_finished(path, closed_loop.identity(config)) == {}
  config.agent.max_frames = 3
  with pytest.raises(ConfigError, match="another evaluation"):
    closed_loop.read_finished(path, closed_loop.identity(config))
  # Results that spell every option out (as written before) resume when those are the defaults.
  config.agent.max_frames = 0
  spelt_out = {**closed_loop.identity(config), "routes": [{"route_id": "tiny_00"}]}
  spelt_out["agent_options"] = {k: v for k, v in lmgendrive_agent.AGENT_DEFAULTS.items()
                                if k not in ("work_dir", "light_detector")}
  closed_loop.write_json_atomic(path, spelt_out)
  assert list(closed_loop.read_finished(path, closed_loop.identity(config))) == ["tiny_00"]
