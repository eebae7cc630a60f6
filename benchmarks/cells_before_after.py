"""Before/after check of issue 11 clean-up: three small cells, per-image Jaccards to JSON."""
import json, sys, time
import torch
from transfer.cell import run_cell
from transfer.config import ExperimentConfig, TransferConfig

torch.set_num_threads(1)
out = sys.argv[1]
cells = [("transfer", 0.1), ("selftrain", 0.1), ("paper", 0.0), ("transfer", 0.0), ("selftrain", 0.0)]
if len(sys.argv) > 2:
    cells = [c for c in cells if c[0] in sys.argv[2].split(",")]
res = {}
for method, fraction in cells:
    t = time.time()
    exp = ExperimentConfig(method=method, fraction=fraction, seed=0, source="/work/shared/data/jsrt",
                           target="/work/shared/data/montgomery", size=32, out=out, translator_preset="tiny",
                           segmenter_kwargs={"depth": 2, "base_channels": 8}, source_iterations=30,
                           finetune_iterations=10, max_test=8, device="cpu",
                           transfer=TransferConfig(iterations=8, warmup_iterations=4, steps_per_epoch=4,
                                                   batch_size=2))
    r = run_cell(exp)
    res[f"{method}@{fraction}"] = {"jaccard": r["jaccard"], "per_image": r["per_image"]["jaccard"], "best": r.get("best_iteration"),
                   "history": r.get("history")}
    print(method, fraction, f"{time.time() - t:.1f}s", round(r["jaccard"], 6),
          [round(v, 6) for v in r["per_image"]["jaccard"]], flush=True)
json.dump(res, open(f"{out}/result.json", "w"), indent=1)
