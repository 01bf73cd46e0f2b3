"""Still images: finding them and decoding them to RGB uint8 tensors."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from facecli.io.inputs import IMAGE_SUFFIXES, VIDEO_SUFFIXES, InputError, InputItem, expand_inputs
from facecli.io.prefetch import prefetch
from facecli.types import FrameBatch

__all__ = ["IMAGE_SUFFIXES", "VIDEO_SUFFIXES", "ImageFailure", "InputError", "InputItem", "expand_inputs",
           "iter_image_batches", "read_image"]

# A batch of images holds at most this many pixels per image times the batch size; an image
# larger than this gets a batch of its own, so memory stays bounded by the largest image.
BATCH_PIXELS = 4096 * 4096


@dataclass(frozen=True)
class ImageFailure:
    """An image that could not be used, in its place in the stream of batches."""

    path: str
    error: str  # one line naming the file and the reason


def iter_image_batches(
    paths: Sequence[str], batch_size: int, numbers: Sequence[int] | None = None, prefetch_images: int | None = None
) -> Iterator[FrameBatch | ImageFailure]:
    """Decoded images grouped into batches of consecutive same-size images, decoded ahead in a thread.

    Args:
        paths: image files in order.
        batch_size: most images per batch.
        numbers: the ``frame`` number of each image (default 0, 1, 2, ...): its place among the
            output's images, failed ones included, so numbers do not depend on which images decode.
        prefetch_images: images decoded ahead (default ``max(4, batch_size)``).

    Yields:
        FrameBatch (``index`` = frame numbers, ``time_s`` 0.0) and, in their place, ImageFailure for
        images that cannot be decoded.
    """
    images: list[Tensor] = []
    pending: list[tuple[int, str]] = []

    def flush() -> FrameBatch:
        batch = FrameBatch(
            images=torch.stack(images),
            index=tuple(i for i, _ in pending),
            time_s=(0.0,) * len(images),
            sources=tuple(p for _, p in pending),
        )
        images.clear()
        pending.clear()
        return batch

    depth = prefetch_images or max(4, batch_size)
    numbers = range(len(paths)) if numbers is None else numbers
    for number, path, image in prefetch(_decode_all(paths, numbers), depth=depth, name="facecli-images"):
        if isinstance(image, InputError):
            yield ImageFailure(path, str(image))
            continue
        big = image.shape[-1] * image.shape[-2] > BATCH_PIXELS // batch_size
        if images and (image.shape != images[0].shape or big):
            yield flush()
        images.append(image)
        pending.append((number, path))
        if len(images) == batch_size or big:
            yield flush()
    if images:
        yield flush()


def _decode_all(paths: Sequence[str], numbers: Sequence[int]) -> Iterator[tuple[int, str, Tensor | InputError]]:
    for number, path in zip(numbers, paths):
        try:
            yield number, path, read_image(path)
        except InputError as exc:
            yield number, path, exc
        except Exception as exc:  # a decoder failing in an unexpected way is still this file's failure
            yield number, path, InputError(f"{path}: cannot decode ({type(exc).__name__}: {_short(exc)})")


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
