"""Building blocks of RCRNet and RCRNet+NER."""
from .aspp import ASPP
from .convgru import ConvGRUCell
from .layers import ConvBNReLU, fresh_init_, to_channels_last
from .non_local import NonLocalBlock3D
from .refinement import (
    DECODERS,
    FACTORED_DECODER,
    RELEASE_DECODER,
    Decoder,
    RefinementBlock,
    SkipBottleneck,
    check_decoder,
)
from .resnet import DilatedResNet50, ResNetFeatures, stage_layout

__all__ = [
    "DECODERS",
    "FACTORED_DECODER",
    "RELEASE_DECODER",
    "ASPP",
    "ConvBNReLU",
    "ConvGRUCell",
    "Decoder",
    "DilatedResNet50",
    "NonLocalBlock3D",
    "RefinementBlock",
    "ResNetFeatures",
    "SkipBottleneck",
    "check_decoder",
    "fresh_init_",
    "stage_layout",
    "to_channels_last",
]
