"""Building blocks shared by FlowNetC, FlowNetS, FlowNetSD and the fusion net (no BatchNorm).

Each block is the `nn.Sequential` (or bare layer) of NVIDIA's port, so the parameter names
come out as theirs: `conv1.0.weight`, `deconv5.0.bias`, `predict_flow6.weight`, ...
"""

from __future__ import annotations

from torch import nn

LEAKY_SLOPE = 0.1


def conv(in_planes: int, out_planes: int, kernel_size: int = 3, stride: int = 1) -> nn.Sequential:
    """Conv2d (with bias, 'same' padding for odd kernels) followed by LeakyReLU(0.1)."""
    return nn.Sequential(
        nn.Conv2d(
            in_planes, out_planes, kernel_size, stride=stride, padding=(kernel_size - 1) // 2, bias=True
        ),
        nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
    )


def i_conv(in_planes: int, out_planes: int, kernel_size: int = 3, stride: int = 1) -> nn.Sequential:
    """Conv2d with bias and no activation (FlowNetSD's and the fusion net's `inter_conv` layers)."""
    return nn.Sequential(
        nn.Conv2d(
            in_planes, out_planes, kernel_size, stride=stride, padding=(kernel_size - 1) // 2, bias=True
        ),
    )


def deconv(in_planes: int, out_planes: int) -> nn.Sequential:
    """ConvTranspose2d(k4, s2, p1, bias) followed by LeakyReLU(0.1): doubles the resolution."""
    return nn.Sequential(
        nn.ConvTranspose2d(in_planes, out_planes, 4, stride=2, padding=1, bias=True),
        nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
    )


def predict_flow(in_planes: int) -> nn.Conv2d:
    """3x3 Conv2d to the 2 flow channels (u, v), no activation."""
    return nn.Conv2d(in_planes, 2, 3, stride=1, padding=1, bias=True)


def upsample_flow(bias: bool) -> nn.ConvTranspose2d:
    """Learned x2 upsampling of a 2-channel flow (`upsampled_flow*`); FlowNetS has no bias here."""
    return nn.ConvTranspose2d(2, 2, 4, stride=2, padding=1, bias=bias)


def init_like_port_(module: nn.Module) -> None:
    """The port's fresh init for every conv in `module`: Xavier-uniform weights, biases uniform in [0, 1).

    Only matters when training from scratch; NVIDIA's checkpoint replaces all of it.
    """
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
            if layer.bias is not None:
                nn.init.uniform_(layer.bias)
            nn.init.xavier_uniform_(layer.weight)


def add_encoder_tail(net: nn.Module) -> None:
    """Give `net` the encoder levels 1/16 to 1/64 that FlowNetC, FlowNetS and FlowNetSD share
    (`conv4`, `conv4_1`, `conv5`, `conv5_1`, `conv6`, `conv6_1`, in the port's parameter order)."""
    net.conv4 = conv(256, 512, stride=2)
    net.conv4_1 = conv(512, 512)
    net.conv5 = conv(512, 512, stride=2)
    net.conv5_1 = conv(512, 512)
    net.conv6 = conv(512, 1024, stride=2)
    net.conv6_1 = conv(1024, 1024)
