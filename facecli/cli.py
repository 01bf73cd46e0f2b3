"""The ``facecli`` command. Parses options into a RunConfig and calls the pipeline; no model code here.

Exit codes: 0 success; 1 some inputs failed (the others were written); 2 usage, settings or
weights problems (nothing was written); 130 interrupted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from facecli import __version__

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Measure facial behaviour in images and videos: faces, AUs, emotions, pose, gaze, mesh, identity.",
)
models_app = typer.Typer(no_args_is_help=True, help="List, download and verify model weights.")
app.add_typer(models_app, name="models")


class Exit(Exception):
    """An expected failure: print one line, exit with ``code``."""

    def __init__(self, line: str, code: int = 2) -> None:
        super().__init__(line)
        self.code = code


def _version(value: bool) -> None:
    if value:
        typer.echo(f"facecli {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """facecli: batch facial behaviour measurement."""


MODELS_HELP = "Model set: auto (feat-v2 when its weights can be had, else lite), feat-v2 or lite."

# Options shared by `detect` and `video`.
OUTPUT = typer.Option(..., "--output", "-o", help="Output file ending in .parquet or .csv.")
MODELS = typer.Option("auto", "--models", "-m", help=MODELS_HELP)
WEIGHTS_DIR = typer.Option(
    None, "--weights-dir", envvar="FACECLI_WEIGHTS_DIR", help="Folder laid out as DIR/<repo_id>/<filename>."
)
DEVICE = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps.")
BATCH_SIZE = typer.Option(8, "--batch-size", "-b", help="Frames per forward pass.")
THRESHOLD = typer.Option(
    None, "--detection-threshold", help="Minimum face score [default: 0.5; 0.6 for --lite-detector full]."
)
DETECT_SIZE = typer.Option(
    "full", "--detect-size", help="'full' (the whole frame, as py-feat) or the longest side in pixels."
)
IDENTITY = typer.Option("arcface", "--identity-model", help="feat-v2 identity: arcface, facenet or none.")
IDENTITY_THRESHOLD = typer.Option(
    None,
    "--identity-threshold",
    help="Cosine similarity to join an identity [default: 0.8 feat-v2 (py-feat's); 0.91 lite (dlib's 0.6 distance)].",
)
LITE_DETECTOR = typer.Option("short", "--lite-detector", help="lite BlazeFace: short (close faces) or full range.")
QUIET = typer.Option(False, "--quiet", "-q", help="Only errors and warnings.")
VERBOSE = typer.Option(False, "--verbose", "-v", help="More detail.")


def _run(kind: str, inputs: list[str], output: Path, **options: object) -> None:
    from facecli.config import ConfigError, RunConfig, parse_detect_size
    from facecli.pipeline.report import Reporter

    reporter = Reporter(quiet=bool(options["quiet"]), verbose=bool(options["verbose"]))
    try:
        config = RunConfig(
            inputs=tuple(inputs),
            output=output,
            kind=kind,  # type: ignore[arg-type]
            models=options["models"],  # type: ignore[arg-type]
            weights_dir=options["weights_dir"],  # type: ignore[arg-type]
            device=str(options["device"]),
            batch_size=int(options["batch_size"]),  # type: ignore[arg-type]
            detection_threshold=options["detection_threshold"],  # type: ignore[arg-type]
            detect_size=parse_detect_size(str(options["detect_size"])),
            identity_model=options["identity_model"],  # type: ignore[arg-type]
            identity_threshold=options["identity_threshold"],  # type: ignore[arg-type]
            skip_frames=int(options.get("skip_frames", 1)),  # type: ignore[arg-type]
            lite_detector=options["lite_detector"],  # type: ignore[arg-type]
            decode_threads=int(options.get("decode_threads", 0)),  # type: ignore[arg-type]
            quiet=bool(options["quiet"]),
            verbose=bool(options["verbose"]),
        ).validate()
    except ConfigError as exc:
        raise Exit(str(exc)) from None
    if not output.parent.exists():
        raise Exit(f"{output}: output folder {output.parent} does not exist")

    from facecli.models.sets import build_model_set
    from facecli.models.weights import WeightsError
    from facecli.pipeline.engine import run

    try:
        model_set, hashes = build_model_set(config, reporter.warn)
    except (ConfigError, WeightsError) as exc:
        raise Exit(str(exc)) from None
    reporter.detail(f"model set {model_set.info.name} on {model_set.device}")
    _terminate_cleanly()
    try:
        summary = run(config, model_set, reporter, hashes)
    except OSError as exc:  # the output cannot be written (permissions, disk full): nothing is left behind
        raise Exit(f"{output}: cannot write the output ({exc.strerror or exc})") from None
    if summary.inputs_ok:
        reporter.info(
            f"wrote {summary.rows} rows ({summary.frames} frames, {summary.faces} faces, "
            f"model set {summary.model_set}) to {summary.output} in {summary.seconds:.1f} s"
        )
    else:
        reporter.info(f"no input could be processed; {output} was not written")
    if summary.errors:
        raise typer.Exit(1)


class Terminated(SystemExit):
    """SIGTERM (e.g. SLURM's scancel or time limit) as an exception, so partial output is removed."""


def _terminate_cleanly() -> None:
    import signal
    import threading

    def handler(signum: int, frame: object) -> None:
        raise Terminated(128 + signum)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise Exit(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def _guarded(fn):  # turn expected failures into one line and an exit code
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exit as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.code) from None
        except KeyboardInterrupt:
            typer.echo("interrupted; no output written", err=True)
            raise typer.Exit(130) from None
        except Terminated as exc:
            typer.echo("terminated; no output written", err=True)
            raise typer.Exit(exc.code) from None

    return wrapper


def _validate_choices(opts: dict[str, object]) -> None:
    _check_choice("--models", str(opts["models"]), ("auto", "feat-v2", "lite"))
    _check_choice("--identity-model", str(opts["identity_model"]), ("arcface", "facenet", "none"))
    _check_choice("--lite-detector", str(opts["lite_detector"]), ("short", "full"))


@app.command()
@_guarded
def detect(
    inputs: list[str] = typer.Argument(..., help="Image files, folders or glob patterns."),
    output: Path = OUTPUT,
    models: str = MODELS,
    weights_dir: Optional[Path] = WEIGHTS_DIR,
    device: str = DEVICE,
    batch_size: int = BATCH_SIZE,
    detection_threshold: Optional[float] = THRESHOLD,
    detect_size: str = DETECT_SIZE,
    identity_model: str = IDENTITY,
    identity_threshold: Optional[float] = IDENTITY_THRESHOLD,
    lite_detector: str = LITE_DETECTOR,
    quiet: bool = QUIET,
    verbose: bool = VERBOSE,
) -> None:
    """Measure every face in still images; one row per face."""
    opts = dict(locals())
    _validate_choices(opts)
    _run("image", opts.pop("inputs"), opts.pop("output"), **opts)


@app.command()
@_guarded
def video(
    inputs: list[str] = typer.Argument(..., help="Video files, folders or glob patterns."),
    output: Path = OUTPUT,
    models: str = MODELS,
    weights_dir: Optional[Path] = WEIGHTS_DIR,
    device: str = DEVICE,
    batch_size: int = BATCH_SIZE,
    detection_threshold: Optional[float] = THRESHOLD,
    detect_size: str = DETECT_SIZE,
    identity_model: str = IDENTITY,
    identity_threshold: Optional[float] = IDENTITY_THRESHOLD,
    skip_frames: int = typer.Option(1, "--skip-frames", help="Process every Nth frame."),
    decode_threads: int = typer.Option(0, "--decode-threads", help="Video decoder threads (0: FFmpeg decides)."),
    lite_detector: str = LITE_DETECTOR,
    quiet: bool = QUIET,
    verbose: bool = VERBOSE,
) -> None:
    """Measure every face in every frame of videos; one row per face per frame."""
    opts = dict(locals())
    _validate_choices(opts)
    _run("video", opts.pop("inputs"), opts.pop("output"), **opts)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="facecli")


from facecli import commands  # noqa: E402,F401  (registers cluster-identities, bench and models)
