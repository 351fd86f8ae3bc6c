# Records Compgen's losses from the pre-harness code (commit f7b16f1) for the equivalence test.
import json, sys, tempfile, torch
torch.set_num_threads(1)
from pycompgen.config import load_config
from pycompgen.training import run_pipeline, build_stage, make_channel, prepare_batch, make_loaders

out = {}
with tempfile.TemporaryDirectory() as d:
    cfg = load_config("configs/tiny.yaml", ["train.epochs=2", "train.psnr_range=[-5,50]", "train.w_latent=0.1",
                                            "train.w_l1=0.2", f"out={d}"])
    res = run_pipeline(cfg, verbose=False)
    out["pipeline"] = {s: {k: m[k] for k in ("train_loss", "val_ssim", "val_psnr", "val_loss")} for s, m in res.items()}
    # per-step losses of each stage from the step-1 checkpoint
    init = torch.load(f"{d}/step1/best.pt", weights_only=True)["models"]
    a1 = torch.load(f"{d}/approach1/best.pt", weights_only=True)["models"]
    steps = {}
    for stage in ("step1", "approach1", "approach2", "approach3"):
        c = cfg.copy(); c.train.stage = stage
        ini = None if stage == "step1" else dict(init, **({"h": a1["h"]} if stage != "approach1" else {}))
        st = build_stage(c, "cpu", ini)
        ch = make_channel(c)
        tl, _ = make_loaders(c)
        g = torch.Generator().manual_seed(123)
        vals = []
        for i, batch in enumerate(tl):
            if i == 3: break
            b = prepare_batch(batch, c, torch.device("cpu"), ch, g, st.stage.needs_edges)
            loss, _ = st.stage.loss(st.nets, b, c)
            st.optimizer.zero_grad(set_to_none=True); loss.backward(); st.optimizer.step()
            vals.append(loss.item())
        steps[stage] = vals
    out["steps"] = steps
json.dump(out, sys.stdout, indent=1)
