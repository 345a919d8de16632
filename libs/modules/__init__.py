"""Building blocks of RCRNet and RCRNet+NER."""
from .aspp import ASPP
from .convgru import ConvGRUCell
from .layers import ConvBNReLU, fresh_init_, to_channels_last
from .non_local import NonLocalBlock3D
from .refinement import Decoder, RefinementBlock, SkipBottleneck
from .resnet import DilatedResNet50, ResNetFeatures, stage_layout
from .upsampled_conv import upsampled_conv3x3

__all__ = [
    "ASPP",
    "ConvBNReLU",
    "ConvGRUCell",
    "Decoder",
    "DilatedResNet50",
    "NonLocalBlock3D",
    "RefinementBlock",
    "ResNetFeatures",
    "SkipBottleneck",
    "fresh_init_",
    "stage_layout",
    "to_channels_last",
    "upsampled_conv3x3",
]
