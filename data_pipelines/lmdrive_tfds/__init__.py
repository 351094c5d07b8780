"""TFDS builder for the LMDrive dataset format (raw and preprocessed layouts) -> array_record.

`python -m data_pipelines.build_tfds --data_dir ROOT --out OUT` writes two TFDS datasets that
`tfds.builder_from_directory` (and `lmgendrive_jax.data`) read without TensorFlow:
- `OUT/lmdrive_frames/<VERSION>`: one example per frame (views, measurements, stage-1 labels);
- `OUT/lmdrive_clips/<VERSION>`: one example per instruction clip (text, notices, frame range and
  the record indices of its frames in `lmdrive_frames`, per-frame waypoints, their masks and
  completed flags);
and `OUT/build_report.json` (skipped inputs with reasons, counts, examples written per split).
"""

from data_pipelines.lmdrive_tfds.features import BuildConfig, clip_features, frame_features  # noqa: F401
from data_pipelines.lmdrive_tfds.builder import build  # noqa: F401
