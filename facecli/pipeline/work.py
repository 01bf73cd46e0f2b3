"""Doing the work of a plan: units -> chunks (with checkpoints) -> the final output file.

One function per kind of work: :func:`process_target` makes one output from its units (videos
resume mid-way from their last checkpoint; groups of images resume unit by unit);
:func:`process_image_targets` makes single-image outputs (``-o OUTDIR/`` with images), batching
consecutive images across outputs. Both return one :class:`InputOutcome` per input, which the
engine turns into manifest lines and the summary. The same code runs in the main process and in
``--jobs`` workers.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pyarrow as pa

import facecli
from facecli.config import RunConfig
from facecli.io.images import ImageFailure, InputError, iter_image_batches
from facecli.io.video import iter_video_batches, probe_video
from facecli.pipeline import signals
from facecli.pipeline.overlays import render_overlays
from facecli.pipeline.plan import Target, WorkUnit
from facecli.pipeline.process import ModelSet, UnitProcessor, measure
from facecli.pipeline.sinks import LeaderLabeller, NoLabels, TrackLabeller, write_output
from facecli.pipeline.store import Checkpoint, MemoryStore, StoreBusy, TargetStore, UnitStore
from facecli.pipeline.writer import RowWriter, row_count, writer_thread
from facecli.schema import OutputLayout, to_record_batch
from facecli.timing import stage, timed_iter
from facecli.types import FaceResults, FrameBatch, ModelSetInfo


class Progress(Protocol):
    """Where processing reports how far it is (a rich bar, a queue to the parent process, nothing)."""

    def input_started(self, name: str, total: int | None) -> None: ...

    def advance(self, frames: int) -> None: ...

    def input_done(self) -> None: ...


class NoProgress:
    def input_started(self, name: str, total: int | None) -> None:
        pass

    def advance(self, frames: int) -> None:
        pass

    def input_done(self) -> None:
        pass


@dataclass(frozen=True)
class RunContext:
    """What every piece of work of a run shares (picklable, so ``--jobs`` workers get a copy).

    settings: the resolved settings that shape the output's values (compared by --skip-existing).
    settings_hash: short hash of ``settings``.
    metadata: the facecli metadata every output carries (per-output facts are added to it).
    """

    config: RunConfig
    info: ModelSetInfo
    layout: OutputLayout
    settings: dict
    settings_hash: str
    metadata: dict

    @property
    def chunk_schema(self) -> pa.Schema:
        return self.layout.arrow_schema()

    def output_schema(self, target: Target, inputs: list[dict]) -> pa.Schema:
        meta = {**self.metadata, "inputs": len(target.sources)}
        if len(inputs) <= 1000:
            meta["input_info"] = inputs
        return self.layout.arrow_schema(meta)

    def fingerprint(self, target: Target) -> dict:
        """What a target's checkpoints depend on: settings, batching and the inputs' size and time."""
        stamps = []
        for source in target.sources:
            try:
                st = os.stat(source)
                stamps.append([source, st.st_size, st.st_mtime_ns])
            except OSError:
                stamps.append([source, None, None])
        return {
            "settings_hash": self.settings_hash,
            "batch_size": self.config.batch_size,
            "facecli_version": facecli.__version__,
            "inputs": stamps,
        }


def settings_hash(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class InputOutcome:
    """What happened to one input: a manifest line's worth."""

    input: str
    output: str | None
    status: str  # "ok", "failed", "skipped" or "interrupted"
    error: str | None = None
    frames: int = 0
    faces: int = 0
    seconds: float = 0.0
    resumed_from: int | None = None
    overlay: str | None = None  # the overlay written for this input (or the folder of several)
    overlay_error: str | None = None  # one line: why the overlay could not be written (the output was)


@dataclass
class _UnitResult:
    store: UnitStore | MemoryStore
    outcomes: list[InputOutcome] = field(default_factory=list)
    info: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return any(o.status == "ok" for o in self.outcomes)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__


def failure_line(what: str, exc: BaseException) -> str:
    return f"{what}: processing failed ({type(exc).__name__}: {_first_line(exc)})"


def write_failure_line(what: str, exc: OSError) -> str:
    return f"{what}: cannot write its output ({exc.strerror or _first_line(exc)})"


# --------------------------------------------------------------------------------------- videos
def run_video_unit(ctx: RunContext, model_set: ModelSet, unit: WorkUnit, store: UnitStore, progress: Progress) -> _UnitResult:
    """Process one video into ``store``, continuing from its checkpoint; checkpoints as it goes.

    Raises:
        signals.Interrupted: after saving a checkpoint consistent with the chunks on disk.
    """
    path = unit.sources[0]
    started = time.perf_counter()
    result = _UnitResult(store)
    cp = store.load()
    resumed_from = cp.position[0] if cp.position else None
    if cp.done:
        result.outcomes.append(InputOutcome(path, None, "ok", frames=cp.frames, faces=cp.faces, resumed_from=resumed_from))
        result.info.append(cp.info)
        return result
    try:
        info = probe_video(path)
    except InputError as exc:
        store.reset()
        result.outcomes.append(InputOutcome(path, None, "failed", str(exc), seconds=time.perf_counter() - started))
        return result
    cfg = ctx.config
    total = -(-info.frames // cfg.skip_frames) if info.frames else None
    if cfg.max_frames is not None:
        total = min(total, cfg.max_frames) if total else cfg.max_frames
    progress.input_started(Path(path).name, total)
    progress.advance(cp.frames)
    meta = {"input": path, "fps": info.fps, "frames": info.frames, "width": info.width, "height": info.height,
            "rotation": info.rotation, "mirrored": info.mirrored}
    processor = UnitProcessor(model_set, track=ctx.layout.tracks, state=cp.state, detect_every=cfg.detect_every,
                              max_faces=cfg.max_faces)
    current = Checkpoint(cp.position, False, cp.frames, cp.faces, cp.rows, list(cp.chunks), cp.state, meta)
    last_save = time.monotonic()
    left = None if cfg.max_frames is None else cfg.max_frames - cp.frames
    batches = iter_video_batches(path, cfg.batch_size, cfg.skip_frames, cfg.decode_threads, start_after=cp.position,
                                 max_frames=left, pin_memory=model_set.device.type == "cuda")
    writer = RowWriter(lambda b, r: to_record_batch(ctx.layout, ctx.chunk_schema, b, r, None, info.fps), store,
                       threaded=writer_thread(model_set.device))
    try:
        for batch in timed_iter(batches, "wait for frames"):
            signals.check()
            results = processor(batch)
            with signals.deferred():  # the rows handed over and the checkpoint describing them go together
                writer.put(batch, results)
                current = Checkpoint(
                    (batch.index[-1], batch.time_s[-1]), False, current.frames + len(batch),
                    current.faces + len(results), current.rows + row_count(batch, results), current.chunks,
                    processor.state_dict(), meta,
                )
                if time.monotonic() - last_save >= cfg.checkpoint_every:
                    with stage("checkpoint"):
                        writer.flush()
                        store.save(current)
                    current, last_save = store.checkpoint, time.monotonic()
            progress.advance(len(batch))
        with signals.deferred():
            writer.flush()
            current.done = True
            store.save(current)
    except signals.Interrupted:
        with signals.deferred():
            try:
                writer.flush()
            except Exception:  # noqa: BLE001 - the rows since the last checkpoint are not all there
                store.discard_open_chunk()
            else:
                store.save(current)  # rows up to `current.position` are on disk: keep them
        raise
    except InputError as exc:
        writer.close()
        store.reset()  # the file itself is broken: resuming would fail the same way
        result.outcomes.append(InputOutcome(path, None, "failed", str(exc), seconds=time.perf_counter() - started))
        return result
    except (RuntimeError, ValueError, MemoryError, OSError) as exc:  # keep what was saved: a rerun resumes
        writer.close()
        store.discard_open_chunk()
        line = write_failure_line(path, exc) if isinstance(exc, OSError) else failure_line(path, exc)
        result.outcomes.append(InputOutcome(path, None, "failed", line, seconds=time.perf_counter() - started))
        return result
    finally:
        writer.close()
        batches.close()
        progress.input_done()
    done = store.checkpoint
    result.info.append(meta)
    result.outcomes.append(
        InputOutcome(path, None, "ok", frames=done.frames, faces=done.faces,
                     seconds=time.perf_counter() - started, resumed_from=resumed_from)
    )
    return result


# --------------------------------------------------------------------------------------- images
def _image_stream(
    ctx: RunContext, model_set: ModelSet, paths: list[str], frames: list[int]
) -> Iterator[tuple[str, pa.RecordBatch | None, str | None, int]]:
    """(source, its rows or None, error or None, faces) for every image in order; failures in place."""
    for item in iter_image_batches(paths, ctx.config.batch_size, frames):
        signals.check()
        if isinstance(item, ImageFailure):
            yield item.path, None, item.error, 0
            continue
        try:
            results = measure(model_set, item, ctx.config.max_faces)
        except (RuntimeError, ValueError, MemoryError) as exc:
            for source in item.sources:
                yield source, None, failure_line(source, exc), 0
            continue
        rows = to_record_batch(ctx.layout, ctx.chunk_schema, item, results, None)
        yield from _split_by_source(item, results, rows)


def _split_by_source(
    batch: FrameBatch, results: FaceResults, rows: pa.RecordBatch
) -> Iterator[tuple[str, pa.RecordBatch, None, int]]:
    """Rows of a batch are ordered by frame, so each image's rows are one contiguous slice."""
    faces = [0] * len(batch)
    for f in results.frame.tolist():
        faces[f] += 1
    start = 0
    for k, source in enumerate(batch.sources):
        n = max(faces[k], 1)
        yield source, rows.slice(start, n), None, faces[k]
        start += n


def run_image_units(
    ctx: RunContext, model_set: ModelSet, units: list[tuple[WorkUnit, UnitStore | MemoryStore]], progress: Progress,
    on_done=None,
) -> list[_UnitResult]:
    """Process groups of images, batching across units; a unit's checkpoint is saved when it is complete.

    Args:
        units: (unit, its store), in order; units already done (from an earlier run) are skipped.
        on_done: called with (unit, result) as soon as a unit is complete (single-image outputs are
            written then, not at the end).

    Raises:
        signals.Interrupted: units finished so far are saved; the current one is redone on resume.
    """
    results: dict[int, _UnitResult] = {}
    todo: list[tuple[WorkUnit, UnitStore | MemoryStore]] = []
    for unit, store in units:
        cp = store.load()
        res = _UnitResult(store)
        results[id(unit)] = res
        if cp.done:
            res.outcomes = [InputOutcome(s, None, "ok") for s in unit.sources]
            res.outcomes += [InputOutcome(source, None, "failed", line) for source, line in cp.failures]
            if on_done is not None:
                on_done(unit, res)
            continue
        if cp.chunks or store.has_open_chunk:
            store.reset()
        todo.append((unit, store))
    if not todo:
        return [results[id(u)] for u, _ in units]
    owner: dict[str, tuple[WorkUnit, UnitStore | MemoryStore]] = {}
    paths, frames = [], []
    for unit, store in todo:
        for source, frame in zip(unit.sources, unit.frames):
            owner[source] = (unit, store)
            paths.append(source)
            frames.append(frame)
    remaining = {id(u): len(u.sources) for u, _ in todo}
    counts: dict[int, list[int]] = {id(u): [0, 0, 0] for u, _ in todo}  # frames, faces, rows
    failures: dict[int, list[list[str]]] = {id(u): [] for u, _ in todo}
    progress.input_started("images", len(paths))
    started = time.perf_counter()
    try:
        for source, rows, error, faces in _image_stream(ctx, model_set, paths, frames):
            unit, store = owner[source]
            key = id(unit)
            with signals.deferred():
                if error is None:
                    store.write(rows)
                    c = counts[key]
                    c[0], c[1], c[2] = c[0] + 1, c[1] + faces, c[2] + rows.num_rows
                    results[key].outcomes.append(InputOutcome(source, None, "ok", frames=1, faces=faces))
                else:
                    failures[key].append([source, error])
                    results[key].outcomes.append(InputOutcome(source, None, "failed", error))
                remaining[key] -= 1
                if remaining[key] == 0:
                    c = counts[key]
                    store.save(Checkpoint(None, True, c[0], c[1], c[2], list(store.checkpoint.chunks), {}, {},
                                          failures[key]))
            progress.advance(1)
            if remaining[key] == 0 and on_done is not None:
                on_done(unit, results[key])
    except signals.Interrupted:
        for unit, store in todo:
            if remaining[id(unit)]:
                store.discard_open_chunk()
        raise
    except OSError as exc:  # the rows cannot be written (disk full): the unfinished units fail
        for unit, store in todo:
            if remaining[id(unit)]:
                store.discard_open_chunk()
                results[id(unit)].outcomes = [
                    InputOutcome(s, None, "failed", write_failure_line(s, exc)) for s in unit.sources
                ]
    finally:
        progress.input_done()
    elapsed = time.perf_counter() - started
    for res in results.values():
        for o in res.outcomes:
            o.seconds = o.seconds or elapsed / max(len(paths), 1)
    return [results[id(u)] for u, _ in units]


# --------------------------------------------------------------------------------------- outputs
def labeller_for(ctx: RunContext):
    if not ctx.layout.identity_dim:
        return NoLabels()
    cols = [f"Identity_{i + 1}" for i in range(ctx.layout.identity_dim)]
    threshold = float(ctx.settings["identity_threshold"])
    if ctx.settings["identity_method"] == "linkage" and ctx.layout.tracks:
        return TrackLabeller(threshold, cols)
    return LeaderLabeller(threshold, cols)


def finish_output(ctx: RunContext, target: Target, results: list[_UnitResult]) -> list[InputOutcome]:
    """Write ``target.output`` from the units that succeeded, then its overlays; return every input's outcome.

    Raises:
        OSError: the output cannot be written (its inputs are then marked failed by the caller).
    """
    outcomes = [o for r in results for o in r.outcomes]
    ok = [r for r in results if r.ok]
    if not ok:
        return outcomes
    info = [i for r in ok for i in r.info]
    with signals.deferred():
        target.output.parent.mkdir(parents=True, exist_ok=True)
    schema = ctx.output_schema(target, info)
    with stage("output file"):
        write_output(target.output, schema, ctx.config.output_format, [r.store for r in ok], labeller_for(ctx))
    for o in outcomes:
        if o.status == "ok":
            o.output = str(target.output)
    render_overlays(target, outcomes, info)
    return outcomes


def process_target(
    ctx: RunContext,
    model_set: ModelSet | None,
    target: Target,
    progress: Progress,
    positions: list[int] | None = None,
    store: TargetStore | None = None,
    finalize: bool | None = None,
) -> list[InputOutcome]:
    """Make one output from its units.

    Args:
        positions: only these units (default all).
        store: the output's in-progress folder, already opened (and locked) by the caller;
            default: opened here.
        finalize: write the output file at the end (default: when all units are processed here).
            ``--jobs`` workers process units of a shared output without writing it; the main
            process then calls this with the finished units and ``finalize=True``.

    Raises:
        signals.Interrupted: progress is saved in the output's in-progress folder.
    """
    if finalize is None:
        finalize = positions is None
    owned = store is None
    if store is None:
        store = TargetStore(target.output, ctx.fingerprint(target))
        try:
            with signals.deferred():
                target.output.parent.mkdir(parents=True, exist_ok=True)
                if finalize:
                    store.open()
        except (StoreBusy, OSError) as exc:
            line = str(exc) if isinstance(exc, StoreBusy) else f"{target.output}: cannot prepare the output ({exc})"
            return [InputOutcome(s, None, "failed", line) for s in target.sources]
    units = [u for u in target.units if positions is None or u.position in positions]
    results: list[_UnitResult] = []
    try:
        for unit in (u for u in units if u.kind == "video"):
            results.append(run_video_unit(ctx, model_set, unit, store.unit(unit.position, ctx.chunk_schema), progress))
        images = [(u, store.unit(u.position, ctx.chunk_schema)) for u in units if u.kind == "image"]
        if images:
            results += run_image_units(ctx, model_set, images, progress)
        if not finalize:
            return [o for r in results for o in r.outcomes]
        try:
            outcomes = finish_output(ctx, target, results)
        except OSError as exc:
            line = f"{target.output}: cannot write the output ({exc.strerror or exc})"
            return [InputOutcome(s, None, "failed", line) for s in target.sources]
        if not _keep_partial(results):
            store.remove()
        return outcomes
    finally:
        if owned:
            store.release()


def _keep_partial(results: list[_UnitResult]) -> bool:
    """A failed video whose checkpoints were kept (a model error, not a broken file) may be resumed."""
    return any(not r.ok and isinstance(r.store, UnitStore) and r.store.checkpoint.chunks for r in results)


def process_image_targets(
    ctx: RunContext, model_set: ModelSet, targets: list[Target], progress: Progress
) -> list[InputOutcome]:
    """Single-image outputs: images batched across outputs, each output written when its image is done."""
    outcomes: list[InputOutcome] = []
    pairs = [(t.units[0], MemoryStore()) for t in targets]
    by_unit = {id(t.units[0]): t for t in targets}

    def done(unit: WorkUnit, result: _UnitResult) -> None:
        target = by_unit[id(unit)]
        try:
            outcomes.extend(finish_output(ctx, target, [result]))
        except OSError as exc:
            line = f"{target.output}: cannot write the output ({exc.strerror or exc})"
            outcomes.extend(InputOutcome(s, None, "failed", line) for s in target.sources)

    run_image_units(ctx, model_set, pairs, progress, on_done=done)
    return outcomes
