"""TensorFlow 'SAME' convolutions and channel-padded shortcuts of the MediaPipe networks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from facecli.models.lite.layers import Conv2dSame, add_shortcut, same_padding


@pytest.mark.parametrize(
    "size,kernel,stride,expected",  # TF 'SAME': total = (ceil(n/s)-1)*s + k - n, extra pixel bottom/right
    [(128, 5, 2, (1, 2)), (64, 3, 2, (0, 1)), (64, 3, 1, (1, 1)), (7, 3, 2, (1, 1)), (8, 1, 1, (0, 0)),
     (9, 5, 2, (2, 2))],
)
def test_same_padding_matches_tensorflow_table(size, kernel, stride, expected):
    assert same_padding(size, kernel, stride) == expected


@pytest.mark.parametrize("kernel,stride", [(3, 2), (5, 2), (3, 1), (5, 1), (1, 1), (1, 2)])
@pytest.mark.parametrize("size", [(16, 12), (15, 9), (16, 9)])
@pytest.mark.parametrize("depthwise", [True, False])
@pytest.mark.parametrize("channels_last", [True, False])
def test_conv2d_same_equals_padding_by_copy(kernel, stride, size, depthwise, channels_last):
    """Every path (the convolution pads; a grown kernel; a padded copy) gives the outputs of
    TensorFlow's padding applied to a copy, to the last bit."""
    gen = torch.Generator().manual_seed(kernel * 100 + stride * 10 + size[0] + size[1])
    chs_in, chs_out = (8, 8) if depthwise else (3, 6)
    conv = Conv2dSame(chs_in, chs_out, kernel, stride, groups=chs_in if depthwise else 1)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen))
        conv.bias.copy_(torch.randn(conv.bias.shape, generator=gen))
    x = torch.randn(2, chs_in, *size, generator=gen)
    if channels_last:
        x, conv = x.contiguous(memory_format=torch.channels_last), conv.to(memory_format=torch.channels_last)
    (top, bottom), (left, right) = same_padding(size[0], kernel, stride), same_padding(size[1], kernel, stride)
    expected = F.conv2d(F.pad(x, (left, right, top, bottom)), conv.weight, conv.bias, stride, 0, 1, conv.groups)
    with torch.no_grad():
        out = conv(x)
    assert out.shape == expected.shape == (2, chs_out, -(-size[0] // stride), -(-size[1] // stride))
    assert torch.equal(out, expected)


def test_add_shortcut_pads_channels_with_zeros():
    y, shortcut = torch.randn(2, 6, 4, 4), torch.randn(2, 4, 4, 4)
    expected = y + F.pad(shortcut, (0, 0, 0, 0, 0, 2))
    out = add_shortcut(y.clone(), shortcut)
    assert torch.equal(out, expected)
    same = torch.randn(2, 6, 4, 4)
    assert torch.equal(add_shortcut(y, same), y + same)
