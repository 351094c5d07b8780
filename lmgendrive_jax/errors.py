"""Exception types of lmgendrive-jax, one module for all of them.

Every message names the thing at fault (a path, a config key, a shape, a value) and says what
would fix it. Callers catch the narrow type; `LMGenDriveError` catches them all.
"""


class LMGenDriveError(Exception):
  """Base of every error this package raises on purpose."""


class ConfigError(LMGenDriveError, ValueError):
  """A config key is unknown, missing, or its value is impossible (e.g. a mesh vs device count)."""


class DataError(LMGenDriveError, ValueError):
  """A dataset file or record is missing, corrupt, or has the wrong shape or values."""


class CheckpointError(LMGenDriveError, ValueError):
  """A checkpoint is missing, corrupt, or does not match the model (a missing or mis-shaped param)."""


class ConversionError(LMGenDriveError, ValueError):
  """Importing or exporting foreign weights (Hugging Face, timm, diffusers) failed."""


class SimulatorError(LMGenDriveError, ValueError):
  """The embedded simulator got an impossible town, route, actor or control."""
