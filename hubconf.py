"""torch.hub entry points: `torch.hub.load("<checkout or Kinpzz/RCRNet-Pytorch>", "video_model",
source="local", weights="models/video_best_model.pth")`.

The builders are `libs.networks.builders`'; `weights` takes a path (`.pth` or `.safetensors`)
or a released file's name ("RELEASE"), looked up under `models/` (see README, "Weights"). The
models compute as the release does (its resize-then-conv decoder, bit for bit in float32);
`decoder="factored"` builds them with the factored decoder instead.
"""
from libs.networks.builders import fgplg, flownet2, image_model, video_model

dependencies = ["torch", "torchvision", "safetensors", "cv2", "numpy"]

__all__ = ["fgplg", "flownet2", "image_model", "video_model"]
