"""The streaming engine: inputs -> frame batches -> model set -> record batches -> one output file.

Nothing here knows a model's internals or a column's name: the model set turns frames into
``FaceResults`` and ``facecli.schema`` turns those into rows. Frames are decoded ahead in a
background thread and written out batch by batch, so memory does not grow with video length.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor

import facecli
from facecli.config import RunConfig
from facecli.identity.cluster import LeaderClustering
from facecli.io.images import IMAGE_SUFFIXES, VIDEO_SUFFIXES, InputError, InputItem, expand_inputs, read_image
from facecli.io.video import iter_video_batches, probe_video
from facecli.io.writers import open_writer
from facecli.io.prefetch import prefetch
from facecli.pipeline.report import ProgressTask, Reporter
from facecli.schema import OutputLayout, to_record_batch
from facecli.types import Detections, FaceResults, FrameBatch, ModelSetInfo


class ModelSet(Protocol):
    """A detector plus per-face models behind one interface."""

    info: ModelSetInfo
    device: torch.device

    def detect(self, frames: Tensor) -> Detections:
        """frames: Tensor[B, 3, H, W] uint8 RGB on the set's device."""

    def analyze(self, frames: Tensor, detections: Detections) -> FaceResults:
        """Per-face measurements in frame pixels for the detections of ``frames``."""


@dataclass(frozen=True)
class RunSummary:
    """What a run did."""

    output: Path
    model_set: str
    inputs_ok: int  # inputs fully processed
    frames: int  # frames processed
    faces: int  # faces measured
    rows: int  # rows written
    errors: tuple[str, ...]  # one line per failed input
    seconds: float


def layout_for(info: ModelSetInfo, video: bool) -> OutputLayout:
    return OutputLayout(
        model_set=info.name,
        video=video,
        au_names=info.au_names,
        emotion_names=info.emotion_names,
        valence_arousal=info.valence_arousal,
        gaze=info.gaze,
        pose=info.pose,
        identity_dim=info.identity_dim,
        blendshapes=info.blendshapes,
        n_keypoints=info.n_keypoints,
    )


def run(config: RunConfig, model_set: ModelSet, reporter: Reporter, weight_hashes: dict[str, str]) -> RunSummary:
    """Process every input of ``config`` into ``config.output``.

    A bad input is reported as one line and skipped; the others are still written. The output
    appears only when the run finishes (atomic rename).
    """
    started = time.perf_counter()
    video = config.kind == "video"
    layout = layout_for(model_set.info, video)
    threshold = identity_threshold(config, model_set.info)
    metadata = {
        "facecli_version": facecli.__version__,
        "model_set": model_set.info.name,
        "weights": weight_hashes,
        "device": str(model_set.device),
        "settings": {
            **config.as_metadata(),
            "models": model_set.info.name,
            "identity_threshold": threshold,
            **_identity_setting(model_set.info),
        },
        "columns_left_out": _left_out(model_set.info),
    }
    schema = layout.arrow_schema(metadata)
    clustering = LeaderClustering(threshold) if layout.identity_dim else None
    suffixes = VIDEO_SUFFIXES if video else IMAGE_SUFFIXES
    items = list(expand_inputs(config.inputs, suffixes))
    frames = faces = inputs_ok = 0
    writer = None
    try:
        with _signals_held():  # a SIGTERM/SIGINT now is handled once `writer` is set, so it is removed
            writer = open_writer(config.output, schema, config.output_format)
        with reporter.progress() as bar:
            for source, batches, fps in _sources(items, config, reporter, bar):
                try:
                    for batch in batches:
                        try:
                            results = _measure(model_set, batch)
                        except (RuntimeError, ValueError) as exc:
                            if video:
                                raise  # the rest of this video would most likely fail the same way
                            _report_failure(reporter, ", ".join(batch.sources), exc, config.verbose)
                            continue
                        ids = _identities(clustering, results)
                        writer.write(to_record_batch(layout, schema, batch, results, ids, fps))
                        frames += len(batch)
                        faces += len(results)
                        if not video:
                            inputs_ok += len(batch)
                        if bar is not None:
                            bar.advance(len(batch))
                    if video:
                        inputs_ok += 1
                        reporter.detail(f"{source}: done")
                except InputError as exc:
                    reporter.error(str(exc))
                except (RuntimeError, ValueError) as exc:  # one input must not lose the others' results
                    _report_failure(reporter, source, exc, config.verbose)
        if inputs_ok == 0:
            writer.abort()  # nothing usable: no file rather than an empty one that looks fine
        else:
            writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    return RunSummary(
        output=config.output,
        model_set=model_set.info.name,
        inputs_ok=inputs_ok,
        frames=frames,
        faces=faces,
        rows=writer.rows,
        errors=tuple(reporter.errors),
        seconds=time.perf_counter() - started,
    )


@torch.inference_mode()
def _measure(model_set: ModelSet, batch: FrameBatch) -> FaceResults:
    frames = batch.images.to(model_set.device, non_blocking=True).contiguous()
    detections = model_set.detect(frames)
    return model_set.analyze(frames, detections)


def _identities(clustering: LeaderClustering | None, results: FaceResults) -> list[str | None]:
    if clustering is None or results.identity is None or len(results) == 0:
        return [None] * len(results)
    return clustering.assign(results.identity.float().cpu().numpy())


def _sources(
    items: list[InputItem], config: RunConfig, reporter: Reporter, bar: ProgressTask | None
) -> Iterator[tuple[str, Iterator[FrameBatch], float]]:
    """(input, its frame batches, fps) for every usable video, or one stream of all images.

    Unusable inputs are reported as they are met. Consecutive images of the same size share a
    batch (up to ``batch_size``); an image that cannot be decoded never stops the others.
    """
    if config.kind == "video":
        for item in items:
            if item.error:
                reporter.error(f"{item.path}: {item.error}")
                continue
            try:
                info = probe_video(item.path)
            except InputError as exc:
                reporter.error(str(exc))
                continue
            if bar is not None:
                bar.start(Path(item.path).name, -(-info.frames // config.skip_frames) if info.frames else None)
            batches = iter_video_batches(item.path, config.batch_size, config.skip_frames, config.decode_threads)
            yield item.path, batches, info.fps
        return
    if bar is not None:
        bar.start("images", sum(1 for it in items if it.error is None))
    yield "images", _image_batches(items, config.batch_size, reporter), 0.0


def _image_batches(items: list[InputItem], batch_size: int, reporter: Reporter) -> Iterator[FrameBatch]:
    """Decoded images grouped into batches of consecutive same-size images; ``frame`` counts images."""
    images: list[Tensor] = []
    paths: list[str] = []
    counter = 0

    def flush() -> FrameBatch:
        nonlocal counter
        batch = FrameBatch(
            images=torch.stack(images),
            index=tuple(range(counter, counter + len(images))),
            time_s=(0.0,) * len(images),
            sources=tuple(paths),
        )
        counter += len(images)
        images.clear()
        paths.clear()
        return batch

    for item, image in prefetch(_decode_images(items), depth=max(4, batch_size), name="facecli-images"):
        if isinstance(image, InputError) or item.error:
            reporter.error(str(image) if isinstance(image, InputError) else f"{item.path}: {item.error}")
            continue
        if images and image.shape != images[0].shape:
            yield flush()
        images.append(image)
        paths.append(item.path)
        if len(images) == batch_size:
            yield flush()
    if images:
        yield flush()


def _decode_images(items: list[InputItem]) -> Iterator[tuple[InputItem, Tensor | InputError | None]]:
    for item in items:
        if item.error:
            yield item, None
            continue
        try:
            yield item, read_image(item.path)
        except InputError as exc:
            yield item, exc
        except Exception as exc:  # a decoder failing in an unexpected way is still this file's failure
            yield item, InputError(f"{item.path}: cannot decode ({type(exc).__name__}: {_first_line(exc)})")


def identity_threshold(config: RunConfig, info: ModelSetInfo) -> float:
    """The run's identity threshold: the user's, else the model set's default."""
    return info.identity_threshold if config.identity_threshold is None else config.identity_threshold


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT/SIGTERM at the OS level for the block; they are delivered when it ends."""
    held = {signal.SIGINT, signal.SIGTERM}
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _report_failure(reporter: Reporter, what: str, exc: BaseException, verbose: bool) -> None:
    reporter.error(f"{what}: processing failed ({type(exc).__name__}: {_first_line(exc)})")
    if verbose:
        reporter.console.print_exception()


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else ""


def _identity_setting(info: ModelSetInfo) -> dict[str, str]:
    """The identity network actually used (the lite set always uses dlib's)."""
    return {"identity_model": "dlib"} if info.name == "lite" else {}


def _left_out(info: ModelSetInfo) -> list[str]:
    groups = {
        "aus": bool(info.au_names),
        "emotions": bool(info.emotion_names),
        "valence_arousal": info.valence_arousal,
        "gaze": info.gaze,
        "pose": info.pose,
        "blendshapes": info.blendshapes,
        "identity": info.identity_dim > 0,
    }
    return [name for name, present in groups.items() if not present]
