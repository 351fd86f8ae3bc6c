"""``pycompgen judge``: realism, faithfulness and diversity of every generator (``pycompgen.evaluation.judge``)."""
from __future__ import annotations

import json
from pathlib import Path

from .common import add_debug


def add_parser(sub) -> None:
    j = sub.add_parser("judge", help="realism / faithfulness / diversity of every generator (FD/KD, SSIM, edge-F1)",
                       description="Judge the project's generators on real faces: FD/KD with bootstrap intervals "
                                   "(standard FID/KID only with --inception-weights), SSIM/MS-SSIM to the source, "
                                   "edge-F1 to the input edge map, diversity and a mode-collapse flag.")
    j.add_argument("--run-dir", metavar="DIR", help="folder with compgen/<stage>/, cvae/, dcgan/, began/, "
                   "sketch2face/ checkpoints (e.g. runs/rd)")
    j.add_argument("--checkpoint", action="append", default=[], metavar="LABEL=PATH",
                   help="another generator checkpoint (repeatable)")
    j.add_argument("--pretrained", action="append", default=[], metavar="NAME",
                   help="also judge this zoo entry, of any system (repeatable; 'pycompgen zoo list')")
    j.add_argument("--zoo", metavar="ENTRY", help="also judge the zoo entry's Compgen approaches (e.g. compgen-64)")
    j.add_argument("--data", metavar="PATH", help="real faces (CelebA root or folder; default synthetic)")
    j.add_argument("--split", default="test", help="data split of the real faces (default test)")
    j.add_argument("--n", type=int, default=1000, help="number of real faces / outputs per generator (default 1000)")
    j.add_argument("--image-size", type=int, default=64)
    j.add_argument("--features", metavar="CKPT|zoo:ENTRY", default=None,
                   help="feature space for FD/KD (non-standard): a Compgen checkpoint's encoder f, or zoo:ENTRY "
                        "(default zoo:compgen-64)")
    j.add_argument("--pool", type=int, default=2, metavar="K",
                   help="average-pool the encoder's latent to K×K first (default 2: 64 values; 0: flattened, 1,024 "
                        "values, which FD can only rank with thousands of faces)")
    j.add_argument("--inception-weights", metavar="PATH",
                   help="TorchScript Inception (e.g. inception-2015-12-05.pt): standard FID/KID via torchmetrics")
    j.add_argument("--bootstraps", type=int, default=200)
    j.add_argument("--seed", type=int, default=0)
    j.add_argument("--device", default="cpu")
    j.add_argument("--out", metavar="DIR", help="write judge.json and judge.md there (default: print the table)")
    add_debug(j)


def run(args) -> int:
    from pycompgen.evaluation.judge_generators import run as judge
    res = judge(args)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "judge.json").write_text(json.dumps({k: v for k, v in res.items() if k != "markdown"}, indent=1,
                                                   default=str))
        (out / "judge.md").write_text(res["markdown"])
        print(f"wrote {out / 'judge.json'} and {out / 'judge.md'}")
    print(res["markdown"])
    return 0
