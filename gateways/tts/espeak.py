"""eSpeak NG through ctypes: text in, 8 kHz linear samples out, then G.711 frames."""

from __future__ import annotations

import ctypes
import threading
from typing import Any, ClassVar

import espeakng_loader  # type: ignore[import-untyped]
import numpy as np
import numpy.typing as npt

from gateways.sip import g711
from gateways.sip.rtp import FRAME_SAMPLES
from gateways.sip.uac import Prompt

#: Our languages and the eSpeak NG voice that speaks each.
LANGUAGES = {"nl": "nl", "fr": "fr-be", "de": "de", "en": "en"}

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_RATE_PARAMETER = 1  # espeakRATE, words per minute
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)
#: Output rate of the telephone network.
RATE_HZ = 8000


class TtsError(Exception):
    """Text could not be spoken (unknown language, library failure)."""


class Espeak:
    """One eSpeak NG instance; the library is global state, so calls are serialised."""

    _lock = threading.Lock()
    #: The library's one callback and sample rate, set by the first instance of the process: a
    #: second espeak_SetSynthCallback would steal the audio of instances made before it, and a
    #: callback freed with its instance would leave the library calling freed memory.
    _callback: ClassVar[Any] = None
    _sample_rate: ClassVar[int] = 0
    _chunks: ClassVar[list[npt.NDArray[np.int16]]] = []

    def __init__(self, *, words_per_minute: int = 160) -> None:
        self._words_per_minute = words_per_minute
        self._lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self._lib.espeak_Initialize.restype = ctypes.c_int
        self._lib.espeak_Initialize.argtypes = [
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_int,
        ]
        self._lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self._lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        with self._lock:
            if Espeak._callback is None:
                rate = self._lib.espeak_Initialize(
                    _AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0
                )
                if rate <= 0:
                    raise TtsError(f"eSpeak NG failed to initialise ({rate})")
                Espeak._sample_rate = int(rate)
                Espeak._callback = _SYNTH_CALLBACK(Espeak._collect)
                self._lib.espeak_SetSynthCallback(Espeak._callback)
        self.sample_rate = Espeak._sample_rate

    @staticmethod
    def _collect(wav: ctypes._Pointer[ctypes.c_short], count: int, _events: int) -> int:
        if count > 0:
            Espeak._chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).astype(np.int16))
        return 0

    def speak(self, *, text: str, language: str) -> npt.NDArray[np.int16]:
        """Samples of `text` spoken in `language`, at 8 kHz."""
        voice = LANGUAGES.get(language)
        if voice is None:
            raise TtsError(f"language: no voice for {language!r} (have {sorted(LANGUAGES)})")
        data = text.encode()
        with self._lock:
            Espeak._chunks = []
            if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise TtsError(f"language: eSpeak NG has no voice {voice!r}")
            # Per synthesis: the rate is the library's global state, and a voice may reset it.
            self._lib.espeak_SetParameter(_RATE_PARAMETER, self._words_per_minute, 0)
            status = self._lib.espeak_Synth(
                data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
            )
            if status != 0:
                raise TtsError(f"eSpeak NG could not synthesise ({status})")
            chunks, Espeak._chunks = Espeak._chunks, []
        pcm = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
        return resample(pcm, source_hz=self.sample_rate, target_hz=RATE_HZ)


def resample(
    pcm: npt.NDArray[np.int16], *, source_hz: int, target_hz: int
) -> npt.NDArray[np.int16]:
    """Low-pass below the target's Nyquist frequency, then interpolate onto the target grid."""
    if source_hz == target_hz or pcm.size == 0:
        return pcm.astype(np.int16)
    signal = pcm.astype(np.float64)
    if target_hz < source_hz:
        cutoff = 0.45 * target_hz / source_hz
        taps = np.arange(-64, 65)
        kernel = 2 * cutoff * np.sinc(2 * cutoff * taps) * np.hamming(taps.size)
        signal = np.convolve(signal, kernel / kernel.sum(), mode="same")
    n_out = int(signal.size * target_hz / source_hz)
    positions = np.arange(n_out) * (source_hz / target_hz)
    out = np.interp(positions, np.arange(signal.size), signal)
    clipped: npt.NDArray[np.int16] = np.clip(np.rint(out), -32768, 32767).astype(np.int16)
    return clipped


def render_prompt(samples: npt.NDArray[np.int16], *, pause_s: float = 0.5) -> Prompt:
    """8 kHz samples (with a pause after, so the repeat is heard apart) as 20 ms G.711 frames."""
    pad = (-samples.size) % FRAME_SAMPLES + int(pause_s * RATE_HZ) // FRAME_SAMPLES * FRAME_SAMPLES
    full = np.concatenate([samples.astype(np.int16), np.zeros(pad, dtype=np.int16)])
    alaw, ulaw = g711.alaw_encode(full), g711.ulaw_encode(full)
    step = FRAME_SAMPLES
    return Prompt(
        pcma=tuple(alaw[i : i + step] for i in range(0, len(alaw), step)),
        pcmu=tuple(ulaw[i : i + step] for i in range(0, len(ulaw), step)),
    )
