"""The run: inputs -> plan -> work (here or in ``--jobs`` worker processes) -> outputs and manifest.

:func:`run` owns what is decided once per run (the plan, the shard, what to skip, the manifest,
the summary); :mod:`facecli.pipeline.work` does the work of each output, and
:mod:`facecli.pipeline.jobs` spreads it over processes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import facecli
from facecli.config import RunConfig
from facecli.io.inputs import IMAGE_SUFFIXES, VIDEO_SUFFIXES, expand_inputs, read_path_list
from facecli.io.manifest import ManifestLine, append_line, latest_ok
from facecli.pipeline import signals
from facecli.pipeline.overlays import overlay_location, overlays_complete, render_overlays
from facecli.pipeline.plan import Plan, Target, plan_run
from facecli.pipeline.process import ModelSet, tracker_config
from facecli.pipeline.report import Reporter, WorkerProgress
from facecli.pipeline.work import (
    InputOutcome,
    RunContext,
    process_image_targets,
    process_target,
    settings_hash,
)
from facecli.schema import OutputLayout, read_metadata
from facecli.types import ModelSetInfo

IMAGE_TASK = 64  # single-image outputs handled together (one decode/batch stream)


class RunError(Exception):
    """The run cannot start (unreadable input list, output folder not writable); one line."""


@dataclass(frozen=True)
class RunSummary:
    """What a run did."""

    output: Path
    model_set: str
    inputs_ok: int  # inputs processed into an output
    inputs_failed: int
    inputs_skipped: int  # complete outputs kept (--skip-existing)
    overlays_failed: int  # inputs whose output was written (or kept) but whose overlay was not
    frames: int  # frames processed
    faces: int  # faces measured
    outputs: tuple[str, ...]  # files written
    errors: tuple[str, ...]  # one line per failed input
    seconds: float


@dataclass(frozen=True)
class Task:
    """Work given to one process at a time: a whole output, a group of single-image outputs, or
    some units of an output whose file the main process writes."""

    kind: str  # "target", "images", "units", or "overlay" (an existing output's missing overlays)
    targets: tuple[Target, ...]
    positions: tuple[int, ...] | None = None

    @property
    def inputs(self) -> int:
        if self.kind == "units":
            return sum(len(u.sources) for u in self.targets[0].units if u.position in (self.positions or ()))
        return sum(len(t.sources) for t in self.targets)


def result_settings(config: RunConfig, info: ModelSetInfo, weight_hashes: dict[str, str]) -> dict:
    """The settings that shape an output's values; two outputs with equal settings are interchangeable."""
    method = config.resolved_identity_method
    default = info.linkage_threshold if method == "linkage" else info.identity_threshold
    settings = {
        "kind": config.kind,
        "model_set": info.name,
        "weights": dict(sorted(weight_hashes.items())),
        "detection_threshold": info.detection_threshold,
        "detector": info.detector,
        "detect_size": config.detect_size,
        "identity_model": info.identity_model,
        "identity_method": method,
        "identity_threshold": config.identity_threshold if config.identity_threshold is not None else default,
        "skip_frames": config.skip_frames,
        "precision": info.precision,
    }
    if config.max_faces is not None:
        settings["max_faces"] = config.max_faces
    if config.kind == "video":
        settings["tracker"] = asdict(tracker_config(info))
        settings["detect_every"] = config.detect_every
        if config.max_frames is not None:
            settings["max_frames"] = config.max_frames
    return settings


def build_context(config: RunConfig, info: ModelSetInfo, device: str, weight_hashes: dict[str, str]) -> RunContext:
    layout = OutputLayout.for_set(info, video=config.kind == "video", tracks=config.kind == "video")
    settings = result_settings(config, info, weight_hashes)
    digest = settings_hash(settings)
    metadata = {
        "facecli_version": facecli.__version__,
        "model_set": info.name,
        "weights": weight_hashes,
        "device": device,
        "settings": {**config.as_metadata(), **settings},
        "settings_hash": digest,
        "model_set_defaults": {"leader_threshold": info.identity_threshold, "linkage_threshold": info.linkage_threshold},
        "columns_left_out": layout.left_out(),
    }
    return RunContext(config, info, layout, settings, digest, metadata)


def expand(config: RunConfig):
    """The run's input listing (command line and --files-from)."""
    listed: list[str] = []
    if config.files_from is not None:
        try:
            listed = read_path_list(config.files_from)
        except OSError as exc:
            raise RunError(f"{config.files_from}: cannot read the input list ({exc.strerror or exc})") from None
        except UnicodeDecodeError:
            raise RunError(f"{config.files_from}: the input list is not text") from None
    suffixes = VIDEO_SUFFIXES if config.kind == "video" else IMAGE_SUFFIXES
    return expand_inputs(config.inputs, suffixes, listed)


def tasks_for(plan: Plan, jobs: int) -> list[Task]:
    """Split the plan into tasks; with one output of several units and several jobs, one task per unit."""
    tasks: list[Task] = []
    group: list[Target] = []
    for target in plan.targets:
        single_image = len(target.units) == 1 and target.units[0].kind == "image"
        if single_image:
            group.append(target)
            if len(group) == IMAGE_TASK:
                tasks.append(Task("images", tuple(group)))
                group = []
            continue
        if group:
            tasks.append(Task("images", tuple(group)))
            group = []
        if jobs > 1 and len(target.units) > 1:
            tasks += [Task("units", (target,), (u.position,)) for u in target.units]
        else:
            tasks.append(Task("target", (target,)))
    if group:
        tasks.append(Task("images", tuple(group)))
    return tasks


def run_task(ctx: RunContext, model_set: ModelSet, task: Task, progress) -> list[InputOutcome]:
    """Do one task in this process."""
    if task.kind == "overlay":
        return overlay_only(task.targets[0])
    if task.kind == "images":
        return process_image_targets(ctx, model_set, list(task.targets), progress)
    positions = list(task.positions) if task.positions is not None else None
    return process_target(ctx, model_set, task.targets[0], progress, positions)


def overlay_only(target: Target) -> list[InputOutcome]:
    """--skip-existing kept ``target.output``, whose overlays are missing: draw them from it."""
    outcome = InputOutcome(", ".join(target.sources), str(target.output), "skipped")
    render_overlays(target, [outcome])
    return [outcome]


class _Recorder:
    """Reports outcomes (log lines, manifest lines) and counts them for the summary."""

    def __init__(self, ctx: RunContext, reporter: Reporter, plan: Plan) -> None:
        self.ctx = ctx
        self.reporter = reporter
        self.manifest = ctx.config.manifest_path
        self.shard = str(plan.shard) if plan.shard else None
        self.ok = self.failed = self.skipped = self.frames = self.faces = self.overlays_failed = 0
        self.outputs: list[str] = []
        self.manifest_failed = False

    def __call__(self, outcome: InputOutcome) -> None:
        if outcome.status == "failed":
            self.failed += 1
            self.reporter.error(outcome.error or f"{outcome.input}: failed")
        elif outcome.status == "skipped":
            self.skipped += 1
            self.reporter.detail(f"{outcome.input}: skipped, {outcome.output} is complete")
        else:
            self.ok += 1
            self.frames += outcome.frames
            self.faces += outcome.faces
            if outcome.output and (not self.outputs or self.outputs[-1] != outcome.output):
                self.outputs.append(outcome.output)
            note = f" (resumed after frame {outcome.resumed_from})" if outcome.resumed_from is not None else ""
            self.reporter.detail(f"{outcome.input}: {outcome.frames} frames, {outcome.faces} faces{note}")
        if outcome.overlay_error:
            self.overlays_failed += 1
            self.reporter.error(outcome.overlay_error)
        elif outcome.overlay:
            self.reporter.detail(f"{outcome.input}: overlay {outcome.overlay}")
        self._manifest(outcome)

    def _manifest(self, outcome: InputOutcome) -> None:
        if self.manifest is None:
            return
        size = None
        if outcome.status in ("ok", "skipped") and outcome.output:
            try:
                size = os.path.getsize(outcome.output)
            except OSError:
                size = None
        line = ManifestLine(
            input=outcome.input, output=outcome.output, status=outcome.status, error=outcome.error,
            frames=outcome.frames, faces=outcome.faces, seconds=round(outcome.seconds, 3),
            model_set=self.ctx.info.name, facecli_version=facecli.__version__, shard=self.shard,
            settings_hash=self.ctx.settings_hash, output_bytes=size, resumed_from=outcome.resumed_from,
            overlay=outcome.overlay, overlay_error=outcome.overlay_error,
        )
        try:
            with signals.deferred():
                append_line(self.manifest, line)
        except OSError as exc:
            if not self.manifest_failed:
                self.reporter.error(f"{self.manifest}: cannot append to the manifest ({exc.strerror or exc})")
            self.manifest_failed = True


def check_existing(ctx: RunContext, target: Target, known: dict[str, dict]) -> InputOutcome | None:
    """With --skip-existing: a 'skipped' outcome for a complete output made with the same settings, a
    'failed' one for an output made otherwise (never silently reused), None when it must be made."""
    out = str(target.output)
    if not target.output.is_file():
        return None
    record = known.get(out)
    try:
        size = target.output.stat().st_size
    except OSError:
        return None
    if record and record.get("settings_hash") == ctx.settings_hash and record.get("output_bytes") == size:
        return InputOutcome(", ".join(target.sources), out, "skipped")
    found = read_output_settings(target.output)
    if found is None:
        return InputOutcome(
            ", ".join(target.sources), None, "failed",
            f"{out}: exists but facecli cannot read its settings; not reused (delete it, or run without --skip-existing)",
        )
    if found.get("settings_hash") == ctx.settings_hash:
        return InputOutcome(", ".join(target.sources), out, "skipped")
    theirs = found.get("settings", {})
    diffs = [f"{k} {theirs.get(k)!r} -> {v!r}" for k, v in ctx.settings.items() if theirs.get(k) != v]
    return InputOutcome(
        ", ".join(target.sources), None, "failed",
        f"{out}: exists but was made with other settings ({'; '.join(diffs) or 'another facecli version'}); "
        "not reused (delete it, or run without --skip-existing to replace it)",
    )


def read_output_settings(path: Path) -> dict | None:
    """The facecli metadata of an existing output (Parquet footer, or the CSV's sidecar), or None."""
    if path.suffix.lower() == ".csv":
        from facecli.io.writers import csv_sidecar

        try:
            import json

            return json.loads(csv_sidecar(path).read_text())
        except (OSError, ValueError):
            return None
    try:
        import pyarrow.parquet as pq

        return read_metadata(pq.read_schema(str(path))) or None
    except Exception:  # noqa: BLE001 - not a readable Parquet file: treated as unknown
        return None


def run(
    config: RunConfig,
    model_set: ModelSet,
    reporter: Reporter,
    weight_hashes: dict[str, str],
    load_models: Callable[[], ModelSet] | None = None,
) -> RunSummary:
    """Process every input of ``config`` (or of its shard).

    Args:
        config: the run's settings.
        model_set: the loaded models (used in this process).
        reporter: log lines and progress.
        weight_hashes: SHA-256 of every weight file, for the metadata and the settings hash.
        load_models: how a ``--jobs`` worker loads its own copy of the models (default: from
            ``config``, with the model set already chosen).

    Raises:
        RunError: the inputs cannot be listed or the output folder cannot be used.
        signals.Interrupted: SIGTERM/SIGINT; progress is saved for a rerun to resume.
    """
    started = time.perf_counter()
    listing = expand(config)
    for note in listing.notes:
        reporter.warn(note)
    listing = _without_overlays(config, listing, reporter)
    plan = plan_run(config, listing)
    if config.overlay is not None and not config.overlay_is_dir and len(listing.usable) > 1:
        raise RunError(
            f"--overlay {config.overlay}: one overlay file for {len(listing.usable)} inputs; give a folder "
            "(end it in /) for one overlay per input"
        )
    if plan.shard is not None:
        reporter.info(f"shard {plan.shard} ({plan.shard.source}): {plan.inputs} of {plan.total_inputs} inputs")
    if config.output_is_dir:
        try:
            config.output.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunError(f"{config.output}: cannot create the output folder ({exc.strerror or exc})") from None
        if not os.access(config.output, os.W_OK | os.X_OK):
            raise RunError(f"{config.output}: output folder is not writable")
    ctx = build_context(config, model_set.info, str(model_set.device), weight_hashes)
    record = _Recorder(ctx, reporter, plan)
    for item in plan.failures:
        record(InputOutcome(item.path, None, "failed", f"{item.path}: {item.error}"))
    targets = list(plan.targets)
    if config.skip_existing:
        known = latest_ok(config.manifest_path) if config.manifest_path else {}
        todo = []
        overlays_missing = []
        for target in targets:
            outcome = check_existing(ctx, target, known)
            if outcome is None:
                todo.append(target)
            elif outcome.status == "skipped" and not overlays_complete(target):
                overlays_missing.append(Task("overlay", (target,)))
            else:
                if outcome.status == "skipped":
                    outcome.overlay = overlay_location(target)  # kept, as the output is
                record(outcome)
        targets = todo
    else:
        overlays_missing = []
    tasks = overlays_missing + tasks_for(Plan(tuple(targets), (), plan.shard, plan.total_inputs), config.jobs)
    with reporter.progress(sum(t.inputs for t in tasks) or None) as bar:
        if config.jobs > 1 and len(tasks) > 1:
            from facecli.pipeline.jobs import run_parallel

            for outcome in run_parallel(ctx, tasks, config.jobs, bar, load_models):
                record(outcome)
                if bar is not None:
                    bar.inputs_finished()
        else:
            for outcome in _run_here(ctx, model_set, tasks, bar):
                record(outcome)
    return RunSummary(
        output=config.output,
        model_set=model_set.info.name,
        inputs_ok=record.ok,
        inputs_failed=record.failed,
        inputs_skipped=record.skipped,
        overlays_failed=record.overlays_failed,
        frames=record.frames,
        faces=record.faces,
        outputs=tuple(record.outputs),
        errors=tuple(reporter.errors),
        seconds=time.perf_counter() - started,
    )


def _without_overlays(config: RunConfig, listing, reporter: Reporter):
    """Inputs found inside the --overlay folder are earlier overlays, never inputs."""
    if config.overlay is None or not config.overlay_is_dir:
        return listing
    from dataclasses import replace

    folder = os.path.abspath(config.overlay)
    keep = tuple(i for i in listing.items if not os.path.abspath(i.path).startswith(folder + os.sep))
    if len(keep) == len(listing.items):
        return listing
    reporter.warn(
        f"{len(listing.items) - len(keep)} file(s) inside the overlay folder {config.overlay} are not taken as inputs"
    )
    return replace(listing, items=keep)


def _run_here(ctx: RunContext, model_set: ModelSet, tasks: list[Task], bar) -> Iterator[InputOutcome]:
    progress = WorkerProgress(bar)
    for task in tasks:
        outcomes = run_task(ctx, model_set, task, progress)
        if bar is not None:
            bar.inputs_finished(task.inputs)
        yield from outcomes
