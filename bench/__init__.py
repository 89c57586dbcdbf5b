"""Benchmarks that measure voicelog beside its ceiling and its simple alternatives, in one run.

Run ``python -m bench`` (full, ~10 minutes on 2 cores) or ``python -m bench --quick`` (CI smoke).
Every section reports ratios against a baseline measured in the same run on the same machine,
because absolute times on a shared 2-core box move from run to run.
"""
