"""bnlib.timing: interleaved timing, the fold measurement, recorded results."""

import json

import pytest
import torch

from bnlib import timing
from bnlib.models import three_conv_net


def test_interleaved_alternates_and_counts_every_call():
    calls = []
    timing.interleaved(lambda: calls.append("a"), lambda: calls.append("b"), repeats=4, warmup=1)
    assert calls[:2] == ["a", "b"]                   # warm-up
    assert calls[2:] == ["a", "b", "b", "a", "a", "b", "b", "a"]


def test_interleaved_rejects_no_rounds():
    with pytest.raises(ValueError, match="positive"):
        timing.interleaved(lambda: None, lambda: None, repeats=0)


def test_fold_speedup_reports_each_batch_and_an_exact_fold():
    torch.manual_seed(0)
    model = three_conv_net(batch_norm=True).eval()
    report = timing.fold_speedup(model, batch_sizes=(2,), repeats=1, threads=1)
    assert [r["batch_size"] for r in report["results"]] == [2]
    assert report["max_abs_difference"] < 1e-4
    assert report["results"][0]["folded_ms"] > 0


def test_benchmark_result_reads_the_json_or_says_none(tmp_path):
    (tmp_path / "x.json").write_text(json.dumps({"ratio": 2.0}))
    assert timing.benchmark_result("x", tmp_path) == {"ratio": 2.0}
    assert timing.benchmark_result("missing", tmp_path) is None


def test_interleaved_can_take_the_seconds_each_call_reports():
    """A call that reports its own seconds (its epochs, not its set-up) is taken at its word."""
    reported = iter([4.0, 1.0, 2.0, 1.0, 6.0, 2.0])
    base, cand, ratio = timing.interleaved(lambda: next(reported), lambda: next(reported), 3,
                                           warmup=0, timed_by_caller=True)
    # rounds: (b=4, c=1), then candidate first (c=2, b=1), then (b=6, c=2)
    assert (base, cand, ratio) == (4.0, 2.0, 3.0)


CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 143
model name\t: Intel(R) Xeon(R) Processor
stepping\t: 8
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_tile amx_int8 avx512vl fma

processor\t: 1
vendor_id\t: OtherVendor
"""
LSCPU = """Model name:             Intel(R) Xeon(R) Processor
L1d cache:              96 KiB (2 instances)
L2 cache:               4 MiB (2 instances)
L3 cache:               105 MiB (1 instance)
NUMA node(s):           1
"""


def test_cpuinfo_facts_read_the_first_processor_and_its_vector_flags():
    facts = timing.cpuinfo_facts(CPUINFO)
    assert facts == {"vendor": "GenuineIntel", "model_name": "Intel(R) Xeon(R) Processor",
                     "family": "6", "model": "143", "stepping": "8",
                     "vector_flags": ["amx_int8", "amx_tile", "avx512_bf16", "avx512f",
                                      "avx512vl"]}
    assert timing.cpuinfo_facts("")["vector_flags"] == []


def test_lscpu_caches_keeps_the_cache_lines_only():
    assert timing.lscpu_caches(LSCPU) == {"L1d": "96 KiB (2 instances)",
                                          "L2": "4 MiB (2 instances)",
                                          "L3": "105 MiB (1 instance)"}


def test_processor_names_this_machine_and_torch_kernels():
    found = timing.processor()
    assert found["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert found["cpus"] >= 1
    assert set(found) >= {"vendor", "model_name", "family", "model", "stepping",
                          "vector_flags", "caches"}


def test_interleaved_rounds_keeps_every_round_and_interleaved_takes_their_medians():
    times = iter([3.0, 1.0, 2.0, 4.0, 6.0, 2.0])  # baseline, candidate, candidate, baseline, ...
    rounds = timing.interleaved_rounds(lambda: next(times), lambda: next(times), repeats=3,
                                       warmup=0, timed_by_caller=True)
    assert rounds == {"baseline": [3.0, 4.0, 6.0], "candidate": [1.0, 2.0, 2.0],
                      "ratios": [3.0, 2.0, 3.0]}
    times = iter([3.0, 1.0, 2.0, 4.0, 6.0, 2.0])
    assert timing.interleaved(lambda: next(times), lambda: next(times), repeats=3, warmup=0,
                              timed_by_caller=True) == (4.0, 2.0, 3.0)


def test_write_benchmark_json_makes_the_folder_and_round_trips(tmp_path, capsys):
    path = tmp_path / "results" / "x.json"
    timing.write_benchmark_json(path, {"ratio": 1.5, "runs": [1, 2]})
    assert json.loads(path.read_text()) == {"ratio": 1.5, "runs": [1, 2]}
    assert str(path) in capsys.readouterr().out
