"""The run's settings: one frozen object built by the CLI and read by the pipeline."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

ModelChoice = Literal["auto", "feat-v2", "lite"]
IdentityChoice = Literal["arcface", "facenet", "none"]
InputKind = Literal["image", "video"]

OUTPUT_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}


class ConfigError(ValueError):
    """A setting is invalid; the message is one line for the user."""


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs to know, validated once."""

    inputs: tuple[str, ...]  # paths, directories or globs as the user gave them
    output: Path  # .parquet or .csv file
    kind: InputKind  # "image" for `detect`, "video" for `video`
    models: ModelChoice = "auto"  # which model set; auto = feat-v2 when its weights can be had, else lite
    weights_dir: Path | None = None  # DIR/<repo_id>/<filename> layout; falls back to $FACECLI_WEIGHTS_DIR
    device: str = "auto"  # auto, cpu, cuda, cuda:N, mps
    batch_size: int = 8  # frames per forward pass
    detection_threshold: float | None = None  # detector score a face must reach; None: the set's default
    detect_size: int | None = None  # None: detect on the full frame; N: longest side downscaled to N
    identity_model: IdentityChoice = "arcface"  # feat-v2 identity network; lite always uses dlib
    identity_threshold: float | None = None  # cosine similarity to join an identity; None: the set's default
    skip_frames: int = 1  # video: keep every Nth frame (1 = all)
    lite_detector: Literal["short", "full"] = "short"  # BlazeFace range for the lite set
    decode_threads: int = 0  # PyAV decoder threads (0 = let FFmpeg choose)
    quiet: bool = False  # no progress bar, errors only
    verbose: bool = False  # extra log lines

    @property
    def output_format(self) -> str:
        return OUTPUT_FORMATS[self.output.suffix.lower()]

    def validate(self) -> "RunConfig":
        """Check cross-field rules; raise ConfigError with a one-line reason."""
        if self.output.suffix.lower() not in OUTPUT_FORMATS:
            raise ConfigError(f"{self.output}: output must end in .parquet or .csv")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.detection_threshold is not None and not 0.0 <= self.detection_threshold <= 1.0:
            raise ConfigError(f"--detection-threshold must be in [0, 1], got {self.detection_threshold}")
        if self.identity_threshold is not None and not -1.0 <= self.identity_threshold <= 1.0:
            raise ConfigError(f"--identity-threshold must be in [-1, 1], got {self.identity_threshold}")
        if self.skip_frames < 1:
            raise ConfigError(f"--skip-frames must be at least 1, got {self.skip_frames}")
        if self.detect_size is not None and self.detect_size < 32:
            raise ConfigError(f"--detect-size must be 'full' or at least 32, got {self.detect_size}")
        if not self.inputs:
            raise ConfigError("no input given")
        return self

    def as_metadata(self) -> dict[str, object]:
        """Settings recorded in the output file's metadata (JSON-serialisable)."""
        out = asdict(self)
        out["output"] = str(self.output)
        out["weights_dir"] = str(self.weights_dir) if self.weights_dir else None
        out["inputs"] = list(self.inputs)
        return out


def parse_detect_size(value: str) -> int | None:
    """``full`` -> None; an integer string -> that length."""
    if value.strip().lower() == "full":
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"--detect-size must be 'full' or an integer, got {value!r}") from None
