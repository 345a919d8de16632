"""Training curves from a CSV log (matplotlib, Agg backend: no display needed).

    python -m libs.engine.plot models/checkpoints/video_log.csv [-o curves.png]

draws loss (train and val), validation S-measure / max F-measure and MAE per epoch. The
PNG is written atomically (`libs.runtime.files.write_atomic`). A log that cannot be read as
the trainer writes it is reported as one line naming the file.
"""
from __future__ import annotations

import sys
from pathlib import Path

from libs.runtime.arguments import ArgumentParser, run_command
from libs.runtime.errors import UserError, first_line
from libs.runtime.files import write_atomic

from .logs import read_log


def plot_log(csv_path: str | Path, out_path: str | Path | None = None, title: str | None = None) -> Path:
    """Draw the curves of the log at `csv_path` into a PNG (default: beside it, `.png`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    csv_path = Path(csv_path)
    try:
        rows = read_log(csv_path)
    except (ValueError, KeyError, TypeError) as exc:  # cells or columns unlike the trainer's
        raise UserError(f"{csv_path}: not a training log as the trainer writes it "
                        f"({first_line(exc)})") from exc
    out = Path(out_path) if out_path is not None else csv_path.with_suffix(".png")

    def series(phase: str, key: str) -> tuple[list[int], list[float]]:
        points = [(r["epoch"], r[key]) for r in rows if r["phase"] == phase and r.get(key) is not None]
        return [p[0] for p in points], [p[1] for p in points]

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for phase, style in (("train", "-o"), ("val", "-s")):
        xs, ys = series(phase, "loss")
        if xs:
            axes[0].plot(xs, ys, style, label=phase, markersize=3)
    axes[0].set_title("loss (BCE per frame)")
    for key, style in (("S", "-o"), ("maxF", "-s")):
        xs, ys = series("val", key)
        if xs:
            axes[1].plot(xs, ys, style, label=f"val {key}", markersize=3)
    axes[1].set_title("validation S-measure / max F")
    for phase, style in (("train", "-o"), ("val", "-s")):
        xs, ys = series(phase, "MAE")
        if xs:
            axes[2].plot(xs, ys, style, label=phase, markersize=3)
    axes[2].set_title("MAE")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.suptitle(title or csv_path.name)
    fig.tight_layout()
    try:
        write_atomic(out, lambda handle: fig.savefig(handle, format="png", dpi=100))
    finally:
        plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line: plot a training log; prints the PNG's path."""
    parser = ArgumentParser(prog="python -m libs.engine.plot",
                            description="Plot the curves of a training CSV log.")
    parser.add_argument("log", help="the CSV log (<save-folder>/<prefix>_log.csv)")
    parser.add_argument("-o", "--out", default=None, metavar="FILE",
                        help="output PNG (default: the log's name with .png)")
    args = parser.parse_args(argv)
    return run_command(lambda: print(plot_log(args.log, args.out)), parser.prog)


if __name__ == "__main__":
    sys.exit(main())
