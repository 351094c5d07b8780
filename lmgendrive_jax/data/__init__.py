"""Input pipelines: TFDS array_record (built by `data_pipelines/build_tfds.py`) -> grain -> batches.

Public API (the trainer's):
  cfg = config.data_preset("tiny" | "small" | "paper", stage=1 | 2 | 3); cfg.data_dir = <--out>
  it = pipeline.make_iterator(cfg, stage, split=None, train=True, shard_index=None,
                              shard_count=None, num_epochs=None)
       (= make_frame_iterator for stage 1, make_clip_iterator for stages 2-3)
  batch = it.batch(step)                 # this host's numpy share; consecutive steps only
  arrays = it.global_batch(batch, mesh, rules)   # global jax.Arrays (make_array_from_process_local_data)
  state = it.get_state()                 # JSON: save with Orbax `ocp.args.JsonSave(state)`
  it.set_state(state)                    # exact resume (checks the pipeline config matches)
  pipeline.batch_spec(cfg, stage)        # {key: (global shape, dtype)}
  tokenizer.load_tokenizer(path)         # AutoTokenizer with a DataError for a wrong path
`DataIterator` satisfies `train/loop.py: BatchSource`. Host i of n reads records i::n (defaults:
jax.process_index()/process_count()); `cfg.batch_size` is global, each host yields
batch_size / n examples. Every shape is static (TPU-first); padding is masked.

Batch schema. B = batch (per host), V = len(cfg.views) (front, left, right, rear, focus; focus is
the centre crop of the full-resolution front image, resized), H, W = cfg.view_size, ego frame =
x metres right, y metres forward (`data/geometry.py`).

Stage 1 (frames):
  images: uint8[B, V, H, W, 3]     speed: f32[B] (m/s)          command: int32[B] (RoadOption)
  target_point: f32[B, 2]          waypoints: f32[B, 5, 2] (ego position at +0.5 .. +2.5 s)
  waypoint_mask: bool[B, 5] (False where the route ended before that future point, or where the
    expert drove with steering noise before it: data_pipelines/lmdrive_tfds/reader.py)
  detection: f32[B, bev_rows, bev_cols, 8] (objectness, dx, dy, sin_yaw, cos_yaw, length, width,
    speed; row 0 = farthest ahead, dx along columns + right, dy along rows + backward)
  road_layout: f32[B, bev_rows, bev_cols, 6] per cell the share of each road class
    (`data/topdown.py: ROAD_CLASSES`: off road, lane with / against / across the ego, junction,
    lane marking), from the frame's road map; road_layout_mask: bool[B] (False: no road map)
  traffic_light: int32[B] (1 = red light affecting ego)   stop_sign: int32[B]
  red_light_ahead: int32[B] (1 = the light of the route's next stop line is red, at any distance)
  red_light_zone: int32[B] (1 = that light is red and its stop line at most 8 m ahead, 0 = not,
    -1 = the data does not say)
  stop_sign_zone: int32[B] (1 = in a stop sign's waiting zone, 0 = not, -1 = the data does not say)
  hazard_ahead: int32[B] (1 = a vehicle or pedestrian in the route's corridor close ahead, 0 = not,
    -1 = unknown)
  town_id, frame: int32[B] (provenance)
  with cfg.view_layout_size = (rows, cols) > 0: view_layout: f32[B, V, rows, cols, 7] per view
    cell the share of each road class its pixels' rays meet on the ground (`data/view_layout.py`:
    the road classes + beyond_map), view_layout_mask: bool[B] (False: no road map)
  (The vision model takes a time axis: use images[:, None], labels[:, None].)

Stages 2-3 (clips; T = cfg.window_frames at cfg.stride source frames, F = len(future_offsets)):
  images: uint8[B, T, V, H, W, 3]  (zeros in padded slots)    frame_mask: bool[B, T]
  speed: f32[B, T]                 waypoints: f32[B, T, 5, 2]  completed: int32[B, T]
  waypoint_mask: bool[B, T, 5] (as stage 1's, and False in padded slots)
  instruction_tokens: int32[B, L] (BOS + text, pad id 0)      instruction_mask: bool[B, L]
  notice_tokens: int32[B, Ln] (BOS + text)  notice_mask: bool[B, Ln]
  notice_frame: int32[B] (the notice block goes before this window slot; -1 = no notice), the
    `notice_frame` of `models/sequence.py: build_sequence`
  misleading: bool[B] (completed turns 1 about 1 s after such a clip starts)
  instruction_id: int32[B]
  future_index: int32[B, T, F]: window slot of frame t's future targets for the world generator
    (t + future_offsets[f]); future_mask: bool[B, T, F] (False when it falls outside the valid
    window). Futures are gathered from `images` itself (no duplicated frames):
    for each f, `jnp.take_along_axis(images, future_index[:, :, f, None, None, None, None], axis=1)`.
  with cfg.view_layout_size > 0 (a model with a layout probe): view_layout f32[B, T, V, rows,
    cols, 7] and view_layout_mask bool[B, T], stage 1's labels per frame (False in padded slots).
L = cfg.max_instruction_tokens, Ln = cfg.max_notice_tokens (longer texts are cut, with a warning).
"""
