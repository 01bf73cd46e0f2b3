"""``facecli detect`` and ``facecli video``: parse options into a RunConfig and call the engine.

Exit codes: 0 every input processed (or skipped); 1 some inputs failed (the others were
written), or some overlays could not be written (their outputs were); 2 usage, settings or weights problems (nothing was written); 130 interrupted (Ctrl-C);
143 terminated (SIGTERM: scancel, a SLURM time limit). After 130/143 finished outputs are kept
and unfinished ones resume from their last checkpoint when the same command is run again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from facecli.cli.common import Exit, check_choice, guarded
from facecli.config import PRECISIONS

MODELS_HELP = "Model set: auto (feat-v2 when its weights can be had, else lite), feat-v2 or lite."

OUTPUT = typer.Option(
    ..., "--output", "-o",
    help="A .parquet or .csv file for all rows, or a folder (ending in /, or existing) for one output per input.",
)
FORMAT = typer.Option(None, "--format", help="Output format in an output folder: parquet (default) or csv.")
FILES_FROM = typer.Option(None, "--files-from", help="Read input paths from this file, one per line ('-': standard input).")
MANIFEST = typer.Option(
    None, "--manifest", help="Append one JSON line per input here (default: OUTDIR/_manifest.jsonl for an output folder)."
)
SHARD = typer.Option(
    None, "--shard",
    help="Process only shard I of N (I/N, 0-based) of the inputs (default: from SLURM_ARRAY_TASK_ID in a job array).",
)
SKIP_EXISTING = typer.Option(False, "--skip-existing", help="Skip inputs whose complete output exists with the same settings.")
JOBS = typer.Option(1, "--jobs", "-j", help="Inputs processed at once, each in its own process (CPU threads are shared out).")
CHECKPOINT = typer.Option(
    30.0, "--checkpoint-every", help="Seconds between checkpoints of a long input (an interrupted run resumes from the last)."
)
MODELS = typer.Option("auto", "--models", "-m", help=MODELS_HELP)
WEIGHTS_DIR = typer.Option(
    None, "--weights-dir", envvar="FACECLI_WEIGHTS_DIR", help="Folder laid out as DIR/<repo_id>/<filename>."
)
DEVICE = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps.")
BATCH_SIZE = typer.Option(8, "--batch-size", "-b", help="Frames per forward pass.")
THRESHOLD = typer.Option(
    None, "--detection-threshold", help="Minimum face score (default: the model set's; see `facecli models list`)."
)
DETECT_SIZE = typer.Option(
    "full", "--detect-size", help="'full' (the whole frame, as py-feat) or the longest side in pixels."
)
PRECISION = typer.Option(
    "exact", "--precision",
    help="Network arithmetic: exact (float32 in the reference's own layouts: py-feat's numbers to the "
    "last digits), fp32 (float32, fastest layouts), bf16 (autocast) or auto (bf16 on CUDA and on CPUs "
    "with AVX512-BF16/AMX; fp32 elsewhere).",
)
# `facecli video` defaults favour speed, with the deviations measured in docs/performance.md;
# `--detect-size full --detect-every 1 --precision fp32` does py-feat's work (`exact`: its arithmetic too).
DETECT_SIZE_VIDEO = typer.Option(
    "640", "--detect-size",
    help="Longest side in pixels of the copy the detector sees ('full': the whole frame, as py-feat). "
    "feat-v2 only (lite's BlazeFace has its own fixed input).",
)
PRECISION_VIDEO = typer.Option(
    "auto", "--precision",
    help="Network arithmetic: auto (bf16 on CUDA and on CPUs with AVX512-BF16/AMX, fp32 elsewhere), "
    "bf16, fp32 (float32, fastest layouts) or exact (float32 in py-feat's own layouts).",
)
MAX_FACES = typer.Option(
    None, "--max-faces", min=1,
    help="Keep only the N best-scoring faces of each detection (e.g. 1 for one participant per "
    "recording; default: every face).",
)
IDENTITY = typer.Option("arcface", "--identity-model", help="feat-v2 identity: arcface, facenet or none.")
IDENTITY_THRESHOLD = typer.Option(
    None, "--identity-threshold",
    help="Cosine similarity to join an identity (default: the model set's; see `facecli models list`).",
)
IDENTITY_METHOD = typer.Option(
    None, "--identity-method",
    help="linkage (face tracks clustered, never two faces of one frame; default for video) or leader "
    "(py-feat's rule in row order; default for images).",
)
DETECT_EVERY = typer.Option(
    5, "--detect-every",
    help="Run the face detector on every Kth frame and follow faces by their mesh in between "
    "(1: every frame, as py-feat); while no face is followed, on every frame whose picture changed. "
    "lite: two of every three of these detections leave out the scan for the smallest faces, which "
    "are followed on meanwhile.",
)
OVERLAY_VIDEO = typer.Option(
    None, "--overlay",
    help="Also write overlay videos (faces drawn on a copy of each input): a .mp4/.mkv/.mov/.avi file for one "
    "input, or a folder (ending in /) for one overlay per input, paths mirrored.",
)
OVERLAY_IMAGES = typer.Option(
    None, "--overlay", help="Also write an annotated copy of every image into this folder, paths mirrored."
)
OVERLAY_MESH = typer.Option(False, "--overlay-mesh", help="Overlays draw the 478-point mesh instead of the 68 landmarks.")
LITE_DETECTOR = typer.Option(
    "tiled", "--lite-detector",
    help="lite BlazeFace: tiled (faces of every size, scanned at several scales), short (whole frame at 128 px: close faces only, fastest) or full (whole frame at 192 px).",
)
LITE_MIN_FACE = typer.Option(
    24.0, "--lite-min-face",
    help="lite tiled detection: smallest face searched for, pixels (cost grows as it shrinks; see docs/models.md).",
)
QUIET = typer.Option(False, "--quiet", "-q", help="Only errors and warnings.")
VERBOSE = typer.Option(False, "--verbose", "-v", help="More detail.")


def _config(kind: str, opts: dict):
    from facecli.config import ConfigError, RunConfig, Shard, parse_detect_size, parse_output, parse_overlay

    try:
        output, is_dir, fmt = parse_output(str(opts["output"]), opts["format"])
        overlay, overlay_is_dir = parse_overlay(opts["overlay"], kind)  # type: ignore[arg-type]
        shard = Shard.parse(opts["shard"]) if opts["shard"] is not None else Shard.from_slurm()
        return RunConfig(
            inputs=tuple(opts["inputs"] or ()),
            output=output,
            kind=kind,  # type: ignore[arg-type]
            output_is_dir=is_dir,
            output_format=fmt,
            files_from=opts["files_from"],
            manifest=Path(opts["manifest"]) if opts["manifest"] else None,
            shard=shard,
            skip_existing=bool(opts["skip_existing"]),
            jobs=int(opts["jobs"]),
            checkpoint_every=float(opts["checkpoint_every"]),
            models=opts["models"],
            weights_dir=opts["weights_dir"],
            device=str(opts["device"]),
            batch_size=int(opts["batch_size"]),
            detection_threshold=opts["detection_threshold"],
            max_faces=opts["max_faces"],
            detect_size=parse_detect_size(str(opts["detect_size"])),
            identity_model=opts["identity_model"],
            identity_threshold=opts["identity_threshold"],
            identity_method=opts["identity_method"],
            skip_frames=int(opts.get("skip_frames", 1)),
            detect_every=int(opts.get("detect_every", 1)),
            precision=str(opts["precision"]),
            lite_detector=opts["lite_detector"],
            lite_min_face=float(opts["lite_min_face"]),
            decode_threads=int(opts.get("decode_threads", 0)),
            overlay=overlay,
            overlay_is_dir=overlay_is_dir,
            overlay_mesh=bool(opts["overlay_mesh"]),
            quiet=bool(opts["quiet"]),
            verbose=bool(opts["verbose"]),
        ).validate()
    except ConfigError as exc:
        raise Exit(str(exc)) from None


def _run(kind: str, opts: dict) -> None:
    check_choice("--models", str(opts["models"]), ("auto", "feat-v2", "lite"))
    check_choice("--identity-model", str(opts["identity_model"]), ("arcface", "facenet", "none"))
    check_choice("--precision", str(opts["precision"]), PRECISIONS)
    check_choice("--lite-detector", str(opts["lite_detector"]), ("tiled", "short", "full"))
    config = _config(kind, opts)
    if not config.output_is_dir and not config.output.parent.exists():
        raise Exit(f"{config.output}: output folder {config.output.parent} does not exist")

    from facecli.config import ConfigError
    from facecli.models.sets import build_model_set
    from facecli.models.weights import WeightsError
    from facecli.pipeline import signals
    from facecli.pipeline.engine import RunError, run
    from facecli.pipeline.report import Reporter

    reporter = Reporter(quiet=config.quiet, verbose=config.verbose)
    try:
        model_set, hashes = build_model_set(config, reporter.warn)
    except (ConfigError, WeightsError) as exc:
        raise Exit(str(exc)) from None
    reporter.detail(f"model set {model_set.info.name} on {model_set.device}")
    try:
        with signals.installed():
            summary = run(config, model_set, reporter, hashes)
    except RunError as exc:
        raise Exit(str(exc)) from None
    counts = [f"{summary.inputs_ok} ok"]
    if summary.inputs_skipped:
        counts.append(f"{summary.inputs_skipped} skipped")
    if summary.inputs_failed:
        counts.append(f"{summary.inputs_failed} failed")
    if summary.overlays_failed:
        counts.append(f"{summary.overlays_failed} without overlay")
    where = summary.outputs[0] if len(summary.outputs) == 1 else f"{len(summary.outputs)} outputs in {config.output}"
    if summary.outputs:
        reporter.info(
            f"{', '.join(counts)}: {summary.frames} frames, {summary.faces} faces "
            f"(model set {summary.model_set}) -> {where} in {summary.seconds:.1f} s"
        )
    elif summary.inputs_ok == 0 and not summary.inputs_skipped:
        reporter.info(f"{', '.join(counts)}: no input could be processed; nothing was written")
    else:
        reporter.info(f"{', '.join(counts)}: nothing new to write")
    if summary.inputs_failed or summary.overlays_failed:
        raise typer.Exit(1)


@guarded
def detect(
    inputs: Optional[list[str]] = typer.Argument(None, help="Image files, folders (recursive) or glob patterns."),
    output: str = OUTPUT,
    format: Optional[str] = FORMAT,  # noqa: A002 - the option's name
    files_from: Optional[str] = FILES_FROM,
    manifest: Optional[str] = MANIFEST,
    shard: Optional[str] = SHARD,
    skip_existing: bool = SKIP_EXISTING,
    jobs: int = JOBS,
    checkpoint_every: float = CHECKPOINT,
    models: str = MODELS,
    weights_dir: Optional[Path] = WEIGHTS_DIR,
    device: str = DEVICE,
    batch_size: int = BATCH_SIZE,
    detection_threshold: Optional[float] = THRESHOLD,
    max_faces: Optional[int] = MAX_FACES,
    detect_size: str = DETECT_SIZE,
    identity_model: str = IDENTITY,
    identity_threshold: Optional[float] = IDENTITY_THRESHOLD,
    identity_method: Optional[str] = IDENTITY_METHOD,
    precision: str = PRECISION,
    lite_detector: str = LITE_DETECTOR,
    overlay: Optional[str] = OVERLAY_IMAGES,
    overlay_mesh: bool = OVERLAY_MESH,
    lite_min_face: float = LITE_MIN_FACE,
    quiet: bool = QUIET,
    verbose: bool = VERBOSE,
) -> None:
    """Measure every face in still images; one row per face."""
    _run("image", dict(locals()))


@guarded
def video(
    inputs: Optional[list[str]] = typer.Argument(None, help="Video files, folders (recursive) or glob patterns."),
    output: str = OUTPUT,
    format: Optional[str] = FORMAT,  # noqa: A002 - the option's name
    files_from: Optional[str] = FILES_FROM,
    manifest: Optional[str] = MANIFEST,
    shard: Optional[str] = SHARD,
    skip_existing: bool = SKIP_EXISTING,
    jobs: int = JOBS,
    checkpoint_every: float = CHECKPOINT,
    models: str = MODELS,
    weights_dir: Optional[Path] = WEIGHTS_DIR,
    device: str = DEVICE,
    batch_size: int = BATCH_SIZE,
    detection_threshold: Optional[float] = THRESHOLD,
    max_faces: Optional[int] = MAX_FACES,
    detect_size: str = DETECT_SIZE_VIDEO,
    identity_model: str = IDENTITY,
    identity_threshold: Optional[float] = IDENTITY_THRESHOLD,
    identity_method: Optional[str] = IDENTITY_METHOD,
    skip_frames: int = typer.Option(1, "--skip-frames", help="Process every Nth frame."),
    detect_every: int = DETECT_EVERY,
    precision: str = PRECISION_VIDEO,
    decode_threads: int = typer.Option(0, "--decode-threads", help="Video decoder threads (0: FFmpeg decides)."),
    lite_detector: str = LITE_DETECTOR,
    overlay: Optional[str] = OVERLAY_VIDEO,
    overlay_mesh: bool = OVERLAY_MESH,
    lite_min_face: float = LITE_MIN_FACE,
    quiet: bool = QUIET,
    verbose: bool = VERBOSE,
) -> None:
    """Measure every face in every frame of videos; one row per face per frame."""
    _run("video", dict(locals()))
