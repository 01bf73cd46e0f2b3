"""Inputs: image decoding (grey, RGBA, corrupt), input expansion, streamed video batches."""

import av
import numpy as np
import pytest
import torch
from PIL import Image

from facecli.io.images import IMAGE_SUFFIXES, InputError, expand_inputs, read_image
from facecli.io.video import iter_video_batches, probe_video


def write_video(path, n=10, size=(48, 64), fps=10):
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=fps)
        s.height, s.width = size
        s.pix_fmt = "yuv420p"
        for i in range(n):
            arr = np.full((*size, 3), i * 20 % 256, dtype=np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def test_grey_and_rgba_images(tmp_path):
    grey = np.arange(12 * 10, dtype=np.uint8).reshape(12, 10)
    Image.fromarray(grey).save(tmp_path / "g.png")
    rgba = np.random.default_rng(0).integers(0, 255, (9, 7, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    g = read_image(tmp_path / "g.png")
    assert g.shape == (3, 12, 10) and torch.equal(g[0], g[2]) and torch.equal(g[1], torch.from_numpy(grey))
    a = read_image(tmp_path / "a.png")
    assert a.shape == (3, 9, 7) and torch.equal(a.permute(1, 2, 0), torch.from_numpy(rgba[..., :3]))


def test_corrupt_and_empty_images_raise_one_line(tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (tmp_path / "empty.png").write_bytes(b"")
    for name in ("bad.jpg", "empty.png"):
        with pytest.raises(InputError) as err:
            read_image(tmp_path / name)
        assert name in str(err.value) and "\n" not in str(err.value)


def test_expand_inputs(tmp_path):
    (tmp_path / "d").mkdir()
    for n in ("b.jpg", "a.png", "notes.txt"):
        (tmp_path / "d" / n).write_bytes(b"x")
    listing = expand_inputs([str(tmp_path / "d"), str(tmp_path / "missing.jpg"), str(tmp_path / "d" / "*.png"),
                             str(tmp_path / "*.gif")], IMAGE_SUFFIXES)
    got = [(p.path.split("/")[-1], bool(p.error)) for p in listing.items]
    # d/a.png named twice (folder and pattern) is kept once; notes.txt in a folder is ignored with a note
    assert got == [("a.png", False), ("b.jpg", False), ("missing.jpg", True), ("*.gif", True)]
    assert listing.notes == ("ignored 1 file(s) of other types in the input folders (1 .txt)",)


def test_video_batches_stream_in_order_with_skip(tmp_path):
    path = write_video(tmp_path / "v.mp4", n=10)
    info = probe_video(path)
    assert (info.width, info.height) == (64, 48) and info.fps == pytest.approx(10)
    batches = list(iter_video_batches(path, batch_size=2, skip_frames=3))
    idx = [i for b in batches for i in b.index]
    assert idx == [0, 3, 6, 9]
    assert [len(b) for b in batches] == [2, 2]
    assert batches[0].images.shape == (2, 3, 48, 64) and batches[0].images.dtype == torch.uint8
    assert batches[1].time_s[0] == pytest.approx(0.6)


def test_bad_video_is_an_input_error(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(InputError, match="bad.mp4"):
        probe_video(bad)
    truncated = tmp_path / "trunc.mp4"
    good = write_video(tmp_path / "good.mp4", n=30).read_bytes()
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(InputError, match="trunc.mp4"):
        probe_video(truncated)
        list(iter_video_batches(truncated, 4))


def test_16bit_palette_cmyk_and_tiny_images(tmp_path, astronaut):
    Image.fromarray((astronaut[..., 0].astype(np.uint16) * 257)).save(tmp_path / "grey16.png")
    Image.fromarray(astronaut).convert("P").save(tmp_path / "palette.png")
    Image.fromarray(astronaut).convert("CMYK").save(tmp_path / "cmyk.jpg")
    Image.fromarray(astronaut[:1, :1]).save(tmp_path / "tiny.png")
    g = read_image(tmp_path / "grey16.png")
    assert g.dtype == torch.uint8 and torch.equal(g[0], torch.from_numpy(astronaut[..., 0]))
    for name in ("palette.png", "cmyk.jpg"):
        img = read_image(tmp_path / name)
        assert img.dtype == torch.uint8 and img.shape == (3, 512, 512)
        pil = torch.from_numpy(np.array(Image.open(tmp_path / name).convert("RGB"))).permute(2, 0, 1)
        assert (img.float() - pil.float()).abs().mean() < 3, name  # decoders may differ by rounding
    assert read_image(tmp_path / "tiny.png").shape == (3, 1, 1)
