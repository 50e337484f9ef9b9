"""Write a one-layer image as a docker-archive tarball (`docker save` format), from files on disk.

For the test node's pause image (hack/node.sh): no registry is reachable, and containerd imports
this format with `ctr images import`. Usage:

    python3 hack/image_archive.py --name localhost/secretstage/pause:1 --file BIN/pause:/pause \\
        --entrypoint /pause --output pause.tar
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import tarfile
from pathlib import Path


def layer_tar(files: list[tuple[Path, str]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for source, target in files:
            info = tar.gettarinfo(str(source), arcname=target.lstrip("/"))
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            with open(source, "rb") as f:
                tar.addfile(info, f)
    return buffer.getvalue()


def archive(name: str, files: list[tuple[Path, str]], entrypoint: list[str], output: Path) -> None:
    layer = layer_tar(files)
    layer_digest = hashlib.sha256(layer).hexdigest()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": entrypoint, "User": "65535:65535"},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_digest}"]},
        "history": [{"created_by": "hack/image_archive.py"}],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    manifest = [{"Config": config_name, "RepoTags": [name], "Layers": [f"{layer_digest}/layer.tar"]}]
    with tarfile.open(output, "w") as tar:
        for member, data in (
            (config_name, config_bytes),
            (f"{layer_digest}/layer.tar", layer),
            ("manifest.json", json.dumps(manifest).encode()),
        ):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True, help="image reference, e.g. localhost/secretstage/pause:1")
    parser.add_argument("--file", action="append", required=True, metavar="SOURCE:TARGET")
    parser.add_argument("--entrypoint", required=True)
    parser.add_argument("--output", required=True, type=Path)
    args = parser.parse_args()
    files = [(Path(spec.split(":", 1)[0]), spec.split(":", 1)[1]) for spec in args.file]
    archive(args.name, files, [args.entrypoint], args.output)


if __name__ == "__main__":
    main()
