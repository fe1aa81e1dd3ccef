"""Retrieval evaluation: a folder-per-class dataset is split, indexed and queried through the real paths.

``python -m evaluation DATASET --out DIR`` (and ``imgsearch eval``) runs ``evaluation.run`` and writes
the report of ``evaluation.report``. Nothing in ``lambdas/`` imports this package: it drives the
handlers from the outside, as S3, SQS and API Gateway would.
"""

from __future__ import annotations

from evaluation.cli import add_arguments, evaluate, main

__all__ = ["add_arguments", "evaluate", "main"]
