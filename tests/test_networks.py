"""RCRNet, ImageModel and VideoModel: reference keys, golden outputs, shapes and BatchNorm freezing."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from libs.modules import ConvGRUCell, NonLocalBlock3D
from libs.modules.resnet import MaxPool2d
from libs.networks import FGPLG, ImageModel, RCRNet, VideoModel

FC_KEYS = {"backbone.resnet.fc.weight", "backbone.resnet.fc.bias"}
MODELS = {"image_model": ImageModel, "video_model": VideoModel}
# every network the release saved, by reference key file
KEYED_MODELS = {**MODELS, "fgplg": FGPLG}
# a frame size at which batching four frames changes ASPP's float32 rounding on this project's CPUs
SIZE_BIT_FOR_BIT = 128


pytestmark = pytest.mark.usefixtures("two_threads")


@pytest.fixture(scope="module")
def reference_model(reference_state_dict):
    """`reference_model(name)` -> the model in float64 eval mode with the reference weights (cached)."""
    cache: dict[str, nn.Module] = {}

    def build(name: str) -> nn.Module:
        if name not in cache:
            weights = {k: v for k, v in reference_state_dict(name).items() if k not in FC_KEYS}
            model = MODELS[name]()
            model.load_state_dict(weights, strict=True)
            cache[name] = model.double().eval()
        return cache[name]

    return build


@pytest.mark.parametrize("name", sorted(KEYED_MODELS))
def test_state_dict_matches_reference_keys(name, reference_keys):
    reference = reference_keys(name)
    assert FC_KEYS <= set(reference)
    ours = KEYED_MODELS[name]().state_dict()
    expected = {k: v for k, v in reference.items() if k not in FC_KEYS}
    assert list(ours) == list(expected)
    for key, tensor in ours.items():
        shape, dtype = expected[key]
        assert tuple(tensor.shape) == shape, key
        assert str(tensor.dtype).removeprefix("torch.") == dtype, key


@pytest.mark.parametrize("name", sorted(MODELS))
def test_golden_output(name, golden, reference_model):
    case = golden(name)
    model = reference_model(name)
    assert case["output_stride"] == model.backbone.output_stride
    with torch.no_grad():
        output = model(case["input"])
    assert output.dtype == torch.float64
    assert output.shape == case["output"].shape
    error = (output - case["output"]).abs().max().item()
    assert error <= 1e-6 * case["output"].abs().max().item(), error


def test_video_list_and_tensor_forms_agree(reference_model):
    model = reference_model("video_model")
    clip = torch.randn(2, 3, 3, 40, 36, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        as_tensor = model(clip)
        as_list = model(list(clip.unbind(dim=1)))
    assert isinstance(as_list, list) and len(as_list) == 3
    assert as_tensor.shape == (2, 3, 1, 40, 36)
    for t, logits in enumerate(as_list):
        assert logits.shape == (2, 1, 40, 36)
        torch.testing.assert_close(logits, as_tensor[:, t], rtol=0, atol=1e-12)


def test_frames_as_batch_equals_frame_by_frame(reference_model):
    """Training's form (a clip's B*T frames as one batch) computes the same values in eval mode."""
    model = reference_model("video_model")
    batching = VideoModel(frames_as_batch=True).to(torch.float64).eval()
    batching.load_state_dict(model.state_dict())
    clip = torch.randn(2, 3, 3, 35, 33, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        frame_by_frame = model(clip)
        batched = batching(clip)
    torch.testing.assert_close(batched, frame_by_frame, rtol=0, atol=1e-12)


def _resize_like(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[2:], mode="bilinear", align_corners=False)


def _release_feat_conv(net: RCRNet, x: torch.Tensor):
    """The release's RCRNet.feat_conv: the backbone's four blocks and ASPP, as its code calls them."""
    resnet = net.resnet
    block1 = resnet.layer1(resnet.maxpool(resnet.relu(resnet.bn1(resnet.conv1(x)))))
    block2 = resnet.layer2(block1)
    block3 = resnet.layer3(block2)
    block4 = resnet.layer4(block3)
    h = [F.interpolate(net.aspp.imagepool(block4), size=block4.shape[2:], mode="bilinear",
                       align_corners=False)]
    h += [stage(block4) for stage in net.aspp.stages.children()]
    return block1, block2, block3, net.aspp.fire(torch.cat(h, dim=1))


def _release_video_forward(model: VideoModel, frames: list[torch.Tensor]) -> list[torch.Tensor]:
    """The release's VideoModel.forward (libs/networks/models.py, with RCRNet.feat_conv and seg_conv of
    libs/networks/rcrnet.py and NONLocalBlock3D of libs/modules/non_local_dot_product.py) transcribed
    call for call onto this project's modules."""
    net = model.backbone

    def non_local(block, x):
        b, c = x.shape[0], block.inter_channels
        g_x = block.g(x).view(b, c, -1).permute(0, 2, 1)
        theta_x = block.theta(x).view(b, c, -1).permute(0, 2, 1)
        phi_x = block.phi(x).view(b, c, -1)
        f = torch.matmul(theta_x, phi_x)
        y = torch.matmul(f / f.size(-1), g_x).permute(0, 2, 1).contiguous().view(b, c, *x.shape[2:])
        return block.W(y) + x

    clip_feats = [_release_feat_conv(net, frame) for frame in frames]
    feats_time = non_local(model.non_local_block, torch.stack([f[-1] for f in clip_feats], dim=2))
    feat, forward_states = feats_time[:, :, 0], []
    for i in range(len(frames)):
        feat = model.convgru_forward(feats_time[:, :, i], feat)
        forward_states.append(feat)
    feat, backward_states = forward_states[-1], []
    for i in range(len(frames)):
        feat = model.convgru_backward(forward_states[len(frames) - 1 - i], feat)
        backward_states.append(feat)
    backward_states = backward_states[::-1]
    feats = torch.stack([torch.tanh(model.bidirection_conv(torch.cat((f, b), dim=1)))
                         for f, b in zip(forward_states, backward_states)], dim=2)
    feats = non_local(model.non_local_block2, feats)
    preds = []
    for i, frame in enumerate(frames):
        block1, block2, block3, _ = clip_feats[i]
        x = net.refinement1(block3, feats[:, :, i])
        x = net.refinement2(block2, _resize_like(x, block2))
        x = net.refinement3(block1, _resize_like(x, block1))
        preds.append(net.decoder(_resize_like(x, frame)))
    return preds


def _release_image_forward(model: ImageModel, frames: torch.Tensor) -> torch.Tensor:
    """The release's RCRNet.forward (libs/networks/rcrnet.py: feat_conv, the three refinements with
    bilinear resizes, then seg_conv on the map resized to the input) transcribed call for call."""
    net = model.backbone
    block1, block2, block3, aspp = _release_feat_conv(net, frames)
    x = net.refinement1(block3, aspp)
    x = net.refinement2(block2, _resize_like(x, block2))
    x = net.refinement3(block1, _resize_like(x, block1))
    return net.decoder(_resize_like(x, frames))


@pytest.mark.parametrize("batch", [1, 2])
def test_float32_video_model_computes_as_the_release_bit_for_bit(reference_model, batch):
    """With the release's decoder, float32 logits equal the release's forward's bit for bit: same
    frame-by-frame spatial extractor (oneDNN's convs are not batch-invariant), same non-local
    association, same image-pool resize. A trained NER module amplifies any other rounding."""
    model = copy.deepcopy(reference_model("video_model")).float()
    size = SIZE_BIT_FOR_BIT
    clip = torch.randn(batch, 3, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = torch.stack(_release_video_forward(model, list(clip.unbind(1))), dim=1)
        ours = model(clip)
    assert torch.equal(ours, expected)


def _with_reference_weights(model: nn.Module, name: str, reference_state_dict) -> nn.Module:
    weights = {k: v for k, v in reference_state_dict(name).items() if k not in FC_KEYS}
    model.load_state_dict(weights, strict=True)
    return model.eval()


def test_public_constructors_compute_as_the_release_bit_for_bit(reference_state_dict):
    """`VideoModel()` and `ImageModel()` with no options: float32 logits equal the release's forward
    (transcribed above) bit for bit, so the builders and torch.hub, which build them so, do too."""
    generator = torch.Generator().manual_seed(2)
    video = _with_reference_weights(VideoModel(), "video_model", reference_state_dict)
    clip = torch.randn(1, 2, 3, SIZE_BIT_FOR_BIT, SIZE_BIT_FOR_BIT, generator=generator)
    image = _with_reference_weights(ImageModel(), "image_model", reference_state_dict)
    frames = torch.randn(2, 3, SIZE_BIT_FOR_BIT, SIZE_BIT_FOR_BIT, generator=generator)
    with torch.no_grad():
        release_video = torch.stack(_release_video_forward(video, list(clip.unbind(1))), dim=1)
        assert torch.equal(video(clip), release_video)
        assert torch.equal(image(frames), _release_image_forward(image, frames))


@pytest.mark.parametrize(
    ("output_stride", "batch", "length", "height", "width"),
    [(16, 2, 3, 37, 50), (16, 1, 1, 32, 32), (8, 2, 1, 33, 45), (8, 1, 3, 50, 37)],
)
def test_video_model_odd_sizes(output_stride, batch, length, height, width):
    model = VideoModel(output_stride=output_stride).eval()
    with torch.no_grad():
        logits = model(torch.randn(batch, length, 3, height, width))
    assert logits.shape == (batch, length, 1, height, width)
    assert logits.dtype == torch.float32
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("output_stride", [16, 8])
def test_image_model_odd_size_and_feature_strides(output_stride):
    model = ImageModel(output_stride=output_stride).eval()
    frames = torch.randn(2, 3, 37, 50)
    with torch.no_grad():
        features = model.backbone.spatial_features(frames)
        logits = model(frames)
    assert logits.shape == (2, 1, 37, 50)
    # each stride-2 step maps n to ceil(n / 2)
    assert features.block1.shape == (2, 256, 10, 13)
    assert features.block2.shape == (2, 512, 5, 7)
    deep = (3, 4) if output_stride == 16 else (5, 7)
    assert features.block3.shape == (2, 1024, *deep)
    assert features.aspp.shape == (2, 256, *deep)


@pytest.mark.parametrize(("output_stride", "dilations"), [(16, (1, 1, 1, 2)), (8, (1, 1, 2, 2))])
def test_every_block_of_a_dilated_stage_is_dilated(output_stride, dilations):
    resnet = RCRNet(output_stride=output_stride).resnet
    for stage, dilation in zip(resnet.stages(), dilations):
        for block in stage:
            assert block.conv2.dilation == (dilation, dilation)
            assert block.conv2.padding == (dilation, dilation)
    assert not hasattr(resnet, "fc")


@pytest.mark.parametrize(("shape", "kernel", "stride", "padding"), [
    ((1, 64, 56, 56), 3, 2, 1), ((2, 3, 7, 9), 3, 2, 1), ((1, 2, 1, 1), 3, 2, 1), ((1, 4, 6, 5), 2, 2, 0),
    ((1, 2, 9, 8), (3, 2), (1, 2), (1, 0))])
def test_maxpool_slices_equal_atens_kernel(shape, kernel, stride, padding):
    """The ResNet stem's max pooling without autograd (strided slices) is ATen's, bit for bit: ties,
    zeros after ReLU, -inf padding and NaN; with autograd it is ATen's kernel and its gradient."""
    x = torch.randn(shape, generator=torch.Generator().manual_seed(sum(shape))).relu_()
    x.view(-1)[::5] = 0.25
    x.view(-1)[-1] = float("nan")
    pool = MaxPool2d(kernel, stride, padding)
    expected = F.max_pool2d(x, kernel, stride, padding)
    with torch.no_grad():
        assert torch.equal(pool(x).nan_to_num(-1.0), expected.nan_to_num(-1.0))
        assert torch.equal(pool(x).isnan(), expected.isnan())
    xg, xa = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    pool(xg).nan_to_num(0.0).sum().backward()
    F.max_pool2d(xa, kernel, stride, padding).nan_to_num(0.0).sum().backward()
    assert torch.equal(xg.grad, xa.grad)
    assert isinstance(RCRNet().resnet.maxpool, MaxPool2d)


def test_rcrnet_with_seven_input_channels():
    model = RCRNet(input_channels=7).eval()
    assert model.resnet.conv1.weight.shape == (64, 7, 7, 7)
    with torch.no_grad():
        assert model(torch.randn(1, 7, 32, 48)).shape == (1, 1, 32, 48)


@pytest.mark.parametrize("model_class", [ImageModel, VideoModel])
def test_freeze_bn_keeps_running_statistics(model_class):
    model = model_class()
    model.train()
    model.freeze_bn()
    batch_norms = [m for m in model.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert batch_norms and all(not bn.training for bn in batch_norms)
    assert all(p.requires_grad for bn in batch_norms for p in bn.parameters())
    assert model.backbone.aspp.fire.dropout.training
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    frames = torch.randn(1, 2, 3, 32, 32) if model_class is VideoModel else torch.randn(1, 3, 32, 32)
    model(frames).sum().backward()
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert model.backbone.decoder.conv1.bn.weight.grad is not None


def test_fresh_init_outside_the_imagenet_backbone():
    model = VideoModel()
    for name, param in model.named_parameters():
        if name.startswith("backbone.resnet."):
            continue
        if name.startswith("non_local_block") and ".W." in name:
            assert torch.count_nonzero(param) == 0, name
        elif name.endswith("bias"):
            assert torch.all(param == 0.001), name
        elif param.dim() == 1:
            assert torch.all(param == 1), name
        else:
            fan_out = param.shape[0] * math.prod(param.shape[2:])
            assert param.std().item() == pytest.approx(math.sqrt(2 / fan_out), rel=0.2), name
    x = torch.randn(1, 256, 2, 3, 3)
    assert torch.equal(model.non_local_block(x), x)


def test_release_ner_init_keeps_pytorch_defaults():
    """--ner-init release: the NER layers the release left alone get PyTorch's default init
    (uniform within 1/sqrt(fan_in)); the rest is as with the spec's init."""
    torch.manual_seed(0)
    spec = dict(VideoModel().named_parameters())
    released = dict(VideoModel(ner_init="release").named_parameters())
    default_init = ("convgru_", "bidirection_conv.",
                    *(f"{block}.{layer}." for block in ("non_local_block", "non_local_block2")
                      for layer in ("theta", "phi", "g")))
    changed = 0
    for name, param in released.items():
        if name.startswith(default_init):
            weight = released[name.rsplit(".", 1)[0] + ".weight"]
            bound = 1 / math.sqrt(math.prod(weight.shape[1:]))
            assert param.abs().max().item() <= bound + 1e-7, name
            assert not torch.all(param == 0.001), name
            changed += 1
        elif not name.startswith("backbone."):
            assert torch.equal(param, spec[name]), name
    assert changed == 2 * 3 * 2 + 2 + 2 * 3 * 2
    with pytest.raises(ValueError, match="ner_init"):
        VideoModel(ner_init="other")


def test_non_local_block_is_the_dot_product_form():
    block = NonLocalBlock3D(8).double()
    for param in block.parameters():
        nn.init.normal_(param)
    x = torch.randn(2, 8, 3, 4, 5, dtype=torch.float64)
    theta, phi, g = (conv(x).flatten(2) for conv in (block.theta, block.phi, block.g))
    affinity = theta.transpose(1, 2) @ phi / phi.shape[-1]  # [B, N, N]
    y = (affinity @ g.transpose(1, 2)).transpose(1, 2).reshape(2, 4, 3, 4, 5)
    torch.testing.assert_close(block(x), x + block.W(y))


@pytest.mark.parametrize(("shape", "elements"), [((2, 16, 2, 8, 8), 128 * 32), ((1, 16, 3, 5, 7), 105 * 10)])
def test_non_local_block_forms_the_affinity_in_bands_bit_for_bit(monkeypatch, shape, elements):
    """Bands of affinity rows (4 equal bands; 10 rows and a shorter last band) compute, in
    float32, exactly what the release's whole N x N affinity does."""
    import libs.modules.non_local as non_local

    block = NonLocalBlock3D(shape[1])
    for param in block.parameters():
        nn.init.normal_(param, std=0.1)
    x = torch.randn(shape)
    c = block.inter_channels
    theta = block.theta(x).view(shape[0], c, -1).permute(0, 2, 1)
    phi = block.phi(x).view(shape[0], c, -1)
    g = block.g(x).view(shape[0], c, -1).permute(0, 2, 1)
    f = torch.matmul(theta, phi)
    y = torch.matmul(f / f.size(-1), g).permute(0, 2, 1).contiguous().view(shape[0], c, *shape[2:])
    monkeypatch.setattr(non_local, "AFFINITY_ELEMENTS", elements)
    assert elements < f.size(-1) ** 2
    assert torch.equal(block(x), block.W(y) + x)


def test_convgru_cell_equations():
    cell = ConvGRUCell(4, 4).double()
    x, h = torch.randn(2, 1, 4, 5, 5, dtype=torch.float64).unbind(0)
    r = torch.sigmoid(cell.reset_gate(torch.cat((x, h), 1)))
    z = torch.sigmoid(cell.update_gate(torch.cat((x, h), 1)))
    n = torch.tanh(cell.output_gate(torch.cat((x, r * h), 1)))
    torch.testing.assert_close(cell(x, h), (1 - z) * n + z * h)


def test_video_model_rejects_bad_input():
    model = VideoModel().eval()
    with pytest.raises(ValueError, match="clip"):
        model(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match="list"):
        model([])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(reference_model):
    model = reference_model("video_model")
    clip = torch.randn(1, 2, 3, 37, 41, dtype=torch.float64)
    with torch.no_grad():
        expected = model(clip)
        model.cuda()
        try:
            actual = model(clip.cuda()).cpu()
        finally:
            model.cpu()
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-6 * expected.abs().max().item())


def test_parallel_frames_compute_each_frame_as_one_thread_does():
    """`parallel_frames`: a clip's spatial features side by side, then the NER module on all
    threads, then the frames' classifiers side by side, each frame exactly as the release's loop
    computes it with the workers' thread count (float32, bit for bit); odd clip lengths and
    `frames_as_batch` keep the loop."""
    torch.manual_seed(0)
    model = VideoModel().eval()
    side_by_side = VideoModel(parallel_frames=2).eval()
    side_by_side.load_state_dict(model.state_dict())
    clip = torch.randn(1, 4, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    threads = torch.get_num_threads()

    def each_on_half_the_threads(step):
        torch.set_num_threads(max(1, threads // 2))
        try:
            return [step(t) for t in range(4)]
        finally:
            torch.set_num_threads(threads)

    with torch.inference_mode():
        steps = each_on_half_the_threads(lambda t: model.backbone.spatial_features(clip[:, t]))
        enhanced = model.enhance(torch.stack([step.aspp for step in steps], dim=2))
        expected = each_on_half_the_threads(
            lambda t: model.backbone.classify_pixels(steps[t], enhanced[:, :, t], clip.shape[3:]))
        assert torch.equal(side_by_side(clip), torch.stack(expected, dim=1))
        odd = clip[:, :3]
        assert torch.equal(side_by_side(odd), model(odd))
    # grad mode reaches the workers: gradients flow through them
    side_by_side(clip).sum().backward()
    assert side_by_side.backbone.resnet.conv1.weight.grad is not None
    # in training mode (BatchNorm may update its statistics) one frame at a time
    outputs = []
    for each in (side_by_side, model):
        each.train()
        each.freeze_bn()  # batch statistics of one frame's 1x1 pooled feature are undefined
        torch.manual_seed(3)  # the same dropout masks, drawn in the same order
        with torch.no_grad():
            outputs.append(each(clip))
    assert torch.equal(*outputs)
    with pytest.raises(ValueError, match="parallel_frames 0"):
        VideoModel(parallel_frames=0)
