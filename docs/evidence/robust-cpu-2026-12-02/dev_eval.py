"""Score checkpoints on the real-picture DEV part only (choices are made here).

    python dev_eval.py BENCHMARK_DIR CHECKPOINT...   (BENCHMARK_DIR: build_real_pictures.py --out)
"""
import sys
from pathlib import Path
import numpy as np, torch
sys.path.insert(0, "scripts")
from real_pictures_report import score
from product_classifier.training.trainer import model_from_checkpoint

class TorchPredictor:
    def __init__(self, path, ema=True):
        self.model, self.ckpt = model_from_checkpoint(path, use_ema=ema)
    def predict_proba(self, x):
        with torch.no_grad():
            return torch.softmax(self.model(torch.from_numpy(x)), 1).numpy()

root = Path(sys.argv[1])
for path in sys.argv[2:]:
    p = TorchPredictor(path)
    h = p.ckpt["history"][-1]
    m = score(p, root / "dev", 0.7)
    print(path, "epoch", p.ckpt["epoch"] + 1, "val_acc", round(p.ckpt["best_val_accuracy"], 4), "last val", round(h["val_accuracy"], 4))
    print("  dev acc %.3f balanced %.3f review_on_wrong %.3f review_on_right %.3f oos_flagged %.3f" % (m["accuracy"], m["balanced_accuracy"], m["review_on_wrong"], m["review_on_right"], m["out_of_scope_flagged"]))
    print("  ", {k: round(v, 2) for k, v in m["per_class"].items()})
