"""Still images: finding them and decoding them to RGB uint8 tensors."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"}
VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"}


class InputError(Exception):
    """One input cannot be used; str(error) is one line naming the file and the reason."""


@dataclass(frozen=True)
class InputItem:
    """One file to process, or the reason a given input yields nothing."""

    path: str
    error: str | None = None


def expand_inputs(inputs: tuple[str, ...] | list[str], suffixes: set[str]) -> Iterator[InputItem]:
    """Files named by paths, directories (not recursive; sorted) and glob patterns.

    A missing path, an empty glob, or a directory entry of another kind yields an item with an
    error, so the caller can report it and carry on.
    """
    for given in inputs:
        if any(ch in given for ch in "*?[") and not os.path.exists(given):
            matches = sorted(glob.glob(given, recursive=True))
            if not matches:
                yield InputItem(given, "no file matches this pattern")
            for m in matches:
                yield from _one_path(Path(m), m, suffixes, from_listing=True)
            continue
        yield from _one_path(Path(given), given, suffixes, from_listing=False)


def _one_path(path: Path, shown: str, suffixes: set[str], from_listing: bool) -> Iterator[InputItem]:
    if path.is_dir():
        entries = sorted(p for p in path.iterdir() if not p.name.startswith("."))
        files = [p for p in entries if p.is_file()]
        if not files:
            yield InputItem(shown, "directory has no files")
        for p in files:
            if p.suffix.lower() in suffixes:
                yield InputItem(str(p))
            else:
                yield InputItem(str(p), f"not a supported media file ({p.suffix or 'no extension'})")
        return
    if not path.exists():
        yield InputItem(shown, "no such file")
        return
    if from_listing and path.suffix.lower() not in suffixes:
        yield InputItem(shown, f"not a supported media file ({path.suffix or 'no extension'})")
        return
    yield InputItem(shown)


def read_image(path: str | Path) -> Tensor:
    """Decode an image file to Tensor[3, H, W] uint8 RGB.

    Greyscale is replicated to three channels, palettes are expanded, CMYK is converted, 16-bit
    images are scaled to 8 bits; an alpha channel is dropped (not composited), as the reference does.

    Raises:
        InputError: the file is missing, empty, truncated or not an image.
    """
    import warnings

    with warnings.catch_warnings():  # torchvision 0.29 flags its decoders as deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        from torchvision.io import ImageReadMode, decode_image, read_file

    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            data = read_file(str(path))
    except (RuntimeError, OSError) as exc:
        raise InputError(f"{path}: cannot read file ({_short(exc)})") from None
    if data.numel() == 0:
        raise InputError(f"{path}: empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            # RGB mode expands palettes, converts CMYK and replicates grey; alpha is dropped, not
            # composited, as py-feat does (its UNCHANGED read would return palette indices as grey).
            img = decode_image(data, mode=ImageReadMode.RGB)
    except (RuntimeError, ValueError):
        img = _read_with_pillow(path)
    if img.ndim != 3 or img.shape[-1] == 0 or img.shape[-2] == 0:
        raise InputError(f"{path}: decoded to an empty image")
    img = _to_uint8(img, path)
    channels = img.shape[0]
    if channels in (1, 2):  # grey, grey + alpha
        img = img[:1].expand(3, -1, -1)
    elif channels == 4:
        img = img[:3]
    elif channels != 3:
        raise InputError(f"{path}: unsupported channel count {channels}")
    return img.contiguous()


def _to_uint8(img: Tensor, path: Path) -> Tensor:
    """8-bit pixels from 16-bit (or other integer / float) decodes, scaled to 0..255."""
    if img.dtype == torch.uint8:
        return img
    if img.dtype == torch.uint16 or img.dtype == torch.int32:
        top = 65535.0 if img.dtype == torch.uint16 or int(img.max()) > 255 else 255.0
        return (img.to(torch.float64) * (255.0 / top)).round().clamp(0, 255).to(torch.uint8)
    if img.is_floating_point():
        scale = 255.0 if float(img.max()) <= 1.0 else 1.0
        return (img.double() * scale).round().clamp(0, 255).to(torch.uint8)
    raise InputError(f"{path}: unsupported pixel type {img.dtype}")


def _read_with_pillow(path: Path) -> Tensor:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr16 = np.asarray(im).astype("int32")
                return torch.from_numpy(arr16)[None]
            if im.mode not in ("L", "RGB", "RGBA", "LA"):
                im = im.convert("RGB")
            arr = torch.from_numpy(np.asarray(im).copy())
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"{path}: not a readable image ({_short(exc)})") from None
    return arr[None] if arr.ndim == 2 else arr.permute(2, 0, 1)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:160] if text else type(exc).__name__
