"""FlowNet 2.0 in plain PyTorch: `from flownet2.models import FlowNet2`.

Modules: `correlation`, `resample2d`, `channelnorm` (the three ops, no extensions),
`layers`, `decoder`, `flownet_c`, `flownet_s`, `flownet_sd`, `flownet_fusion`, `models`
(the networks), `padding` (flow for any frame size) and `checkpoint` (NVIDIA's weights).
"""
