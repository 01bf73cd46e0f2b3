"""``facecli bench``: frames per second of decode, detection and the whole pipeline on one clip.

Every figure is measured in the same run, and the pipeline stages are reported as ratios
against the decode-only baseline, so numbers from different machines can be compared.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from facecli.config import ConfigError, RunConfig, parse_detect_size


class BenchError(Exception):
    """The benchmark cannot run; one line for the user."""


EXAMPLE_CLIP = Path(__file__).resolve().parents[1] / "examples" / "astronaut.mp4"


@dataclass
class BenchReport:
    clip: str
    model_set: str
    device: str
    torch_threads: int
    batch_size: int
    frames: int
    fps: dict[str, float] = field(default_factory=dict)  # stage -> frames per second
    faces_per_frame: float = 0.0
    clip_frames: int = 0  # frames in the clip (it is replayed when shorter than the timed run)

    def ratios(self) -> dict[str, float]:
        base = self.fps.get("decode", 0.0)
        return {k: (v / base if base else float("nan")) for k, v in self.fps.items()}

    def table(self) -> str:
        lines = [
            f"clip {self.clip}: {self.frames} frames, {self.faces_per_frame:.2f} faces/frame",
            f"model set {self.model_set} on {self.device}, batch {self.batch_size}, torch threads {self.torch_threads}",
            f"{'stage':<22}{'frames/s':>10}{'ms/frame':>10}{'x decode':>10}",
        ]
        ratios = self.ratios()
        for stage, fps in self.fps.items():
            ms = 1000.0 / fps if fps else float("nan")
            lines.append(f"{stage:<22}{fps:>10.1f}{ms:>10.1f}{ratios[stage]:>10.3f}")
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "ratios": self.ratios()}, indent=2)


def _timed(batches, n_frames: int, fn) -> tuple[float, int, int]:
    """Run ``fn`` on batches until ``n_frames`` frames; first batch is a warm-up. -> (fps, frames, faces)."""
    frames = faces = 0
    start = None
    for batch in batches:
        out = fn(batch)
        if start is None:  # warm-up batch not timed
            start = time.perf_counter()
            continue
        frames += len(batch)
        faces += out
        if frames >= n_frames:
            break
    elapsed = time.perf_counter() - (start or time.perf_counter())
    return (frames / elapsed if elapsed > 0 else 0.0), frames, faces


def run_bench(
    clip: Path | None,
    models: str = "lite",
    weights_dir: Path | None = None,
    device: str = "auto",
    batch_size: int = 8,
    frames: int = 64,
    detect_size: str = "full",
    threads: int = 0,
) -> BenchReport:
    from facecli.io.images import InputError
    from facecli.io.video import iter_video_batches, probe_video
    from facecli.models.sets import build_model_set
    from facecli.models.weights import WeightsError
    from facecli.schema import to_record_batch
    from facecli.schema import OutputLayout

    clip = clip or EXAMPLE_CLIP
    if threads > 0:
        torch.set_num_threads(threads)
    try:
        info = probe_video(clip)
        config = RunConfig(
            inputs=(str(clip),), output=Path("bench.parquet"), kind="video", models=models,  # type: ignore[arg-type]
            weights_dir=weights_dir, device=device, batch_size=batch_size,
            detect_size=parse_detect_size(detect_size),
        ).validate()
        model_set, _ = build_model_set(config, lambda line: None)
    except (InputError, ConfigError, WeightsError) as exc:
        raise BenchError(str(exc)) from None
    def batches():  # the clip over and over, so a short clip can time any number of frames
        while True:
            empty = True
            for batch in iter_video_batches(clip, batch_size):
                empty = False
                yield batch
            if empty:
                raise BenchError(f"{clip}: no frames could be decoded")

    dev = model_set.device
    layout = OutputLayout.for_set(model_set.info, video=True)
    schema = layout.arrow_schema()

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    def decode_only(batch) -> int:
        batch.images.to(dev).contiguous()
        sync()
        return 0

    @torch.inference_mode()
    def detect_only(batch) -> int:
        n = len(model_set.detect(batch.images.to(dev).contiguous()))
        sync()
        return n

    @torch.inference_mode()
    def full(batch) -> int:
        x = batch.images.to(dev).contiguous()
        results = model_set.analyze(x, model_set.detect(x))
        to_record_batch(layout, schema, batch, results, [None] * len(results), info.fps)
        return len(results)

    report = BenchReport(
        clip=str(clip), model_set=model_set.info.name, device=str(dev),
        torch_threads=torch.get_num_threads(), batch_size=batch_size, frames=0,
    )
    report.fps["decode"], report.frames, _ = _timed(batches(), frames, decode_only)
    report.clip_frames = info.frames
    report.fps["decode+detect"], _, _ = _timed(batches(), frames, detect_only)
    report.fps["full pipeline"], n, faces = _timed(batches(), frames, full)
    report.faces_per_frame = faces / n if n else 0.0
    return report
