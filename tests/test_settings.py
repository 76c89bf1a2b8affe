"""bnlib.settings: the environment switches, and how many worker processes a machine can afford.

The CPU quota and memory limit are read from a fake cgroup folder built by each test, so the
tests check the parsing of both cgroup versions whatever machine runs them.
"""

import os

import pytest

from bnlib import settings

GiB = 2**30


@pytest.fixture
def cgroup(tmp_path, monkeypatch):
    """A fake /sys/fs/cgroup; write files into it with cgroup(name, text)."""
    monkeypatch.setattr(settings, "CGROUP_ROOT", tmp_path)
    monkeypatch.delenv(settings.WORKERS_ENV, raising=False)

    def write(name: str, text: str) -> None:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")

    return write


@pytest.fixture
def four_cpus(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)


@pytest.mark.parametrize(
    "files, expected",
    [
        ({}, 4),  # no cgroup files: the affinity mask
        ({"cpu.max": "max 100000"}, 4),  # v2, no quota
        ({"cpu.max": "100000 100000"}, 1),  # v2, one CPU's worth (Binder)
        ({"cpu.max": "250000 100000"}, 2),  # v2, 2.5 CPUs: two whole ones
        ({"cpu.max": "50000 100000"}, 1),  # v2, half a CPU: still one process
        ({"cpu.max": "800000 100000"}, 4),  # v2, a quota above the affinity
        ({"cpu/cpu.cfs_quota_us": "200000", "cpu/cpu.cfs_period_us": "100000"}, 2),  # v1
        ({"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}, 4),  # v1, no quota
    ],
)
def test_available_cpus_honours_the_cgroup_quota(cgroup, four_cpus, files, expected):
    for name, text in files.items():
        cgroup(name, text)
    assert settings.available_cpus() == expected


def test_available_memory_is_the_cgroup_limit_minus_its_usage(cgroup):
    cgroup("memory.max", str(2 * GiB))
    cgroup("memory.current", str(GiB // 2))
    assert settings.available_memory() == 2 * GiB - GiB // 2


def test_available_memory_reads_cgroup_v1(cgroup):
    cgroup("memory/memory.limit_in_bytes", str(2 * GiB))
    cgroup("memory/memory.usage_in_bytes", str(GiB))
    assert settings.available_memory() == GiB


def test_available_memory_without_a_limit_falls_back_to_the_system(cgroup):
    cgroup("memory.max", "max")
    cgroup("memory.current", str(GiB))
    with open("/proc/meminfo") as meminfo:
        line = next(line for line in meminfo if line.startswith("MemAvailable:"))
    system = int(line.split()[1]) * 1024
    assert abs(settings.available_memory() - system) < GiB  # it moves a little between reads


def test_default_workers_is_one_per_cpu_when_memory_allows(cgroup, four_cpus):
    cgroup("memory.max", str(16 * GiB))
    cgroup("memory.current", str(GiB))
    assert settings.default_workers() == 4


def test_default_workers_fit_in_the_free_memory(cgroup, four_cpus):
    # Binder: 2 GiB, the kernel already holds 1.3 GiB: room for one worker's WORKER_MEMORY
    cgroup("memory.max", str(2 * GiB))
    cgroup("memory.current", str(int(1.3 * GiB)))
    expected = (2 * GiB - int(1.3 * GiB)) // settings.WORKER_MEMORY
    assert settings.default_workers() == max(1, min(4, expected))


def test_default_workers_is_at_least_one(cgroup, four_cpus):
    cgroup("memory.max", str(GiB))
    cgroup("memory.current", str(GiB))
    assert settings.default_workers() == 1


def test_the_environment_sets_the_workers(cgroup, four_cpus, monkeypatch):
    monkeypatch.setenv(settings.WORKERS_ENV, "3")
    assert settings.default_workers() == 3


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_a_bad_workers_setting_says_what_to_write(cgroup, monkeypatch, value):
    monkeypatch.setenv(settings.WORKERS_ENV, value)
    with pytest.raises(ValueError, match="BNLIB_WORKERS must be a positive integer"):
        settings.default_workers()


@pytest.mark.parametrize("value, quick", [("1", True), ("yes", True), ("0", False), ("", False)])
def test_quick_switch(monkeypatch, value, quick):
    monkeypatch.setenv(settings.QUICK_ENV, value)
    assert settings.is_quick() is quick
    assert settings.full_or_quick("full", "short") == ("short" if quick else "full")


def test_torch_threads_sets_and_restores_the_count():
    import torch

    before = torch.get_num_threads()
    with settings.torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with settings.torch_threads(None):
        assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="positive"), settings.torch_threads(0):
        pass
