"""evaluate.py's other ways in and out: plain folders (--labels), merged JSON (--merge),
Markdown / LaTeX tables with the best values marked, and published scores beside the user's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import evaluate
from libs.evaluation import EvaluationError, evaluate_pairing, pair_folders, read_results
from libs.evaluation.published import (
    DEFAULT_PUBLISHED,
    PublishedScores,
    compare_published,
    load_published,
    verdict,
)
from libs.evaluation.tables import best_values, latex_table, markdown_table
from tests.conftest import assert_one_line_error

H, W = 20, 24


def _save(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _blob(i: int) -> np.ndarray:
    yy, xx = np.mgrid[:H, :W]
    return (((yy - 7 - i) ** 2 + (xx - 9 - i) ** 2) < 30).astype(np.uint8) * 255


@pytest.fixture
def folders(tmp_path: Path) -> dict:
    """labels/<video>/<video>_<i>.png and two methods' maps, per video (good) and flat (noisy)."""
    rng = np.random.default_rng(11)
    for video in ("cow", "gokart"):
        for i in range(3):
            gt = _blob(i)
            name = f"{video}_{i}.png"
            _save(gt, tmp_path / "labels" / video / name)
            good = np.clip(gt * 0.8 + rng.normal(20, 20, gt.shape), 0, 255).astype(np.uint8)
            noisy = np.clip(gt * 0.6 + rng.normal(40, 60, gt.shape), 0, 255).astype(np.uint8)
            _save(good, tmp_path / "good" / video / name)
            _save(noisy, tmp_path / "noisy" / name)  # flat: matched by file name
    return {
        "root": tmp_path,
        "labels": tmp_path / "labels",
        "good": tmp_path / "good",
        "noisy": tmp_path / "noisy",
    }


def _main(capsys, *args: str) -> tuple[int, str, str]:
    code = evaluate.main([*args, "-j", "1"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_folders_per_video_and_flat_maps_pair_by_name(folders):
    per_video = pair_folders(folders["good"], folders["labels"])
    flat = pair_folders(folders["noisy"], folders["labels"])
    keys = ["cow/cow_0", "cow/cow_1", "cow/cow_2", "gokart/gokart_0", "gokart/gokart_1", "gokart/gokart_2"]
    assert [f.key for f in per_video.frames] == keys and per_video.is_video
    assert len(per_video.predictions) == len(flat.predictions) == 6
    assert flat.predictions["gokart/gokart_1"] == folders["noisy"] / "gokart_1.png"
    result = evaluate_pairing(per_video, per_video=True)
    assert result["dataset"] == "labels" and list(result["videos"]) == ["cow", "gokart"]


def test_folders_missing_and_ambiguous_maps(folders, capsys):
    (folders["good"] / "cow" / "cow_1.png").unlink()
    with pytest.raises(EvaluationError, match=r"1 of 6 predictions missing .*cow/cow_1\.png"):
        pair_folders(folders["good"], folders["labels"])
    assert len(pair_folders(folders["good"], folders["labels"], allow_missing=True).predictions) == 5
    # Two maps named cow_1 in different folders: which one is meant is unclear, so neither is used.
    _save(_blob(0), folders["noisy"] / "a" / "cow_1.png")
    _save(_blob(0), folders["noisy"] / "b" / "cow_1.png")
    (folders["noisy"] / "cow_1.png").unlink()
    assert "cow/cow_1" in pair_folders(folders["noisy"], folders["labels"], allow_missing=True).missing
    assert_one_line_error(
        evaluate.main,
        ["--labels", str(folders["root"] / "none"), "--results", str(folders["good"])],
        capsys,
        "folder not found",
    )
    assert_one_line_error(
        evaluate.main,
        [
            "--labels",
            str(folders["labels"]),
            "--dataset",
            "A",
            "--dataset",
            "B",
            "--results",
            str(folders["good"]),
        ],
        capsys,
        "only names the labels (once)",
    )
    assert_one_line_error(
        evaluate.main,
        ["--dataset", "DAVIS2016", "--split", "val"],
        capsys,
        "--results-folder DIR is required",
    )


def test_table_marks_best_values_and_latex(folders, capsys):
    code, out, _ = _main(
        capsys,
        "--labels",
        str(folders["labels"]),
        "--results",
        str(folders["good"]),
        str(folders["noisy"]),
        "--json",
        str(folders["root"] / "s.json"),
    )
    assert code == 0
    lines = out.splitlines()
    good, noisy = lines[2], lines[3]
    assert good.startswith("| labels |  | good | 6 | **") and "**" not in noisy
    scores = json.loads((folders["root"] / "s.json").read_text())
    assert scores["good"]["labels"]["MAE"] < scores["noisy"]["labels"]["MAE"]
    table = read_results([folders["root"] / "s.json"])
    table["noisy"]["labels"]["S"] = table["good"]["labels"]["S"] + 0.0001  # ties at 3 decimals are both best
    best = best_values(table, ["S", "MAE"])
    assert best["labels", "MAE"] == f"{table['good']['labels']['MAE']:.3f}"
    marked = markdown_table(table).splitlines()
    s_column = 4 + 2  # | dataset | split | method | frames | max F | S
    assert marked[2].split("|")[s_column].strip().startswith("**")
    assert marked[3].split("|")[s_column].strip().startswith("**")
    latex = latex_table({"RCRNet_v2 & co": table["good"], "noisy": table["noisy"]}, caption=True)
    assert latex.startswith(r"\begin{tabular}{lllrrrrrrrrrr}")
    assert r"RCRNet\_v2 \& co" in latex and r"MAE $\downarrow$" in latex and r"max F $\uparrow$" in latex
    assert r"\textbf{" in latex and latex.splitlines()[-1].startswith("% protocol: frames")


def test_merge_gives_the_table_of_one_run(folders, capsys):
    root = folders["root"]
    one = ["--labels", str(folders["labels"]), "--results", str(folders["good"]), str(folders["noisy"])]
    _, together, _ = _main(capsys, *one)
    for name in ("good", "noisy"):
        assert (
            _main(
                capsys,
                "--labels",
                str(folders["labels"]),
                "--results",
                str(folders[name]),
                "--json",
                str(root / f"{name}.json"),
            )[0]
            == 0
        )
    code, merged, err = _main(capsys, "--merge", str(root / "good.json"), str(root / "noisy.json"))
    assert code == 0 and merged == together and err == ""
    code, latex, _ = _main(
        capsys, "--merge", str(root / "good.json"), str(root / "noisy.json"), "--format", "latex"
    )
    assert code == 0 and r"\textbf{" in latex
    assert_one_line_error(
        evaluate.main,
        ["--merge", str(root / "good.json"), str(root / "good.json")],
        capsys,
        "good on labels is in both",
    )
    (root / "bad.json").write_text("{not json")
    assert_one_line_error(evaluate.main, ["--merge", str(root / "bad.json")], capsys, "is not JSON (--merge)")
    assert_one_line_error(
        evaluate.main,
        ["--merge", str(root / "good.json"), "--plot", str(root / "p")],
        capsys,
        "--plot needs the curves",
    )
    assert_one_line_error(
        evaluate.main,
        ["--merge", str(root / "good.json"), "--results", str(root)],
        capsys,
        "it takes no --results-folder",
    )


def test_published_scores_file_cites_every_number():
    entries = {e.name: e for e in load_published(DEFAULT_PUBLISHED)}
    release = entries["RCRNet (release)"]
    assert "ICCV 2019" in release.source and "comp_video_sota.png" in release.source
    assert release.scores == {
        "VOS/test": {"maxF": 0.856, "S": 0.872, "wF": 0.776, "MAE": 0.049},
        "DAVIS2016/val": {"maxF": 0.859, "S": 0.884, "wF": 0.768, "MAE": 0.028},
        "FBMS/test": {"maxF": 0.861, "S": 0.870, "wF": 0.789, "MAE": 0.054},
    }
    fsnet = entries["RCRNet (FSNet, DAVSOD toolbox)"]
    assert "ICCV 2021, Table 2" in fsnet.source and fsnet.protocol == "davsod"
    assert fsnet.scores["DAVSOD/easy"] == {"S": 0.741, "maxE": 0.803, "maxF": 0.653, "MAE": 0.087}


def test_verdicts_within_rounding():
    assert verdict(0.8594, 0.859) == "matches" and verdict(0.8585, 0.859) == "matches"
    assert verdict(0.8584, 0.859) == "differs by -0.001" and verdict(0.947, 0.942) == "differs by +0.005"


def test_compare_published_beside_the_users_scores(folders, tmp_path, capsys):
    result = evaluate_pairing(pair_folders(folders["good"], folders["labels"]))
    published = [
        PublishedScores(
            "paper",
            "A paper, Table 1",
            "frames",
            {"labels/": {"maxF": round(result["maxF"], 3), "MAE": result["MAE"] + 0.01}},
        )
    ]
    text = compare_published({"good": {"labels": result}}, published).splitlines()
    assert text[2].startswith("| labels/ | good | frames | paper (frames) | max F |") and text[2].endswith(
        "matches |"
    )
    assert text[3].endswith("differs by -0.010 |") and text[-1] == "paper: A paper, Table 1"
    none = compare_published({"good": {"labels": result}}, load_published())
    assert none.startswith("published scores: none for these datasets (published: DAVIS2016/val")
    yaml_file = tmp_path / "mine.yaml"
    yaml_file.write_text(
        "paper:\n  source: A paper, Table 1\n  protocol: frames\n  scores:\n"
        f"    labels/: {{maxF: {round(result['maxF'], 3)}}}\n"
    )
    code, out, _ = _main(
        capsys,
        "--labels",
        str(folders["labels"]),
        "--results",
        str(folders["good"]),
        "--compare-published",
        str(yaml_file),
    )
    assert code == 0 and "| labels/ | good | frames | paper (frames) | max F |" in out and "matches |" in out
    yaml_file.write_text("paper:\n  source: x\n  protocol: frames\n  scores:\n    labels/: {maxF: high}\n")
    assert_one_line_error(
        evaluate.main,
        [
            "--labels",
            str(folders["labels"]),
            "--results",
            str(folders["good"]),
            "--compare-published",
            str(yaml_file),
        ],
        capsys,
        "scores.labels/.maxF: expected one of",
    )


def test_labels_named_as_a_dataset_split_meet_the_published_scores(folders, capsys):
    args = ["--labels", str(folders["labels"]), "--results", str(folders["good"]), "--dataset", "DAVIS2016"]
    code, out, _ = _main(capsys, *args, "--split", "val", "--compare-published")
    assert code == 0 and out.startswith("| dataset | split | method |")
    assert "| DAVIS2016 | val | good | 6 |" in out
    assert "| DAVIS2016/val | good | frames | RCRNet (release) (unstated) | max F |" in out
    assert "| DAVIS2016/val | good | frames | RCRNet (FSNet, DAVSOD toolbox) (davsod) | max E |" in out
