"""The checks behind ``benchmarks/gpu_check.sh``: smoke data, checkpoint waits, weight comparisons, the divergence
guard, bf16 autocast with channels_last, the outputs of a sweep, ``segment predict`` and ``translate apply``, and the
stage's ``summary.json``.

Every subcommand prints ``NOTE: ...`` lines (kept as the path's message in ``summary.json``) and ``FAIL: ...`` on a
failed assertion, and exits 0 (pass) or 1 (fail). Only the subcommands that need torch import it, so
``wait-for`` starts in milliseconds.

Usage (from the repository root; gpu_check.sh calls these):
    python benchmarks/gpu_check_paths.py env --device cuda
    python benchmarks/gpu_check_paths.py data --root OUT/work/data --n 12 --size 32 --real ../shared/data
    python benchmarks/gpu_check_paths.py wait-for --glob 'RUN/checkpoints/last.pt' --pid 1234 --timeout 120
    python benchmarks/gpu_check_paths.py compare --straight A --resumed B --file model.pt --killed K.pt
    python benchmarks/gpu_check_paths.py guard --device cuda --size 64
    python benchmarks/gpu_check_paths.py amp --device cuda --size 128
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import platform
import re
import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

_NUMBER = re.compile(r"(\d+)")


class CheckFailed(Exception):
    """An assertion of a path failed; the message is the path's FAIL line."""


def _expect(ok: bool, message: str) -> None:
    if not ok:
        raise CheckFailed(message)


def note(message: str) -> None:
    print(f"NOTE: {message}", flush=True)


# ----------------------------------------------------------------------------------------------------- environment
def device_info(device: str) -> dict[str, Any]:
    """Device name, torch / CUDA versions and the machine, as summary.json reports them."""
    import torch

    info: dict[str, Any] = {"device": device, "torch": torch.__version__, "python": platform.python_version(),
                            "machine": platform.machine(), "cpu_count": os.cpu_count(),
                            "cuda_available": torch.cuda.is_available(), "cuda": torch.version.cuda}
    if device.startswith("cuda") and torch.cuda.is_available():
        index = torch.device(device).index or 0
        props = torch.cuda.get_device_properties(index)
        info.update(device_name=torch.cuda.get_device_name(index),
                    device_memory_gib=round(props.total_memory / 2**30, 1), capability=f"{props.major}.{props.minor}",
                    cudnn=torch.backends.cudnn.version(), bf16_supported=torch.cuda.is_bf16_supported())
    else:
        info["device_name"] = f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
    try:
        import kornia

        info["kornia"] = kornia.__version__
    except ImportError:
        info["kornia"] = None
    return info


def cmd_env(args: argparse.Namespace) -> int:
    info = device_info(args.device)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(info, indent=2))
    print(json.dumps(info))
    note(f"{info['device_name']}, torch {info['torch']} (CUDA {info['cuda']}), kornia {info['kornia']}, "
         f"Python {info['python']}")
    if args.device.startswith("cuda") and not info["cuda_available"]:
        print(f"FAIL: expected a CUDA device for DEVICE={args.device}, got none (torch {info['torch']}, built for "
              f"CUDA {info['cuda']}); run on the GPU machine or with DEVICE=cpu")
        return 1
    return 0


# ----------------------------------------------------------------------------------------------------- data
def _real_pair(real: Path) -> tuple[Path, Path] | None:
    source, target = real / "jsrt", real / "montgomery"
    if (source / "images").is_dir() and (target / "images").is_dir():
        return source, target
    return None


def _subset(src: Path, dst: Path, n: int) -> int:
    """Link the first ``n`` images of a prepared folder (and every mask of them) into ``dst``."""
    ids = sorted(p.stem for p in (src / "images").glob("*.png") if not p.name.startswith("."))[:n]
    (dst / "images").mkdir(parents=True, exist_ok=True)
    for i in ids:
        os.symlink((src / "images" / f"{i}.png").resolve(), dst / "images" / f"{i}.png")
    for organ in sorted(p for p in (src / "masks").iterdir() if p.is_dir()):
        (dst / "masks" / organ.name).mkdir(parents=True, exist_ok=True)
        for i in ids:
            mask = organ / f"{i}.png"
            if mask.is_file():
                os.symlink(mask.resolve(), dst / "masks" / organ.name / f"{i}.png")
    return len(ids)


def cmd_data(args: argparse.Namespace) -> int:
    """Source (JSRT-like) and target (Montgomery-like) prepared folders; writes ROOT/data.env for the shell."""
    root = Path(args.root)
    env_file = root / "data.env"
    if env_file.is_file():
        text = env_file.read_text()
        print(text, end="")
        note("data: " + shlex.split(text.splitlines()[-1].partition("=")[2])[0] + " (prepared before)")
        return 0
    real = _real_pair(Path(args.real)) if args.real and args.mode != "phantom" else None
    if args.mode == "real" and real is None:
        print(f"FAIL: expected the real data (jsrt/ and montgomery/ with images/) in {args.real!r}, got none; set "
              "CXR_DATA or use SMOKE_DATA=auto")
        return 1
    root.mkdir(parents=True, exist_ok=True)
    if real is not None and args.n == 0:
        source, target = real
        kind = f"real data, all images: {source} -> {target}"
    elif real is not None:
        source, target = root / "source", root / "target"
        n_a, n_b = _subset(real[0], source, args.n), _subset(real[1], target, args.n)
        kind = f"real data, first {n_a} JSRT and {n_b} Montgomery images (linked from {Path(args.real).resolve()})"
    else:
        from segmentation.data.phantoms import write_phantom_dataset

        source, target = root / "source", root / "target"
        write_phantom_dataset(source, args.n, args.size, "a", 0)
        write_phantom_dataset(target, args.n, args.size, "b", 1)
        why = "SMOKE_DATA=phantom" if args.mode == "phantom" else f"no real data at {args.real!r}"
        kind = f"phantoms ({why}): {args.n} of domain a -> {args.n} of domain b at {args.size} px"
    text = "".join(f"{name}={shlex.quote(str(value))}\n"
                   for name, value in (("DATA_SOURCE", source), ("DATA_TARGET", target), ("DATA_KIND", kind)))
    env_file.write_text(text)
    print(text, end="")
    note(f"data: {kind}")
    return 0


# ----------------------------------------------------------------------------------------------------- checkpoints
def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped by the shell) counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _step_of(path: Path) -> int:
    numbers = _NUMBER.findall(path.stem)
    return int(numbers[-1]) if numbers else -1


def cmd_wait_for(args: argparse.Namespace) -> int:
    """Wait until a file matching --glob exists (with a number >= --min-step in its name, when given)."""
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        found = [Path(p) for p in glob.glob(args.glob)]
        found = [p for p in found if args.min_step is None or _step_of(p) >= args.min_step]
        if found:
            print(max(found, key=_step_of))
            return 0
        if args.pid and not _alive(args.pid):
            print(f"FAIL: process {args.pid} ended before a checkpoint matching {args.glob} appeared; see its log")
            return 2
        time.sleep(args.poll)
    print(f"FAIL: no checkpoint matching {args.glob} within {args.timeout:g} s")
    return 3


def _tensors(obj: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    import torch

    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _tensors(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _tensors(v, f"{prefix}[{i}]")


def _load(path: Path) -> dict[str, Any]:
    import torch

    return dict(_tensors(torch.load(path, map_location="cpu", weights_only=True)))


def _resolve(folder: Path, pattern: str) -> Path:
    matches = sorted((Path(p) for p in glob.glob(str(folder / pattern))), key=_step_of)
    _expect(bool(matches), f"{folder / pattern}: no such file")
    return matches[-1]


def _norms(a: dict[str, Any], b: dict[str, Any]) -> tuple[float, float, float, str]:
    """L2 norm of a - b and of b over the float tensors both hold, the largest |a - b| and where it is."""
    diff2 = ref2 = 0.0
    worst, where = 0.0, ""
    for key in sorted(set(a) & set(b)):
        x, y = a[key], b[key]
        if not (x.is_floating_point() and y.is_floating_point()) or x.shape != y.shape:
            continue
        d = (x.double() - y.double())
        diff2 += float((d * d).sum())
        ref2 += float((y.double() * y.double()).sum())
        m = float(d.abs().max()) if d.numel() else 0.0
        if m > worst:
            worst, where = m, key
    return math.sqrt(diff2), math.sqrt(ref2), worst, where


def _first_step_of_newest_events(tb: Path) -> tuple[int | None, Path | None]:
    files = sorted(tb.rglob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime)
    if not files:
        return None, None
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    # scalars and images only: a custom-scalars layout is written at step 0 by every writer
    steps = [e.step for e in EventFileLoader(str(files[-1])).Load() if e.HasField("summary")
             and any(v.metadata.plugin_data.plugin_name in ("scalars", "images") for v in e.summary.value)]
    return (min(steps) if steps else None), files[-1]


def cmd_compare(args: argparse.Namespace) -> int:
    """Compare the final files of an uninterrupted run (--straight) and a killed-then-resumed one (--resumed)."""
    straight, resumed = Path(args.straight), Path(args.resumed)
    exact = args.tol is None
    killed_step = None
    if args.killed:
        killed = Path(args.killed)
        killed_step = _step_of(killed)
        if killed_step < 0:  # last.pt: the epoch is inside
            import torch

            state = torch.load(killed, map_location="cpu", weights_only=True)
            killed_step = int(state.get("epoch", state.get("step", -1)))
        _expect(killed_step >= 1, f"the run was killed at step {killed_step}: before any training step")
        note(f"killed (kill -9) with checkpoint {killed.name} at step/epoch {killed_step}")
    for pattern in args.file:
        a_path, b_path = _resolve(resumed, pattern), _resolve(straight, pattern)
        a, b = _load(a_path), _load(b_path)
        _expect(set(a) == set(b), f"{pattern}: the resumed file holds other tensors than the uninterrupted one: "
                                  f"{sorted(set(a) ^ set(b))[:5]}")
        if exact:
            differ = [k for k in sorted(a) if a[k].shape != b[k].shape or a[k].dtype != b[k].dtype
                      or not bool((a[k] == b[k]).all() if a[k].numel() else True)]
            if differ:
                err, ref, worst, where = _norms(a, b)
                raise CheckFailed(f"{a_path.relative_to(resumed)}: not bit-identical after kill -9 and --resume: "
                                  f"{len(differ)}/{len(a)} tensors differ (first {differ[0]}; relative L2 "
                                  f"{err / max(ref, 1e-30):.3g}, max |diff| {worst:.3g} in {where})")
            note(f"{a_path.relative_to(resumed)}: bit-identical to the uninterrupted run ({len(a)} tensors)")
        else:
            counters = [k for k in sorted(a) if not a[k].is_floating_point() and "rng" not in k
                        and "generator" not in k and not bool((a[k] == b[k]).all() if a[k].numel() else True)]
            _expect(not counters, f"{pattern}: integer tensors (step counters, batch counts) differ: {counters[:5]}")
            err, ref, worst, where = _norms(a, b)
            rel = err / max(ref, 1e-30)
            line = (f"{a_path.relative_to(resumed)}: relative L2 difference {rel:.3g} (max |diff| {worst:.3g} in "
                    f"{where or '-'}), tolerance {args.tol:g}; CUDA is compared with a tolerance, not bit for bit "
                    "(cuDNN/bf16 kernels are not deterministic)")
            _expect(rel <= args.tol, line)
            note(line)
    if args.killed and args.drift:
        err, ref, _, _ = _norms(_load(Path(args.killed)), _load(_resolve(straight, args.drift)))
        drift = err / max(ref, 1e-30)
        note(f"training after the kill point moved the weights by {drift:.3g} (relative L2), the scale of what a "
             "broken resume would change")
        if not exact:
            a, b = _load(_resolve(resumed, args.drift)), _load(_resolve(straight, args.drift))
            gap = _norms(a, b)[0] / max(_norms(a, b)[1], 1e-30)
            _expect(gap <= args.drift_fraction * drift,
                    f"resumed vs uninterrupted differ by {gap:.3g}, more than {args.drift_fraction:g} x the "
                    f"training drift {drift:.3g} after the kill point")
    if args.tb and killed_step is not None:
        first, events = _first_step_of_newest_events(Path(args.tb))
        _expect(first is not None, f"{args.tb}: the resumed run logged nothing to TensorBoard")
        _expect(first > killed_step, f"the resumed run logged from step {first}, at or before the checkpoint's step "
                                     f"{killed_step}: it started again instead of resuming ({events})")
        note(f"the resumed process logged from step {first} on (after the checkpoint's {killed_step}): it resumed")
    return 0


# ----------------------------------------------------------------------------------------------------- guard
def cmd_guard(args: argparse.Namespace) -> int:
    """A NaN injected into the generator loss at step 5 is rolled back to the step-4 checkpoint (as the unit test)."""
    import torch

    from segmentation.data.phantoms import make_phantoms
    from translation import create_translator
    from translation.training import TranslationConfig, train_translator

    device = torch.device(args.device)
    images = {d: (make_phantoms(8, size=args.size, domain=d, seed=s).images * 2 - 1).to(device)
              for d, s in (("a", 0), ("b", 100))}
    torch.manual_seed(0)
    translator = create_translator("cyclegan", preset=args.preset, pool_size=4).to(device)
    original = translator.generator_losses
    calls = {"n": 0}

    def poisoned(a, b, fakes=None):  # the translator's own signature
        calls["n"] += 1
        losses = original(a, b, fakes=fakes)
        if calls["n"] == 6:  # step 5: the generator loss, and so its weights after the step, turn NaN
            losses["loss"] = losses["loss"] * float("nan")
        return losses

    translator.generator_losses = poisoned
    config = TranslationConfig(iterations=10, batch_size=2, checkpoint_every=4, eval_every=5, kid_size=32,
                               kid_subset_size=4, kid_subsets=5, progress=False, figures=False, guard_lr_factor=0.5,
                               sync_every=1, lr=2e-4)
    run = Path(args.run_dir)
    result = train_translator(translator, images["a"], images["b"], config, run)
    _expect(result.steps == 10, f"expected 10 steps, got {result.steps}")
    _expect(len(result.rollbacks) == 1, f"expected one rollback, got {result.rollbacks}")
    event = result.rollbacks[0]
    _expect(event["kind"] == "non_finite" and event["step"] == 5 and event["to_step"] == 4,
            f"expected a non_finite rollback from step 5 to step 4, got {event}")
    _expect(event["checkpoint"] == "step_00000004.pt" and event["lr_scale"] == 0.5,
            f"expected a rollback to step_00000004.pt at lr x0.5, got {event}")
    _expect(all(bool(torch.isfinite(p).all()) for p in result.translator.parameters()),
            "non-finite weights after the rollback")
    _expect(all(math.isfinite(v) for v in result.final_losses.values()), f"non-finite losses {result.final_losses}")
    log = (run / "train.log").read_text()
    _expect("rolled back to step_00000004.pt" in log, f"train.log does not name the rollback: {log!r}")
    note(f"NaN at step 5 on {device}: rolled back to step 4, lr x0.5, {calls['n']} generator steps, weights finite")
    return 0


# ----------------------------------------------------------------------------------------- bf16 + channels_last
def cmd_amp(args: argparse.Namespace) -> int:
    """Forward/backward of a segmenter (and one translator step) under runtime.device.autocast with channels_last."""
    import torch
    import torch.nn.functional as F

    from runtime.device import autocast
    from segmentation.models import create_segmenter
    from translation import create_translator
    from translation.training import training_step

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    torch.manual_seed(0)
    model = create_segmenter("unet", in_channels=1, out_channels=3, **json.loads(args.segmenter_kwargs)).to(device)
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(2, 1, args.size, args.size, device=device).contiguous(memory_format=torch.channels_last)
    y = (torch.rand(2, 3, args.size, args.size, device=device) > 0.5).float()
    with torch.no_grad():
        reference = model(x).float()
    with autocast(device):
        logits = model(x)
        loss = F.binary_cross_entropy_with_logits(logits.float(), y)
    expected = torch.bfloat16 if cuda else torch.float32
    _expect(logits.dtype == expected, f"expected {expected} logits under autocast on {device}, got {logits.dtype}")
    _expect(bool(torch.isfinite(loss)), f"non-finite loss {float(loss)}")
    error = float((logits.float() - reference).abs().max() / reference.abs().max().clamp_min(1e-6))
    _expect(error < (0.1 if cuda else 1e-5), f"autocast logits differ from fp32 by {error:.3g} (relative max)")
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    _expect(all(g is not None and bool(torch.isfinite(g).all()) for g in grads), "missing or non-finite gradients")
    optimizer.step()
    weights = [p for p in model.parameters() if p.dim() == 4]
    _expect(all(p.is_contiguous(memory_format=torch.channels_last) for p in weights),
            "conv weights lost channels_last after the step")
    note(f"segmenter on {device}: {logits.dtype} logits (relative max diff to fp32 {error:.2g}), finite gradients, "
         f"channels_last kept on {len(weights)} conv weights")
    translator = create_translator("cyclegan", preset=args.preset).to(device).to(memory_format=torch.channels_last)
    opt_g = torch.optim.Adam(translator.generator_parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(translator.discriminator_parameters(), lr=2e-4, betas=(0.5, 0.999))
    a = (torch.rand(2, 1, args.size, args.size, device=device) * 2 - 1).contiguous(memory_format=torch.channels_last)
    b = (torch.rand(2, 1, args.size, args.size, device=device) * 2 - 1).contiguous(memory_format=torch.channels_last)
    g_losses, d_losses = training_step(translator, opt_g, opt_d, a, b, amp=True)
    values = {k: float(v) for k, v in {**g_losses, **d_losses}.items()}
    _expect(all(math.isfinite(v) for v in values.values()), f"non-finite translator losses {values}")
    with torch.no_grad(), autocast(device):
        fake = translator.a_to_b(a)
    _expect(fake.dtype == expected, f"expected {expected} translations under autocast, got {fake.dtype}")
    note(f"cyclegan ({args.preset}) bf16 step on {device}: losses finite, G_AB output {fake.dtype}")
    return 0


# ----------------------------------------------------------------------------------------------------- outputs
def cmd_sweep_check(args: argparse.Namespace) -> int:
    """Rows, overlays and report of a short sweep whose source segmenter has more classes than the target."""
    root = Path(args.root)
    rows = [json.loads(line) for line in (root / "results.jsonl").read_text().splitlines() if line.strip()]
    keys = {(r["method"], float(r["fraction"])) for r in rows}
    _expect(len(keys) == args.cells, f"expected {args.cells} finished cells, got {len(keys)}: {sorted(keys)}")
    target = [c for c in args.classes.split(",") if c]
    extra = [c for c in args.source_classes.split(",") if c and c not in target]
    for r in rows:
        _expect(all(f"jaccard/{c}" in r for c in target) and not any(f"jaccard/{c}" in r for c in extra),
                f"{r['key']}: expected scores of {target} only, got {sorted(k for k in r if k.startswith('jaccard/'))}")
        _expect(math.isfinite(r["jaccard"]), f"{r['key']}: jaccard {r['jaccard']}")
    for method in ("transfer", "source_only"):
        if any(m == method for m, _ in keys):
            overlays = list((root / "cells" / method).glob("*/s*/overlays.png"))
            _expect(bool(overlays), f"no overlays.png in the {method} cells (source classes {args.source_classes})")
    adapted = sorted((root / "cells" / "transfer").glob("*/s*/segmenter.pt"))
    if adapted:
        import torch

        classes = torch.load(adapted[0], map_location="cpu", weights_only=True)["config"]["classes"]
        _expect(list(classes) == args.source_classes.split(","),
                f"the adapted segmenter {adapted[0].name} has classes {classes}, expected {args.source_classes}")
    report = root / "report"
    markdown = next(iter(report.glob("*.md")), None) if report.is_dir() else None
    _expect(markdown is not None, f"no Markdown report in {report}")
    note(f"{len(rows)} cells scored on {target}; overlays of {args.source_classes} drawn; report {markdown.name}")
    return 0


def cmd_outputs(args: argparse.Namespace) -> int:
    """The files of ``segment predict`` (masks per class, overlays) or ``translate apply`` (one PNG per input)."""
    import numpy as np
    from PIL import Image

    images = sorted(p for p in Path(args.images).iterdir() if p.suffix.lower() == ".png")
    out = Path(args.out)
    _expect(bool(images), f"{args.images}: no input images")
    if args.kind == "predict":
        folders = [out / "masks" / c for c in args.classes.split(",")] + [out / "overlays"]
    else:
        folders = [out]
    for folder in folders:
        for image in images:
            path = folder / f"{image.stem}.png"
            _expect(path.is_file(), f"{path}: missing")
            with Image.open(image) as a, Image.open(path) as b:
                _expect(a.size == b.size, f"{path}: size {b.size}, expected the input's {a.size}")
                if args.kind == "apply":
                    pixels = np.asarray(b)
                    _expect(pixels.std() > 0, f"{path}: a constant image")
    note(f"{args.kind}: {len(images)} image(s), {len(folders)} output folder(s), sizes match the inputs")
    return 0


def cmd_digest(args: argparse.Namespace) -> int:
    """One NOTE line of images/s from a bench_translation.py (--out) or bench_segmenters.py (--json) file."""
    data = json.loads(Path(args.file).read_text())
    if "rows" in data:  # bench_translation.py
        parts = [f"b{r['batch_size']}{' bf16' if r['amp_bf16'] else ''}{' cl' if r['channels_last'] else ''} "
                 f"{r['images_per_s']:.1f} img/s" for r in data["rows"]]
        note(f"{Path(args.file).stem}: " + ", ".join(parts))
    else:  # bench_segmenters.py
        parts = [f"{r['model']} b{r['batch_size']} train {r['train_img_s']:.1f} / infer {r['infer_img_s']:.1f} img/s"
                 for r in data["results"] if "train_img_s" in r]
        note("segmenters: " + ", ".join(parts))
    return 0


# ----------------------------------------------------------------------------------------------------- summary
def cmd_summary(args: argparse.Namespace) -> int:
    """summary.json: the stage, each path's status / seconds / message, device name, torch version."""
    paths: dict[str, Any] = {}
    tsv = Path(args.tsv)
    for line in tsv.read_text().splitlines() if tsv.is_file() else []:
        name, status, seconds, message = (line.split("\t") + ["", "", ""])[:4]
        paths[name] = {"status": status, "seconds": round(float(seconds or 0), 1), "message": message}
    info = json.loads(Path(args.info).read_text()) if args.info and Path(args.info).is_file() else {}
    figures = {}
    for path in sorted(Path(args.figures).glob("*.json")) if args.figures and Path(args.figures).is_dir() else []:
        if path.stat().st_size <= 64_000:
            try:
                figures[path.stem] = json.loads(path.read_text())
            except json.JSONDecodeError:
                continue
    archive = Path(args.archive) if args.archive else None
    counts = {s: sum(p["status"] == s for p in paths.values()) for s in ("PASS", "FAIL", "SKIP", "TIMEOUT")}
    summary = {
        "stage": args.stage,
        "ok": counts["FAIL"] == 0 and counts["TIMEOUT"] == 0,
        "counts": counts,
        "paths": paths,
        "device": info.get("device"),
        "device_name": info.get("device_name"),
        "torch": info.get("torch"),
        "environment": info,
        "data": args.data or None,
        "seconds": round(float(args.seconds), 1),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "archive": {"name": archive.name, "bytes": archive.stat().st_size} if archive and archive.is_file() else None,
    }
    if figures:
        summary["figures"] = figures
    Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")
    return 0


# ----------------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("env", help="device name and versions as JSON; fails when DEVICE=cuda has no GPU")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", default=None, help="also write the JSON here")
    p.set_defaults(fn=cmd_env)

    p = sub.add_parser("data", help="smoke datasets: a subset of the real data, or phantoms where it is absent")
    p.add_argument("--root", required=True)
    p.add_argument("--n", type=int, required=True, help="images per domain (0: all of the real data)")
    p.add_argument("--size", type=int, default=64, help="phantom side in pixels")
    p.add_argument("--real", default="", help="the real data folder (holding jsrt/ and montgomery/)")
    p.add_argument("--mode", choices=["auto", "real", "phantom"], default="auto")
    p.set_defaults(fn=cmd_data)

    p = sub.add_parser("wait-for", help="wait for a checkpoint file while the training process lives")
    p.add_argument("--glob", required=True)
    p.add_argument("--pid", type=int, default=0)
    p.add_argument("--min-step", type=int, default=None, help="least number in the file name")
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--poll", type=float, default=0.01)
    p.set_defaults(fn=cmd_wait_for)

    p = sub.add_parser("compare", help="final weights of a killed-and-resumed run against an uninterrupted one")
    p.add_argument("--straight", required=True, help="run folder of the uninterrupted run")
    p.add_argument("--resumed", required=True, help="run folder of the killed-then-resumed run")
    p.add_argument("--file", action="append", required=True, help="file (glob) relative to both folders")
    p.add_argument("--killed", default=None, help="copy of the newest checkpoint at the moment of kill -9")
    p.add_argument("--drift", default=None, help="checkpoint (glob) of the straight run to measure drift against")
    p.add_argument("--drift-fraction", type=float, default=0.25)
    p.add_argument("--tol", type=float, default=None, help="relative L2 tolerance (none: bit-identical)")
    p.add_argument("--tb", default=None, help="TensorBoard folder of the resumed run (proves it resumed)")
    p.set_defaults(fn=cmd_compare)

    p = sub.add_parser("guard", help="divergence-guard rollback on an injected NaN")
    p.add_argument("--device", default="cpu")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--run-dir", required=True)
    p.set_defaults(fn=cmd_guard)

    p = sub.add_parser("amp", help="bf16 autocast + channels_last forward/backward")
    p.add_argument("--device", default="cpu")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--segmenter-kwargs", default="{}")
    p.set_defaults(fn=cmd_amp)

    p = sub.add_parser("sweep-check", help="rows, overlays and report of a short sweep with --source-classes")
    p.add_argument("--root", required=True)
    p.add_argument("--cells", type=int, required=True)
    p.add_argument("--classes", default="lungs")
    p.add_argument("--source-classes", required=True)
    p.set_defaults(fn=cmd_sweep_check)

    p = sub.add_parser("outputs", help="files written by segment predict / translate apply")
    p.add_argument("--kind", choices=["predict", "apply"], required=True)
    p.add_argument("--images", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--classes", default="lungs")
    p.set_defaults(fn=cmd_outputs)

    p = sub.add_parser("digest", help="images/s of a benchmark JSON as a NOTE line")
    p.add_argument("file")
    p.set_defaults(fn=cmd_digest)

    p = sub.add_parser("summary", help="write summary.json")
    p.add_argument("--out", required=True)
    p.add_argument("--stage", required=True)
    p.add_argument("--tsv", required=True)
    p.add_argument("--info", default=None)
    p.add_argument("--figures", default=None)
    p.add_argument("--archive", default=None)
    p.add_argument("--data", default="")
    p.add_argument("--seconds", default="0")
    p.set_defaults(fn=cmd_summary)

    args = parser.parse_args(argv)
    try:
        return args.fn(args)
    except CheckFailed as err:
        print(f"FAIL: {err}", flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
