"""Networks: RCRNet and its image (RCRNet) and video (RCRNet+NER) models."""
from .models import ImageModel, VideoModel
from .rcrnet import RCRNet, SpatialFeatures

__all__ = [
    "ImageModel",
    "RCRNet",
    "SpatialFeatures",
    "VideoModel",
]
