"""The smaller subcommands: ``cluster-identities``, ``bench`` and ``models list/download/verify``.

Registered on the app by :mod:`facecli.cli`; nothing here imports it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from facecli.cli.measure import (
    BATCH_SIZE,
    DETECT_EVERY,
    DETECT_SIZE_VIDEO,
    DEVICE,
    IDENTITY,
    LITE_DETECTOR,
    MAX_FACES,
    MODELS,
    PRECISION_VIDEO,
    WEIGHTS_DIR,
)
from facecli.cli.common import Exit, check_choice, guarded
from facecli.config import PRECISIONS


@guarded
def cluster_identities_cmd(
    inputs: list[str] = typer.Argument(
        ..., help="facecli output files (.parquet/.csv), folders (a whole output dataset) or glob patterns."
    ),
    output: Path = typer.Option(
        ..., "--output", "-o", help="Output file (one input) or folder mirroring the inputs' relative paths."
    ),
    method: str = typer.Option(
        "linkage", "--method", help="linkage (tracks, same-frame constraints) or leader (row order, as before)."
    ),
    threshold: Optional[float] = typer.Option(
        None, "--threshold", "-t", help="Cosine similarity to join an identity (default: the model set's own for the method, from the files)."
    ),
    jobs: int = typer.Option(2, "--jobs", "-j", help="Files read in parallel in the first pass."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary line."),
) -> None:
    """Identities across a whole dataset: cluster faces (by track) of all inputs, write dataset-wide labels.

    Writes the same rows and columns with Identity replaced by Person_<k> (numbered by first
    appearance in input order), plus _identities.parquet (one row per identity). Atomic.
    """
    from facecli.identity.relabel import RelabelError, relabel_dataset
    from facecli.pipeline import signals
    from facecli.pipeline.report import Reporter

    reporter = Reporter(quiet=quiet)
    try:
        with signals.installed(), reporter.progress() as bar:
            summary = relabel_dataset(inputs, output, method=method, threshold=threshold, jobs=jobs, progress=bar)
    except RelabelError as exc:
        raise Exit(str(exc)) from None
    except OSError as exc:
        raise Exit(f"{output}: cannot write the output ({exc.strerror or exc})") from None
    reporter.info(
        f"{summary.rows} rows, {summary.faces} faces, {summary.identities} identities from {summary.files} file(s) "
        f"({summary.method}, threshold {summary.threshold:g}) -> {summary.output}; summary {summary.summary}"
    )


@guarded
def bench(
    clip: Optional[Path] = typer.Argument(None, help="Video to time (default: a generated 720p clip with one face)."),
    models: str = MODELS,
    random_weights: bool = typer.Option(
        False, "--random-weights", help="feat-v2 with random weights in the published layouts (no download needed)."
    ),
    frames: int = typer.Option(64, "--frames", "-n", help="Frames to time (the clip's first N; a generated clip has N)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the report as JSON here."),
    weights_dir: Optional[Path] = WEIGHTS_DIR,
    device: str = DEVICE,
    batch_size: int = BATCH_SIZE,
    detect_size: str = DETECT_SIZE_VIDEO,
    detect_every: int = DETECT_EVERY,
    max_faces: Optional[int] = MAX_FACES,
    precision: str = PRECISION_VIDEO,
    identity_model: str = IDENTITY,
    lite_detector: str = LITE_DETECTOR,
    size: str = typer.Option("1280x720", "--size", help="WxH of the generated clip."),
    threads: int = typer.Option(0, "--threads", help="torch CPU threads (0: facecli's default)."),
) -> None:
    """Time the real `facecli video` pipeline stage by stage on one clip: ms/frame and share of each
    stage, frames/s, faces/s, network time vs pipeline overhead, peak memory."""
    from facecli.bench import BenchError, run_bench
    from facecli.config import ConfigError, RunConfig, parse_detect_size

    check_choice("--models", models, ("auto", "feat-v2", "lite"))
    check_choice("--precision", precision, PRECISIONS)
    check_choice("--identity-model", identity_model, ("arcface", "facenet", "none"))
    check_choice("--lite-detector", lite_detector, ("tiled", "short", "full"))
    try:
        width, height = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise Exit(f"--size must be WxH (e.g. 1280x720), got {size!r}") from None
    if width < 64 or height < 64 or width % 2 or height % 2:
        raise Exit(f"--size must be even and at least 64x64, got {size!r}")
    try:
        config = RunConfig(
            inputs=("bench",), output=Path("bench/"), output_is_dir=True, kind="video", models=models,  # type: ignore[arg-type]
            weights_dir=weights_dir, device=device, batch_size=batch_size, detect_size=parse_detect_size(detect_size),
            detect_every=detect_every, max_faces=max_faces, precision=precision, identity_model=identity_model,  # type: ignore[arg-type]
            lite_detector=lite_detector,  # type: ignore[arg-type]
        ).validate()
        report = run_bench(clip, config, random_weights=random_weights, frames=frames, size=(width, height),
                           threads=threads)
    except (BenchError, ConfigError) as exc:
        raise Exit(str(exc)) from None
    typer.echo(report.table())
    if json_out is not None:
        json_out.write_text(report.to_json())


@guarded
def models_list(
    weights_dir: Optional[Path] = typer.Option(None, "--weights-dir", envvar="FACECLI_WEIGHTS_DIR"),
) -> None:
    """Every weight file of both model sets (size, license, where it is found) and each set's defaults.

    On a terminal a table; otherwise tab-separated lines (set, role, file, size, license, status),
    then one line per set: set, "defaults", its default thresholds.
    """
    from rich.console import Console
    from rich.table import Table

    from facecli.models import hub
    from facecli.models.lite.files import LITE_FILES

    rows = []
    for role, wf in hub.FEAT_V2_FILES.items():
        local = hub.find_local(wf, weights_dir)
        size = _mb(local.stat().st_size) if local else f"~{_mb(wf.approx_bytes)}"
        status = f"local: {local}" if local else "not downloaded"
        rows.append(("feat-v2", role, f"{wf.repo_id}/{wf.filename}", size, wf.license, status))
    for lf in LITE_FILES:
        rows.append(("lite", lf.role, lf.filename, _mb(lf.path.stat().st_size), lf.license, "packaged"))
    from facecli.models.sets import set_defaults

    console = Console(soft_wrap=True)
    if not console.is_terminal:
        for row in rows:
            typer.echo("\t".join(row))
        for name, text in set_defaults():
            typer.echo(f"{name}\tdefaults\t{text}")
        return
    table = Table(title="facecli model weights")
    for col in ("set", "role", "file", "size", "license", "status"):
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    for name, text in set_defaults():
        console.print(f"{name} defaults: {text}", markup=False)


@guarded
def models_download(
    to: Path = typer.Option(..., "--to", help="Folder to write DIR/<repo_id>/<filename> into."),
    identity_model: str = typer.Option("all", "--identity-model", help="arcface, facenet, none or all."),
) -> None:
    """Download the feat-v2 weights into a folder (run on a machine that can reach the Hub)."""
    from facecli.models import hub
    from facecli.models.weights import WeightsError

    roles = ["retinaface", "multitask"] + {"all": ["arcface", "facenet"], "none": []}.get(
        identity_model, [identity_model]
    )
    if any(r not in hub.FEAT_V2_FILES for r in roles):
        raise Exit(f"--identity-model must be arcface, facenet, none or all; got {identity_model!r}")
    to.mkdir(parents=True, exist_ok=True)
    for role in roles:
        try:
            path = hub.download(hub.FEAT_V2_FILES[role], to)
        except WeightsError as exc:
            raise Exit(str(exc)) from None
        typer.echo(f"{role}: {path} ({_mb(path.stat().st_size)})")


@guarded
def models_verify(
    weights_dir: Optional[Path] = typer.Argument(None, help="Folder to check (default: --weights-dir / hub cache)."),
) -> None:
    """Load every weight file found strictly and report its parameter count."""
    from facecli.models import hub
    from facecli.models.lite.files import verify_lite
    from facecli.models.weights import WeightsError

    failed = False
    for role, wf in hub.FEAT_V2_FILES.items():
        path = hub.find_local(wf, weights_dir)
        if path is None:
            typer.echo(f"feat-v2 {role}: not found ({wf.repo_id}/{wf.filename})")
            continue
        try:
            n = hub.verify_file(wf, path)
            typer.echo(f"feat-v2 {role}: ok, {n:,} parameters ({path})")
        except WeightsError as exc:
            failed = True
            typer.echo(f"feat-v2 {role}: FAILED: {exc}", err=True)
    try:
        for role, n in verify_lite():
            typer.echo(f"lite {role}: ok, {n:,} parameters (packaged)")
    except WeightsError as exc:
        failed = True
        typer.echo(f"lite: FAILED: {exc}", err=True)
    if failed:
        raise typer.Exit(1)


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"
