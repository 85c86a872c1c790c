"""hf:// against a hub on 127.0.0.1 (`hub_server`), through the real CLI: revisions, a
push landing mid-read, private and gated repositories, and the token's name in every
refusal, never its value. Folders, globs and ranges are in test_object_stores."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hub_server import TOKEN, Hub, Repo
from stores import Run, entries, spread
from zoo import SAMPLES

HEALTHY, NON_FINITE = (
    (SAMPLES / "healthy.pt").read_bytes(),
    (SAMPLES / "bn001_non_finite.pt").read_bytes(),
)
HINT = "bnstat uses a Hugging Face token from HF_TOKEN or `hf auth login`"


@pytest.fixture(scope="module")
def hub() -> Iterator[Hub]:
    hub = Hub()
    zoo = hub.repos["lab/zoo"] = Repo()
    zoo.commit({"model.pt": NON_FINITE, "old/model.pt": NON_FINITE}, "v1.0")
    zoo.commit({"model.pt": HEALTHY}, "main")
    hub.repos["lab/private"] = Repo("private")
    hub.repos["lab/private"].commit({"model.pt": HEALTHY}, "main")
    hub.repos["lab/gated"] = Repo("gated")
    hub.repos["lab/gated"].commit({"model.pt": HEALTHY}, "main")
    yield hub
    hub.close()


def test_a_revision_reads_that_commit(hub: Hub, run_bnstat: Run) -> None:
    env = {"HF_ENDPOINT": hub.endpoint}
    tagged = entries(run_bnstat(env, "check", "hf://lab/zoo@v1.0", "--format", "json"))
    assert sorted(tagged) == ["hf://lab/zoo@v1.0/model.pt", "hf://lab/zoo@v1.0/old/model.pt"]
    assert all("BN001" in {f["rule"] for f in e["findings"]} for e in tagged.values())
    main = entries(run_bnstat(env, "check", "hf://lab/zoo/model.pt", "--format", "json"))
    assert main["hf://lab/zoo/model.pt"]["findings"] == []


def test_a_push_while_reading_does_not_mix_commits(
    hub: Hub, run_bnstat: Run, tmp_path: Path
) -> None:
    """The branch moves to another file after the first range; every range is read at
    the commit the branch named when bnstat opened the file, as bytes of one file."""
    repo = hub.repos["lab/moving"] = Repo()
    first = repo.commit({"model.safetensors": spread(tmp_path)}, "main")
    pushed = repo.commit({"model.safetensors": (SAMPLES / "healthy.safetensors").read_bytes()})
    repo.move = (1, "main", pushed)
    hub.counts.__init__()
    url = "hf://lab/moving/model.safetensors"
    entry = entries(run_bnstat({"HF_ENDPOINT": hub.endpoint}, "inspect", url, "--format", "json"))
    local = entries(run_bnstat({}, "inspect", tmp_path / "spread.safetensors", "--format", "json"))
    assert entry[url]["layers"] == next(iter(local.values()))["layers"]
    assert len(hub.counts.revisions) > 1 and set(hub.counts.revisions) == {first}
    assert repo.refs["main"] == pushed  # the push did land while bnstat read
    assert entry[url]["fetched_bytes"] == hub.counts.sent < entry[url]["file_size"] / 10


def test_the_files_of_a_folder_are_opened_together(hub: Hub, run_bnstat: Run) -> None:
    """Each file's answer comes after a pause: files opened one after another would
    never have two requests in flight."""
    hub.repos["lab/many"] = Repo()
    hub.repos["lab/many"].commit({f"model{i}.pt": HEALTHY for i in range(6)}, "main")
    hub.counts.__init__()
    hub.latency = 0.2
    try:
        result = run_bnstat({"HF_ENDPOINT": hub.endpoint}, "check", "hf://lab/many", "--jobs", "1",
                            "--format", "json")  # fmt: skip
    finally:
        hub.latency = 0.0
    assert sorted(entries(result)) == [f"hf://lab/many/model{i}.pt" for i in range(6)]
    assert hub.counts.peak > 1
    assert len(hub.counts.revisions) == 6  # one request each: the whole small file


@pytest.mark.parametrize(
    ("url", "token", "message"),
    [
        ("hf://lab/nothing/model.pt", None,
         f"no such repository, or a private one (HTTP 401): {HINT} (none of them is set)"),
        ("hf://lab/private/model.pt", None,
         f"no such repository, or a private one (HTTP 401): {HINT} (none of them is set)"),
        ("hf://lab/private/model.pt", "hf_notthetoken",
         f"no such repository, or a private one (HTTP 404): {HINT} (HF_TOKEN set)"),
        ("hf://lab/zoo@v9/model.pt", None, "no such revision in the repository (HTTP 404)"),
        ("hf://lab/gated/model.pt", None, "access denied (HTTP 401): a gated repository, whose "
         f"conditions the token's account must accept on the Hub: {HINT} (none of them is set)"),
        ("hf://lab/gated/model.pt", "hf_notthetoken", "access denied (HTTP 403): a gated "
         f"repository, whose conditions the token's account must accept on the Hub: {HINT} "
         "(HF_TOKEN set)"),
    ],
)  # fmt: skip
def test_a_refusal_is_one_line_naming_the_token(
    hub: Hub, run_bnstat: Run, url: str, token: str | None, message: str
) -> None:
    env = {"HF_ENDPOINT": hub.endpoint} | ({"HF_TOKEN": token} if token else {})
    result = run_bnstat(env, "check", url, "--format", "sarif")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"bnstat: error: {url}: {message}"]
    assert "hf_notthetoken" not in result.stdout + result.stderr


@pytest.mark.parametrize("repo", ["private", "gated"])
def test_the_token_opens_what_it_may(hub: Hub, run_bnstat: Run, repo: str) -> None:
    url = f"hf://lab/{repo}/model.pt"
    result = run_bnstat(
        {"HF_ENDPOINT": hub.endpoint, "HF_TOKEN": TOKEN}, "check", url, "--format", "json"
    )
    assert entries(result)[url]["findings"] == []
    assert TOKEN not in result.stdout + result.stderr
