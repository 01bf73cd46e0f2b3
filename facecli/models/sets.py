"""Choosing and building the model set a run uses (``--models auto|feat-v2|lite``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from facecli.config import ConfigError, RunConfig


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda, then mps, then cpu; otherwise the named device, checked to exist.

    Raises:
        ConfigError: the device is unknown or not available here.
    """
    name = name.strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device {name!r} is not a device name (auto, cpu, cuda, cuda:N, mps)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name}: CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError(f"--device {name}: MPS is not available on this machine")
    elif device.type != "cpu":
        raise ConfigError(f"--device {name!r} is not supported (auto, cpu, cuda, cuda:N, mps)")
    return device


def cpu_budget() -> int:
    """CPU threads this process may use: the CPUs it is allowed to run on (a SLURM allocation sets
    them), capped by SLURM_CPUS_PER_TASK when a job says so."""
    import os

    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if slurm.isdigit() and int(slurm) > 0:
        cpus = min(cpus, int(slurm))
    return max(1, cpus)


def featv2_roles(identity_model: str) -> list[str]:
    """The weight files a feat-v2 run needs."""
    roles = ["retinaface", "multitask"]
    if identity_model in ("arcface", "facenet"):
        roles.append(identity_model)
    return roles


def choose_model_set(config: RunConfig, warn: Callable[[str], None]) -> str:
    """``auto``: feat-v2 when its weights are local or the Hub answers, else lite with one warning.

    Decides without a long network wait: local files are checked first, and the Hub probe
    gives up after about a second (at once under HF_HUB_OFFLINE=1).
    """
    if config.models != "auto":
        return config.models
    from facecli.models import hub

    missing = [
        role for role in featv2_roles(config.identity_model)
        if hub.find_local(hub.FEAT_V2_FILES[role], config.weights_dir) is None
    ]
    if not missing:
        return "feat-v2"
    if hub.hub_reachable():
        return "feat-v2"
    first = hub.FEAT_V2_FILES[missing[0]]
    warn(
        f"using the lite model set: feat-v2 weights ({first.repo_id}/{first.filename}"
        f"{f' and {len(missing) - 1} more' if len(missing) > 1 else ''}) are not on this machine and the "
        "Hugging Face Hub cannot be reached; for feat-v2 run `facecli models download --to DIR` on a "
        "connected machine and pass --weights-dir DIR (or set FACECLI_WEIGHTS_DIR)"
    )
    return "lite"


def build_model_set(config: RunConfig, warn: Callable[[str], None]) -> tuple[object, dict[str, str]]:
    """The chosen model set on its device, and the SHA-256 of every weight file it loaded.

    Raises:
        ConfigError: bad device.
        facecli.models.weights.WeightsError: weights missing (one line saying how to get them) or invalid.
    """
    from facecli.models import hub

    model_set = load_model_set(config, warn)
    hashes = {role: hub.sha256_file(Path(path)) for role, path in model_set.info.weights}
    return model_set, hashes


def load_model_set(config: RunConfig, warn: Callable[[str], None] = lambda line: None) -> object:
    """The chosen model set on its device (what a ``--jobs`` worker loads for itself).

    Torch never uses more CPU threads than :func:`cpu_budget` allows (divided among --jobs workers).
    """
    device = resolve_device(config.device)
    threads = max(1, cpu_budget() // max(1, config.jobs))
    if torch.get_num_threads() > threads:
        torch.set_num_threads(threads)
    choice = choose_model_set(config, warn)
    from facecli.models import hub

    if choice == "feat-v2":
        from facecli.models.featv2 import load_featv2

        paths = {
            role: hub.resolve(hub.FEAT_V2_FILES[role], config.weights_dir)
            for role in featv2_roles(config.identity_model)
        }
        model_set = load_featv2(
            paths,
            device,
            identity_model=config.identity_model,
            threshold=config.detection_threshold,
            detect_size=config.detect_size,
        )
    else:
        from facecli.models.lite import load_lite

        model_set = load_lite(
            device,
            threshold=config.detection_threshold,
            detector=config.lite_detector,
            detect_size=config.detect_size,
            min_face=config.lite_min_face,
        )
    set_precision(model_set, config.precision)
    return model_set


def set_precision(model_set, name: str) -> None:
    """Run the set's networks in ``name`` precision (fp32, bf16, auto or exact; see facecli.models.runtime).

    Raises:
        ConfigError: bf16 on a device that has no autocast for it.
    """
    from dataclasses import replace

    from facecli.models.runtime import configure, resolve_precision

    try:
        precision = resolve_precision(name, model_set.device)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    networks = model_set.networks()
    configure(networks, precision, model_set.device)
    if precision == "bf16" and not any(net.bf16 for net in networks.values()):
        precision = "fp32"  # none of the set's networks runs faster in bf16: they stay fp32
    if precision == "exact" and all(net.channels_last_exact is None for net in networks.values()):
        precision = "fp32"  # the set's fp32 already is its reference's arithmetic
    model_set.info = replace(model_set.info, precision=precision)


def set_defaults() -> list[tuple[str, str]]:
    """(model set, its default thresholds in words), from the sets' own constants."""
    from facecli.models import featv2
    from facecli.models.lite import IDENTITY_THRESHOLD
    from facecli.models.lite.blazeface import DEFAULT_THRESHOLD
    from facecli.models.lite.tiling import TILED_THRESHOLD

    thresholds = {"tiled": TILED_THRESHOLD, **DEFAULT_THRESHOLD}
    lite_detection = ", ".join(f"{v} ({k})" for k, v in thresholds.items())
    return [
        ("feat-v2", f"detection threshold {featv2.DETECTION_THRESHOLD}; identity threshold {featv2.IDENTITY_THRESHOLD} "
                    "cosine (arcface or facenet)"),
        ("lite", f"detection threshold {lite_detection}; identity threshold {IDENTITY_THRESHOLD} cosine (dlib)"),
    ]
