"""Which label an image gets: the one its uploader set, else the folder it sits in.

Labels let searches be restricted (``Filters.label``) and let the evaluation score neighbours. An
explicit ``x-amz-meta-label`` wins over the key because the uploader chose it for this object,
while the first key segment is only a convention (``<label>/<file>``) that a layout may not follow.
"""

from __future__ import annotations

from collections.abc import Mapping

LABEL_METADATA_KEY = "label"
"""User metadata key (``x-amz-meta-label`` on the wire; boto3 returns it without the prefix)."""


def label_for(key: str, metadata: Mapping[str, str]) -> str | None:
    """The object metadata label if set, else the first segment of ``<label>/<file>``, else None."""
    explicit = metadata.get(LABEL_METADATA_KEY, "").strip()
    if explicit:
        return explicit
    folder, slash, _ = key.partition("/")
    if not slash:
        return None
    return folder.strip() or None
