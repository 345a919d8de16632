"""The smallest frames RCRNet, RCRNet+NER and FGPLG take.

RCRNet's dilated ResNet-50 reduces a frame 16-fold before ASPP at the release's output
stride 16 (stem conv and max-pool stride 2, layers 2 and 3 stride 2; layer 4 dilated
instead of strided), and the refinement blocks and decoder upsample from that deepest map.
Frames of at least 32 pixels give it 2x2 cells of 16x16 real pixels; smaller frames
still run (the convolutions pad), but their deepest map is one cell or cells mostly of
padding: at 16 pixels the deepest features see the frame as one cell, at 1 pixel every
map is one constant value (the release's PNG of it: all 129). The same bound is used at
output stride 8, where it is twice what the deepest map needs, so that one frame size
works with both.
"""
from __future__ import annotations

from libs.runtime.errors import UserError

MIN_FRAME_SIZE = 32
WHY_MIN_FRAME_SIZE = ("RCRNet's ResNet-50 reduces frames 16-fold (stem conv, max-pool, layers 2 and 3 "
                      "stride 2) and needs at least 2x2 cells of 16x16 pixels on that deepest map")


class FrameSizeError(UserError):
    """Frames too small for the networks."""


def check_frame_size(height: int, width: int) -> None:
    """Raise `FrameSizeError` unless frames of height x width are at least `MIN_FRAME_SIZE` each way."""
    if min(height, width) < MIN_FRAME_SIZE:
        raise FrameSizeError(f"frames of {height}x{width} pixels are below the minimum of "
                             f"{MIN_FRAME_SIZE}x{MIN_FRAME_SIZE}: {WHY_MIN_FRAME_SIZE}")
