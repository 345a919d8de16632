"""Benchmark saliency maps against the ground truth of dataset splits.

Thin command line over `libs.evaluation`: every (dataset, split) pair and every
results folder is checked before anything is scored, then each method is evaluated on
each pair and reported as a Markdown table (stdout), JSON, CSV and curve plots.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from libs.cli import ArgumentParser, HelpFormatter, positive_int, run_cli
from libs.datasets.config import DEFAULT_CONFIG, DEFAULT_DATA, get_spec, load_dataset_config
from libs.datasets.splits import pair_dataset_splits
from libs.evaluation import (
    dataset_keys,
    describe_counts,
    evaluate_pairing,
    markdown_table,
    method_names,
    pair_results,
    plot_curves,
    write_csv,
    write_json,
)
from libs.evaluation.protocol import AVERAGES, DEFINITIONS, PROTOCOLS, RESIZES, make_protocol

PROG = "evaluate.py"


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog=PROG,
        formatter_class=HelpFormatter,
        description=(
            "Score the saliency maps of one or more methods on the annotated frames of dataset\n"
            "splits with PySODMetrics: max F, S, MAE (the paper's metrics), then mean / adaptive\n"
            "F-measure (beta^2 = 0.3), max / mean / adaptive E-measure and weighted F-measure.\n"
            "A results folder is laid out as inference.py writes it:\n"
            "  <results>/<dataset>/<video>/<frame>.png   (video datasets; <frame> = label name)\n"
            "  <results>/<dataset>/<id>.png              (image datasets)\n"
            "Prints a Markdown table (dataset x method) on stdout and what was counted on stderr."
        ),
        epilog=(
            "dataset/split pairs: --dataset and --split are paired in the order given; a single\n"
            "--split applies to every --dataset. Outputs key a dataset by its name, or by\n"
            "NAME/split when one dataset is evaluated on several splits.\n\n"
            "examples:\n"
            "  python evaluate.py --dataset DAVIS2016 --split val --results-folder data/results\n"
            "  python evaluate.py --dataset DAVIS2016 --split val --dataset FBMS --split test \\\n"
            "      --results-folder runs/rcrnet/results runs/baseline/results \\\n"
            "      --json scores.json --plot plots\n\n"
            "edge cases: a frame without a map is an error (--allow-missing skips it); files that\n"
            "match no frame are ignored; a map sized unlike its label is resized bilinearly; colour,\n"
            "palette and 16-bit maps are converted to 8-bit grey; all-black labels are scored as\n"
            "PySODMetrics does (F and wF 0) unless --skip-empty-gt. Each case is counted on stderr.\n\n"
            "protocols (libs/evaluation/protocol.py gives each convention's source):\n"
            "  frames  every annotated frame counts once; bilinear resizing; PySODMetrics definitions\n"
            "  davsod  DAVSOD's EvaluateTool/main.m: each video's first and last annotated frame\n"
            "          skipped, scores averaged per video then over videos (max F from the mean\n"
            "          F curve), MATLAB imresize bicubic, MATLAB metric definitions\n"
            "--average, --skip-first-last, --resize and --definitions override the protocol's."
        ),
    )
    parser.add_argument(
        "--data", default=DEFAULT_DATA, metavar="DIR",
        help="dataset root holding <DIR>/<dataset>/... (default: %(default)s)",
    )
    parser.add_argument(
        "--dataset", action="append", required=True, metavar="NAME",
        help="dataset to evaluate on, as named in the dataset config; repeat for several",
    )
    parser.add_argument(
        "--split", action="append", required=True, metavar="NAME",
        help="split of the dataset given at the same position (one --split: used for all)",
    )
    parser.add_argument(
        "--results-folder", "--results", dest="results", action="extend", nargs="+", required=True,
        metavar="DIR",
        help="results folder of a method, as inference.py --results-folder writes it (its folder name "
        "names the method); several allowed",
    )
    parser.add_argument(
        "--dataset-config", default=str(DEFAULT_CONFIG), metavar="PATH",
        help="dataset layouts and splits (default: config/datasets.yaml)",
    )
    parser.add_argument(
        "--json", metavar="PATH",
        help='write {method: {dataset: {"MAE", "maxF", "meanF", "adpF", "S", "maxE", "meanE", '
        '"adpE", "wF", "frames"}}} (with --per-video, also "videos": {video: {...}})',
    )
    parser.add_argument(
        "--csv", metavar="PATH",
        help="write one row per dataset and method (and video, with --per-video; empty on overall rows)",
    )
    parser.add_argument(
        "--per-video", action="store_true",
        help="also report every video of video datasets (table rows, CSV rows, JSON 'videos')",
    )
    parser.add_argument(
        "--plot", metavar="DIR",
        help="write <DIR>/<dataset>_<split>.png: precision-recall and F-measure-vs-threshold curves "
        "of all methods",
    )
    parser.add_argument(
        "-j", "--num-workers", "--num_workers", "--workers", dest="workers", type=positive_int,
        default=_cpus(), metavar="N",
        help="worker processes scoring frames in parallel; results do not depend on N "
        "(default: the available cores, %(default)s)",
    )
    parser.add_argument(
        "--allow-missing", action="store_true",
        help="skip (and count) labelled frames that have no map instead of stopping with an error",
    )
    parser.add_argument(
        "--skip-empty-gt", action="store_true",
        help="leave out (and count) frames whose label is all black instead of scoring them",
    )
    parser.add_argument(
        "--protocol", choices=list(PROTOCOLS), default="frames",
        help="evaluation conventions: frames (default) or davsod (DAVSOD's MATLAB main.m)",
    )
    parser.add_argument(
        "--average", choices=AVERAGES,
        help="average every frame of a dataset once (frames) or per video, then over videos (videos)",
    )
    parser.add_argument(
        "--skip-first-last", action=argparse.BooleanOptionalAction, default=None,
        help="leave out each video's first and last annotated frame (DAVSOD main.m:82)",
    )
    parser.add_argument(
        "--resize", choices=RESIZES,
        help="how a map sized unlike its label is resized: bilinear or MATLAB's imresize bicubic",
    )
    parser.add_argument(
        "--definitions", choices=DEFINITIONS,
        help="metric definitions: PySODMetrics' or DAVSOD's MATLAB files' (S, F, MAE)",
    )
    return parser


def _pairs(parser: argparse.ArgumentParser, datasets: list[str], splits: list[str]) -> list[tuple[str, str]]:
    try:
        return list(pair_dataset_splits(datasets, splits))
    except ValueError as error:
        parser.error(str(error))


def _file_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    pairs = _pairs(parser, args.dataset, args.split)

    def run() -> int:
        protocol = make_protocol(
            args.protocol, average=args.average, skip_first_last=args.skip_first_last,
            resize=args.resize, definitions=args.definitions,
        )
        config = load_dataset_config(args.dataset_config)
        names = method_names(args.results)
        keys = dataset_keys(pairs)
        # Check every input before scoring anything: a typo should not surface an hour in.
        plan = []
        for (dataset, split), key in zip(pairs, keys):
            spec = get_spec(config, dataset)
            for name, results_dir in zip(names, args.results):
                pairing = pair_results(results_dir, args.data, spec, split, allow_missing=args.allow_missing)
                plan.append((key, name, pairing))
        table: dict[str, dict[str, dict]] = {name: {} for name in names}
        for key, name, pairing in plan:
            table[name][key] = evaluate_pairing(
                pairing,
                workers=args.workers,
                per_video=args.per_video,
                skip_empty_gt=args.skip_empty_gt,
                progress=True,
                desc=f"{name} {key}",
                protocol=protocol,
            )
        print(markdown_table(table, per_video=args.per_video, caption=True))
        for key, name, _ in plan:
            result = table[name][key]
            where, labelled = f"{result['dataset']}/{result['split']}", result["counts"]["labelled"]
            scored = f"{result['frames']} of {labelled} labelled frame(s) scored"
            print(f"{name} on {where}: {scored}", file=sys.stderr)
            for line in describe_counts(result):
                print(f"  {line}", file=sys.stderr)
        if args.json:
            write_json(table, args.json, per_video=args.per_video)
        if args.csv:
            write_csv(table, args.csv, per_video=args.per_video)
        if args.plot:
            for (dataset, split), key in zip(pairs, keys):
                by_method = {name: table[name][key] for name in names}
                path = Path(args.plot) / f"{_file_name(dataset)}_{_file_name(split)}.png"
                plot_curves(by_method, path, title=f"{dataset} ({split})")
        return 0

    return run_cli(run, PROG)


if __name__ == "__main__":
    sys.exit(main())
