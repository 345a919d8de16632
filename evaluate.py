"""Benchmark saliency maps against ground truth: dataset splits, plain folders, or earlier runs.

Parses the command line and calls `libs.evaluation.run.run_evaluation`.
"""
from __future__ import annotations

import argparse
import os
import sys

from libs.cli import ArgumentParser, HelpFormatter, positive_int, run_cli
from libs.datasets.config import DEFAULT_CONFIG, DEFAULT_DATA
from libs.datasets.splits import pair_dataset_splits
from libs.evaluation.protocol import AVERAGES, DEFINITIONS, FMEASURES, PROTOCOLS, RESIZES, make_protocol
from libs.evaluation.published import DEFAULT_PUBLISHED
from libs.evaluation.run import EvaluationRun, run_evaluation
from libs.evaluation.tables import TABLE_FORMATS

PROG = "evaluate.py"


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog=PROG,
        formatter_class=HelpFormatter,
        description=(
            "Score the saliency maps of one or more methods with PySODMetrics (or a benchmark's own\n"
            "definitions, --protocol): max F, S, MAE (the paper's metrics), then mean / adaptive\n"
            "F-measure (beta^2 = 0.3), max / mean / adaptive E-measure and weighted F-measure.\n"
            "The labels come from one of:\n"
            "  --dataset NAME --split NAME   a dataset split of the dataset config; a results folder\n"
            "                                is laid out as inference.py writes it:\n"
            "                                <results>/<dataset>/<video>/<frame>.png (videos) or\n"
            "                                <results>/<dataset>/<id>.png (images)\n"
            "  --labels DIR                  a folder of label images, flat or in per-video folders;\n"
            "                                maps are matched by relative path, else by file name\n"
            "  --merge JSON [JSON ...]       scores of earlier runs (--json): a table, nothing scored\n"
            "Prints a table (dataset x method, best value per column in bold) on stdout and what\n"
            "was counted on stderr."
        ),
        epilog=(
            "dataset/split pairs: --dataset and --split are paired in the order given; a single\n"
            "--split applies to every --dataset. Outputs key a dataset by its name, or by\n"
            "NAME/split when one dataset is evaluated on several splits.\n\n"
            "examples:\n"
            "  python evaluate.py --dataset DAVIS2016 --split val --results-folder data/results\n"
            "  python evaluate.py --dataset DAVIS2016 --split val --dataset FBMS --split test \\\n"
            "      --results-folder runs/rcrnet/results runs/baseline/results \\\n"
            "      --json scores.json --plot plots --compare-published\n"
            "  python evaluate.py --labels ViSal/GroundTruth --results-folder my_maps\n"
            "  python evaluate.py --merge davis.json fbms.json --format latex\n\n"
            "edge cases: a frame without a map is an error (--allow-missing skips it); files that\n"
            "match no frame are ignored; a map sized unlike its label is resized; colour, palette\n"
            "and 16-bit maps are converted to 8-bit grey; all-black labels are scored as\n"
            "PySODMetrics does (F and wF 0) unless --skip-empty-gt. Each case is counted on stderr.\n\n"
            "protocols (docs/evaluation.md compares them; libs/evaluation/protocol.py cites the code):\n"
            "  frames            PySODMetrics: every annotated frame counts once, bilinear resizing,\n"
            "                    max F from the mean of per-frame F curves\n"
            "  davsod            DAVSOD's EvaluateTool/main.m: each video's first and last annotated\n"
            "                    frame skipped, scores averaged per video then over videos, MATLAB\n"
            "                    imresize bicubic, MATLAB metric definitions\n"
            "  sal-eval-toolbox  ArcherFMY/sal_eval_toolbox performCalcu.m: precision and recall\n"
            "                    averaged over all images at 256 thresholds, max F from those mean\n"
            "                    curves; MATLAB imresize bicubic and definitions\n"
            "--average, --skip-first-last, --resize, --definitions and --fmeasure override the\n"
            "protocol's."
        ),
    )
    where = parser.add_argument_group("what to score")
    where.add_argument(
        "--results-folder", "--results", dest="results", action="extend", nargs="+", metavar="DIR",
        help="results folder of a method, as inference.py --results-folder writes it (with --labels: "
        "any folder of maps); its folder name names the method; several allowed",
    )
    where.add_argument(
        "--dataset", action="append", metavar="NAME",
        help="dataset to evaluate on, as named in the dataset config; repeat for several",
    )
    where.add_argument(
        "--split", action="append", metavar="NAME",
        help="split of the dataset given at the same position (one --split: used for all)",
    )
    where.add_argument(
        "--data", default=DEFAULT_DATA, metavar="DIR", help="dataset root holding <DIR>/<dataset>/...",
    )
    where.add_argument(
        "--dataset-config", metavar="PATH",
        help="dataset layouts and splits (default: config/datasets.yaml of this project)",
    )
    where.add_argument(
        "--labels", metavar="DIR",
        help="score against the label images in DIR (flat or <video>/ folders) instead of a dataset split; "
        "no dataset config needed (--dataset/--split then only name the rows, e.g. to --compare-published)",
    )
    where.add_argument(
        "--merge", nargs="+", metavar="JSON",
        help="print one table of the scores in JSON files of earlier runs (--json); nothing is scored",
    )
    out = parser.add_argument_group("output")
    out.add_argument(
        "--format", dest="table_format", choices=TABLE_FORMATS, default="markdown",
        help="table on stdout, best value per column in bold",
    )
    out.add_argument(
        "--compare-published", nargs="?", const=str(DEFAULT_PUBLISHED), metavar="YAML",
        help="after the table, RCRNet's published scores (config/published_scores.yaml, or YAML) beside "
        "yours, each 'matches' (within rounding of its 3 decimals) or by how much it differs",
    )
    out.add_argument(
        "--json", metavar="PATH",
        help='write {method: {dataset: {"dataset", "split", "MAE", "maxF", "meanF", "adpF", "S", "maxE", '
        '"meanE", "adpE", "wF", "frames", "protocol"}}} (with --per-video, also "videos": {video: {...}})',
    )
    out.add_argument(
        "--csv", metavar="PATH",
        help="write one row per dataset and method (and video, with --per-video; empty on overall rows)",
    )
    out.add_argument(
        "--per-video", action="store_true",
        help="also report every video of video datasets (table rows, CSV rows, JSON 'videos')",
    )
    out.add_argument(
        "--plot", metavar="DIR",
        help="write <DIR>/<dataset>_<split>.png: precision-recall and F-measure-vs-threshold curves "
        "of all methods, as the protocol averages them",
    )
    how = parser.add_argument_group("how to score")
    how.add_argument(
        "--protocol", choices=list(PROTOCOLS), default="frames",
        help="evaluation conventions of a benchmark's code (see below)",
    )
    how.add_argument(
        "--average", choices=AVERAGES,
        help="average every frame of a dataset once (frames) or per video, then over videos (videos)",
    )
    how.add_argument(
        "--skip-first-last", action=argparse.BooleanOptionalAction, default=None,
        help="leave out each video's first and last annotated frame (DAVSOD main.m:82)",
    )
    how.add_argument(
        "--resize", choices=RESIZES,
        help="how a map sized unlike its label is resized: bilinear or MATLAB's imresize bicubic",
    )
    how.add_argument(
        "--definitions", choices=DEFINITIONS,
        help="metric definitions: PySODMetrics' or DAVSOD's MATLAB files' (S, F, MAE)",
    )
    how.add_argument(
        "--fmeasure", choices=FMEASURES,
        help="max / mean F from the mean of per-frame F curves, or from the F of the mean precision "
        "and recall curves",
    )
    how.add_argument(
        "-j", "--num-workers", "--num_workers", "--workers", dest="workers", type=positive_int,
        default=_cpus(), metavar="N",
        help="worker processes scoring frames in parallel; results do not depend on N "
        "(default: the available cores, %(default)s)",
    )
    how.add_argument(
        "--allow-missing", action="store_true",
        help="skip (and count) labelled frames that have no map instead of stopping with an error",
    )
    how.add_argument(
        "--skip-empty-gt", action="store_true",
        help="leave out (and count) frames whose label is all black instead of scoring them",
    )
    return parser


def _check_mode(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[tuple[str, str]]:
    """The (dataset, split) pairs to score; a usage error when the ways in are mixed or incomplete."""
    if args.merge:
        given = [flag for flag, value in (("--results-folder", args.results), ("--dataset", args.dataset),
                                          ("--labels", args.labels)) if value]
        if given:
            parser.error(f"--merge prints earlier scores; it takes no {', '.join(given)}")
        return []
    if not args.results:
        parser.error("--results-folder DIR is required (or --merge JSON ...)")
    if args.labels is not None:
        if not args.dataset and not args.split:
            return []
        if len(args.dataset or []) != 1 or len(args.split or []) > 1:
            parser.error("with --labels, --dataset NAME [--split NAME] only names the labels (once)")
        return [(args.dataset[0], (args.split or [""])[0])]
    if not args.dataset or not args.split:
        parser.error("give --dataset NAME and --split NAME (or --labels DIR, or --merge JSON ...)")
    try:
        return list(pair_dataset_splits(args.dataset, args.split))
    except ValueError as error:
        parser.error(str(error))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    pairs = _check_mode(parser, args)

    def run() -> int:
        protocol = make_protocol(
            args.protocol, average=args.average, skip_first_last=args.skip_first_last,
            resize=args.resize, definitions=args.definitions, fmeasure=args.fmeasure,
        )
        return run_evaluation(EvaluationRun(
            results=args.results or [], pairs=pairs, data=args.data,
            dataset_config=args.dataset_config or DEFAULT_CONFIG, labels=args.labels, merge=args.merge or [],
            protocol=protocol, workers=args.workers, allow_missing=args.allow_missing,
            skip_empty_gt=args.skip_empty_gt, per_video=args.per_video, table_format=args.table_format,
            json=args.json, csv=args.csv, plot=args.plot, compare_published=args.compare_published,
        ))

    return run_cli(run, PROG)


if __name__ == "__main__":
    sys.exit(main())
