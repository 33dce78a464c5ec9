"""The KV tiers' books, on real files: states found by the tokens they hold, bounds per tier, a newer
state of a conversation replacing the older, and bad files skipped (the engine side is
tests/e2e/test_kv_tiers.py)."""

from pure_model_api.engine.llamacpp.kv_tiers import KvTierOptions, KvTiers


def tiers(tmp_path, ram: int = 1 << 20, disk: int = 1 << 20, identity: str = "model A") -> KvTiers:
    return KvTiers(KvTierOptions(identity, ram, tmp_path, disk))


def state(n: int, fill: int = 1) -> bytearray:
    return bytearray([fill]) * n


def test_the_longest_shared_prefix_wins_and_a_newer_turn_replaces_the_older(tmp_path):
    books = tiers(tmp_path)
    books.save([1, 2, 3], state(100))
    books.save([1, 2, 9, 9], state(100, 2))
    found, shared = books.best([1, 2, 9, 9, 5])
    assert shared == 4 and bytes(books.load(found)) == bytes(state(100, 2))
    assert books.best([7, 8]) is None
    books.save([1, 2, 3, 4, 5], state(150, 3))  # the next turn of [1, 2, 3]
    books.flush()
    assert books.stats()["ram"]["states"] == 2 and books.stats()["disk"]["states"] == 2
    assert len(list(tmp_path.glob("*/*.kv"))) == 2


def test_each_tier_keeps_to_its_budget_least_recently_used_first(tmp_path):
    books = tiers(tmp_path, ram=250, disk=350)
    for n in range(4):
        books.save([n, n], state(100, n))
    books.flush()
    counts = books.stats()
    assert counts["ram"]["states"] == 2 and counts["ram"]["bytes"] <= 250 and counts["ram"]["evictions"] == 2
    assert counts["disk"]["states"] == 3 and counts["disk"]["evictions"] == 1
    found, _ = books.best([1, 1])  # gone from RAM, still on disk
    assert found.data is None and bytes(books.load(found)) == bytes(state(100, 1))
    assert books.best([0, 0]) is None  # gone from both


def test_a_restart_finds_the_states_and_bad_files_are_deleted(tmp_path):
    books = tiers(tmp_path)
    for n in range(3):
        books.save([n] * 5, state(64, n))
    books.close()
    first, second, third = sorted(tmp_path.glob("*/*.kv"))
    second.write_bytes(second.read_bytes()[:-10])  # truncated
    data = bytearray(third.read_bytes())
    data[-1] ^= 1  # corrupt: found by its checksum when read
    third.write_bytes(bytes(data))
    (first.parent / "leftover.tmp123").write_bytes(b"half")
    again = tiers(tmp_path)
    assert again.stats()["disk"]["states"] == 2 and not second.exists()
    assert not (first.parent / "leftover.tmp123").exists()
    corrupt = next(s for s in again.disk.values() if s.key == third.stem)
    assert again.load(corrupt) is None and not third.exists()
    survivor = next(s for s in again.disk.values() if s.key == first.stem)
    assert again.load(survivor) is not None


def test_another_model_never_reads_these_states(tmp_path):
    books = tiers(tmp_path)
    books.save([1, 2, 3], state(64))
    books.close()
    other = tiers(tmp_path, identity="model B")
    assert other.best([1, 2, 3]) is None
    assert len(list(tmp_path.glob("*/*.kv"))) == 1  # and leaves them alone
