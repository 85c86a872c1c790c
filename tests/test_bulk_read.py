"""`bulk_read`: many tensors read at once give exactly what reading each one gives."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bnstat.bulk_read import GAP, read_flat
from bnstat.dtypes import DTYPES
from bnstat.errors import CheckpointError
from bnstat.stages.find_state_dicts import find_state_dicts
from bnstat.stages.open_checkpoint import open_checkpoint
from bnstat.tensor_ref import FileRegion, MemoryRegion, OpenFile, TensorRef


def _one_by_one(refs: list[TensorRef]) -> np.ndarray:
    parts = [ref.read().astype(np.float64).reshape(-1) for ref in refs]
    return np.concatenate(parts) if parts else np.zeros(0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_a_files_tensors_read_together_equal_each_read_alone(write_pt, write_st, dtype):
    generator = torch.Generator().manual_seed(0)
    tensors = {f"t{i}": torch.randn(i % 7, generator=generator).to(dtype) for i in range(40)}
    tensors["big"] = torch.randn(3 * GAP, generator=generator).to(dtype)  # a run of its own
    tensors["count"] = torch.tensor(17)
    tensors["grid"] = torch.randn(4, 6, generator=generator).to(dtype)
    tensors["strided"] = torch.randn(6, 4, generator=generator).to(dtype).t()  # a view
    for path in (write_pt(tensors), write_st({k: v.contiguous() for k, v in tensors.items()})):
        with open_checkpoint(path) as raw:
            (state,) = find_state_dicts(raw)
            refs = list(state.tensors.values())
            shuffled = [refs[i] for i in np.random.default_rng(1).permutation(len(refs))]
            for order in (refs, shuffled, shuffled[::3]):
                np.testing.assert_array_equal(read_flat(order), _one_by_one(order))


def test_tensors_of_several_files_and_memory_mix(tmp_path):
    data = np.arange(64, dtype=">f4").tobytes()  # big-endian, as an old torch file holds it
    path = tmp_path / "raw.bin"
    path.write_bytes(data)
    file = OpenFile(path)
    try:
        f4 = DTYPES["float32"]
        refs = [
            TensorRef(f4, (8,), FileRegion(file, 0, 32), 0, None, True),
            TensorRef(f4, (4,), MemoryRegion(np.arange(4, dtype="<f4").tobytes())),
            TensorRef(f4, (2, 3), FileRegion(file, 128, 128), 5, None, True),
            TensorRef(f4, (), FileRegion(file, 64, 4), 0, (), True),
        ]
        np.testing.assert_array_equal(read_flat(refs), _one_by_one(refs))
        np.testing.assert_array_equal(read_flat([]), np.zeros(0))
        past = TensorRef(f4, (9,), FileRegion(file, 0, 32), 0, None, True)
        with pytest.raises(CheckpointError, match=r"reads bytes 0\.\.36 of a storage of 32 bytes"):
            read_flat([refs[0], past])
    finally:
        file.close()
