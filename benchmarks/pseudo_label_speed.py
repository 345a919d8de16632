"""Pseudo-label throughput: FGPLG's `generate_pseudo_label` at 448x448 (two FlowNet 2.0 flows
and one 7-channel RCRNet per label) for the faithful float32 path and the faster ones, with
each one's deviation from float32, measured in one run.

The generator is built from the benchmark's trained VideoModel (see inference_speed.py):
its RCRNet weights, with the 4 extra stem channels (warped labels, flow magnitudes) set to
zero, and FlowNet 2.0 with PyTorch's default initialisation (no trained weights offline).
So the saliency part has trained weights and the deviation of the maps is meaningful for
it, while the flow's own precision does not reach the output here (its channels weigh
zero): FlowNet 2.0's precision is measured by benchmarks/flownet2_speed.py.

    python -m benchmarks.pseudo_label_speed                   # 448x448, 3 rounds
    python -m benchmarks.pseudo_label_speed --size 64 --rounds 1 --labels 1 --train-steps 1 \\
        --train-size 64 --cache /tmp/bench                     # a quick smoke run
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from benchmarks._common import (
    Deviation,
    Row,
    add_common_arguments,
    add_trained_model_arguments,
    clip_batches,
    deviation,
    machine,
    report,
    setup,
    synthetic_data,
    time_interleaved,
    trained_video_model,
)
from libs.inference.label_predictors import fgplg_predictor
from libs.inference.optimize import inference_context, prepare_model
from libs.networks.fgplg import FGPLG
from libs.runtime.arguments import ArgumentParser, run_command
from libs.runtime.plan import RunPlan, plan_run

Inputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def generator_from(video_model: nn.Module, decoder: str = "release") -> FGPLG:
    """An FGPLG built with `decoder` whose RCRNet is `video_model`'s (extra stem channels zero) and
    whose FlowNet 2.0 has PyTorch's default initialisation."""
    torch.manual_seed(0)
    model = FGPLG(decoder=decoder)
    for module in model.flownet.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            module.reset_parameters()
    state = {k: v.clone() for k, v in video_model.backbone.state_dict().items()}
    stem = state["resnet.conv1.weight"]
    state["resnet.conv1.weight"] = torch.cat([stem, stem.new_zeros(stem.shape[0], 4, *stem.shape[2:])], 1)
    model.backbone.load_state_dict(state)
    return model.eval()


@dataclass
class Config:
    name: str
    predict: Callable[[Inputs], torch.Tensor]
    setup_seconds: float = 0.0

    def __call__(self, inputs: Inputs) -> torch.Tensor:
        return self.predict(inputs)


def faithful(model: FGPLG) -> Callable[[Inputs], torch.Tensor]:
    def predict(inputs: Inputs) -> torch.Tensor:
        with torch.no_grad():
            return torch.sigmoid(model.generate_pseudo_label(*inputs))

    return predict


def prepared(model: FGPLG, precision: str, flow_half: bool = False) -> Callable[[Inputs], torch.Tensor]:
    """`model` (built with the factored decoder) BatchNorm-folded and channels-last at `precision`."""
    plan = RunPlan(torch.device("cpu"), precision, "factored", channels_last=True, fold_bn=True)
    fast = prepare_model(model, plan).model
    fast.flownet.half_precision = flow_half

    def predict(inputs: Inputs) -> torch.Tensor:
        with inference_context(precision, "cpu"):
            return torch.sigmoid(fast.generate_pseudo_label(*inputs).float())

    return predict


def auto(model: FGPLG) -> Callable[[Inputs], torch.Tensor]:
    """generate_pseudo_labels.py's default: `fgplg_predictor` under the plan of precision auto (on a
    CPU the factored decoder, which `model` must have been built with)."""
    predict = fgplg_predictor(model, plan_run("inference", torch.device("cpu"), "auto").for_model("fgplg"))
    return lambda inputs: predict(*inputs)


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=448, help="frame height and width (default 448)")
    parser.add_argument("--labels", type=int, default=4, help="labels the deviation is measured on")
    add_trained_model_arguments(parser)
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    setup(args)
    print(machine(), file=sys.stderr)
    video = trained_video_model(steps=args.train_steps, size=args.train_size)
    model, factored = generator_from(video), generator_from(video, "factored")
    batches = clip_batches(synthetic_data(), args.size, clip_len=3, batch=1, training=False)
    samples: list[Inputs] = []
    for _ in range(max(1, args.labels)):
        clip, labels = next(batches)
        samples.append((clip[:, 1], clip[:, 0], clip[:, 2], labels[:, 0], labels[:, 2]))
    configs = [
        Config("fp32 eager (release way)", faithful(model)),
        Config("fp32 + factored decoder + BN folded + channels-last", prepared(factored, "fp32")),
        Config("precision auto (generate_pseudo_labels.py's default: factored decoder)", auto(factored)),
        Config("bf16 autocast RCRNet, flow fp32", prepared(factored, "bf16")),
        Config("bf16 autocast RCRNet and FlowNet2 (the release's --fp16 on CPU)",
               prepared(factored, "bf16", flow_half=True)),
    ]
    reference: torch.Tensor | None = None
    deviations: dict[str, Deviation] = {}
    for cfg in configs:
        start = time.perf_counter()
        probs = torch.cat([cfg(inputs) for inputs in samples])
        cfg.setup_seconds = time.perf_counter() - start
        reference = probs if reference is None else reference
        deviations[cfg.name] = deviation(reference, probs)
        print(f"  {cfg.name}: deviation {deviations[cfg.name].describe()}", file=sys.stderr, flush=True)
    rows = [Row(cfg.name, (lambda c=cfg: c.predict(samples[0])), 1, []) for cfg in configs]
    time_interleaved(rows, args.rounds, args.warmup)
    base = rows[0].rate
    table = [[cfg.name, f"{row.rate:.3f}", f"{row.rate / base:.2f}x", deviations[cfg.name].describe(),
              "yes" if deviations[cfg.name].within() else "no"] for cfg, row in zip(configs, rows)]
    report(f"FGPLG pseudo-labels, {args.size}x{args.size}, one label per call, median of {args.rounds} "
           "interleaved rounds", ["configuration", "labels/s", "speed-up", "pixels differing / max levels",
                                  "within tolerance"], table)
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "python -m benchmarks.pseudo_label_speed"))
