#!/usr/bin/env python3
"""Golden librosa features for emofuse's parity tests (tests/golden/features/).

For each input (real clips from ../shared/data, and synthetic edge cases) it
writes librosa's MFCC (40), log-mel spectrogram (128 Slaney mels, power_to_db
with ref=1, amin=1e-10, top_db=80), zero-crossing rate and RMS, at 16 kHz with
n_fft=2048, hop_length=512, center=True, as raw little-endian float32 arrays,
plus index.json with shapes, parameters and library versions. Synthetic
inputs are stored too, so Rust reads exactly the samples librosa saw.

Dependencies: scripts/requirements-golden.txt
Run from the repository root: python3 scripts/golden_features.py
"""
import json
from pathlib import Path

import librosa
import numpy as np
import scipy
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
OUT = ROOT / "tests" / "golden" / "features"

SR = 16000
PARAMS = dict(n_fft=2048, hop_length=512, n_mels=128, n_mfcc=40, top_db=80.0)

REAL = {
    "ravdess_angry": "ravdess/Audio_Speech_Actors_01-24/Actor_01/03-01-05-02-01-01-01.flac",
    "ravdess_sad": "ravdess/Audio_Speech_Actors_01-24/Actor_24/03-01-04-01-02-02-24.flac",
    "tess_fear": "tess/TESS/OAF_Fear/OAF_food_fear.flac",
}


def synthetic() -> dict:
    rng = np.random.default_rng(20261124)
    t = np.arange(SR // 2) / SR
    tone = 0.5 * np.sin(2 * np.pi * 440.0 * t)
    return {
        "single_sample": np.array([0.5]),
        "shorter_than_frame": tone[:1000],
        "exactly_n_fft": tone[:2048] + 0.01 * rng.standard_normal(2048),
        "pure_tone": tone,
        "white_noise": 0.3 * rng.standard_normal(SR // 2),
        "silence": np.zeros(SR // 2),
        "clipping": np.clip(6.0 * tone, -1.0, 1.0),
        "dc_offset": 0.5 + 0.2 * np.sin(2 * np.pi * 300.0 * t),
    }


def features(y: np.ndarray) -> dict:
    p = PARAMS
    mel = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=p["n_fft"], hop_length=p["hop_length"], n_mels=p["n_mels"])
    return {
        "mfcc": librosa.feature.mfcc(y=y, sr=SR, n_mfcc=p["n_mfcc"], n_fft=p["n_fft"], hop_length=p["hop_length"], n_mels=p["n_mels"]),
        "log_mel": librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=p["top_db"]),
        "zcr": librosa.feature.zero_crossing_rate(y, frame_length=p["n_fft"], hop_length=p["hop_length"], center=True)[0],
        "rms": librosa.feature.rms(y=y, frame_length=p["n_fft"], hop_length=p["hop_length"], center=True)[0],
    }


def write(name: str, array: np.ndarray) -> dict:
    array = np.ascontiguousarray(array, dtype="<f4")
    (OUT / f"{name}.f32").write_bytes(array.tobytes())
    return {"file": f"{name}.f32", "shape": list(array.shape)}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    index = {
        "params": dict(sr=SR, **PARAMS, center=True, pad_mode="constant", window="hann", htk=False,
                       norm="slaney", amin=1e-10, ref=1.0, dct_type=2, dct_norm="ortho"),
        "versions": {"librosa": librosa.__version__, "numpy": np.__version__, "scipy": scipy.__version__,
                     "soundfile": sf.__version__},
        "cases": {},
    }
    inputs = {name: (sf.read(DATA / rel, dtype="float32")[0], rel) for name, rel in REAL.items()}
    inputs.update({name: (y.astype(np.float32), None) for name, y in synthetic().items()})
    for name, (y, source) in inputs.items():
        case = {"n_samples": int(len(y))}
        if source is None:
            case["input"] = write(f"{name}.input", y)
        else:
            case["source"] = source
        for key, value in features(y).items():
            case[key] = write(f"{name}.{key}", value)
        index["cases"][name] = case
    (OUT / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    print(f"wrote {len(index['cases'])} cases to {OUT}")


if __name__ == "__main__":
    main()
