"""The command line of `python -m libs.datasets.prepare`."""
from __future__ import annotations

import argparse

from libs.runtime.arguments import ArgumentParser, run_command

from ..config import DEFAULT_CONFIG, DEFAULT_DATA
from .check import check
from .counts import DEFAULT_COUNTS
from .preparers import PREPARERS, prepare

PROG = "python -m libs.datasets.prepare"


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog=PROG,
        description="Lay out an official dataset download as config/datasets.yaml expects (symlinks\n"
        "by default), or --check a prepared dataset against the figures its authors publish\n"
        "(config/dataset_counts.yaml). docs/datasets.md describes each download's layout.",
    )
    parser.add_argument("name", choices=list(PREPARERS), help="dataset, as named in the config")
    parser.add_argument("--source", metavar="DOWNLOAD", help="the unpacked official download")
    parser.add_argument("--data", default=DEFAULT_DATA, metavar="DIR", help="dataset root")
    parser.add_argument("--copy", action="store_true", help="copy files instead of symlinking them")
    parser.add_argument(
        "--check", action="store_true",
        help="count videos, frames and labels per split and compare them with the published figures",
    )
    hidden = argparse.SUPPRESS  # for tests: other dataset configs and counts
    parser.add_argument("--dataset-config", default=str(DEFAULT_CONFIG), metavar="PATH", help=hidden)
    parser.add_argument("--counts", default=str(DEFAULT_COUNTS), metavar="PATH", help=hidden)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 done (or check matched), 1 check found differences, 2 bad input."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.check and not args.source:
        parser.error("--source DOWNLOAD is required unless --check")
    def run() -> int:
        if args.source:
            for line in prepare(
                args.name, args.source, args.data, copy=args.copy, config_path=args.dataset_config
            ):
                print(line)
        if args.check:
            lines, ok = check(args.name, args.data, config_path=args.dataset_config, counts_path=args.counts)
            print("\n".join(lines))
            return 0 if ok else 1
        return 0

    return run_command(run, PROG)
