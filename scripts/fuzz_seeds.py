#!/usr/bin/env python3
"""Writes the small seed corpora of the fuzz targets (fuzz/seeds/<target>/) from the
committed fixtures, the real originals in ../shared/data and two tiny checkpoints made
here with torch (zip and legacy pickle `pytorch_model.bin`, safetensors).

Dependencies: scripts/requirements-torch.txt. Run from the repository root:
    python3 scripts/fuzz_seeds.py
"""
import io
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fuzz" / "seeds"
DATA = ROOT.parent / "shared" / "data"
LIMIT = 24_000  # bytes per seed: truncated real files are good seeds too


def put(target, name, data):
    path = OUT / target / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[:LIMIT] if target not in ("ctranslate2",) else data)


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    fixtures = ROOT / "tests" / "fixtures"
    for f in sorted(fixtures.iterdir()):
        put("audio_bytes", f.name, f.read_bytes())
    for f in sorted((DATA / "originals").rglob("*.wav"))[:4]:
        put("audio_bytes", "original-" + f.name, f.read_bytes())
    flac = (fixtures / "tone.flac").read_bytes()
    boundary = b"B"
    form = (b"--" + boundary + b"\r\nContent-Disposition: form-data; name=\"file\"; filename=\"t.flac\"\r\n\r\n"
            + flac[:6000] + b"\r\n--" + boundary + b"--\r\n")
    put("upload", "multipart", b"\x00" + form)
    put("upload", "raw", b"\x01" + (fixtures / "tone.mp3").read_bytes())
    put("manifest", "csv", b"\x00path,label,speaker\na.wav,angry,1\nb.flac,sad,2\n")
    put("manifest", "jsonl", b"\x01" + json.dumps({"path": "a.wav", "label": "happy", "speaker": "s1"}).encode() + b"\n")
    model = ROOT / "models" / "default"
    put("model_files", "config", b"\x00" + (model / "config.json").read_bytes())
    put("model_files", "weights", b"\x01" + (model / "model.safetensors").read_bytes())
    tensors = {"encoder.layer.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3),
               "encoder.layer.bias": torch.zeros(2, dtype=torch.float16)}
    put("checkpoint", "safetensors", save(tensors))
    zipped = io.BytesIO()
    torch.save(tensors, zipped)
    put("checkpoint", "torch-zip.bin", zipped.getvalue())
    legacy = io.BytesIO()
    torch.save(tensors, legacy, _use_new_zipfile_serialization=False)
    put("checkpoint", "torch-legacy.bin", legacy.getvalue())
    put("ctranslate2", "tiny-whisper.bin", (ROOT / "tests" / "golden" / "whisper" / "ct2" / "model.bin").read_bytes())


if __name__ == "__main__":
    main()
