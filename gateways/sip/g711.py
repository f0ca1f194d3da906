"""G.711 A-law and mu-law (ITU-T G.711), vectorised with numpy, bit-exact with the reference."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Samples = npt.NDArray[np.int16]

_ALAW_SEG_END = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF], dtype=np.int32)
_ULAW_SEG_END = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF], dtype=np.int32)
_ULAW_BIAS = 0x84
_ULAW_CLIP = 32635


def _segment(ends: npt.NDArray[np.int32], values: npt.NDArray[np.int32]) -> npt.NDArray[np.int32]:
    return np.searchsorted(ends, values, side="left").astype(np.int32)


def alaw_encode(samples: Samples) -> bytes:
    """Linear 16-bit samples to A-law bytes."""
    pcm = samples.astype(np.int32) >> 3
    mask = np.where(pcm >= 0, 0xD5, 0x55).astype(np.int32)
    pcm = np.where(pcm >= 0, pcm, -pcm - 1)
    seg = _segment(_ALAW_SEG_END, pcm)
    shift = np.where(seg < 2, 1, seg)
    aval = (seg << 4) | ((pcm >> shift) & 0x0F)
    out = np.where(seg >= 8, 0x7F, aval) ^ mask
    return bytes(out.astype(np.uint8))


def ulaw_encode(samples: Samples) -> bytes:
    """Linear 16-bit samples to mu-law bytes."""
    pcm = samples.astype(np.int32) >> 2
    mask = np.where(pcm < 0, 0x7F, 0xFF).astype(np.int32)
    pcm = np.minimum(np.abs(pcm), _ULAW_CLIP >> 2) + (_ULAW_BIAS >> 2)
    seg = _segment(_ULAW_SEG_END, pcm)
    uval = (seg << 4) | ((pcm >> (seg + 1)) & 0x0F)
    out = np.where(seg >= 8, 0x7F, uval) ^ mask
    return bytes(out.astype(np.uint8))


def _alaw_table() -> Samples:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    t = np.where(
        seg == 0, t + 8, np.where(seg == 1, t + 0x108, (t + 0x108) << np.maximum(seg - 1, 0))
    )
    return np.where(a & 0x80, t, -t).astype(np.int16)


def _ulaw_table() -> Samples:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + _ULAW_BIAS) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, _ULAW_BIAS - t, t - _ULAW_BIAS).astype(np.int16)


_ALAW = _alaw_table()
_ULAW = _ulaw_table()


def alaw_decode(data: bytes) -> Samples:
    """A-law bytes to linear 16-bit samples."""
    return _ALAW[np.frombuffer(data, dtype=np.uint8)]


def ulaw_decode(data: bytes) -> Samples:
    """Mu-law bytes to linear 16-bit samples."""
    return _ULAW[np.frombuffer(data, dtype=np.uint8)]
