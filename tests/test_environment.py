"""What devmode reads about the machine it runs on."""

import torch

from devmode import environment


def write_caches(folder, cpu: int, caches: list[tuple[int, str, str]]) -> None:
    """Linux's /sys/devices/system/cpu/cpuN/cache as (level, size, shared_cpu_list) entries."""
    for index, (level, size, shared) in enumerate(caches):
        entry = folder / f"cpu{cpu}" / "cache" / f"index{index}"
        entry.mkdir(parents=True)
        (entry / "level").write_text(f"{level}\n")
        (entry / "size").write_text(size + "\n")
        (entry / "shared_cpu_list").write_text(shared + "\n")


def test_the_last_level_cache_is_the_highest_level_over_the_cpus_this_process_has(tmp_path):
    # two cores sharing one L3 (this week's machine): 32 MiB, not twice that
    for cpu in (0, 1):
        write_caches(
            tmp_path, cpu, [(1, "32K", str(cpu)), (2, "1024K", str(cpu)), (3, "32768K", "0-1")]
        )
    assert environment.last_level_cache_bytes({0, 1}, tmp_path) == 32 << 20
    assert environment.last_level_cache_bytes({0}, tmp_path) == 32 << 20


def test_cores_on_separate_caches_add_them_up_and_unreadable_entries_are_skipped(tmp_path):
    # an AMD EPYC whose two cores sit in two groups, each with its own L3
    write_caches(tmp_path, 0, [(2, "1024K", "0"), (3, "32768K", "0")])
    write_caches(tmp_path, 1, [(2, "1024K", "1"), (3, "32768K", "1")])
    assert environment.last_level_cache_bytes({0, 1}, tmp_path) == 64 << 20
    (tmp_path / "cpu1" / "cache" / "index1" / "size").write_text("garbled\n")  # skipped
    assert environment.last_level_cache_bytes({0, 1}, tmp_path) == 32 << 20
    assert environment.last_level_cache_bytes({5}, tmp_path, default=7) == 7
    assert environment.last_level_cache_bytes() > 0  # this machine's, or the default


def test_bf16_is_native_only_where_the_cpu_has_it_and_torch_may_use_it(monkeypatch):
    monkeypatch.setattr(environment, "cpu_description", lambda: "EPYC (avx2 avx512f avx512_bf16)")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    assert environment.cpu_has_native_bf16()
    # torch held to its AVX2 kernels (ATEN_CPU_CAPABILITY=avx2): emulated, as on an AVX2 CPU
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert not environment.cpu_has_native_bf16()
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    monkeypatch.setattr(torch.backends.mkldnn, "enabled", False)
    assert not environment.cpu_has_native_bf16()
    monkeypatch.setattr(torch.backends.mkldnn, "enabled", True)
    monkeypatch.setattr(environment, "cpu_description", lambda: "EPYC (avx avx2)")
    assert not environment.cpu_has_native_bf16()
    monkeypatch.setattr(environment, "cpu_description", lambda: "Xeon (avx512f amx_bf16)")
    assert environment.cpu_has_native_bf16()
