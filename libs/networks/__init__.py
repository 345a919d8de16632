"""Networks: RCRNet and its image (RCRNet) and video (RCRNet+NER) models, and their builders."""
from .builders import (
    FGPLGWeights,
    FlowNet2Weights,
    ImageModelWeights,
    VideoModelWeights,
    fgplg,
    flownet2,
    image_model,
    video_model,
)
from .fgplg import FGPLG
from .models import ImageModel, VideoModel
from .rcrnet import RCRNet, SpatialFeatures

__all__ = [
    "FGPLG",
    "FGPLGWeights",
    "FlowNet2Weights",
    "ImageModel",
    "ImageModelWeights",
    "RCRNet",
    "SpatialFeatures",
    "VideoModel",
    "VideoModelWeights",
    "fgplg",
    "flownet2",
    "image_model",
    "video_model",
]
