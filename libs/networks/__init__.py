"""Networks: RCRNet and its image (RCRNet) and video (RCRNet+NER) models."""
from .fgplg import FGPLG
from .models import ImageModel, VideoModel
from .rcrnet import RCRNet, SpatialFeatures, set_exact_upsampled_conv

__all__ = [
    "FGPLG",
    "ImageModel",
    "RCRNet",
    "SpatialFeatures",
    "VideoModel",
    "set_exact_upsampled_conv",
]
