"""The experiment scripts, importable as modules (``from experiments import report``) by tests and by each other.

Each also runs as a script from the repository root: ``python experiments/run_comparison.py ...`` or
``python -m experiments.report``. Nothing here is part of the installed ``superpos`` packages.
"""
