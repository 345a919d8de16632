"""Speed of RCRNet's factored decoder (`decoder="factored"`, `--precision auto`'s on a CPU) against
the release's resize-then-convolve decoder, in one process, timed in alternation (median of rounds):

- the decoder stage (resize + conv1 + BatchNorm + ReLU + conv2) of a clip at 448x448;
- the whole VideoModel forward at 448x448 (float32, eval, inference mode);
- a VideoModel training step (forward + backward) at --train-size;
- FLOPs per frame of VideoModel at 448 (torch.utils.flop_counter) with each decoder;
- float32 error of the factored decoder against the release's (logits, 8-bit maps), with the
  reference weights when --reference names the reference folder.

    python -m benchmarks.factored_decoder_speed --rounds 3 --reference ../shared/reference
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from benchmarks._common import Row, add_common_arguments, deviation, report, setup, time_interleaved
from libs.networks import VideoModel
from libs.runtime.arguments import ArgumentParser, run_command

DECODERS = ("release", "factored")


def reference_video_model(reference: str | None, decoder: str, frames_as_batch: bool = False) -> VideoModel:
    torch.manual_seed(0)
    model = VideoModel(decoder=decoder, frames_as_batch=frames_as_batch)
    if reference:
        spec = importlib.util.spec_from_file_location("refweights", Path(reference) / "refweights.py")
        refweights = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(refweights)
        keys = refweights.read_keys(Path(reference) / "keys" / "video_model.tsv")
        weights = {k: v for k, v in refweights.reference_state_dict(keys).items()
                   if not k.startswith("backbone.resnet.fc")}
        model.load_state_dict(weights, strict=True)
    return model.eval()


def flops_per_frame(model: VideoModel, clip: torch.Tensor) -> float:
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(clip)
    return counter.get_total_flops() / clip.shape[1] / 1e9


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--size", type=int, default=448, help="inference frame size (default 448)")
    parser.add_argument("--clip", type=int, default=4, help="frames a clip (default 4)")
    parser.add_argument("--train-size", type=int, default=256, help="training step frame size (default 256)")
    parser.add_argument("--reference", default=None, help="reference folder (refweights.py, keys/)")
    args = parser.parse_args(argv)
    setup(args)
    models = {decoder: reference_video_model(args.reference, decoder) for decoder in DECODERS}
    clip = torch.rand(1, args.clip, 3, args.size, args.size)
    low = torch.randn(args.clip, 128, args.size // 4, args.size // 4)
    size = (args.size, args.size)
    train_clip = torch.rand(1, args.clip, 3, args.train_size, args.train_size)
    train_target = torch.rand(1, args.clip, 1, args.train_size, args.train_size)

    def decode(model: VideoModel):
        def run():
            with torch.inference_mode():
                return model.backbone.decoder.forward_resized(low, size)
        return run

    def forward(model: VideoModel):
        def run():
            with torch.inference_mode():
                return model(clip)
        return run

    def train_step(decoder: str):
        model = reference_video_model(args.reference, decoder, frames_as_batch=True)  # as the video recipe

        def run():
            model.train()
            model.freeze_bn()
            model.zero_grad(set_to_none=True)
            F.binary_cross_entropy_with_logits(model(train_clip), train_target).backward()
        return run

    rows = []
    for name, make in (("decoder stage", lambda d: decode(models[d])),
                       ("VideoModel forward", lambda d: forward(models[d])),
                       ("VideoModel train step", train_step)):
        for decoder in DECODERS:
            rows.append(Row(f"{name}, {decoder}", make(decoder), args.clip, []))
    time_interleaved(rows, args.rounds, args.warmup)
    table = []
    for release_row, factored_row in zip(rows[::2], rows[1::2]):
        table.append([release_row.name.split(",")[0], f"{release_row.median:.3f}",
                      f"{factored_row.median:.3f}", f"{release_row.median / factored_row.median:.2f}x"])
    shape = f"{args.size}x{args.size} (train {args.train_size}), clip {args.clip}, float32"
    report(f"Decoder: the release's vs the factored decoder, seconds per clip (median of {args.rounds}), "
           f"{shape}", ["stage", "release s", "factored s", "speed-up"], table)

    flops = [flops_per_frame(models[decoder], clip[:, :1]) for decoder in DECODERS]
    report(f"VideoModel GFLOP per frame at {args.size}x{args.size}", ["release", "factored"],
           [[f"{flops[0]:.1f}", f"{flops[1]:.1f}"]])

    with torch.inference_mode():
        slow = models["release"](clip)
        fast = models["factored"](clip)
    error = (fast - slow).abs()
    scale = slow.abs().max().item()
    maps = deviation(torch.sigmoid(slow), torch.sigmoid(fast))
    weights = "reference weights" if args.reference else "random weights"
    report(f"Factored vs the release's decoder in float32, VideoModel logits at {args.size}x{args.size} "
           f"({weights})",
           ["max abs", "max abs / max |logit|", "8-bit pixels differing / largest"],
           [[f"{error.max().item():.3g}", f"{error.max().item() / scale:.3g}", maps.describe()]])


if __name__ == "__main__":
    sys.exit(run_command(main, "python -m benchmarks.factored_decoder_speed"))
