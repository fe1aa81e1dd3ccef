"""The re-index's control steps: the state machine's tasks, and what ``imgsearch reindex --stack`` asks.

The event is ``{"action": ..., ...}``; ``simsearch.reindex.step`` documents each action and answers
JSON. A refused step raises, so the state machine fails with the reason and the CLI prints it. This
function's OpenSearch role may read the app's indexes, move the pointers and delete indexes, and
nothing else (``infra/reindex.py``); it loads no model, as no step embeds anything.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger

from simsearch import reindex
from simsearch.index import connect_collection
from simsearch.settings import Settings

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from simsearch.index.port import IndexCollection

logger = Logger(service="reindex")


@cache
def collection() -> IndexCollection:
    """The deployment's indexes and pointers, once per execution environment."""
    return connect_collection(Settings.from_env())


@logger.inject_lambda_context(log_event=True)
def handler(event: dict[str, Any], _context: LambdaContext) -> dict[str, Any]:
    return reindex.step(collection(), event)
