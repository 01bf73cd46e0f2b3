"""Where the feat-v2 weight files come from: a registry and one resolution order.

Every feat-v2 file is published on the Hugging Face Hub by py-feat. A file is looked up, in order:

1. in a weights folder (``weights_dir`` argument, else ``$FACECLI_WEIGHTS_DIR``) laid out as
   ``DIR/<repo_id>/<filename>``, e.g. ``DIR/py-feat/retinaface_r34/model.safetensors``;
2. in the huggingface_hub cache (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``), without network;
3. on the Hub, downloaded into that cache - unless ``HF_HUB_OFFLINE=1`` or downloads are off.

Environment variables are read when a function is called, not at import. Steps 1-2 never touch
the network; before step 3 a short probe (:func:`hub_reachable`) makes an unreachable Hub fail in
about a second instead of hanging. A file that cannot be had raises :class:`WeightsUnavailable`
with a one-line message saying how to fetch it on a connected machine.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from facecli.models.weights import WeightsError

WEIGHTS_DIR_ENV = "FACECLI_WEIGHTS_DIR"
DEFAULT_ENDPOINT = "https://huggingface.co"


class WeightsUnavailable(WeightsError):
    """A weight file is neither local nor downloadable now; the message says how to get it."""


@dataclass(frozen=True)
class WeightFile:
    """One published weight file.

    key: facecli's role name ("retinaface", "multitask", "arcface", "facenet").
    repo_id: Hugging Face model repository, "owner/name".
    filename: the file's name in the repository (the one py-feat 2.1.5 loads).
    fallback_filenames: older names of the same file, accepted when found locally.
    license: short licence statement; the model card has the full terms.
    approx_bytes: approximate file size (float32 tensors), for display only.
    description: one line for listings.
    """

    key: str
    repo_id: str
    filename: str
    fallback_filenames: tuple[str, ...]
    license: str
    approx_bytes: int
    description: str

    @property
    def names(self) -> tuple[str, ...]:
        """The file name followed by its fallbacks, in lookup order."""
        return (self.filename, *self.fallback_filenames)

    @property
    def model_card(self) -> str:
        """URL of the repository's model card."""
        return f"{DEFAULT_ENDPOINT}/{self.repo_id}"

    @property
    def approx_size(self) -> str:
        """Human-readable size, e.g. "approx 89 MB"."""
        return f"approx {self.approx_bytes / 1e6:.0f} MB"


def _fp32_bytes(numel: int) -> int:
    """Bytes of ``numel`` float32 values (the header of a safetensors file is negligible)."""
    return 4 * numel


# Sizes: state-dict element counts of the reference models (headers of the spec key lists).
FEAT_V2_FILES: Mapping[str, WeightFile] = {
    f.key: f
    for f in (
        WeightFile(
            key="retinaface",
            repo_id="py-feat/retinaface_r34",
            filename="model.safetensors",
            fallback_filenames=("retinaface_r34.safetensors",),
            license="MIT per model card (RetinaFace code); WIDER FACE data terms apply"
            " - see model card",
            approx_bytes=_fp32_bytes(22_143_320),
            description="RetinaFace-R34 face detector (boxes + 5 landmarks)",
        ),
        WeightFile(
            key="multitask",
            repo_id="py-feat/face_multitask_v2",
            filename="face_multitask_v28.safetensors",
            fallback_filenames=("face_multitask_v2.safetensors",),
            license="non-commercial research only (CC BY-NC 4.0 backbone, research-only data)"
            " - see model card",
            approx_bytes=_fp32_bytes(41_694_959),
            description="ConvNeXt-V2 multitask: AUs, emotions, valence/arousal, gaze, pose, mesh",
        ),
        WeightFile(
            key="arcface",
            repo_id="py-feat/arcface_r50",
            filename="arcface_r50.safetensors",
            fallback_filenames=(),
            license="InsightFace non-commercial research terms (code MIT) - see model card",
            approx_bytes=_fp32_bytes(43_591_002 - 26),  # the file leaves out num_batches_tracked
            description="ArcFace IResNet-50 (InsightFace w600k_r50) identity embeddings",
        ),
        WeightFile(
            key="facenet",
            repo_id="py-feat/facenet",
            filename="facenet_20180402_114759_vggface2.pth",
            fallback_filenames=(),
            license="facenet-pytorch code MIT; VGGFace2-trained, data terms apply - see model card",
            approx_bytes=_fp32_bytes(27_940_039),
            description="FaceNet Inception-ResNet-v1 (VGGFace2) identity embeddings",
        ),
    )
}


# ---- environment, read at call time ----------------------------------------------------------


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set to a true value."""
    return _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE")


def hub_cache_dir() -> Path:
    """The huggingface_hub cache folder as the current environment defines it."""
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(os.path.expandvars(explicit)).expanduser()
    home = os.environ.get("HF_HOME")
    if not home:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
        home = os.path.join(xdg, "huggingface")
    return Path(os.path.expandvars(home)).expanduser() / "hub"


def _weights_dir(weights_dir: str | os.PathLike | None) -> Path | None:
    chosen = weights_dir if weights_dir is not None else os.environ.get(WEIGHTS_DIR_ENV)
    return Path(chosen).expanduser() if chosen else None


# ---- lookup ---------------------------------------------------------------------------------


def _in_hf_cache(file: WeightFile) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    cache = hub_cache_dir()
    for name in file.names:
        found = try_to_load_from_cache(file.repo_id, name, cache_dir=cache)
        if isinstance(found, str):  # None: not cached; a sentinel: cached as absent
            return Path(found)
    return None


def find_local(file: WeightFile, weights_dir: str | os.PathLike | None = None) -> Path | None:
    """The file from a weights folder or the Hub cache, without any network access.

    Args:
        file: the registry entry.
        weights_dir: folder laid out as ``DIR/<repo_id>/<filename>``; None reads
            ``$FACECLI_WEIGHTS_DIR``.

    Returns:
        The path of the first match (file name before fallbacks, folder before cache), or None.
    """
    folder = _weights_dir(weights_dir)
    if folder is not None:
        for name in file.names:
            candidate = folder / file.repo_id / name
            if candidate.is_file():
                return candidate
    return _in_hf_cache(file)


def _unavailable(file: WeightFile, reason: str) -> WeightsUnavailable:
    reason = " ".join(reason.split())  # keep the message on one line
    return WeightsUnavailable(
        f"feat-v2 weights {file.repo_id}/{file.filename} not found locally and not downloadable"
        f" ({reason}); on a connected machine run `facecli models download --to DIR`, copy DIR"
        f" here and pass --weights-dir DIR or set {WEIGHTS_DIR_ENV}=DIR"
    )


def _why_no_download(allow_download: bool) -> str | None:
    """None when a download may be attempted now, else the reason it may not."""
    if not allow_download:
        return "downloads disabled"
    if hub_offline():
        return "HF_HUB_OFFLINE is set"
    if not hub_reachable():
        return "huggingface.co unreachable"
    return None


def _fetch(file: WeightFile, **download_options: object) -> Path:
    """hf_hub_download the file name, else its fallbacks; WeightsUnavailable on failure."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import EntryNotFoundError, LocalEntryNotFoundError

    for name in file.names:
        try:
            return Path(hf_hub_download(file.repo_id, name, **download_options))
        except EntryNotFoundError as exc:
            if not isinstance(exc, LocalEntryNotFoundError):
                continue  # the repository has no such file: try the next name
            raise _unavailable(file, "download failed: Hub not reachable") from exc
        except Exception as exc:  # HTTP, auth, disk: report the cause on the one line
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise _unavailable(file, f"download failed: {first_line[:200]}") from exc
    raise _unavailable(file, f"none of {', '.join(file.names)} is in the repository")


def resolve(
    file: WeightFile,
    weights_dir: str | os.PathLike | None = None,
    *,
    allow_download: bool = True,
) -> Path:
    """The local path of ``file``: weights folder, then Hub cache, then a download to the cache.

    Args:
        file: the registry entry, e.g. ``FEAT_V2_FILES["arcface"]``.
        weights_dir: see :func:`find_local`.
        allow_download: False never touches the network.

    Returns:
        Path of an existing file.

    Raises:
        WeightsUnavailable: not local and not downloadable now (one-line message).
    """
    local = find_local(file, weights_dir)
    if local is not None:
        return local
    reason = _why_no_download(allow_download)
    if reason is not None:
        raise _unavailable(file, reason)
    return _fetch(file, cache_dir=hub_cache_dir())


def download(file: WeightFile, to_dir: str | os.PathLike, *, force: bool = False) -> Path:
    """Put ``file`` at ``to_dir/<repo_id>/<name>``, ready for ``--weights-dir to_dir``.

    Copies from the Hub cache when the file is there, else downloads it. The file appears under
    its final name only once complete (temporary name in the same folder, then rename).

    Args:
        file: the registry entry.
        to_dir: the weights folder.
        force: fetch again even when the destination already holds the file.

    Returns:
        The final path.

    Raises:
        WeightsUnavailable: not cached and not downloadable now.
    """
    dest_dir = Path(to_dir).expanduser() / file.repo_id
    if not force:
        for name in file.names:
            if (dest_dir / name).is_file():
                return dest_dir / name
    dest_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".facecli-download-", dir=dest_dir))
    try:
        cached = None if force else _in_hf_cache(file)
        if cached is not None:
            source = staging / cached.name
            shutil.copyfile(cached, source)  # follows the cache's symlink to the blob
        else:
            reason = _why_no_download(True)
            if reason is not None:
                raise _unavailable(file, reason)
            source = _fetch(file, local_dir=staging, force_download=force)
        final = dest_dir / source.name
        os.replace(source, final)
        return final
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# ---- network probe ----------------------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Report a redirect as the answer instead of following it (the Hub redirects to its CDN)."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def hub_reachable(timeout: float = 1.5, file: WeightFile | None = None) -> bool:
    """Whether the Hub serves ``file`` (default: the RetinaFace weights) within ``timeout`` s.

    Returns False at once under ``HF_HUB_OFFLINE=1``. Otherwise sends the HEAD request a
    download starts with (``<endpoint>/<repo_id>/resolve/main/<filename>``, ``$HF_ENDPOINT``
    honoured, redirects not followed) from a daemon thread, so a hanging name lookup or
    connection cannot hold the caller past ``timeout``. Only a 2xx/3xx answer counts: an
    intercepting proxy's error page or a TLS failure means the Hub is not usable from here.
    """
    if hub_offline():
        return False
    file = file or FEAT_V2_FILES["retinaface"]
    endpoint = (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
    url = f"{endpoint}/{file.repo_id}/resolve/main/{file.filename}"
    answered = threading.Event()

    def probe() -> None:
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            with opener.open(urllib.request.Request(url, method="HEAD"), timeout=timeout):
                answered.set()
        except urllib.error.HTTPError as exc:
            if 300 <= exc.code < 400:
                answered.set()
        except Exception:  # DNS, refused, timeout, TLS: not reachable
            pass

    thread = threading.Thread(target=probe, name="facecli-hub-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    return answered.is_set()


# ---- integrity --------------------------------------------------------------------------------


def sha256_file(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks of ``chunk_bytes``."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def verify_file(file: WeightFile, path: str | os.PathLike) -> int:
    """Load ``path`` strictly with the model loader of ``file.key``; return the parameter count.

    Raises:
        WeightsError: the file does not match the architecture (the message names the key).
        KeyError: ``file.key`` has no loader.
    """
    if file.key == "retinaface":
        from facecli.models.retinaface import load_retinaface as loader
    elif file.key == "multitask":
        from facecli.models.multitask import load_multitask as loader
    elif file.key == "arcface":
        from facecli.models.arcface import load_arcface as loader
    elif file.key == "facenet":
        from facecli.models.facenet import load_facenet as loader
    else:
        raise KeyError(f"no loader for weight file {file.key!r}")
    model = loader(Path(path))
    return sum(p.numel() for p in model.parameters())
