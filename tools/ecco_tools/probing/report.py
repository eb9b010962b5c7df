"""Write a ``ProbingReport`` as CSV (one row per probe), Markdown (a layer table) and PNG (a plot).

Row ``l`` lines up the hidden state of layer ``l`` (the output of block ``l - 1``) with the FFNN
activation *inside* block ``l - 1`` (layer 0 = the embedding output, which has no FFNN); numbering as in
docs/internals.md, "Layers and blocks".
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from .experiment import ProbingReport

CSV_FIELDS = (
    "model",
    "label",
    "representation",
    "layer",
    "width",
    "accuracy",
    "control_accuracy",
    "selectivity",
    "majority_accuracy",
    "word_type_accuracy",
    "n_train",
    "n_test",
    "task_iterations",
)


def write_csv(report: ProbingReport, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for r in report.results:
            writer.writerow(
                {
                    "model": report.model,
                    "label": report.label,
                    "representation": r.representation,
                    "layer": r.layer,
                    "width": r.width,
                    "accuracy": f"{r.accuracy:.4f}",
                    "control_accuracy": f"{r.control_accuracy:.4f}",
                    "selectivity": f"{r.selectivity:.4f}",
                    "majority_accuracy": f"{report.majority_accuracy:.4f}",
                    "word_type_accuracy": f"{report.word_type_accuracy:.4f}",
                    "n_train": report.n_train,
                    "n_test": report.n_test,
                    "task_iterations": r.n_iter,
                }
            )
    return path


def _cell(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else ""


def markdown(report: ProbingReport) -> str:
    """A self-describing Markdown table of one model's probes."""
    c = report.config
    lines = [
        f"# {report.label.upper()} probes: {report.model}",
        "",
        f"- data: `{Path(report.data).name}`, {report.n_sentences} sentences, {report.n_words} probed words "
        f"({report.n_unaligned_words} unaligned), {report.n_tokens} model tokens, {report.n_classes} labels",
        f"- split by sentence (seed {c.seed}, {c.test_share:.0%} held out): {report.n_train} train / "
        f"{report.n_test} test words; word vector = {report.subtoken} sub-token",
        f"- probe: logistic regression, L2 C={c.c}, standardized features, max_iter={c.max_iter}, tol={c.tol}",
        f"- baselines on the test words: majority label {report.majority_accuracy:.3f}; "
        f"most frequent label of the word type {report.word_type_accuracy:.3f}",
        "- control = Hewitt & Liang (2019) control task (a random label per word type); "
        "selectivity = accuracy - control",
        f"- noise: one standard error of an accuracy of 0.9 on {report.n_test} held-out words is "
        f"{(0.9 * 0.1 / max(report.n_test, 1)) ** 0.5:.3f} (binomial; one split)",
        f"- time: extraction {report.extract_seconds:.1f} s, probes {report.probe_seconds:.1f} s",
        "",
        "| layer | hidden acc | hidden control | hidden selectivity | FFNN acc | FFNN control | FFNN selectivity |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for layer in range(report.n_layers + 1):
        h, f = report.result("hidden", layer), report.result("ffnn", layer)
        if h is None and f is None:
            continue
        cells = [
            _cell(r and getattr(r, key)) for r in (h, f) for key in ("accuracy", "control_accuracy", "selectivity")
        ]
        lines.append(f"| {layer} | " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)


def write_markdown(report: ProbingReport, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    path.write_text(markdown(report), encoding="utf-8")
    return path


def write_plot(report: ProbingReport, path: str | os.PathLike[str]) -> Path:
    """Accuracy and control accuracy per layer for both representations, with the two baselines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=110)
    styles = {"hidden": ("tab:blue", "o", "hidden state"), "ffnn": ("tab:orange", "s", "FFNN activation")}
    for representation, (color, marker, title) in styles.items():
        rows = [r for r in report.results if r.representation == representation]
        layers = [r.layer for r in rows]
        ax.plot(layers, [r.accuracy for r in rows], color=color, marker=marker, label=f"{title}: {report.label}")
        ax.plot(
            layers,
            [r.control_accuracy for r in rows],
            color=color,
            marker=marker,
            linestyle="--",
            alpha=0.6,
            label=f"{title}: control task",
        )
    ax.axhline(report.word_type_accuracy, color="gray", linestyle=":", label="baseline: word type's label")
    ax.axhline(report.majority_accuracy, color="black", linestyle=":", label="baseline: majority label")
    ax.set_xlabel("layer l (0 = embeddings; l = output of block l-1, FFNN inside block l-1)")
    ax.set_ylabel("held-out accuracy")
    ax.set_ylim(0, 1)
    ax.set_xlim(-0.3, report.n_layers + 0.3)
    ax.grid(alpha=0.3)
    ax.set_title(f"{report.model}: linear {report.label.upper()} probes ({report.n_test} held-out words)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_report(report: ProbingReport, out_dir: str | os.PathLike[str]) -> list[Path]:
    """``<out_dir>/<model>.csv``, ``.md`` and ``.png``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return [
        write_csv(report, out / f"{report.model}.csv"),
        write_markdown(report, out / f"{report.model}.md"),
        write_plot(report, out / f"{report.model}.png"),
    ]
