"""The embedded driving simulator: CARLA's stand-in with LangAuto's rules and LMDrive's data format.

Data flow (host = numpy per route, device = jit/vmap over a batch of worlds):
  town.make_town(seed)                  -> Town: lane graph, junctions, lights, boxes, rasters
  routes.route_set(name) / plan_route   -> RouteSpec / Route (dense points, RoadOptions, nodes)
  scenario.make_episode(town, route)    -> initial world state + scripted events (host)
  world.step(town, state, control)      -> state, info        (device: pure, jit, vmappable)
  render.render_views(town, state, rig) -> uint8[V, H, W, 3]   (device: pure, jit, vmappable)
  instruction_stream / scoring          -> instructions, notices, LangAuto score (host)
  expert.ExpertAgent, pid.Control / WaypointController
  host.run_routes(specs, make_agent, cfg) -> per-route results; host.write_results(path, ...)
  drive (CLI), viewer (replays); data_pipelines/collect.py writes the LMDrive format.
Never imports `lmgendrive_jax.models`.
"""
