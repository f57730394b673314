#!/usr/bin/env python3
"""Writes the small audio fixtures in tests/fixtures/: a 1 s, 440 Hz tone at
amplitude 0.5 in every container emofuse decodes besides WAV.

Dependencies: see scripts/requirements-fixtures.txt (soundfile bundles
libsndfile >= 1.1, which writes MP3 and Ogg/Vorbis).
Run: python3 scripts/make_audio_fixtures.py
"""
from pathlib import Path

import numpy as np
import soundfile as sf

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures"


def tone(rate: int) -> np.ndarray:
    t = np.arange(rate) / rate
    return 0.5 * np.sin(2 * np.pi * 440.0 * t)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    mono = tone(16000)
    sf.write(OUT / "tone.flac", mono, 16000, subtype="PCM_16")
    sf.write(OUT / "tone.aiff", mono, 16000, subtype="PCM_16")
    sf.write(OUT / "tone.mp3", mono, 16000, format="MP3", subtype="MPEG_LAYER_III")
    sf.write(OUT / "tone.ogg", mono, 16000, format="OGG", subtype="VORBIS")
    stereo = tone(22050)
    sf.write(OUT / "tone_stereo_22050.wav", np.stack([stereo, stereo], axis=1), 22050, subtype="PCM_24")
    print("libsndfile", sf.__libsndfile_version__, "soundfile", sf.__version__)


if __name__ == "__main__":
    main()
