"""Convolutional GRU cell of the non-locally enhanced recurrent module (the release's
libs/modules/convgru.py)."""
from __future__ import annotations

import torch
from torch import nn

from .layers import fresh_init_


class ConvGRUCell(nn.Module):
    """GRU whose gates are 3x3 convs (with bias) over concat(x, h).

    r = sigmoid(reset_gate(x, h)), z = sigmoid(update_gate(x, h)),
    n = tanh(output_gate(x, r * h)), h' = (1 - z) * n + z * h.
    """

    def __init__(self, input_channels: int = 256, hidden_channels: int = 256, kernel_size: int = 3) -> None:
        super().__init__()
        padding = kernel_size // 2
        gate_inputs = input_channels + hidden_channels
        self.reset_gate = nn.Conv2d(gate_inputs, hidden_channels, kernel_size, padding=padding)
        self.update_gate = nn.Conv2d(gate_inputs, hidden_channels, kernel_size, padding=padding)
        self.output_gate = nn.Conv2d(gate_inputs, hidden_channels, kernel_size, padding=padding)
        fresh_init_(self)

    def forward(self, x: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        inputs = torch.cat((x, hidden), dim=1)
        reset = torch.sigmoid(self.reset_gate(inputs))
        update = torch.sigmoid(self.update_gate(inputs))
        candidate = torch.tanh(self.output_gate(torch.cat((x, reset * hidden), dim=1)))
        return (1 - update) * candidate + update * hidden
