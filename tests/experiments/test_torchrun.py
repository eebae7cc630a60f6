"""`cxr-transfer translate train` and `experiment run` / `sweep` under torchrun: 2 CPU processes with gloo, as on a
machine with 2 GPUs and NCCL."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from segmentation.data.phantoms import write_phantom_dataset
from segmentation.inference import build_segmenter, load_segmenter
from transfer.config import ExperimentConfig
from transfer.methods import METHODS, Method
from transfer.sweep import run_sweep
from translation import create_translator, load_translator
from translation.training import TranslationConfig, _Trainer

REPO = Path(__file__).resolve().parents[2]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(args: list[str], nproc: int, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python ARGS`` as one process, or under torchrun as ``nproc`` gloo processes; asserts exit 0."""
    launcher = _torchrun(nproc) if nproc > 1 else [sys.executable]
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    result = subprocess.run([*launcher, *args], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-6000:]
    return result


def _translate(folders, run_dir, batch_size: int, nproc: int, *extra: str) -> subprocess.CompletedProcess:
    return _launch(["-m", "experiments", "translate", "train", "--a", str(folders["a"]), "--b", str(folders["b"]),
                    "--preset", "tiny", "--size", "32", "--iterations", "6", "--batch-size", str(batch_size),
                    "--checkpoint-every", "3", "--run-dir", str(run_dir), "--device", "cpu", "-q", *extra], nproc)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("torchrun")
    return {"a": write_phantom_dataset(root / "a", 10, size=32, domain="a", seed=0),
            "b": write_phantom_dataset(root / "b", 10, size=32, domain="b", seed=1),
            "b20": write_phantom_dataset(root / "b20", 20, size=32, domain="b", seed=1), "root": root}


def _weights(path):
    translator, _ = load_translator(path)
    return {k: v for k, v in translator.state_dict().items() if torch.is_tensor(v) and v.is_floating_point()}


def test_translate_train_two_ranks_match_one_process_and_resume(folders):
    root = folders["root"]
    two = _translate(folders, root / "two", batch_size=2, nproc=2)
    assert two.stdout.count("saved ") == 1, two.stdout  # rank 0 alone reports
    assert sorted(p.name for p in (root / "two" / "checkpoints").iterdir()) == ["step_00000003.pt",
                                                                              "step_00000006.pt"]
    _translate(folders, root / "one", batch_size=4, nproc=1)  # the same global batch in one process
    w2, w1 = _weights(root / "two" / "translator.pt"), _weights(root / "one" / "translator.pt")
    torch.manual_seed(0)  # the CLI seeds with --seed 0 before building the translator
    w0 = {k: v for k, v in create_translator("cyclegan", preset="tiny").state_dict().items() if k in w1}
    moved = sum((w1[k] - w0[k]).abs().sum() for k in w0)
    apart = sum((w2[k] - w1[k]).abs().sum() for k in w0)
    # Per-rank mean losses averaged over ranks equal the mean over the global batch; only the order of float sums
    # differs, which Adam's normalised steps amplify on near-zero gradients. Measured: 0.26% of the update.
    assert moved > 0 and apart / moved < 0.02, float(apart / moved)

    cut = root / "cut"
    shutil.copytree(root / "two", cut)
    (cut / "checkpoints" / "step_00000006.pt").unlink()  # as if killed between the checkpoints of steps 3 and 6
    (cut / "translator.pt").unlink()
    _translate(folders, cut, 2, 2, "--resume")
    resumed = _weights(cut / "translator.pt")
    assert all(torch.equal(resumed[k], w2[k]) for k in w2), "resume under torchrun is not exact"


def _segment_args(folders, run_dir, batch_size: int, *extra: str, epochs: int = 3) -> list[str]:
    # instance norm and a per-pixel loss without augmentation: per-rank means averaged = the global batch's mean
    return ["-m", "experiments", "segment", "train", "--data", str(folders["b20"]), "--size", "32", "--model-kwargs",
            '{"depth": 2, "base_channels": 8, "norm": "instance"}', "--loss", "bce", "--epochs", str(epochs),
            "--batch-size", str(batch_size), "--checkpoint-every", "1", "--run-dir", str(run_dir), "--device", "cpu",
            "-q", *extra]


def _kill_tree(proc: subprocess.Popen) -> None:
    """kill -9 torchrun and every process under it (its workers run in sessions of their own, so a process-group kill
    of the launcher leaves them running)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    todo, tree = [proc.pid], []
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    for pid in tree:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    for pid in tree[1:]:  # the workers are gone before the test goes on
        deadline = time.monotonic() + 30
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                break  # a zombie: dead, waiting for a parent that is gone too
            time.sleep(0.01)


def _torchrun(nproc: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master-port",
            str(_port())]


def test_segment_train_two_ranks_match_one_process_and_resume_after_kill(folders):
    root = folders["root"] / "segment"
    _launch(_segment_args(folders, root / "two", 2), 2)  # 12 training images: 6 per rank, 3 steps per epoch
    _launch(_segment_args(folders, root / "one", 4), 1)
    w2, w1 = (_floats(load_segmenter(root / r / "model.pt")[0]) for r in ("two", "one"))
    _, config, _ = load_segmenter(root / "one" / "model.pt")
    torch.manual_seed(config.seed)
    w0 = _floats(build_segmenter(config))
    moved = sum((w1[k] - w0[k]).abs().sum() for k in w0)
    apart = sum((w2[k] - w1[k]).abs().sum() for k in w0)
    print(f"segment train: 2 ranks {float(apart / moved):.2e} of the update apart from 1 process")
    # float order, as for fine-tuning: 5.6e-7 after 3 epochs (9 steps); Adam's sign-like steps on near-zero gradients
    # amplify it with more steps (0.9% after 12 epochs), so the comparison stays short
    assert moved > 0 and apart / moved < 1e-3, float(apart / moved)

    # kill -9 the whole torchrun group at its first checkpoint, then --resume under torchrun: the same weights as an
    # uninterrupted run under torchrun, bit for bit
    epochs, killed = 12, root / "killed"
    _launch(_segment_args(folders, root / "straight", 2, epochs=epochs), 2)
    straight = _floats(load_segmenter(root / "straight" / "model.pt")[0])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([*_torchrun(2), *_segment_args(folders, killed, 2, epochs=epochs)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not (killed / "checkpoints" / "last.pt").is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before kill -9: give it more epochs"
    _kill_tree(proc)
    epoch = torch.load(killed / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)["epoch"]
    assert epoch < epochs and not (killed / "model.pt").exists(), epoch
    _launch(_segment_args(folders, killed, 2, "--resume", epochs=epochs), 2)
    resumed = _floats(load_segmenter(killed / "model.pt")[0])
    assert all(torch.equal(resumed[k], straight[k]) for k in straight), f"resume under torchrun after epoch {epoch} is not exact"


def test_each_rank_reads_a_disjoint_share(monkeypatch, tmp_path):
    images = torch.arange(16, dtype=torch.float32).view(16, 1, 1, 1).expand(16, 1, 4, 4).contiguous()
    config = TranslationConfig(iterations=8, batch_size=2, progress=False, figures=False)
    seen = {}
    for rank in (0, 1):
        monkeypatch.setattr("translation.training.get_world_size", lambda: 2)
        monkeypatch.setattr("translation.training.get_rank", lambda r=rank: r)
        trainer = _Trainer(create_translator("cyclegan", preset="tiny"), images, images, config, tmp_path / str(rank),
                           None, None)
        seen[rank] = [int(v) for step in range(trainer.steps_per_epoch) for v in trainer.batch(step)[0][:, 0, 0, 0]]
    assert not set(seen[0]) & set(seen[1]), seen
    assert sorted(seen[0] + seen[1]) == list(range(16)), seen


# ----------------------------------------------------------------------------------------------- experiment run / sweep
#: runs the CLI like ``-m experiments``, with two switches for the tests below: CXR_TEST_AUDIT=DIR records, per rank,
#: every write the process makes under CXR_TEST_AUDIT_ROOT (Python audit hooks see each open for writing, mkdir,
#: rename and remove, torch.save and TensorBoard's files included) into DIR/rank<R>.json; CXR_TEST_NO_AUGMENT=1
#: replaces the segmenters' augmentation by the identity
LAUNCHER = """
import atexit, json, os, sys

import torch

if os.environ.get("CXR_TEST_NO_AUGMENT"):
    import segmentation.data.augmentation as augmentation

    class Unchanged(torch.nn.Module):
        def __init__(self, **_kwargs):
            super().__init__()

        def forward(self, x, y):
            return x, y

    augmentation.Augmenter = Unchanged

if os.environ.get("CXR_TEST_AUDIT"):
    root = os.path.abspath(os.environ["CXR_TEST_AUDIT_ROOT"])
    report = os.path.join(os.environ["CXR_TEST_AUDIT"], "rank" + os.environ.get("RANK", "0") + ".json")
    writes = []
    WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
    TWO_PATHS = ("os.rename", "os.link", "os.symlink")  # (source, destination, ...): the destination is written
    CHANGES = ("os.mkdir", "os.remove", "os.rmdir", "os.truncate", "shutil.rmtree", *TWO_PATHS)

    def hook(event, args):
        if event == "open":
            path, mode, flags = args
            if not any(c in (mode or "") for c in "wax+") and not (flags or 0) & WRITE_FLAGS:
                return
        elif event in CHANGES:
            path = args[1] if event in TWO_PATHS else args[0]
        else:
            return
        if isinstance(path, bytes):
            path = path.decode(errors="replace")
        if isinstance(path, (str, os.PathLike)) and (os.path.abspath(path) + os.sep).startswith(root + os.sep):
            writes.append([event, os.path.abspath(path)])

    sys.addaudithook(hook)
    atexit.register(lambda: open(report, "w").write(json.dumps(writes)))

from experiments.cli import main

main()
"""


def _experiment(tmp_path, command: str, out, nproc: int, *extra: str, env: dict[str, str] | None = None
                ) -> subprocess.CompletedProcess:
    launcher = tmp_path / "launch.py"
    launcher.write_text(LAUNCHER)
    path = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])  # this checkout, from anywhere
    return _launch([str(launcher), "experiment", command, "--out", str(out), "--size", "32", "--device", "cpu",
                    *extra], nproc, {"PYTHONPATH": path, **(env or {})})


def _settings(tmp_path, **fields) -> str:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(fields))
    return str(path)


def _floats(model) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if v.is_floating_point()}


def test_experiment_sweep_two_ranks_rank_0_alone_writes_one_result_per_cell(folders, tmp_path):
    out, audit = tmp_path / "sweep", tmp_path / "audit"
    audit.mkdir()
    config = _settings(tmp_path, segmenter_kwargs={"depth": 2, "base_channels": 4}, source_iterations=4,
                       finetune_iterations=4)
    result = _experiment(tmp_path, "sweep", out, 2, "--source", str(folders["a"]), "--target", str(folders["b"]),
                         "--methods", "finetune,source_only", "--fractions", "0.5", "--batch-size", "2",
                         "--config", config, env={"CXR_TEST_AUDIT": str(audit), "CXR_TEST_AUDIT_ROOT": str(out)})
    assert result.stdout.count("sweep finished: 2 cells") == 1, result.stdout  # rank 0 alone reports
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["method"] for r in rows) == ["finetune", "source_only"], rows  # one line per cell, whole
    cells = sorted(p.parent.relative_to(out / "cells").parts[0] for p in (out / "cells").rglob("metrics.json"))
    assert cells == ["finetune", "source_only"]
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]  # no half-written file left
    assert (out / "report").is_dir()
    rank0, rank1 = (json.loads((audit / f"rank{r}.json").read_text()) for r in (0, 1))
    assert rank1 == [], rank1[:5]  # rank 1 wrote nothing: not a file, not a folder, not a rename
    written = {os.path.basename(path) for _, path in rank0}
    assert {"results.jsonl", "segmenter.pt", "metrics.json"} <= written, sorted(written)  # it sees rank 0's writes


def test_experiment_run_finetune_two_ranks_match_one_process(folders, tmp_path):
    # The same computation on 2 ranks x 2 images and on 1 process x 4 images needs every per-image term to be shared
    # out exactly: instance norm (BatchNorm would normalise each rank's 2 images alone), a per-pixel loss (the soft
    # Dice of dice_bce is over the batch) and no augmentation (its random draws are each rank's own); and even
    # counts of training images (8 source, 6 labelled target), so that the padding of a rank's share changes nothing.
    config = _settings(tmp_path, segmenter_kwargs={"depth": 2, "base_channels": 8, "norm": "instance"},
                       source_iterations=25, finetune_iterations=10, transfer={"loss": "bce"})
    common = ("--method", "finetune", "--fraction", "0.5", "--source", str(folders["a"]), "--target",
              str(folders["b20"]), "--config", config)
    env = {"CXR_TEST_NO_AUGMENT": "1"}
    two = _experiment(tmp_path, "run", tmp_path / "two", 2, *common, "--batch-size", "2", env=env)
    _experiment(tmp_path, "run", tmp_path / "one", 1, *common, "--batch-size", "4", env=env)
    assert two.stdout.count("jaccard") == 2, two.stdout  # rank 0's sweep line and result line, once each
    r2, r1 = tmp_path / "two", tmp_path / "one"
    m2, m1 = (json.loads(next((r / "cells").rglob("metrics.json")).read_text()) for r in (r2, r1))
    assert m1["n_labelled"] == 6 and m2["n_test"] == m1["n_test"] == 4
    source2, config_a, _ = load_segmenter(r2 / "source" / "s0" / "segmenter.pt")
    source1, _, _ = load_segmenter(r1 / "source" / "s0" / "segmenter.pt")
    torch.manual_seed(config_a.seed)  # M_A's initial weights, as the cell draws them
    init = _floats(build_segmenter(config_a))
    tuned2, _, _ = load_segmenter(next((r2 / "cells").rglob("checkpoints/best.pt")))
    tuned1, _, _ = load_segmenter(next((r1 / "cells").rglob("checkpoints/best.pt")))
    w2, w1, t2, t1 = _floats(source2), _floats(source1), _floats(tuned2), _floats(tuned1)
    moved = sum((w1[k] - init[k]).abs().sum() for k in w1)
    apart = sum((w2[k] - w1[k]).abs().sum() for k in w1)
    tuned_moved = sum((t1[k] - w1[k]).abs().sum() for k in t1)
    tuned_apart = sum((t2[k] - t1[k]).abs().sum() for k in t1)
    print(f"M_A {float(apart / moved):.2e} of its update apart; fine-tuned {float(tuned_apart / tuned_moved):.2e}; "
          f"jaccard {m2['jaccard']:.6f} vs {m1['jaccard']:.6f}")
    # Per-rank mean losses averaged over the ranks equal the mean over the global batch; only the order of the float
    # sums differs. Measured: 6e-7 (M_A) and 3e-6 (fine-tuned) of the update; bound 0.1%, well under the 2% of
    # translate train (whose GAN losses Adam amplifies more), while training without DDP (each rank on its own half)
    # is 50% and 200% apart.
    assert moved > 0 and apart / moved < 1e-3, float(apart / moved)
    assert tuned_moved > 0 and tuned_apart / tuned_moved < 1e-3, float(tuned_apart / tuned_moved)
    assert m1["jaccard"] > 0.1 and abs(m2["jaccard"] - m1["jaccard"]) < 0.005, (m2["jaccard"], m1["jaccard"])


def test_methods_that_cannot_run_across_ranks_are_refused_before_anything_is_written(folders, monkeypatch):
    out = folders["root"] / "refused"
    # a method registered with distributed=False (every built-in one runs across ranks)
    monkeypatch.setitem(METHODS, "solo", Method("solo", lambda ctx: None, "one process only", distributed=False))
    monkeypatch.setenv("WORLD_SIZE", "2")
    base = ExperimentConfig(source=str(folders["a"]), target=str(folders["b"]), out=str(out), size=32, device="cpu")
    with pytest.raises(ValueError, match="method solo does not run under torchrun") as err:
        run_sweep(base, ["finetune", "solo"], [0.5], [0])
    assert "\n" not in str(err.value) and "finetune" in str(err.value)  # one line, naming what does run there
    assert not out.exists()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}
    common = ["--source", str(folders["a"]), "--target", str(folders["b"]), "--out", str(out), "--size", "32",
              "--device", "cpu"]
    result = subprocess.run([sys.executable, "-m", "experiments", "experiment", "sweep", "--methods",
                             "finetune,source_only", "--jobs", "2", *common],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 1 and "expected --jobs 1 under torchrun" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr  # one line
    assert not out.exists()


def _relative(after: dict, before: dict, other: dict) -> float:
    """sum |other - after| / sum |after - before|: how far two runs' weights are apart, in units of the update."""
    moved = sum((after[k] - before[k]).abs().sum() for k in after)
    assert moved > 0
    return float(sum((other[k] - after[k]).abs().sum() for k in after) / moved)


@pytest.mark.parametrize("method", ["transfer", "selftrain"])
def test_experiment_run_transfer_loop_two_ranks_match_one_process(folders, tmp_path, method):
    # As for fine-tuning, every per-image term is shared out exactly: instance norm in M_A and the translator, a
    # per-pixel loss, no augmentation, no image pool (its draws are each rank's own), even counts (8 source, 20 target
    # images), selection "last" so that both runs keep the same iteration, pseudo-labels from the first iteration.
    # Measured: the segmenter 2.2e-5 (transfer: 1 warm-up + 3 loop iterations, 11 optimizer steps) and 3.0e-5
    # (selftrain) of the update apart, bound 1e-3 (float order); the translator 3.1e-3, bound 2% as for translate train
    # (its GAN losses Adam amplifies more). Without the global count of confident pixels in the pseudo-label
    # term (a rank with none divided by 1), selftrain was 7.3% apart. Longer runs drift further by float-order noise
    # that the GAN steps and Adam's sign-like early steps amplify: at 4 warm-up + 6 iterations the ranks are 3.7%
    # apart, and the same single process with 2 threads instead of 1 is 4.3% apart from itself with 1.
    config = _settings(tmp_path, segmenter_kwargs={"depth": 2, "base_channels": 8, "norm": "instance"},
                       source_iterations=25, translator_preset="tiny", translator_kwargs={"pool_size": 0},
                       transfer={"loss": "bce", "augment": "none", "iterations": 3, "warmup_iterations": 1,
                                 "steps_per_epoch": 2, "selection": "last", "pseudo_start": 0.0})
    common = ("--method", method, "--fraction", "0", "--source", str(folders["a"]), "--target", str(folders["b20"]),
              "--config", config)
    env = {"CXR_TEST_NO_AUGMENT": "1"}
    two = _experiment(tmp_path, "run", tmp_path / "two", 2, *common, "--batch-size", "2", env=env)
    _experiment(tmp_path, "run", tmp_path / "one", 1, *common, "--batch-size", "4", env=env)
    assert two.stdout.count("jaccard") == 2, two.stdout  # rank 0 alone reports
    r2, r1 = tmp_path / "two", tmp_path / "one"
    m2, m1 = (json.loads(next((r / "cells").rglob("metrics.json")).read_text()) for r in (r2, r1))
    source, _, _ = load_segmenter(r1 / "source" / "s0" / "segmenter.pt")
    adapted2, adapted1 = (_floats(load_segmenter(next((r / "cells").rglob("segmenter.pt")))[0]) for r in (r2, r1))
    apart = {"segmenter": _relative(adapted1, _floats(source), adapted2)}
    if method == "transfer":
        torch.manual_seed(0)
        init = {k: v for k, v in create_translator("cyclegan", "tiny", pool_size=0).state_dict().items()
                if torch.is_tensor(v) and v.is_floating_point()}
        t2, t1 = (_weights(next((r / "cells").rglob("translator.pt"))) for r in (r2, r1))
        apart["translator"] = _relative(t1, init, t2)
    print(method, {k: f"{v:.2e}" for k, v in apart.items()}, f"jaccard {m2['jaccard']:.6f} vs {m1['jaccard']:.6f}")
    assert apart["segmenter"] < 1e-3 and apart.get("translator", 0.0) < 0.02, apart
    assert abs(m2["jaccard"] - m1["jaccard"]) < 1e-3, (m2["jaccard"], m1["jaccard"])


def test_experiment_run_transfer_resumes_exactly_under_torchrun_after_kill(folders, tmp_path):
    # the default loop (augmentation, image pool, pseudo-labels: every rank's own random draws), killed -9 at its first
    # iteration checkpoint and run again: the same cell as an uninterrupted run under torchrun, bit for bit
    config = _settings(tmp_path, segmenter_kwargs={"depth": 2, "base_channels": 8}, source_iterations=10,
                       translator_preset="tiny", transfer={"iterations": 16, "warmup_iterations": 2,
                                                           "steps_per_epoch": 2, "selection": "last"})
    common = ("--method", "transfer", "--fraction", "0.25", "--source", str(folders["a"]), "--target",
              str(folders["b20"]), "--config", config, "--batch-size", "2")
    _experiment(tmp_path, "run", tmp_path / "straight", 2, *common)
    launcher = tmp_path / "launch.py"  # written by _experiment
    killed = tmp_path / "killed"
    path = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    proc = subprocess.Popen([*_torchrun(2), str(launcher), "experiment", "run", "--out", str(killed), "--size", "32",
                             "--device", "cpu", *common], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while (not list(killed.glob("cells/**/checkpoints/iter_*.pt")) and proc.poll() is None
           and time.monotonic() < deadline):
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before kill -9: give it more iterations"
    _kill_tree(proc)
    assert not list(killed.rglob("metrics.json"))
    resumed = _experiment(tmp_path, "run", killed, 2, *common)
    assert "0 already finished, 1 to run" in resumed.stdout, resumed.stdout  # the killed cell ran again
    runs = (tmp_path / "straight", killed)
    a, b = (_floats(load_segmenter(next((r / "cells").rglob("segmenter.pt")))[0]) for r in runs)
    assert all(torch.equal(a[k], b[k]) for k in a), "the resumed cell's segmenter differs from the uninterrupted one"
    a, b = (_weights(next((r / "cells").rglob("translator.pt"))) for r in runs)
    assert all(torch.equal(a[k], b[k]) for k in a), "the resumed cell's translator differs from the uninterrupted one"
    ma, mb = (json.loads(next((r / "cells").rglob("metrics.json")).read_text()) for r in (tmp_path / "straight", killed))
    assert ma["jaccard"] == mb["jaccard"]
