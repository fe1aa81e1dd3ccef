"""``python -m devtools.build_lambda_bundle --model-dir DIR``: build or reuse the Lambda bundle; print sizes.

The same bundle ``cdk synth`` deploys (``infra/packaging.py``), without synthesising anything. The zipped
size is measured by deflating it as the CDK does before upload; Lambda's limit is on the unzipped size.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path

from infra.packaging import UNZIPPED_LIMIT_BYTES, build_bundle
from simsearch.errors import SimsearchError

MIB = 2**20


def zipped_bytes(directory: Path) -> int:
    """Size of ``directory`` as a deflated zip archive."""
    with tempfile.TemporaryFile() as file:
        with zipfile.ZipFile(file, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(directory.rglob("*")):
                if path.is_file():
                    archive.write(path, path.relative_to(directory))
        return file.tell()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.build_lambda_bundle", description=__doc__)
    parser.add_argument(
        "--model-dir", type=Path, required=True, help="a directory with model.onnx + manifest.json"
    )
    parser.add_argument(
        "--zip", action="store_true", help="also measure the zipped size (slow: deflates it all)"
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        bundle = build_bundle(model_dir=args.model_dir)
    except SimsearchError as error:
        print(f"error ({error.code}): {error}", file=sys.stderr)
        return 1
    unzipped = bundle.unzipped_bytes
    print(f"bundle  {bundle.path}  (built or reused in {time.perf_counter() - started:.1f} s)")
    print(f"unzipped {unzipped / MIB:7.1f} MiB  ({unzipped / UNZIPPED_LIMIT_BYTES:.0%} of Lambda's 250 MiB)")
    if args.zip:
        print(f"zipped   {zipped_bytes(bundle.path) / MIB:7.1f} MiB")
    return 0 if unzipped <= UNZIPPED_LIMIT_BYTES else 2


if __name__ == "__main__":
    sys.exit(main())
