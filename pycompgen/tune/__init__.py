"""Ray Tune search over Compgen's architecture and loss weights (``python tune/search.py``), compared in MLflow.

Modules: space (search-space files), trial (one trial = Ray Train runs of the project's fit()), tracking (MLflow
parent/child runs), resources (frees the workers of stopped trials), cli (the command line).
"""
