"""Counter-based noise: the same (seed, service, env, stream, minute) always gives the same draw."""

from __future__ import annotations

import hashlib

import numpy as np
from numpy.typing import NDArray

__all__ = ["normal", "stream_key", "uniform"]

_MASK64 = (1 << 64) - 1
# Irwin–Hall with four 16-bit uniforms: a sum of four U(0,1) has variance 1/3.
_IRWIN_HALL_STD = (4 / 12) ** 0.5


def stream_key(seed: int, *parts: str) -> int:
    """A 64-bit key for one noise stream.

    hashlib rather than `hash()`: string hashes are salted per process, and the numbers must
    survive a restart.
    """
    text = "\x1f".join([str(seed), *parts]).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little")


def _splitmix64(values: NDArray[np.uint64]) -> NDArray[np.uint64]:
    # uint64 arithmetic wraps, which is what the mixer relies on.
    z = values + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _hashes(key: int, counters: NDArray[np.int64]) -> NDArray[np.uint64]:
    with np.errstate(over="ignore"):
        mixed = counters.astype(np.uint64) * np.uint64(0xD1B54A32D192ED03)
        return _splitmix64(mixed ^ np.uint64(key & _MASK64))


def uniform(key: int, counters: NDArray[np.int64]) -> NDArray[np.float64]:
    """One U(0,1) draw per counter (open interval)."""
    bits = _hashes(key, counters) >> np.uint64(11)
    return (bits.astype(np.float64) + 0.5) / float(1 << 53)


def normal(key: int, counters: NDArray[np.int64]) -> NDArray[np.float64]:
    """One approximately standard-normal draw per counter, bounded to about ±3.5.

    Only additions and divisions, no exp/log/cos: those may take a SIMD path whose last bit
    depends on the array's length, and a value must not change with the query that asked.
    """
    h = _hashes(key, counters)
    total = np.zeros(h.shape, dtype=np.float64)
    for shift in (0, 16, 32, 48):
        part = (h >> np.uint64(shift)) & np.uint64(0xFFFF)
        total += (part.astype(np.float64) + 0.5) / 65536.0
    return (total - 2.0) / _IRWIN_HALL_STD
