"""``facecli bench``: the real ``facecli video`` pipeline on one clip, timed stage by stage.

The run is the engine's own (:func:`facecli.pipeline.engine.run`, the code path of
``facecli video``, writing Parquet into a temporary folder) with a
:class:`facecli.timing.StageTimer` active: the engine and the model sets mark their stages
(decode in its own thread, upload, detect, follow, analyze and its parts, track, rows, write,
output file) and every network's forward pass is timed through a forward hook. One untimed
warm-up run on the first batch comes first (lazy initialisation, kernel selection).

With ``--random-weights`` (feat-v2 weights in the published layouts, the detector tamed on the
clip's frames) the detection threshold is raised to find about one face per frame at the run's
detect size (:func:`tune_detection_threshold`): random detectors find more faces on smaller
frames, real ones find the faces that are there.

Reported: per stage ms/frame and share of the run's wall time (stages nest; decoding runs
beside the main thread, so its share is of the same wall time but overlaps it), frames/s,
faces/s, the sum of the network forward passes against the wall time (what the pipeline adds
around the models) and peak memory (the process's peak RSS; on CUDA also the device's peak).
"""

from __future__ import annotations

import json
import resource
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from facecli.config import ConfigError, RunConfig


class BenchError(Exception):
    """The benchmark cannot run; one line for the user."""


@dataclass
class StageLine:
    path: str  # "analyze/multitask": nested stages joined by "/"
    thread: str  # "main" or the worker thread ("facecli-decode")
    seconds: float
    calls: int
    forward: bool  # a network's forward pass
    ms_per_frame: float
    share: float  # of the run's wall time


@dataclass
class BenchReport:
    clip: str
    width: int
    height: int
    model_set: str
    device: str
    precision: str
    torch_threads: int
    batch_size: int
    detect_every: int
    detect_size: str
    frames: int
    faces: int
    seconds: float  # wall time of the timed run
    fps: float
    faces_per_s: float
    forward_ms_per_frame: float  # sum of every network forward pass in the main thread
    overhead: float  # (wall - forward passes) / wall
    peak_rss_mb: float
    peak_device_mb: float | None
    random_weights: bool
    detection_threshold: float
    stages: list[StageLine] = field(default_factory=list)
    max_faces: int | None = None
    frames_detected: int | None = None  # frames the detector ran on (the rest followed or skipped)

    def table(self) -> str:
        lines = [
            f"clip {self.clip} ({self.width}x{self.height}): {self.frames} frames, "
            f"{self.faces / max(self.frames, 1):.2f} faces/frame",
            f"model set {self.model_set}{' (random weights)' if self.random_weights else ''} on {self.device}, "
            f"detection threshold {self.detection_threshold:.4g}"
            f"{' (tuned for one face per frame)' if self.random_weights else ''}, "
            f"{self.precision}, batch {self.batch_size}, detect every {self.detect_every}, detect size "
            f"{self.detect_size}, {'every face' if self.max_faces is None else f'max faces {self.max_faces}'}, "
            f"torch threads {self.torch_threads}",
            f"{'stage':<34}{'ms/frame':>10}{'share':>8}{'calls':>7}",
        ]
        main = [s for s in self.stages if s.thread == "main"]
        for line in _tree(main):
            lines.append(line)
        for s in self.stages:
            if s.thread != "main" and "/" not in s.path:
                lines.append(f"{s.path + ' [' + s.thread + ' thread]':<34}{s.ms_per_frame:>10.1f}{s.share:>8.1%}"
                             f"{s.calls:>7}")
        if self.frames_detected is not None:
            lines.append(f"detector ran on {self.frames_detected} of {self.frames} frames (on the others, faces "
                         "were followed by their mesh, or an empty picture had not changed)")
        lines += [
            f"total {self.seconds:.2f} s: {self.fps:.2f} frames/s, {self.faces_per_s:.2f} faces/s, "
            f"{1000 * self.seconds / max(self.frames, 1):.1f} ms/frame",
            f"network forward passes {self.forward_ms_per_frame:.1f} ms/frame; the pipeline around them adds "
            f"{self.overhead:.1%} of the wall time",
            f"peak memory: RSS {self.peak_rss_mb:.0f} MB"
            + (f", device {self.peak_device_mb:.0f} MB" if self.peak_device_mb is not None else ""),
        ]
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def _tree(stages: list[StageLine]) -> list[str]:
    """Indented lines, children under their parent, each level by time spent."""
    by_parent: dict[str, list[StageLine]] = {}
    for s in stages:
        by_parent.setdefault(s.path.rpartition("/")[0], []).append(s)
    out: list[str] = []

    def walk(parent: str, depth: int) -> None:
        for s in sorted(by_parent.get(parent, []), key=lambda s: -s.seconds):
            name = "  " * depth + s.path.rpartition("/")[2] + (" *" if s.forward else "")
            out.append(f"{name:<34}{s.ms_per_frame:>10.1f}{s.share:>8.1%}{s.calls:>7}")
            walk(s.path, depth + 1)

    walk("", 0)
    if any(s.forward for s in stages):
        out.append("  (* a network's forward pass)")
    return out


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def prepare_clip(clip: Path | None, frames: int, folder: Path, size: tuple[int, int]) -> Path:
    """The clip to run: ``clip`` checked, or a generated one of ``frames`` frames in ``folder``."""
    from facecli.io.images import InputError
    from facecli.io.video import probe_video

    if clip is None:
        from facecli.bench.clip import make_clip

        return make_clip(folder / "bench.mp4", frames, *size)
    try:
        probe_video(clip)
    except InputError as exc:
        raise BenchError(str(exc)) from None
    return clip


def random_weights_dir(clip: Path, folder: Path, identity_model: str) -> Path:
    """Random feat-v2 weights in the published layouts, the detector tamed on frames of ``clip``."""
    from facecli.io.video import iter_frames
    from facecli.models.random_weights import write_featv2_weights
    from facecli.models.sets import featv2_roles

    calibration = []
    for k, (_, _, arr) in enumerate(iter_frames(clip)):
        if k % 15 == 0:
            calibration.append(torch.from_numpy(arr).permute(2, 0, 1)[None].float())
        if len(calibration) == 2:
            break
    return write_featv2_weights(folder / "weights", calibration, roles=featv2_roles(identity_model))


def tune_detection_threshold(config: RunConfig, clip: Path, frames: int, faces_per_frame: float = 1.0,
                             floor: float | None = None) -> float:
    """A detection threshold giving about ``faces_per_frame`` faces on the first ``frames`` frames of
    ``clip`` at ``config``'s detect size (never below ``floor``, by default the model set's default).

    Random detector weights find a number of faces that depends on the frame size (dozens on
    a downscaled frame, few on the full one); real weights find the faces that are there. The
    threshold sits midway between the n-th and (n+1)-th best post-NMS scores over up to 16
    frames spread over the frames the detector runs on (every ``config.detect_every``-th
    processed frame: the faces found there are the ones followed in between), n =
    faces_per_frame x frames (the threshold only filters after NMS). With ``config.max_faces``
    set, the threshold lets every one of those frames keep its best ``max_faces`` faces instead
    (random detectors score unevenly over frames: some would have none, some several).
    A random full-frame detector may score fewer than one face per frame above the default
    threshold: ``floor`` lets the threshold go below it.
    """
    from dataclasses import replace

    from facecli.io.video import iter_frames
    from facecli.models.sets import load_model_set

    model_set = load_model_set(replace(config, detection_threshold=0.02))
    every = config.detect_every * config.skip_frames  # the decoded frames the detector sees
    detected = [k for k in range(frames) if k % every == 0]
    keep = set(detected[:: max(1, len(detected) // 16)])
    picks = [torch.from_numpy(arr).permute(2, 0, 1)[None] for k, (_, _, arr) in
             zip(range(frames), iter_frames(clip)) if k in keep]
    with torch.inference_mode():
        per_frame = [model_set.detect(frame.to(model_set.device)).scores.float().cpu() for frame in picks]
    scores = torch.cat(per_frame)
    from facecli.models.featv2 import DETECTION_THRESHOLD

    if floor is None:
        floor = DETECTION_THRESHOLD if config.detection_threshold is None else config.detection_threshold
    if config.max_faces is not None:  # the max_faces-th best score of the frame that has the lowest
        nth = [s.sort(descending=True).values[config.max_faces - 1].item() if len(s) >= config.max_faces else 0.0
               for s in per_frame]
        return max(floor, min(nth) - 1e-4)
    n = round(faces_per_frame * len(picks))
    ranked = scores.sort(descending=True).values.tolist() + [0.0, 0.0]
    if n < 1:
        return min(0.9999, max(floor, ranked[0] + 1e-4))
    return max(floor, (ranked[n - 1] + ranked[n]) / 2)


def run_bench(
    clip: Path | None,
    config: RunConfig,
    random_weights: bool = False,
    frames: int = 64,
    size: tuple[int, int] = (1280, 720),
    threads: int = 0,
) -> BenchReport:
    """Time the real pipeline on ``clip`` (or a generated one) with ``config``'s settings.

    Args:
        clip: a video, or None to make one (``size``, ``frames`` frames).
        config: settings as ``facecli video`` builds them (inputs and output are replaced).
        random_weights: write random feat-v2 weights (published layouts) and use them.
        frames: frames to time (the first ``frames`` of the clip).
        threads: torch CPU threads (0: facecli's default).

    Raises:
        BenchError: the clip cannot be read, or the models cannot be loaded.
    """
    from dataclasses import replace

    from facecli.models.sets import build_model_set
    from facecli.models.weights import WeightsError
    from facecli.pipeline.engine import RunError, run
    from facecli.pipeline.report import Reporter
    from facecli.timing import StageTimer, timing

    if frames < 1:
        raise BenchError(f"--frames must be at least 1, got {frames}")
    with tempfile.TemporaryDirectory(prefix="facecli-bench-") as tmp:
        folder = Path(tmp)
        clip = prepare_clip(clip, frames, folder, size)
        if random_weights:
            config = replace(config, models="feat-v2", weights_dir=random_weights_dir(clip, folder, config.identity_model))
        try:
            config = replace(config, inputs=(str(clip),), output=folder / "out", output_is_dir=True, kind="video",
                             quiet=True, files_from=None, manifest=None, shard=None, skip_existing=False,
                             jobs=1).validate()
            if random_weights and config.detection_threshold is None:
                config = replace(config, detection_threshold=tune_detection_threshold(config, clip, frames))
            model_set, hashes = build_model_set(config, lambda line: None)
        except (ConfigError, WeightsError) as exc:
            raise BenchError(str(exc)) from None
        if threads > 0:
            torch.set_num_threads(threads)
        device = model_set.device
        sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None
        reporter = Reporter(quiet=True)
        try:
            run(replace(config, output=folder / "warmup", max_frames=config.batch_size), model_set, reporter, hashes)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            timer = StageTimer(sync)
            handles = timer.watch({name: net.module for name, net in model_set.networks().items()})
            try:
                with timing(timer):
                    start = time.perf_counter()
                    summary = run(replace(config, max_frames=frames), model_set, reporter, hashes)
                    seconds = time.perf_counter() - start
            finally:
                for handle in handles:
                    handle.remove()
        except RunError as exc:
            raise BenchError(str(exc)) from None
        if summary.inputs_failed:
            raise BenchError(summary.errors[0] if summary.errors else f"{clip}: the run failed")
        from facecli.io.video import probe_video

        info = probe_video(clip)
        n = max(summary.frames, 1)
        stages = [
            StageLine(t.path, t.thread, t.seconds, t.calls, t.forward, 1000 * t.seconds / n, t.seconds / seconds)
            for t in timer.totals()
        ]
        forward = sum(s.seconds for s in stages if s.forward and s.thread == "main")
        return BenchReport(
            clip=str(clip) if config.inputs and clip.parent != folder else f"generated {info.width}x{info.height} clip",
            width=info.width, height=info.height, model_set=model_set.info.name, device=str(device),
            precision=model_set.info.precision, torch_threads=torch.get_num_threads(),
            batch_size=config.batch_size, detect_every=config.detect_every,
            detect_size="full" if config.detect_size is None else str(config.detect_size),
            frames=summary.frames, faces=summary.faces, seconds=seconds, fps=summary.frames / seconds,
            faces_per_s=summary.faces / seconds, forward_ms_per_frame=1000 * forward / n,
            overhead=max(0.0, (seconds - forward) / seconds), peak_rss_mb=_peak_rss_mb(),
            peak_device_mb=torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
            random_weights=random_weights, detection_threshold=model_set.info.detection_threshold, stages=stages,
            max_faces=config.max_faces, frames_detected=timer.counts().get("frames detected", 0),
        )

