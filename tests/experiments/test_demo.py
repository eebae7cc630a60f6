"""`cxr-transfer demo` end to end at a reduced size: every method runs, the table, logs and plot are written."""

from __future__ import annotations

import json

import torch
from click.testing import CliRunner

from experiments.cli import cli


def test_demo_end_to_end_reduced(tmp_path):
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread avoids oversubscription on a shared 2-core machine
    try:
        result = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path), "--size", "32", "--iterations", "4",
                                          "--source-iterations", "10"], catch_exceptions=False)
    finally:
        torch.set_num_threads(previous)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (tmp_path / "sweep" / "results.jsonl").read_text().splitlines()]
    keys = sorted(r["key"].rsplit("|", 1)[0] for r in rows)  # method|fraction|seed (without the config hash)
    assert keys == sorted(["source_only|0.0000|0", "histmatch|0.0000|0", "finetune|0.0000|0", "finetune|0.0500|0",
                           "scratch|0.0500|0", "transfer|0.0000|0", "transfer|0.0500|0",
                           "paper|0.0000|0", "paper|0.0500|0"])
    assert all(0.0 <= r["jaccard"] <= 1.0 and r["n_test"] == 12 for r in rows)  # 60 phantoms -> 12 test images
    transfer0 = next(r for r in rows if r["key"].startswith("transfer|0.0000|0|"))
    transfer5 = next(r for r in rows if r["key"].startswith("transfer|0.0500|0|"))
    assert transfer0["n_labelled"] == 0 and transfer5["n_labelled"] == 2
    assert "| labels | transfer | paper | finetune | scratch | source_only | histmatch |" in result.output
    assert (tmp_path / "report" / "jaccard_vs_fraction.png").is_file()
    assert list((tmp_path / "sweep" / "cells" / "transfer").rglob("events.out.tfevents.*"))
    (cell,) = (tmp_path / "sweep" / "cells" / "transfer" / "f0.0500").glob("s0-*")  # s<seed>-<config hash>
    assert (cell / "translator.pt").is_file() and (cell / "segmenter.pt").is_file()
    # a second run reuses every finished cell
    again = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path), "--size", "32", "--iterations", "4",
                                     "--source-iterations", "10"], catch_exceptions=False)
    assert "9 already finished, 0 to run" in again.output
