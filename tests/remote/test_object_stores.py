"""s3://, gs://, az:// and hf:// against local servers on 127.0.0.1 (moto's S3 server,
gcp-storage-emulator, Azurite, a hub; see `stores`), all holding the same objects, read
through the real CLI: folders, globs, range reads, what is not there, refused keys."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from stores import AZURITE_KEY, ROOT, Run, entries, objects, serve, spread
from zoo import SAMPLES

SCHEMES = ["s3", "gs", pytest.param("az", marks=pytest.mark.slow), "hf"]
Store = tuple[str, dict[str, str]]


@pytest.fixture(scope="module", params=SCHEMES)
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Store]:
    """(scheme, the environment that reads it), its server holding `objects`."""
    with serve(request.param, objects(tmp_path_factory.mktemp("objects"))) as env:
        yield request.param, env


def test_a_folder_is_searched_like_a_local_one(store: Store, run_bnstat: Run) -> None:
    scheme, env = store
    found = entries(run_bnstat(env, "inspect", f"{scheme}://{ROOT}/zoo/", "--format", "json"))
    zoo = f"{scheme}://{ROOT}/zoo"
    assert sorted(found) == [
        f"{zoo}/big/spread.safetensors",
        f"{zoo}/deep/dead.pt",
        f"{zoo}/healthy.pt",
        f"{zoo}/sharded/model.safetensors.index.json",
    ]
    local = entries(run_bnstat({}, "inspect", SAMPLES / "healthy.pt", SAMPLES /
                                    "healthy.safetensors", "--format", "json"))  # fmt: skip
    pt, safetensors = (entry["layers"] for _, entry in sorted(local.items()))
    assert found[f"{zoo}/healthy.pt"]["layers"] == pt
    assert found[f"{zoo}/sharded/model.safetensors.index.json"]["layers"] == safetensors
    assert [f["rule"] for f in found[f"{zoo}/deep/dead.pt"]["findings"]] == ["BN004"]


def test_a_glob_takes_what_it_matches(store: Store, run_bnstat: Run) -> None:
    scheme, env = store
    found = entries(run_bnstat(env, "check", f"{scheme}://{ROOT}/zoo/**/*.pt", "--format", "json"))
    assert sorted(found) == [
        f"{scheme}://{ROOT}/zoo/deep/dead.pt",
        f"{scheme}://{ROOT}/zoo/healthy.pt",
    ]


def test_an_object_is_read_by_ranges(store: Store, run_bnstat: Run, tmp_path: Path) -> None:
    scheme, env = store
    url = f"{scheme}://{ROOT}/zoo/big/spread.safetensors"
    entry = entries(run_bnstat(env, "inspect", url, "--format", "json"))[url]
    (tmp_path / "spread.safetensors").write_bytes(spread(tmp_path))
    local = entries(run_bnstat({}, "inspect", tmp_path / "spread.safetensors", "--format", "json"))
    assert entry["layers"] == next(iter(local.values()))["layers"]
    assert entry["requests"] <= 4 + 8
    assert entry["fetched_bytes"] < entry["file_size"] / 10


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("docs/", "no checkpoints found at {root}/docs/ (1 other file)"),
        ("zoo/*.onnx", "no checkpoints found at {root}/zoo/*.onnx"),
        ("zoo/missing.pt", "{root}/zoo/missing.pt: not found"),
    ],
)
def test_nothing_there_is_one_line(store: Store, run_bnstat: Run, where: str, message: str) -> None:
    scheme, env = store
    result = run_bnstat(env, "check", f"{scheme}://{ROOT}/{where}", "--format", "json")
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("bnstat: error")]
    assert len(errors) == 1 and message.format(root=f"{scheme}://{ROOT}") in errors[0]


WRONG_KEY = base64.b64encode(bytes(64)).decode()
REFUSED = {  # the store's environment made one it refuses, and the line naming the sources
    "s3": (lambda env: {"AWS_ENDPOINT_URL": env["AWS_ENDPOINT_URL"]},
           "access denied: bnstat uses AWS credentials from AWS_ACCESS_KEY_ID, "
           "AWS_SECRET_ACCESS_KEY, AWS_PROFILE or ~/.aws/credentials (none of them is set)"),
    "az": (lambda env: {key: value.replace(AZURITE_KEY, WRONG_KEY) for key, value in env.items()},
           "access denied (HTTP 403): bnstat uses Azure credentials from "
           "AZURE_STORAGE_CONNECTION_STRING, AZURE_STORAGE_ACCOUNT_KEY, AZURE_STORAGE_SAS_TOKEN or "
           "`az login` (AZURE_STORAGE_CONNECTION_STRING set)"),
}  # fmt: skip


@pytest.mark.parametrize("store", ["s3", pytest.param("az", marks=pytest.mark.slow)], indirect=True)
def test_refused_credentials_name_their_sources(store: Store, run_bnstat: Run) -> None:
    """(gcp-storage-emulator checks no credentials; the hub's refusals are in test_hub.)"""
    scheme, env = store
    refused, message = REFUSED[scheme]
    result = run_bnstat(refused(env), "check", f"{scheme}://{ROOT}/zoo/healthy.pt")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"bnstat: error: {scheme}://{ROOT}/zoo/healthy.pt: {message}"
    ]
    assert WRONG_KEY not in result.stdout + result.stderr
