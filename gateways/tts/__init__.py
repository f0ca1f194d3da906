"""Offline text to speech: eSpeak NG from the `espeakng-loader` wheel, rendered as G.711 frames.

No network, no system package: the library and its voices (nl, fr, de, en and more) ship in the
wheel. Rendering is slow next to a call (tens of milliseconds per sentence), so callers render
once per message and language and keep the frames. See docs/voice.md.
"""

from gateways.tts.espeak import LANGUAGES, Espeak, TtsError, render_prompt

__all__ = ["LANGUAGES", "Espeak", "TtsError", "render_prompt"]
