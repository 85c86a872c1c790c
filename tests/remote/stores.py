"""Object stores and a model hub on 127.0.0.1, each holding the same objects, for the
tests that read `s3://`, `gs://`, `az://` and `hf://` URLs through the real CLI.

Each server is the one its package's own users test against, started here: moto's S3
server, gcp-storage-emulator (the JSON API gcsfs speaks), Azurite (Node.js, installed
from npm as .ci/run does) and `hub_server.Hub`. `serve(scheme, objects(folder))` starts
one with the objects ("zoo/healthy.pt" -> bytes) at `scheme://lab/...` (a bucket, a container,
or for the hub the repositories `lab/zoo`, `lab/docs`) and yields the environment
that points the scheme's package at it. `isolated` is what every bnstat process of these
tests runs in: no credentials, configuration or metadata service of the machine's own,
so nothing but the local server is ever asked.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from urllib.parse import quote
from urllib.request import Request, urlopen

import pytest
import torch
from hub_server import Hub, Repo
from safetensors.torch import save_file
from zoo import SAMPLES

ROOT = "lab"  # the bucket, the container, the hub's namespace (`models/` means a type there)
AZURITE = "azurite@3.37.0"  # what .ci/run installs
AZURITE_KEY = (  # Azurite's well-known development account key, public by design
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
Objects = dict[str, bytes]
_OWN = re.compile(r"^(AWS_|GOOGLE_|GCLOUD|CLOUDSDK_|GCSFS_|STORAGE_EMULATOR|AZURE_|HF_)")


def isolated(home: Path) -> dict[str, str]:
    """This process's environment without any cloud or hub settings, pointed at empty
    configuration under `home`, and with every metadata service switched off."""
    env = {key: value for key, value in os.environ.items() if not _OWN.match(key)}
    return env | {
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "none"), "AWS_CONFIG_FILE": str(home / "none"),
        "AWS_EC2_METADATA_DISABLED": "true", "CLOUDSDK_CONFIG": str(home / "gcloud"),
        "NO_GCE_CHECK": "true", "HF_HOME": str(home / "hf"), "HF_HUB_DISABLE_TELEMETRY": "1",
    }  # fmt: skip


def spread(folder: Path) -> bytes:
    """A safetensors file whose four BatchNorm layers lie 1 MiB apart."""
    torch.manual_seed(0)
    tensors = {}
    for i in range(4):
        tensors[f"conv{i}.weight"] = torch.randn(2**18)  # 1 MiB between two layers
        tensors |= {f"bn{i}.{leaf}": torch.rand(32) + 0.5 for leaf in
                    ("weight", "bias", "running_mean", "running_var")}  # fmt: skip
    save_file(tensors, folder / "spread.safetensors")
    return (folder / "spread.safetensors").read_bytes()


def objects(folder: Path) -> Objects:
    """What every server holds: checkpoints in folders, a shard index, other files."""
    return {
        "zoo/healthy.pt": (SAMPLES / "healthy.pt").read_bytes(),
        "zoo/deep/dead.pt": (SAMPLES / "bn004_dead_channel.pt").read_bytes(),
        "zoo/big/spread.safetensors": spread(folder),
        "zoo/sharded/model.safetensors.index.json": json.dumps(
            {"weight_map": {"stem.bn.weight": "part.safetensors"}}
        ).encode(),
        "zoo/sharded/part.safetensors": (SAMPLES / "healthy.safetensors").read_bytes(),
        "zoo/README.md": b"# models\n",
        "zoo/.cache/old.pt": (SAMPLES / "bn001_non_finite.pt").read_bytes(),
        "docs/notes.txt": b"nothing here\n",
    }


def serve(scheme: str, objects: Objects) -> AbstractContextManager[dict[str, str]]:
    """The server for `scheme`, holding `objects`; yields the environment that reads it."""
    servers: dict[str, Callable[[Objects], AbstractContextManager[dict[str, str]]]] = {
        "s3": _moto, "gs": _gcs_emulator, "az": _azurite, "hf": _hub,
    }  # fmt: skip
    return servers[scheme](objects)


@contextmanager
def _moto(objects: Objects) -> Iterator[dict[str, str]]:
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://{host}:{port}"}  # fmt: skip
    client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip
    client.create_bucket(Bucket=ROOT)
    for key, data in objects.items():
        client.put_object(Bucket=ROOT, Key=key, Body=data)
    try:
        yield env
    finally:
        server.stop()


@contextmanager
def _gcs_emulator(objects: Objects) -> Iterator[dict[str, str]]:
    """gcp-storage-emulator in this process. gcsfs's experimental zonal-bucket support
    asks a gRPC service the emulator does not have for every bucket (a minute's timeout
    each), so the bnstat processes switch it off, as gcsfs lets its users do."""
    from gcp_storage_emulator.server import Server

    port = _free_port()
    server = Server("127.0.0.1", port, in_memory=True, default_bucket=ROOT)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for key, data in objects.items():
        upload = f"{endpoint}/upload/storage/v1/b/{ROOT}/o?uploadType=media&name={quote(key)}"
        urlopen(Request(upload, data=data, method="POST"), timeout=30).close()
    try:
        yield {"STORAGE_EMULATOR_HOST": endpoint, "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}
    finally:
        server.stop()


@contextmanager
def _azurite(objects: Objects) -> Iterator[dict[str, str]]:
    """Azurite's blob service, a Node.js process of its own, on a port it picks."""
    if shutil.which("node") is None:
        pytest.skip("Node.js is not installed: Azurite, the local Azure Blob server, needs it")
    command = shutil.which("azurite-blob")
    if command is None:
        pytest.skip(f"Azurite is not on PATH: npm install {AZURITE} (as .ci/run does)")
    from azure.storage.blob import BlobServiceClient

    log = Path(tempfile.mkdtemp(prefix="azurite-")) / "out.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [command, "--blobHost", "127.0.0.1", "--blobPort", "0", "--inMemoryPersistence",
             "--skipApiVersionCheck", "--silent"],
            stdout=out, stderr=subprocess.STDOUT, cwd=log.parent,
        )  # fmt: skip
    try:
        endpoint = _listening(process, log)
        connection = (
            f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
            f"AccountKey={AZURITE_KEY};BlobEndpoint={endpoint}/devstoreaccount1;"
        )
        with BlobServiceClient.from_connection_string(connection) as client:
            container = client.create_container(ROOT)
            for key, data in objects.items():
                container.upload_blob(key, data)
        yield {"AZURE_STORAGE_CONNECTION_STRING": connection}
    finally:
        process.kill()  # it keeps nothing; once it has served, node outlives a polite stop
        process.wait()
        shutil.rmtree(log.parent)


def _listening(process: subprocess.Popen[bytes], log: Path) -> str:
    """The address Azurite prints once it listens (within a minute, or the test fails)."""
    for _ in range(600):
        found = re.search(r"listens on (http://127\.0\.0\.1:\d+)", log.read_text())
        if found:
            return found.group(1)
        if process.poll() is not None:
            break
        time.sleep(0.1)
    pytest.fail(f"Azurite did not listen: {log.read_text()[-500:]}")


@contextmanager
def _hub(objects: Objects) -> Iterator[dict[str, str]]:
    """The hub: "zoo/healthy.pt" is `healthy.pt` on the branch main of `lab/zoo`."""
    repos: dict[str, Objects] = {}
    for key, data in objects.items():
        name, path = key.split("/", 1)
        repos.setdefault(f"{ROOT}/{name}", {})[path] = data
    hub = Hub()
    for repo_id, files in repos.items():
        hub.repos[repo_id] = Repo()
        hub.repos[repo_id].commit(files, "main")
    try:
        yield {"HF_ENDPOINT": hub.endpoint}
    finally:
        hub.close()


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


Run = Callable[..., subprocess.CompletedProcess[str]]  # the run_bnstat fixture


def entries(result: subprocess.CompletedProcess[str]) -> dict[str, dict]:
    """The checkpoints of a JSON report by path, from a run that read them (exit 0 or 1)."""
    assert result.returncode in (0, 1), result.stderr
    return {entry["path"]: entry for entry in json.loads(result.stdout)["checkpoints"]}
