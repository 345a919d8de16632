"""Score tables people paste into papers and READMEs: Markdown or LaTeX, best value marked.

A table is `{method: {dataset key: result}}` as `evaluate.py` scores it or `merge.py` reads it
back from JSON. Rows are datasets, then methods (then videos with `per_video`); the paper's
metrics come first. Within each dataset, the best value of every column among its methods
is marked (bold) when two or more methods were scored: the highest, or the lowest for MAE.
Values equal to three decimals, as printed, are all marked.
"""
from __future__ import annotations

from .metrics import METRIC_NAMES, PAPER_METRICS
from .protocol import Protocol

# Scalars in tables: the paper's metrics first, then the rest.
TABLE_METRICS: tuple[str, ...] = PAPER_METRICS + tuple(m for m in METRIC_NAMES if m not in PAPER_METRICS)
# Metrics where lower is better; every other is better higher.
LOWER_IS_BETTER: frozenset[str] = frozenset({"MAE"})
TABLE_FORMATS: tuple[str, ...] = ("markdown", "latex")
HEADERS = {
    "maxF": "max F", "S": "S", "MAE": "MAE", "meanF": "mean F", "adpF": "adp F",
    "maxE": "max E", "meanE": "mean E", "adpE": "adp E", "wF": "wF",
}
_LATEX_SPECIALS = {c: "\\" + c for c in "&%$#_{}"} | {
    "~": r"\textasciitilde{}", "^": r"\^{}", "\\": r"\textbackslash{}",
}


def fmt(value: float | None) -> str:
    """A score as printed in tables: three decimals, "-" when nothing was scored."""
    return "-" if value is None else f"{value:.3f}"


def table_rows(
    table: dict[str, dict[str, dict]], per_video: bool
) -> list[tuple[str, str, str, str, str, dict]]:
    """(key, dataset, split, method, video, scores) rows: datasets in order, then methods, then
    videos; `video` is "" on a dataset's overall row."""
    keys = list(dict.fromkeys(k for by_dataset in table.values() for k in by_dataset))
    rows = []
    for key in keys:
        for method, by_dataset in table.items():
            if key not in by_dataset:
                continue
            result = by_dataset[key]
            name, split = result["dataset"], result["split"]
            rows.append((key, name, split, method, "", result))
            if per_video:
                videos = result.get("videos", {}).items()
                rows += [(key, name, split, method, video, s) for video, s in videos]
    return rows


def best_values(table: dict[str, dict[str, dict]], metrics: list[str]) -> dict[tuple[str, str], str]:
    """{(dataset key, metric): best value as printed} for datasets scored for two or more methods."""
    keys = list(dict.fromkeys(k for by_dataset in table.values() for k in by_dataset))
    best: dict[tuple[str, str], str] = {}
    for key in keys:
        results = [by_dataset[key] for by_dataset in table.values() if key in by_dataset]
        if len(results) < 2:
            continue
        for metric in metrics:
            values = [round(r[metric], 3) for r in results if r.get(metric) is not None]
            if len(values) >= 2:
                best[key, metric] = fmt(min(values) if metric in LOWER_IS_BETTER else max(values))
    return best


def _columns(table: dict[str, dict[str, dict]]) -> list[str]:
    return [m for m in TABLE_METRICS if any(m in r for d in table.values() for r in d.values())]


def _cells(table: dict, per_video: bool, mark) -> tuple[list[str], list[list[str]]]:
    metrics = _columns(table)
    best = best_values(table, metrics)
    header = ["dataset", "split", "method"] + (["video"] if per_video else []) + ["frames"]
    header += [HEADERS[m] for m in metrics]
    body = []
    for key, dataset, split, method, video, scores in table_rows(table, per_video):
        cells = [dataset, split, method] + ([video or "(all)"] if per_video else []) + [str(scores["frames"])]
        for metric in metrics:
            text = fmt(scores.get(metric))
            cells.append(mark(text) if not video and best.get((key, metric)) == text else text)
        body.append(cells)
    return header, body


def protocol_captions(table: dict[str, dict[str, dict]]) -> list[str]:
    """One line per protocol behind the results of `table`, sorted."""
    protocols = {Protocol(**r["protocol"]) for d in table.values() for r in d.values() if r.get("protocol")}
    return sorted(p.caption() for p in protocols)


def markdown_table(table: dict[str, dict[str, dict]], per_video: bool = False, caption: bool = False) -> str:
    """A Markdown table of `{method: {dataset key: result}}`, best values in bold.

    With `caption`, lines after the table name the protocol(s) of the results.
    """
    header, body = _cells(table, per_video, lambda text: f"**{text}**")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    if caption:
        lines += ["", *protocol_captions(table)]
    return "\n".join(lines)


def latex_escape(text: str) -> str:
    """`text` with LaTeX's special characters escaped."""
    return "".join(_LATEX_SPECIALS.get(c, c) for c in text)


def latex_table(table: dict[str, dict[str, dict]], per_video: bool = False, caption: bool = False) -> str:
    """A LaTeX tabular (booktabs rules) of `{method: {dataset key: result}}`, best values in bold.

    Metric headers carry an arrow saying which way is better. With `caption`, the protocol(s)
    follow as LaTeX comments.
    """
    header, body = _cells(table, per_video, lambda text: rf"\textbf{{{text}}}")
    metrics = _columns(table)
    fixed = len(header) - len(metrics)
    arrows = [r"$\downarrow$" if m in LOWER_IS_BETTER else r"$\uparrow$" for m in metrics]
    titles = [latex_escape(h) for h in header[:fixed]] + [
        f"{latex_escape(h)} {a}" for h, a in zip(header[fixed:], arrows)
    ]
    lines = [
        r"\begin{tabular}{" + "l" * (fixed - 1) + "r" * (len(metrics) + 1) + "}",
        r"\toprule",
        " & ".join(titles) + r" \\",
        r"\midrule",
    ]
    for cells in body:
        escaped = [latex_escape(c) if i < fixed else c for i, c in enumerate(cells)]
        lines.append(" & ".join(escaped) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if caption:
        lines += [f"% {line}" for line in protocol_captions(table)]
    return "\n".join(lines)


def format_table(
    table: dict[str, dict[str, dict]],
    fmt_name: str = "markdown",
    per_video: bool = False,
    caption: bool = False,
) -> str:
    """The table in `fmt_name`, one of TABLE_FORMATS."""
    if fmt_name == "latex":
        return latex_table(table, per_video=per_video, caption=caption)
    return markdown_table(table, per_video=per_video, caption=caption)
