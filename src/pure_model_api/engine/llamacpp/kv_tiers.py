"""Saved KV states of conversations, in a RAM tier and a disk tier, for the llama.cpp engine.

A state is one sequence's KV cache as llama.cpp writes it (`llama_state_seq_get_data`), saved
with the exact token ids it was computed from. It is found by tokens, never by conversation: a
prompt gets the state that shares the longest prefix with it, and uses only that shared prefix
(the engine restores the state, then cuts it back to where the prompt diverges). So a state is
only ever used for the tokens it holds, and two conversations that share a system prompt share
at most that.

RAM holds the most recently saved states up to its budget; every state saved is also written to
the disk tier (in a thread of its own, never on the inference thread), so a restart, even after
SIGKILL, finds it there. Each tier forgets its least recently used states past its budget. A
newer state of the same conversation subsumes the older one (its tokens extend them), which goes.

A disk file is `<dir>/<identity>/<key>.kv`: a header (magic, format version, the engine's
identity, token count, data size, CRC-32 of the data), the token ids, the data. The identity is a
hash of what the state format depends on (llama.cpp's build, the model file, the context's
parameters), so files of another model or build sit in another directory and are never read.
A file that is truncated, corrupt or foreign is skipped with one log line and deleted; it never
fails a turn. Files are written under a temporary name and renamed into place.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import struct
import threading
import zlib
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

MAGIC = b"PMAKV\x00\x01\x00"
HEADER = struct.Struct("<8s32sQQI")  # magic, identity digest, token count, data size, CRC-32 of data


@dataclass(eq=False)
class SavedState:
    key: str
    tokens: np.ndarray  # int32, the ids the state was computed from
    size: int  # bytes of state data
    data: bytearray | None = None  # held in RAM
    on_disk: bool = False
    dropped: bool = False  # subsumed or refused: not to be kept anywhere


@dataclass
class TierCounters:
    hits: int = 0
    restores: int = 0
    restore_seconds: float = 0.0
    evictions: int = 0


@dataclass
class KvTierOptions:
    identity: str  # what the state format depends on, as text
    ram_bytes: int
    disk_dir: Path | None
    disk_bytes: int


def common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    n = min(len(a), len(b))
    if n == 0:
        return 0
    differs = np.flatnonzero(a[:n] != b[:n])
    return int(differs[0]) if len(differs) else n


class KvTiers:
    def __init__(self, options: KvTierOptions):
        self.options = options
        self.digest = hashlib.sha256(options.identity.encode()).digest()
        self.ram: OrderedDict[str, SavedState] = OrderedDict()  # least recently used first
        self.disk: OrderedDict[str, SavedState] = OrderedDict()
        self.ram_bytes = self.disk_bytes = 0
        self.misses = 0
        self.pending_writes = 0  # handed to the writer thread, not yet on disk
        self.counters = {"ram": TierCounters(), "disk": TierCounters()}
        self.lock = threading.Lock()
        self.writer = ThreadPoolExecutor(1, thread_name_prefix="kv-writer")
        on_disk = options.disk_dir is not None and options.disk_bytes > 0
        self.directory = options.disk_dir / self.digest.hex()[:16] if on_disk else None
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._index_disk()

    # ---- finding and loading (inference thread) ----
    def best(self, prompt: list[int]) -> tuple[SavedState, int] | None:
        """The saved state sharing the longest prefix with `prompt`, and that length."""
        ids = np.asarray(prompt, dtype=np.int32)
        found, shared = None, 0
        with self.lock:
            for state in self._states():
                n = common_prefix(state.tokens, ids)
                if n > shared:
                    found, shared = state, n
        return (found, shared) if found is not None else None

    def miss(self) -> None:
        with self.lock:
            self.misses += 1

    def load(self, state: SavedState) -> bytearray | None:
        """The state's data, from RAM or disk (then kept in RAM again); None if it is gone or bad."""
        with self.lock:
            if state.data is not None and state.key in self.ram:
                self.ram.move_to_end(state.key)
                self.counters["ram"].hits += 1
                return state.data
        if not state.on_disk or self.directory is None:
            return None
        data = self._read(state)
        if data is None:
            return None
        with self.lock:
            self.counters["disk"].hits += 1
            if state.key in self.disk:
                self.disk.move_to_end(state.key)
                with contextlib.suppress(OSError):
                    os.utime(self._path(state.key))  # the order survives a restart
            self._keep_in_ram(state, data)
        return data

    def restored(self, tier: str, seconds: float) -> None:
        with self.lock:
            self.counters[tier].restores += 1
            self.counters[tier].restore_seconds += seconds

    def forget(self, state: SavedState, why: str) -> None:
        """Drop a state that cannot be used (llama.cpp refused it)."""
        log.warning("KV state %s dropped: %s", state.key[:12], why)
        with self.lock:
            self._drop(state)

    # ---- saving (inference thread hands over, the writer thread writes) ----
    def save(self, tokens: list[int], data: bytearray) -> bool:
        """Keep a sequence's state; False if no tier can hold one this large."""
        ids = np.asarray(tokens, dtype=np.int32)
        key = hashlib.sha256(self.digest + ids.tobytes()).hexdigest()
        state = SavedState(key, ids, len(data))
        with self.lock:
            for older in [s for s in self._states()
                          if len(s.tokens) <= len(ids) and common_prefix(s.tokens, ids) == len(s.tokens)]:
                self._drop(older)  # the new state holds everything the older one did
            self._keep_in_ram(state, data)
        to_disk = self.directory is not None and state.size <= self.options.disk_bytes
        if to_disk:
            with self.lock:
                self.pending_writes += 1
            self.writer.submit(self._write, state, data)
        return to_disk or state.data is not None

    def flush(self) -> None:
        """Wait for the disk writes handed over so far (shutdown)."""
        self.writer.submit(lambda: None).result()

    def close(self) -> None:
        self.writer.shutdown(wait=True)

    # ---- what operators see ----
    def stats(self) -> dict:
        with self.lock:
            tiers = {}
            for name, states, held in (("ram", self.ram, self.ram_bytes), ("disk", self.disk, self.disk_bytes)):
                c = self.counters[name]
                tiers[name] = {"states": len(states), "bytes": held, "hits": c.hits, "restores": c.restores,
                               "restore_seconds": round(c.restore_seconds, 4), "evictions": c.evictions}
            return {**tiers, "misses": self.misses, "pending_writes": self.pending_writes}

    # ---- the tiers' books (under the lock) ----
    def _states(self) -> list[SavedState]:
        """Every state once (one on disk and still in RAM is in both)."""
        return list({**self.disk, **self.ram}.values())

    def _keep_in_ram(self, state: SavedState, data: bytearray) -> None:
        if state.size > self.options.ram_bytes:
            return
        if state.key in self.ram:
            self.ram.move_to_end(state.key)
            return
        state.data = data
        self.ram[state.key] = state
        self.ram_bytes += state.size
        while self.ram_bytes > self.options.ram_bytes:
            _, old = self.ram.popitem(last=False)
            self.ram_bytes -= old.size
            old.data = None
            self.counters["ram"].evictions += 1

    def _drop(self, state: SavedState) -> None:
        state.dropped = True
        if self.ram.pop(state.key, None) is not None:
            self.ram_bytes -= state.size
        state.data = None
        if self.disk.pop(state.key, None) is not None:
            self.disk_bytes -= state.size
            self._path(state.key).unlink(missing_ok=True)
        state.on_disk = False

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.kv"

    # ---- the disk tier ----
    def _write(self, state: SavedState, data: bytearray) -> None:
        try:
            self._write_file(state, data)
        finally:
            with self.lock:
                self.pending_writes -= 1

    def _write_file(self, state: SavedState, data: bytearray) -> None:
        path = self._path(state.key)
        temporary = path.with_suffix(f".tmp{os.getpid()}")
        try:
            with open(temporary, "wb") as out:
                out.write(HEADER.pack(MAGIC, self.digest, len(state.tokens), state.size, zlib.crc32(data)))
                out.write(state.tokens.tobytes())
                out.write(data)
            os.replace(temporary, path)
        except OSError as error:
            log.warning("KV state %s not written to disk: %s", state.key[:12], error)
            temporary.unlink(missing_ok=True)
            return
        with self.lock:
            if state.dropped:  # subsumed by a newer state while it was being written
                path.unlink(missing_ok=True)
                return
            state.on_disk = True
            self.disk[state.key] = state
            self.disk_bytes += state.size
            self._trim_disk()

    def _trim_disk(self) -> None:
        while self.disk_bytes > self.options.disk_bytes:
            _, old = self.disk.popitem(last=False)
            self.disk_bytes -= old.size
            old.on_disk = False
            self._path(old.key).unlink(missing_ok=True)
            self.counters["disk"].evictions += 1

    def _read_header(self, path: Path, whole: bool) -> tuple[SavedState, bytearray | None] | None:
        """The state a file holds (and its data, if `whole`); None, with the file deleted, if it is bad."""
        try:
            with open(path, "rb") as source:
                magic, digest, count, size, crc = HEADER.unpack(source.read(HEADER.size))
                if magic != MAGIC or digest != self.digest:
                    raise ValueError("not a state file of this model and build")
                if path.stat().st_size != HEADER.size + 4 * count + size:
                    raise ValueError("truncated or padded")
                tokens = np.frombuffer(source.read(4 * count), dtype=np.int32)
                data = bytearray(size) if whole else None
                if data is not None and source.readinto(data) != size:
                    raise ValueError("truncated")
            if data is not None and zlib.crc32(data) != crc:
                raise ValueError("its data does not match its checksum")
            if hashlib.sha256(self.digest + tokens.tobytes()).hexdigest() != path.stem:
                raise ValueError("its tokens do not match its name")
        except (OSError, ValueError, struct.error) as error:
            log.warning("KV state file %s skipped and deleted: %s", path.name, error)
            path.unlink(missing_ok=True)
            return None
        return SavedState(path.stem, tokens.copy(), size, on_disk=True), data

    def _read(self, state: SavedState) -> bytearray | None:
        read = self._read_header(self._path(state.key), whole=True)
        if read is None:
            with self.lock:
                if self.disk.pop(state.key, None) is not None:
                    self.disk_bytes -= state.size
                state.on_disk = False
            return None
        return read[1]

    def _index_disk(self) -> None:
        """The states a previous run left, least recently used first; half-written files go."""
        for leftover in self.directory.glob("*.tmp*"):
            leftover.unlink(missing_ok=True)
        files = sorted(self.directory.glob("*.kv"), key=lambda p: p.stat().st_mtime)
        for path in files:
            read = self._read_header(path, whole=False)
            if read is not None:
                state, _ = read
                self.disk[state.key] = state
                self.disk_bytes += state.size
        self._trim_disk()
        if self.disk:
            log.info("KV disk tier: %d saved conversation states (%.1f MB) in %s", len(self.disk),
                     self.disk_bytes / 1e6, self.directory)
