"""The run's settings: one frozen object built by the CLI and read by the pipeline."""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Mapping

ModelChoice = Literal["auto", "feat-v2", "lite"]
IdentityChoice = Literal["arcface", "facenet", "none"]
InputKind = Literal["image", "video"]

OUTPUT_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
FORMAT_SUFFIX = {"parquet": ".parquet", "csv": ".csv"}
OVERLAY_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi")  # containers an overlay video can be written to
# --precision: float32 (fastest layouts), bfloat16 autocast, bf16 where the hardware has it, or
# float32 in the reference's own layouts (facecli.models.runtime)
PRECISIONS = ("fp32", "bf16", "auto", "exact")


class ConfigError(ValueError):
    """A setting is invalid; the message is one line for the user."""


@dataclass(frozen=True)
class Shard:
    """This run's share of the inputs: every ``count``-th input, starting at ``index`` (0-based).

    source: where the shard came from, for the log ("--shard", or the SLURM variables).
    """

    index: int
    count: int
    source: str = "--shard"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @staticmethod
    def parse(text: str) -> "Shard":
        """``I/N`` with 0 <= I < N."""
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if not m or not 0 <= int(m.group(1)) < int(m.group(2)):
            raise ConfigError(f"--shard must be I/N with 0 <= I < N (e.g. 0/10), got {text!r}")
        return Shard(int(m.group(1)), int(m.group(2)))

    @staticmethod
    def from_slurm(env: Mapping[str, str] = os.environ) -> "Shard | None":
        """The shard of a SLURM job-array task, or None outside an array.

        Task ids need not start at 0 or be consecutive: a range ``MIN-MAX:STEP`` maps task
        ``MIN + k * STEP`` to shard ``k`` of ``SLURM_ARRAY_TASK_COUNT`` (or ``(MAX - MIN) / STEP + 1``
        on SLURM versions without the count).

        Raises:
            ConfigError: the array is not a regular range (e.g. ``--array=1,3,7``), so no shard
                number can be derived without risking inputs that no task processes.
        """
        task = env.get("SLURM_ARRAY_TASK_ID")
        if task is None or not task.strip():
            return None
        try:
            tid = int(task)
            lo = int(env.get("SLURM_ARRAY_TASK_MIN", tid))
            hi = int(env.get("SLURM_ARRAY_TASK_MAX", tid))
            step = int(env.get("SLURM_ARRAY_TASK_STEP", "1") or 1)
            count = int(env["SLURM_ARRAY_TASK_COUNT"]) if env.get("SLURM_ARRAY_TASK_COUNT") else (hi - lo) // step + 1
        except ValueError:
            raise ConfigError(f"cannot read the SLURM array variables (SLURM_ARRAY_TASK_ID={task!r})") from None
        where = f"SLURM_ARRAY_TASK_ID={tid} of array {lo}-{hi}" + (f":{step}" if step != 1 else "")
        if step < 1 or (tid - lo) % step or count != (hi - lo) // step + 1:
            raise ConfigError(
                f"{where} with {count} tasks is not a regular range, so facecli cannot tell this task's share; "
                "pass --shard I/N explicitly"
            )
        return Shard((tid - lo) // step, count, where)


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs to know, validated once."""

    inputs: tuple[str, ...]  # paths, directories or globs as the user gave them
    output: Path  # .parquet/.csv file, or a folder for one output per input (see output_is_dir)
    kind: InputKind  # "image" for `detect`, "video" for `video`
    output_is_dir: bool = False  # -o ended in a slash or named an existing folder
    output_format: str = "parquet"  # "parquet" or "csv" (a file's suffix, or --format for a folder)
    files_from: str | None = None  # a file listing one input path per line ("-" = standard input)
    manifest: Path | None = None  # JSON-lines log of every input; default OUTDIR/_manifest.jsonl
    shard: Shard | None = None  # this run's share of the inputs; None: all of them
    skip_existing: bool = False  # keep complete outputs made with the same settings
    jobs: int = 1  # inputs processed at once, each in its own process
    checkpoint_every: float = 30.0  # seconds between checkpoints of a long input (resume after a kill)
    models: ModelChoice = "auto"  # which model set; auto = feat-v2 when its weights can be had, else lite
    weights_dir: Path | None = None  # DIR/<repo_id>/<filename> layout; falls back to $FACECLI_WEIGHTS_DIR
    device: str = "auto"  # auto, cpu, cuda, cuda:N, mps
    batch_size: int = 8  # frames per forward pass
    detection_threshold: float | None = None  # detector score a face must reach; None: the set's default
    detect_size: int | None = None  # None: detect on the full frame; N: longest side downscaled to N
    identity_model: IdentityChoice = "arcface"  # feat-v2 identity network; lite always uses dlib
    identity_threshold: float | None = None  # cosine similarity to join an identity; None: the set's default
    identity_method: str | None = None  # "linkage" (of tracks) or "leader"; None: linkage for video, leader for images
    skip_frames: int = 1  # video: keep every Nth frame (1 = all)
    detect_every: int = 1  # video: run the detector on every Kth processed frame, follow faces in between
    max_faces: int | None = None  # keep the N best-scoring faces of each detection; None: every face
    precision: str = "fp32"  # network arithmetic: fp32, bf16, auto (bf16 where the hardware has it) or exact
    max_frames: int | None = None  # video: stop after this many processed frames (benchmarks); None: all
    lite_detector: Literal["tiled", "short", "full"] = "tiled"  # lite: tiled short range over the frame at every
    #   scale it needs (faces of any size), or MediaPipe's whole-frame short (close faces) / full range
    lite_min_face: float = 24.0  # lite tiled detection: the smallest face searched for, frame pixels
    decode_threads: int = 0  # PyAV decoder threads (0 = let FFmpeg choose)
    overlay: Path | None = None  # --overlay: an overlay video (one input), or a folder of overlays
    overlay_is_dir: bool = False  # --overlay is a folder: one overlay per input, paths mirrored
    overlay_mesh: bool = False  # overlays draw the 478-point mesh instead of the 68 landmarks
    quiet: bool = False  # no progress bar, errors only
    verbose: bool = False  # extra log lines

    @property
    def resolved_identity_method(self) -> str:
        return self.identity_method or ("linkage" if self.kind == "video" else "leader")

    @property
    def manifest_path(self) -> Path | None:
        if self.manifest is not None:
            return self.manifest
        return self.output / "_manifest.jsonl" if self.output_is_dir else None

    def validate(self) -> "RunConfig":
        """Check cross-field rules; raise ConfigError with a one-line reason."""
        if not self.output_is_dir and self.output.suffix.lower() not in OUTPUT_FORMATS:
            raise ConfigError(f"{self.output}: output must end in .parquet or .csv, or be a folder (end it in /)")
        if self.output_format not in FORMAT_SUFFIX:
            raise ConfigError(f"--format must be parquet or csv, got {self.output_format!r}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.detection_threshold is not None and not 0.0 <= self.detection_threshold <= 1.0:
            raise ConfigError(f"--detection-threshold must be in [0, 1], got {self.detection_threshold}")
        if self.identity_threshold is not None and not -1.0 <= self.identity_threshold <= 1.0:
            raise ConfigError(f"--identity-threshold must be in [-1, 1], got {self.identity_threshold}")
        if self.skip_frames < 1:
            raise ConfigError(f"--skip-frames must be at least 1, got {self.skip_frames}")
        if self.detect_every < 1:
            raise ConfigError(f"--detect-every must be at least 1, got {self.detect_every}")
        if self.max_faces is not None and self.max_faces < 1:
            raise ConfigError(f"--max-faces must be at least 1, got {self.max_faces}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.max_frames is not None and self.max_frames < 1:
            raise ConfigError(f"--frames must be at least 1, got {self.max_frames}")
        if not 8.0 <= self.lite_min_face <= 4096.0:
            raise ConfigError(f"--lite-min-face must be between 8 and 4096 pixels, got {self.lite_min_face:g}")
        if self.detect_size is not None and self.detect_size < 32:
            raise ConfigError(f"--detect-size must be 'full' or at least 32, got {self.detect_size}")
        if self.identity_method not in (None, "linkage", "leader"):
            raise ConfigError(f"--identity-method must be linkage or leader, got {self.identity_method!r}")
        if self.jobs < 1:
            raise ConfigError(f"--jobs must be at least 1, got {self.jobs}")
        if self.checkpoint_every < 0:
            raise ConfigError(f"--checkpoint-every must be >= 0 seconds, got {self.checkpoint_every}")
        self._validate_overlay()
        if not self.inputs and self.files_from is None:
            raise ConfigError("no input given (name files, folders or patterns, or use --files-from LIST)")
        return self

    def _validate_overlay(self) -> None:
        if self.overlay is None:
            if self.overlay_mesh:
                raise ConfigError("--overlay-mesh needs --overlay")
            return
        if self.kind == "image":
            if not self.overlay_is_dir:
                raise ConfigError(f"--overlay {self.overlay}: detect writes annotated images, so give a folder")
            return
        if self.output_is_dir and not self.overlay_is_dir:
            raise ConfigError(
                f"--overlay {self.overlay}: with an output folder (-o {self.output}/) give a folder for the "
                "overlays too (end it in /)"
            )
        if not self.overlay_is_dir and self.overlay.suffix.lower() not in OVERLAY_SUFFIXES:
            raise ConfigError(
                f"--overlay {self.overlay}: an overlay video must end in {', '.join(OVERLAY_SUFFIXES)}, "
                "or be a folder (end it in /)"
            )

    def as_metadata(self) -> dict[str, object]:
        """Settings recorded in the output file's metadata (JSON-serialisable; no input list)."""
        out = asdict(self)
        for key in ("inputs", "files_from", "quiet", "verbose"):
            out.pop(key)
        out["output"] = str(self.output)
        out["manifest"] = str(self.manifest) if self.manifest else None
        out["weights_dir"] = str(self.weights_dir) if self.weights_dir else None
        out["shard"] = str(self.shard) if self.shard else None
        out["overlay"] = str(self.overlay) if self.overlay else None
        return out


def parse_detect_size(value: str) -> int | None:
    """``full`` -> None; an integer string -> that length."""
    if value.strip().lower() == "full":
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"--detect-size must be 'full' or an integer, got {value!r}") from None


def parse_output(value: str, fmt: str | None) -> tuple[Path, bool, str]:
    """``-o`` as given -> (path, is a folder, format).

    A value ending in a path separator, or naming an existing folder, is an output folder (one
    output per input, in ``fmt``, default parquet); otherwise a file whose suffix gives the format.
    """
    is_dir = value.endswith(("/", os.sep)) or os.path.isdir(value)
    path = Path(value)
    if is_dir:
        return path, True, (fmt or "parquet").lower()
    suffix_format = OUTPUT_FORMATS.get(path.suffix.lower())
    if fmt is not None and suffix_format is not None and fmt.lower() != suffix_format:
        raise ConfigError(f"{value}: --format {fmt} does not match the file's suffix")
    return path, False, suffix_format or (fmt or "parquet").lower()


def parse_overlay(value: str | None, kind: InputKind) -> tuple[Path | None, bool]:
    """``--overlay`` as given -> (path, is a folder). For ``detect`` it is always a folder; for
    ``video`` a value ending in a path separator, or naming an existing folder, is a folder."""
    if value is None:
        return None, False
    if kind == "image" and os.path.isfile(value):
        raise ConfigError(f"--overlay {value}: is a file; detect writes annotated images into a folder")
    is_dir = kind == "image" or value.endswith(("/", os.sep)) or os.path.isdir(value)
    if not is_dir and os.path.exists(value) and not os.path.isfile(value):
        raise ConfigError(f"--overlay {value}: exists and is not a file or folder")
    return Path(value), is_dir
