"""Transforms: shapes, ranges, bilinear labels, the image-mode augmentation, clip consistency."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from libs.datasets import apply_transform, get_transforms
from libs.datasets.transforms import IMAGENET_MEAN, IMAGENET_STD


def sample(height: int = 30, width: int = 40, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=g)
    label = torch.zeros(1, height, width)
    label[:, height // 4: height // 2, width // 3: width // 2] = 1.0
    return {"image": image, "label": label}


def test_keys_and_video_mode_is_deterministic():
    t = get_transforms(False, (16, 20))
    assert set(t) == {"train", "val", "test"}
    s = sample()
    a, b = t["train"](s), t["train"](s)
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    assert a["image"].shape == (3, 16, 20) and a["image"].dtype == torch.float32
    assert a["label"].shape == (1, 16, 20) and a["label"].dtype == torch.float32


def test_normalisation_and_ranges():
    s = {"image": torch.full((3, 8, 8), 255, dtype=torch.uint8)}
    out = get_transforms(False, 8)["test"](s)
    expected = torch.tensor([(1 - m) / d for m, d in zip(IMAGENET_MEAN, IMAGENET_STD)])
    assert torch.allclose(out["image"][:, 0, 0], expected, atol=1e-6)
    assert "label" not in out
    lab = get_transforms(False, 12)["val"](sample())["label"]
    assert lab.min() >= 0 and lab.max() <= 1


def test_labels_are_resized_bilinearly_like_pillow():
    s = sample(48, 64)
    out = get_transforms(False, (18, 22))["test"](s)["label"][0].numpy()
    values = np.unique(out)
    assert ((values > 0.01) & (values < 0.99)).any(), "a nearest-neighbour resize would keep 0/1 only"
    ref = np.asarray(Image.fromarray(s["label"][0].numpy()).resize((22, 18), Image.BILINEAR))
    assert np.abs(out - ref).max() < 1e-4
    img = get_transforms(False, (18, 22), mean=(0, 0, 0), std=(1, 1, 1))["test"](s)["image"]
    pil = np.asarray(Image.fromarray(s["image"].permute(1, 2, 0).numpy()).resize((22, 18), Image.BILINEAR))
    assert np.abs(img.permute(1, 2, 0).numpy() * 255 - pil).max() <= 1.0 + 1e-3


def test_image_mode_augments_and_keeps_label_aligned():
    torch.manual_seed(0)
    t = get_transforms(True, 24)["train"]
    outs = [t(sample(seed=1)) for _ in range(6)]
    assert all(o["image"].shape == (3, 24, 24) and o["label"].shape == (1, 24, 24) for o in outs)
    assert all(type(o["image"]) is torch.Tensor and type(o["label"]) is torch.Tensor for o in outs)
    assert not all(torch.equal(outs[0]["image"], o["image"]) for o in outs[1:])
    for o in outs:
        assert 0 <= o["label"].min() and o["label"].max() <= 1
    # colour jitter leaves labels alone: a constant label stays constant
    flat = {"image": sample()["image"], "label": torch.full((1, 30, 40), 0.5)}
    assert torch.allclose(t(flat)["label"], torch.tensor(0.5))


def test_flips_cover_the_four_choices():
    torch.manual_seed(0)
    t = get_transforms(True, 20)["train"]
    label = torch.zeros(1, 20, 20)
    label[:, :4, :4] = 1  # top-left corner
    corners = set()
    for _ in range(60):
        out = t({"image": torch.zeros(3, 20, 20, dtype=torch.uint8), "label": label.clone()})["label"][0]
        quad = out.reshape(2, 10, 2, 10).sum(dim=(1, 3))
        corners.add(int(quad.argmax()))
    assert corners == {0, 1, 2, 3}


@pytest.mark.parametrize("clip_augment", [True, False])
def test_clip_augment_shares_parameters(clip_augment):
    torch.manual_seed(0)
    t = get_transforms(False, 16, clip_augment=clip_augment)["train"]
    frame = sample(seed=2)
    clip = [{"image": frame["image"].clone(), "label": frame["label"].clone()} for _ in range(3)]
    a = apply_transform(t, clip)
    assert all(torch.equal(a[0]["image"], f["image"]) and torch.equal(a[0]["label"], f["label"]) for f in a)
    b = apply_transform(t, clip)
    assert torch.equal(a[0]["image"], b[0]["image"]) != clip_augment


def test_per_frame_callable_is_applied_to_each_frame():
    calls = []

    def t(s):
        calls.append(1)
        return s

    apply_transform(t, [sample(), sample()])
    assert len(calls) == 2


def test_bad_size():
    with pytest.raises(ValueError, match="input_size"):
        get_transforms(False, (1, 2, 3))
