#!/usr/bin/env python
"""Ray Tune search over Compgen's num_res, num_mult, loss weights, lr and training PSNR, compared in MLflow.

    python tune/search.py                      # embedded local Ray, synthetic faces, small search
    python tune/search.py --address auto --tracking-uri http://HOST:5000 --num-samples 32 --max-epochs 40

Run ``python tune/search.py --help`` for every option; the default search space of each system is tune/spaces/<system>.yaml.
"""
import os
import sys

if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from pycompgen.cli.tune import main

    sys.exit(main())
