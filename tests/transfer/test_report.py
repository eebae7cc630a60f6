"""Table II layout, pooled statistics, Wilcoxon tests, the plot and the overlays."""

from __future__ import annotations

import json
import math

import pytest
import torch

from transfer.methods import METHODS
from transfer.report import (
    attribution_rows,
    markdown_table,
    plot_styles,
    recommendations,
    summarize_results,
    wilcoxon_rows,
    write_overlays,
    write_report,
)

IDS = [f"img{i}" for i in range(6)]


def _row(method, fraction, seed, values):
    return {"key": f"{method}|{fraction:.4f}|{seed}", "method": method, "fraction": fraction, "seed": seed,
            "n_labelled": int(fraction * 100), "jaccard": sum(values) / len(values), "dice": 0.0, "seconds": 2.0,
            "per_image": {"id": IDS, "jaccard": values, "dice": [2 * v / (1 + v) for v in values]}}


def _rows():
    return [
        _row("source_only", 0.0, 0, [0.5, 0.6, 0.7, 0.5, 0.6, 0.7]),
        _row("transfer", 0.0, 0, [0.8, 0.9, 0.8, 0.9, 0.8, 0.9]),
        _row("transfer", 0.05, 0, [0.9] * 6),
        _row("finetune", 0.05, 0, [0.6, 0.7, 0.6, 0.7, 0.6, 0.7]),
    ]


def test_summary_hand_computed_and_fraction_free_repeated():
    summary = summarize_results(_rows())
    index = {(s["method"], s["fraction"]): s for s in summary}
    t0 = index[("transfer", 0.0)]
    assert t0["jaccard_mean"] == pytest.approx(0.85)
    assert t0["jaccard_std"] == pytest.approx(math.sqrt(6 * 0.05 ** 2 / 5))  # sample std of +-0.05 around 0.85
    assert index[("source_only", 0.05)]["jaccard_mean"] == pytest.approx(0.6)  # repeated on every row
    table = markdown_table(summary)
    assert table.splitlines()[0] == "| labels | transfer | finetune | source_only |"
    assert "| 0% | 85.00 +- 5.48 | - | 60.00 +- 8.94 |" in table


def test_wilcoxon_pairs_by_image():
    tests = wilcoxon_rows(_rows())
    pairs = {(t["fraction"], t["versus"]) for t in tests}
    assert pairs == {(0.0, "source_only"), (0.05, "finetune"), (0.05, "source_only")}
    t = next(t for t in tests if t["versus"] == "finetune")
    assert t["n"] == 6 and t["median_difference"] == pytest.approx(0.25) and 0 < t["p_value"] < 0.05


def test_write_report_files(tmp_path):
    with open(tmp_path / "results.jsonl", "w") as f:
        for r in _rows():
            f.write(json.dumps(r) + "\n")
    paths = write_report(tmp_path)
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| 5% |" in paths["markdown"].read_text()
    assert paths["csv"].read_text().splitlines()[0].startswith("method,fraction,n_seeds")


def test_plot_styles_tell_every_registered_method_apart():
    names = list(METHODS)
    assert len(names) > 10  # more than the default colour cycle holds
    styles = plot_styles(names)
    assert len(set(styles.values())) == len(names) and len({c for c, _ in styles.values()}) == len(names)


def test_view_table_means_over_seeds():
    from transfer.report import view_table

    rows = _rows() + [_row("transfer", 0.05, 1, [0.7] * 6)]
    rows[1]["views"] = {"paper": 0.6, "direct": 0.9}
    rows[2]["views"] = {"paper": 0.7, "direct": 0.8}
    rows[4]["views"] = {"paper": 0.5, "direct": 1.0}
    lines = view_table(rows)
    assert lines[3] == "| labels | default views | paper | direct |"
    assert lines[5] == "| 0% | 85.00 | 60.00 | 90.00 |"
    assert lines[6] == "| 5% | 80.00 | 60.00 | 90.00 |"
    assert view_table(_rows()) == []  # cells without view scores: no section


def test_write_report_without_results(tmp_path):
    with pytest.raises(FileNotFoundError, match="run `cxr-transfer experiment sweep"):
        write_report(tmp_path)


def test_overlays(tmp_path):
    images = torch.rand(3, 1, 32, 32)
    masks = torch.zeros(3, 2, 32, 32, dtype=torch.bool)
    masks[:, 0, 8:20, 8:20] = True
    path = write_overlays(images, masks, ("heart", "clavicles"), tmp_path / "o.png", titles=["a", "b", "c"])
    assert path.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="expected images"):
        write_overlays(images, masks[:, :1], ("heart", "clavicles"), tmp_path / "x.png")


def test_recommendation_and_attribution_on_a_hand_made_table():
    selftrain = [0.80, 0.85, 0.90, 0.75, 0.80, 0.85]
    rows = [
        _row("source_only", 0.0, 0, [0.5, 0.6, 0.7, 0.5, 0.6, 0.7]),
        _row("selftrain", 0.0, 0, selftrain),
        _row("semisup", 0.0, 0, list(selftrain)),  # the very same predictions
        _row("transfer", 0.0, 0, [v - d for v, d in zip(selftrain, (0.01, 0.02, 0.03, 0.04, 0.05, 0.06))]),
    ]
    summary = summarize_results(rows)
    (advice,) = recommendations(rows, summary)
    assert advice["best"] == "selftrain" and advice["same_as"] == "semisup"
    assert advice["next_method"] == "transfer" and advice["next_difference"] == pytest.approx(0.035)
    # six positive differences of distinct sizes: the exact two-sided Wilcoxon p is 2 / 2**6
    assert advice["next_p"] == pytest.approx(2 / 64)
    assert advice["sentence"].startswith("with no labels use selftrain (the same predictions as semisup): +3.50 "
                                         "over transfer (p = 0.031), +22.50 over source_only")
    assert "not a significant gain over transfer (p >= 0.01)" in advice["sentence"]  # 0.031 is above the bar
    (attribution,) = [a for a in attribution_rows(rows) if a["method"] == "transfer"]
    assert attribution["control"] == "selftrain" and attribution["difference"] == pytest.approx(-0.035)
    assert attribution["p_value"] == pytest.approx(2 / 64) and attribution["n"] == 6


def test_a_method_scored_on_fewer_images_is_named_not_ranked():
    rows = [_row("source_only", 0.0, 0, [0.5, 0.6, 0.7, 0.5, 0.6, 0.7]),
            _row("selftrain", 0.0, 0, [0.80, 0.85, 0.90, 0.75, 0.80, 0.85])]
    partial = _row("fda", 0.0, 0, [0.95, 0.95])  # a sweep still running: two of the six test images
    partial["per_image"] = {"id": IDS[:2], "jaccard": [0.95, 0.95], "dice": [0.97, 0.97]}
    (advice,) = recommendations(rows + [partial], summarize_results(rows + [partial]))
    assert advice["best"] == "selftrain" and advice["next_method"] == "source_only"
    assert advice["incomplete"] == "fda:2"
    assert advice["sentence"].endswith("; not compared (scored on fewer test images): fda (2 of 6).")


def test_with_labels_the_best_method_is_set_against_the_best_one_without():
    selftrain = [0.80, 0.85, 0.90, 0.75, 0.80, 0.85]
    rows = [_row("source_only", 0.0, 0, [0.5, 0.6, 0.7, 0.5, 0.6, 0.7]),
            _row("selftrain", 0.0, 0, selftrain),
            _row("finetune", 0.05, 0, [v - d for v, d in zip(selftrain, (0.01, 0.02, 0.03, 0.04, 0.05, 0.06))])]
    zero, five = recommendations(rows, summarize_results(rows))
    assert zero["best"] == "selftrain" and "label_free_method" not in zero
    assert five["best"] == "finetune" and five["label_free_method"] == "selftrain"
    assert five["label_free_difference"] == pytest.approx(-0.035) and five["label_free_p"] == pytest.approx(2 / 64)
    assert "; -3.50 over selftrain with no labels (p = 0.031)" in five["sentence"]
    assert five["sentence"].startswith("with 5% labels use selftrain without them (the labels do not pay); else "
                                       "use finetune: ")
