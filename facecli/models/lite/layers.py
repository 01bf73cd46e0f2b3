"""Layers the MediaPipe networks share: TensorFlow 'SAME' convolutions and channel-padded shortcuts.

TFLite pads a 'SAME' convolution by ``total = (ceil(n / s) - 1) * s + k - n`` pixels along an
axis of ``n`` pixels, the odd pixel at the end (bottom/right). At stride 1 with an odd kernel that
is ``(k - 1) / 2`` on both sides, which ``Conv2d`` pads itself. At stride 2 on an even axis it is
one pixel more at the end than at the start, which ``Conv2d`` cannot pad; instead of copying the
input into a padded tensor (the copy cost more than the depthwise convolution it fed, measured
3x on BlazeFace's 384 x 384 x 28 layer), the kernel is grown by one leading row and column of
zeros and the convolution pads one more pixel on both sides: output pixel ``i`` then reads input
pixels ``2i - p .. 2i - p + k - 1`` through the original taps, as 'SAME' does, and the extra
leading tap only ever meets a zero weight. The products are the same, so the outputs are the
same as after the copy (the tests check equality). Other cases (odd axes at stride 2) still pad
by copying.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """Pixels TensorFlow's 'SAME' padding adds before and after an axis of ``size`` pixels."""
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class Conv2dSame(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow's 'SAME' padding (square kernel and stride), without copying
    the input where the convolution can pad it (see the module doc). State-dict keys are Conv2d's."""

    def forward(self, x: Tensor) -> Tensor:
        kernel, stride = self.kernel_size[0], self.stride[0]
        (top, bottom), (left, right) = (same_padding(n, kernel, stride) for n in x.shape[-2:])
        if top == bottom and left == right:
            return F.conv2d(x, self.weight, self.bias, stride, (top, left), self.dilation, self.groups)
        if bottom == top + 1 and right == left + 1:  # stride 2, even axes: one zero tap in front
            grown = F.pad(self.weight, (1, 0, 1, 0))
            return F.conv2d(x, grown, self.bias, stride, (bottom, right), self.dilation, self.groups)
        return super().forward(F.pad(x, (left, right, top, bottom)))


def add_shortcut(y: Tensor, shortcut: Tensor) -> Tensor:
    """``y`` plus ``shortcut`` zero-padded in channels to ``y``'s (TFLite PAD on the last axis, then
    ADD). ``y`` must be a fresh tensor of the caller's: it is added to in place when the channels
    differ, so the padded shortcut is never made."""
    if shortcut.shape[1] == y.shape[1]:
        return y + shortcut
    y[:, : shortcut.shape[1]] += shortcut
    return y
