"""Every bench script still imports and builds its command line (a refactor that renames what one
imports breaks it silently otherwise: bench/light_heads.py did), and bench/drive_quality.py runs
end to end (its evaluations, pooling, tables, targets and JSON) on short expert drives."""

import glob
import json
import os
import runpy
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPTS = sorted(
    os.path.basename(path) for path in glob.glob(os.path.join(REPO, "bench", "*.py"))
    if 'if __name__ == "__main__":' in open(path).read())


def test_the_scripts_are_found():
  assert {"drive_quality.py", "plan_latency.py", "light_heads.py", "agent_rules.py"} <= set(
      SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_imports_and_prints_its_help(script, monkeypatch, capsys):
  path = os.path.join(REPO, "bench", script)
  monkeypatch.setattr(sys, "argv", [path, "--help"])
  with pytest.raises(SystemExit) as exit_info:
    runpy.run_path(path, run_name="__main__")
  assert exit_info.value.code in (0, None)
  assert "usage:" in capsys.readouterr().out


@pytest.mark.parametrize("script", ["drive_quality.py", "lane_recovery.py"])
def test_a_negative_aim_lookahead_is_refused_by_name(script, monkeypatch, capsys):
  path = os.path.join(REPO, "bench", script)
  monkeypatch.setattr(sys, "argv", [path, "--work_dir", "unused", "--aim_lookahead_m", "-2"])
  with pytest.raises(SystemExit) as exit_info:
    runpy.run_path(path, run_name="__main__")
  assert exit_info.value.code == 2
  assert "--aim_lookahead_m: -2: give 0 (LMDrive's aim) or metres > 0" in capsys.readouterr().err


def test_drive_quality_runs_every_agent_and_writes_its_targets(tmp_path, monkeypatch, capsys):
  """Each of the bench's evaluations is the expert on the first route of tiny_3, 160 ticks, in the
  folder and with the seed the bench chose: the bench's own code runs as it does on a real run."""
  import configs.eval as eval_config
  from bench import drive_quality
  from lmgendrive_jax.eval import closed_loop

  real_evaluate, asked = closed_loop.evaluate, []

  def expert_evaluate(config, **kwargs):
    asked.append((config.agent.kind, int(config.seed), config.out_dir,
                  config.agent.get("light_detector", ""),
                  float(config.agent.get("aim_lookahead_m", 0.0)),
                  float(config.agent.get("forced_forward_seconds", 1.5)),
                  float(config.agent.get("hazard_max_wait", 10.0)),
                  float(config.agent.get("hazard_path_threshold", 0.5))))
    expert = eval_config.get_config("preset=tiny,agent=expert")
    expert.route_set, expert.seed, expert.out_dir = config.route_set, config.seed, config.out_dir
    expert.trace = config.trace
    expert.max_routes, expert.max_ticks = 1, 160
    return real_evaluate(expert, progress=False)

  monkeypatch.setattr(closed_loop, "evaluate", expert_evaluate)
  out = tmp_path / "dq"
  assert drive_quality.main(["--work_dir", str(tmp_path / "run"), "--preset", "tiny",
                             "--route_set", "tiny_3", "--seed", "1,2", "--out", str(out),
                             "--light_detector", "some/light_run", "--stuck_seconds", "8",
                             "--forced_forward_seconds", "0.6", "--aim_lookahead_m", "4",
                             "--hazard_detector", "some/hazard_run", "--hazard_max_wait", "30",
                             "--hazard_path_threshold", "0",
                             "--trace"]) == 0
  # Ours (and blanked) with the light, hazard (held at most 30 s, no path reading) and stuck
  # rules (a 0.6-s push; the defaults are 10 s, 0.5 and 1.5 s) and the expert's aim point, in
  # folders that say so; per seed.
  assert len(asked) == 8
  assert ("lmgendrive", 1, str(
      out / "tiny_3_s1" / "lmgendrive+light_rule+hazard_rule+hwait30+hpath0+stuck+push0.6+aim4"),
          "some/light_run", 4.0, 0.6, 30.0, 0.0) in asked
  assert ("expert", 2, str(out / "tiny_3_s2" / "expert"), "", 0.0, 1.5, 10.0, 0.5) in asked
  result = json.loads((out / "tiny_3_s1-2.json").read_text())
  assert set(result["agents"]) == set(drive_quality.AGENTS) and result["seeds"] == [1, 2]
  ours = result["agents"]["lmgendrive"]
  # One route per seed (max_routes), pooled over the two seeds.
  assert ours["total_routes"] == ours["num_routes"] == 2 and len(ours["seed_ds"]) == 2
  assert ours["mean_ds"] == pytest.approx(sum(ours["seed_ds"]) / 2)
  # Every agent here is the expert: ours reaches its DS but is not above the baselines.
  # (Following depends on the junctions 160 ticks reach: only its presence is checked.)
  following = result["targets"].pop("instruction following >= 90%")
  assert isinstance(following, bool)
  assert result["targets"] == {
      "ours >= 70% of the expert's DS": True, "ours above the lane-keeping baseline": False,
      "ours above ours with the instruction blanked": False}
  printed = capsys.readouterr().out
  assert "DS lost by cause" in printed and "How the routes ended" in printed
  assert "Where the car first left its route" in printed
  assert "Seconds standing per route, by why" in printed  # --trace: every route has one
