"""Time ``cxr-transfer prepare folder`` on the whole shared JSRT (247 images, 5 classes) and Montgomery (138) sets.

Runs the click command in-process (the time excludes Python start-up and imports) into a temporary
folder that is deleted afterwards, and checks the output counts. Reports wall-clock seconds and the
process CPU seconds (all threads), since wall time on a shared machine depends on its load.

Usage:
    python benchmarks/bench_prepare.py                      # both sets, --size 512, 1 repeat
    python benchmarks/bench_prepare.py --size 256 --repeats 3 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from experiments.cli import cli  # noqa: E402

SETS = {"jsrt": 247, "montgomery": 138}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("CXR_DATA", REPO.parent / "shared" / "data")))
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--sets", default="jsrt,montgomery")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    results = []
    for name in args.sets.split(","):
        src = args.data / name
        times, cpu = [], []
        for _ in range(args.repeats):
            tmp = Path(tempfile.mkdtemp(prefix="bench_prepare_"))
            try:
                argv = ["prepare", "folder", "--images", str(src / "images"), "--masks", str(src / "masks"),
                        "--out", str(tmp / name), "--size", str(args.size), "--quiet"]
                start, start_cpu = time.perf_counter(), time.process_time()
                cli.main(argv, prog_name="cxr-transfer", standalone_mode=False)
                times.append(time.perf_counter() - start)
                cpu.append(time.process_time() - start_cpu)
                meta = json.loads((tmp / name / "dataset.json").read_text())
                files = sum(1 for _ in (tmp / name).rglob("*.png"))
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            if meta["count"] != SETS.get(name, meta["count"]):
                raise SystemExit(f"expected {SETS[name]} images in {name}, got {meta['count']}")
        row = {"set": name, "images": meta["count"], "classes": len(meta["classes"]), "png_files": files,
               "size": args.size, "repeats": args.repeats, "seconds_median": round(statistics.median(times), 2),
               "seconds_all": [round(t, 2) for t in times], "cpu_seconds_median": round(statistics.median(cpu), 2),
               "images_per_s": round(meta["count"] / statistics.median(times), 1)}
        results.append(row)
        print(json.dumps(row))
    machine = {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()}
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    machine["load_average_1_5_15"] = [round(x, 2) for x in load] if load else None
    print(json.dumps({"machine": machine}))
    if args.json is not None:
        args.json.write_text(json.dumps({"results": results, "machine": machine}, indent=2) + "\n")


if __name__ == "__main__":
    main()
