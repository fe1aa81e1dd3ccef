"""Deterministic ids: the same object always maps to the same document, the same bytes to the same content id.

S3 delivers event notifications at least once and the queue may redeliver them, so the document id must
be a function of the object's location alone; writing it twice then overwrites instead of duplicating.
"""

from __future__ import annotations

import hashlib

IMAGE_ID_HEX_CHARS = 32  # 128 bits: collisions are out of reach, ids stay short in URLs


def image_id_for(bucket: str, key: str) -> str:
    """The image id of ``s3://bucket/key``: the first 128 bits of SHA-256 over ``bucket/key``, in hex.

    Bucket names cannot contain ``/``, so ``bucket/key`` names exactly one object.
    """
    digest = hashlib.sha256(f"{bucket}/{key}".encode()).hexdigest()
    return digest[:IMAGE_ID_HEX_CHARS]


def content_id(data: bytes) -> str:
    """The content identity of an object's bytes: their full SHA-256 in hex.

    Where ``image_id_for`` names a location, this names the bytes: two objects are exact duplicates
    exactly when their content ids are equal, whatever their keys, buckets or upload times.
    """
    return hashlib.sha256(data).hexdigest()
