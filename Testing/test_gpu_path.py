"""GPU path pieces that can be checked anywhere, and a CUDA smoke test that runs where CUDA exists."""

import pytest
import torch

from DiffusionSegLib.diffusion.attention import auto_query_chunk
from DiffusionSegLib.volume.segmenter import MAX_AUTO_BATCH, batch_size_from_memory


def test_batch_size_from_measured_memory():
    gib = 2**30
    assert batch_size_from_memory(2 * gib, 20 * gib) == 8          # 0.8 × 20 GiB / 2 GiB
    assert batch_size_from_memory(2 * gib, 1 * gib) == 1           # never below one slice
    assert batch_size_from_memory(gib // 10, 100 * gib) == MAX_AUTO_BATCH


def test_capture_chunks_are_cache_sized_on_cpu_only():
    query = torch.zeros(8, 4096, 40, dtype=torch.bfloat16)
    key = torch.zeros(8, 4096, 40, dtype=torch.bfloat16)
    assert auto_query_chunk(query, key, 4) == 64      # 8 heads × 64 rows × 4096 keys × 4 B = 8 MiB
    assert auto_query_chunk(query, key, 2) == 128
    assert auto_query_chunk(query[:, :1], key[:, :16], 4) >= 16
    meta = torch.zeros(8, 4096, 40, device="meta")
    assert auto_query_chunk(meta, meta) is None       # not a CPU: no chunking unless asked


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_benchmark_reports_throughput_and_peak_memory(tmp_path):
    import json

    from DiffusionSegLib.cli.main import main

    output = tmp_path / "report.json"
    assert main(["benchmark", "--method", "adzus", "--model", "random:tiny-sd", "--device", "cuda", "--slices", "2",
                 "--batch-size", "0", "--output", str(output)]) == 0
    report = json.loads(output.read_text())
    assert report["dtype"] in ("bfloat16", "float16") and report["slices_per_second"] > 0
    assert report["peak_memory"]["kind"] == "cuda_max_allocated" and report["peak_memory"]["bytes"] > 0
