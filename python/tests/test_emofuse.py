"""The Python package against the CLI it wraps: same predictions, same features, same errors."""

import json
import os
import pathlib
import subprocess
import threading

import numpy as np
import onnxruntime
import pytest

import emofuse

ROOT = pathlib.Path(__file__).resolve().parents[2]
CLI = os.environ.get("EMOFUSE_BIN", str(ROOT / "target" / "debug" / "emofuse"))
CLIPS = sorted(str(p) for p in (ROOT / "examples" / "ravdess-mini").rglob("*.flac"))


def cli(*args):
    return subprocess.run([CLI, *args], check=True, capture_output=True, text=True).stdout


def test_predictions_equal_the_cli():
    lines = [json.loads(line) for line in cli("predict", "--json", *CLIPS).splitlines()]
    assert len(lines) == len(CLIPS) == 4
    for clip, line in zip(CLIPS, lines):
        assert emofuse.predict(clip) == line
    model = emofuse.Model("default")
    assert model.labels == lines[0]["labels"]
    assert model.predict_batch(CLIPS) == lines


def test_an_array_is_predicted_as_its_file():
    samples, rate = emofuse.load_audio(CLIPS[0])
    assert samples.dtype == np.float32 and samples.ndim == 1 and rate == 16000
    from_file = emofuse.predict(CLIPS[0])
    from_array = emofuse.predict(samples, sample_rate=rate)
    assert from_array["path"] == "array"
    assert from_array["label"] == from_file["label"]
    np.testing.assert_allclose(from_array["probabilities"], from_file["probabilities"], atol=1e-6)


def test_features_equal_the_cli_npy(tmp_path):
    npy = tmp_path / "f.npy"
    cli("features", CLIPS[1], "--npy", str(npy))
    samples, rate = emofuse.load_audio(CLIPS[1])
    ours = emofuse.features(samples, rate)
    assert ours.dtype == np.float32 and ours.shape[0] == 42
    np.testing.assert_array_equal(ours, np.load(npy))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int16])
def test_any_float_dtype_and_int16_mono_or_channels_last(dtype):
    samples, rate = emofuse.load_audio(CLIPS[2])
    want = emofuse.predict(samples, rate)["probabilities"]
    array = (samples * 32768).clip(-32768, 32767).astype(np.int16) if dtype == np.int16 else samples.astype(dtype)
    for layout in (array, np.stack([array, array], axis=1)):
        got = emofuse.predict(layout, sample_rate=rate)["probabilities"]
        np.testing.assert_allclose(got, want, atol=2e-3)


def test_resampled_arrays_and_their_features():
    samples, _ = emofuse.load_audio(CLIPS[3])
    at_8k = samples[::2]
    assert emofuse.features(at_8k, 8000).shape[0] == 42
    assert emofuse.predict(at_8k, sample_rate=8000)["label"] in emofuse.Model().labels


def test_bad_input_raises_with_the_cli_message(tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF1234WAVEfmt ")
    with pytest.raises(ValueError, match="broken.wav: corrupt or truncated"):
        emofuse.predict(bad)
    with pytest.raises(FileNotFoundError, match="missing.wav: no such file"):
        emofuse.load_audio(tmp_path / "missing.wav")
    with pytest.raises(ValueError, match="silent"):
        emofuse.predict(np.zeros(16000, dtype=np.float32), sample_rate=16000)
    with pytest.raises(ValueError, match="NaN"):
        emofuse.features(np.full(16000, np.nan), 16000)
    with pytest.raises(ValueError, match="sample_rate is needed"):
        emofuse.predict(np.zeros(16000))
    with pytest.raises(ValueError, match="dtype"):
        emofuse.predict(np.zeros(16000, dtype=np.int32), sample_rate=16000)
    with pytest.raises(ValueError, match="no model named"):
        emofuse.Model("nonesuch")


def test_threads_share_a_model():
    model = emofuse.Model("default")
    want = [model.predict(clip) for clip in CLIPS]
    results = {}

    def run(i):
        results[i] = model.predict(CLIPS[i % len(CLIPS)])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [results[i] for i in range(8)] == [want[i % len(CLIPS)] for i in range(8)]


def test_the_onnx_export_gives_emofuse_probabilities(tmp_path):
    path = tmp_path / "default.onnx"
    cli("export", "--onnx", str(path))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta()
    model = emofuse.Model("default")
    assert json.loads(meta.custom_metadata_map["labels"]) == model.labels
    assert "feature extraction is not in this graph" in meta.description
    for clip in CLIPS:
        samples, rate = emofuse.load_audio(clip)
        features = model.features(samples, rate)[np.newaxis]
        (probabilities,) = session.run(["probabilities"], {"features": features})
        want = emofuse.predict(clip)["probabilities"]
        np.testing.assert_allclose(probabilities[0], want, atol=1e-4)
