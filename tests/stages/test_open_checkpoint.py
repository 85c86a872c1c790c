"""`stages.open_checkpoint`: each container goes to its reader, and a file already
sniffed is not sniffed again (what it sniffed as, error included, is what counts)."""

from __future__ import annotations

import pytest
from zoo import SAMPLES

from bnstat.errors import CheckpointError
from bnstat.readers.base import CheckpointFormat
from bnstat.readers.sniff import Container, sniff
from bnstat.stages.open_checkpoint import open_checkpoint, reader

FORMATS = {
    "healthy.pt": CheckpointFormat.TORCH_ZIP,
    "scripted.pt": CheckpointFormat.TORCHSCRIPT,
    "digits.pt2": CheckpointFormat.PT2,
    "legacy.pt": CheckpointFormat.TORCH_LEGACY,
    "healthy.safetensors": CheckpointFormat.SAFETENSORS,
    "sharded/model.safetensors.index.json": CheckpointFormat.SAFETENSORS,
    "digits.onnx": CheckpointFormat.ONNX,
    "pickled_state_dict.pkl": CheckpointFormat.PICKLE,
}


@pytest.mark.parametrize("container", list(Container))
def test_every_container_has_a_reader(container):
    assert callable(reader(container))


@pytest.mark.parametrize("name", list(FORMATS))
def test_each_sample_is_read_by_the_reader_of_its_content(name):
    with open_checkpoint(SAMPLES / name) as raw:
        assert raw.format is FORMATS[name]
    with open_checkpoint(SAMPLES / name, sniff(SAMPLES / name)) as raw:
        assert raw.format is FORMATS[name]


def test_what_a_file_sniffed_as_is_what_opens_it(tmp_path):
    with pytest.raises(CheckpointError, match="said before"):
        open_checkpoint(SAMPLES / "healthy.pt", CheckpointError("said before"))
    with pytest.raises(CheckpointError):  # a zip read as safetensors: that reader's error
        open_checkpoint(SAMPLES / "healthy.pt", Container.SAFETENSORS)
