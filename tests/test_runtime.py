"""How networks run: --precision resolution, channels-last and bf16 autocast wrappers, device paths."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from facecli.models.runtime import Network, configure, native_bf16, resolve_precision
from facecli.types import FrameBatch


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.seen: list[bool] = []

    def forward(self, x):
        self.seen.append(x.is_contiguous(memory_format=torch.channels_last))
        y = self.conv(x)
        return y.mean(dim=(2, 3)), (y.dtype, y.amax())


def test_precision_resolution():
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32"
    assert resolve_precision("exact", cpu) == "exact"
    assert resolve_precision("bf16", cpu) == "bf16"
    assert resolve_precision("auto", cpu, flags=frozenset({"avx512f", "avx512_bf16"})) == "bf16"
    assert resolve_precision("auto", cpu, flags=frozenset({"amx_bf16", "amx_tile"})) == "bf16"
    assert resolve_precision("auto", cpu, flags=frozenset({"avx2", "avx512f"})) == "fp32"
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp16", cpu)
    with pytest.raises(ValueError, match="mps"):
        resolve_precision("bf16", torch.device("mps"))
    if not torch.cuda.is_available():
        assert not native_bf16(torch.device("cuda"))  # no CUDA here: auto never picks bf16 for it
    assert resolve_precision("auto", torch.device("mps")) == "fp32"


def test_wrappers_channels_last_and_bf16_with_float32_outputs():
    torch.manual_seed(0)
    net = _Net()
    x = torch.rand(2, 3, 16, 16)
    reference, _ = net(x)
    spec = Network(net, channels_last=False, bf16=True, channels_last_bf16=True)
    configure({"n": spec}, "bf16", torch.device("cpu"))
    assert net.conv.weight.is_contiguous(memory_format=torch.channels_last)
    out, (inner_dtype, _) = net(x)
    assert net.seen[-1] and inner_dtype == torch.bfloat16  # inputs channels-last, convolution under autocast
    assert out.dtype == torch.float32 and torch.allclose(out, reference, atol=2e-2)
    configure({"n": spec}, "fp32", torch.device("cpu"))
    out, (inner_dtype, _) = net(x.contiguous(memory_format=torch.channels_last))
    assert not net.seen[-1] and inner_dtype == torch.float32  # fp32: the reference's own NCHW layout
    assert net.conv.weight.is_contiguous() and torch.equal(out, reference)
    configure({"n": Network(net, channels_last=True)}, "fp32", torch.device("cpu"))
    out, _ = net(x)
    assert net.seen[-1] and torch.allclose(out, reference, atol=1e-5)
    configure({"n": Network(net, channels_last=False, bf16=False)}, "bf16", torch.device("cpu"))
    assert net(x)[1][0] == torch.float32  # a network that does not gain from bf16 stays fp32
    assert "forward" in vars(net)  # wrapped on the instance only: the class and other instances are untouched
    assert _Net().forward.__func__ is _Net.forward


def test_exact_runs_the_reference_layout_and_fp32_the_fast_one():
    torch.manual_seed(0)
    net = _Net()
    x = torch.rand(2, 3, 16, 16)
    reference, _ = net(x)
    spec = Network(net, channels_last=True, bf16=True, channels_last_bf16=True, channels_last_exact=False)
    configure({"n": spec}, "exact", torch.device("cpu"))
    out, (inner_dtype, _) = net(x.contiguous(memory_format=torch.channels_last))
    assert not net.seen[-1] and inner_dtype == torch.float32 and torch.equal(out, reference)
    configure({"n": spec}, "fp32", torch.device("cpu"))
    out, (inner_dtype, _) = net(x)
    assert net.seen[-1] and inner_dtype == torch.float32 and torch.allclose(out, reference, atol=1e-5)
    # no reference layout of its own: exact is fp32
    configure({"n": Network(net, channels_last=True)}, "exact", torch.device("cpu"))
    assert net(x)[0] is not None and net.seen[-1]


def test_lite_stays_fp32_and_featv2_reports_bf16(featv2_weights):
    from dataclasses import replace

    from facecli.config import RunConfig
    from facecli.models.sets import load_model_set

    cfg = RunConfig(inputs=("x",), output=featv2_weights / "o.parquet", kind="video", device="cpu", precision="bf16")
    lite = load_model_set(replace(cfg, models="lite"))
    assert lite.info.precision == "fp32"  # none of lite's networks gains from bf16
    feat = load_model_set(replace(cfg, models="feat-v2", weights_dir=featv2_weights))
    assert feat.info.precision == "bf16"
    nets = feat.networks()
    assert set(nets) == {"retinaface", "multitask", "arcface"} and all(n.bf16 for n in nets.values())
    exact = replace(cfg, precision="exact")
    assert load_model_set(replace(exact, models="lite")).info.precision == "fp32"  # lite's fp32 is its reference's
    feat = load_model_set(replace(exact, models="feat-v2", weights_dir=featv2_weights))
    assert feat.info.precision == "exact"
    assert all(n.layout("exact") == torch.contiguous_format for n in feat.networks().values())
    assert feat.networks()["retinaface"].layout("fp32") == torch.channels_last


def test_frames_reach_the_device_channels_last_without_a_copy():
    from facecli.pipeline.process import to_device

    class _Set:
        device = torch.device("cpu")

    images = torch.zeros(2, 4, 5, 3, dtype=torch.uint8).permute(0, 3, 1, 2)  # as decoded: NHWC memory
    batch = FrameBatch(images=images, index=(0, 1), time_s=(0.0, 0.1), sources=("a", "a"))
    out = to_device(_Set(), batch)
    assert out.data_ptr() == images.data_ptr() and out.is_contiguous(memory_format=torch.channels_last)
    nchw = FrameBatch(images=images.contiguous(), index=(0, 1), time_s=(0.0, 0.1), sources=("a", "a"))
    assert to_device(_Set(), nchw).is_contiguous(memory_format=torch.channels_last)
