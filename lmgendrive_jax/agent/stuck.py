"""The agent's stuck rule: after standing too long, drive forward for a moment.

Behaviour cloning learns that a standing car stays standing (the expert stands in ~27% of its
frames, and pulls away in ~1.5%): on the embedded default, once our planner has stopped (for a
light, by the light rule, or for a car ahead) it often asks ~0 m/s long after the reason has gone,
until the route times out. InterFuser's controller has the same rule: after 60 s standing (1200
ticks) it forces throttle 0.8 for 12 ticks; LangAuto's short routes time out after 0.8 s per
route metre, so here the wait is the agent option `stuck_seconds` (0 = off) and the push lasts
`forced_forward_seconds` at throttle `FORCED_THROTTLE`. Measured with the light rule on the
bigger run's planner (docs/experiments.md): 8 s gave 51.5 DS vs 48.9 without it and 54.6 with
neither; the pushes restart some cars and drive others into the car they stood behind. With the
standing test on integrated distance (StuckRule says why) and the light rule: 63.9 vs 64.7 on
the 1280-step planner (paired -0.8 +- 0.7), 62.0 vs 61.8 on the DAgger-trained one. The push's
length decides whether the planner drives on: pushed 0.6 s a car reaches ~1.8 m/s and our planner,
which reads the ego speed, brakes again; pushed 1.5 s it reaches ~3 m/s and the planner asks
~4 m/s (the big preset's planner with the light and stop-sign rules: 64.3 vs 58.0 DS on 40
routes, docs/experiments.md 16th), so the agent's default push is 1.5 s.

  rule = StuckRule(stuck_seconds=8.0, forced_forward_seconds=1.5)
  throttle = rule.forced_throttle(speed, t, may_push=not braking_for_a_light)  # None: keep
"""

from __future__ import annotations

STANDING_MPS = 0.2
FORCED_THROTTLE = 0.8


class StuckRule:
  """See the module docstring; `t` is simulation time in seconds.

  Standing means moving less than STANDING_MPS x stuck_seconds (1.6 m at 8 s) since the wait
  started (the distance the speed readings integrate to); the wait starts again whenever the car
  has moved that far. Not every reading under STANDING_MPS, as before: a planner asking ~0.1 m/s
  makes LMDrive's PID alternate throttle and brake, and the car inches forward in jerks whose
  speed passes 0.2 m/s now and then, so it never counted as standing and was never pushed (the
  DAgger-trained planner of docs/experiments.md, 6th session: routes timing out after 2-18 m in
  60-100 s of that).
  """

  def __init__(self, stuck_seconds: float, forced_forward_seconds: float):
    self.stuck_seconds = float(stuck_seconds)
    self.forced_forward_seconds = float(forced_forward_seconds)
    self.standing_since: float | None = None
    self.moved_m = 0.0  # integrated since standing_since
    self.last_t: float | None = None
    self.forcing_until = -float("inf")
    self.pushes = 0

  def forced_throttle(self, speed: float, t: float, may_push: bool = True) -> float | None:
    """The throttle to apply instead of the controller's, or None to keep the controller's.

    The standing time counts while another rule holds the car (`may_push` False: the light
    rule braking); the push waits until that rule lets go, then comes at once if the car has
    stood `stuck_seconds` by then: a car the light rule held through a red, or through a false
    alarm until its wait limit, is pushed off when the planner would go on standing.
    """
    if self.stuck_seconds <= 0:
      return None
    dt = 0.0 if self.last_t is None else max(float(t) - self.last_t, 0.0)
    self.last_t = float(t)
    if t < self.forcing_until:
      return FORCED_THROTTLE
    if self.standing_since is None:
      self.standing_since, self.moved_m = t, 0.0
    else:
      self.moved_m += max(float(speed), 0.0) * dt
    if self.moved_m >= STANDING_MPS * self.stuck_seconds:
      self.standing_since, self.moved_m = t, 0.0  # it drove: the wait starts again from here
      return None
    if may_push and t - self.standing_since >= self.stuck_seconds:
      self.standing_since, self.forcing_until = None, t + self.forced_forward_seconds
      self.pushes += 1
      return FORCED_THROTTLE
    return None
