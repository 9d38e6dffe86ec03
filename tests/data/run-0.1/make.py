"""Made with looplm 0.1 (config.json format 1) to test that later versions still load these runs."""
import json, shutil, sys
from pathlib import Path
from looplm.callbacks import Callback
from looplm.data.sources import DataOptions
from looplm.training import TrainConfig, train

out = Path(sys.argv[1])
text = out / "tiny.txt"

class StopAfterFirstEpoch(Callback):
    order = 200  # after the checkpointer wrote the epoch's checkpoint
    def after_epoch(self, learn):
        raise KeyboardInterrupt

def make(name, cfg):
    train(cfg, out=out / f"{name}-done", log=None, progress=False)
    full = TrainConfig(**{**cfg.__dict__, "epochs": 2})
    ref = train(full, out=None, log=None, progress=False)
    try:
        train(full, out=out / f"{name}-interrupted", log=None, progress=False, cbs=[StopAfterFirstEpoch()])
    except KeyboardInterrupt:
        pass
    (out / f"{name}-interrupted" / "expected_history.json").write_text(
        json.dumps([m.as_dict() for m in ref.learner.history], indent=1))
    for d in (f"{name}-done", f"{name}-interrupted"):
        (out / d / "curves.png").unlink(missing_ok=True)

make("lm4", TrainConfig(model="lm4", epochs=1, bs=16, sl=3, device="cpu", model_config={"n_hidden": 8}))
make("text", TrainConfig(data=str(text), model="lstm", epochs=1, bs=4, sl=8, device="cpu",
                         model_config={"emb_sz": 8, "n_hidden": 8, "n_layers": 1}))
