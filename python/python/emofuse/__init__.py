"""emofuse from Python: the emotion of a voice, the same answers as the CLI.

    import emofuse
    emofuse.predict("clip.wav")                    # {'label': 'angry', 'confidence': ..., ...}
    model = emofuse.Model("default")               # or "whisper", or a model folder
    model.predict(samples, sample_rate=44100)      # a numpy array
    emofuse.features(samples, 16000)               # [42, frames]: MFCC 1-40, ZCR, RMS

Arrays may be of any float dtype, or int16 (scaled by 1/32768); 1-D (mono) or
2-D with channels on the LAST axis, ``(samples, channels)`` as soundfile reads
them (channels are averaged). Bad audio raises ``ValueError`` and a missing
file ``FileNotFoundError``, with the CLI's messages. The model runs without
the GIL, so threads can predict in parallel.
"""

import json
import os

import numpy as np

from ._emofuse import Model as _Model
from ._emofuse import features as _features
from ._emofuse import load_audio as _load_audio

__all__ = ["Model", "predict", "features", "load_audio"]


def _mono_float32(samples):
    """Any float or int16 array, mono or (samples, channels) → contiguous mono float32."""
    array = np.asarray(samples)
    if array.dtype == np.int16:
        array = array.astype(np.float32) / 32768.0
    elif np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float32, copy=False)
    else:
        raise ValueError(f"array: dtype {array.dtype} is not supported (want a float dtype or int16)")
    if array.ndim == 2:
        array = array.mean(axis=1, dtype=np.float32)
    elif array.ndim != 1:
        raise ValueError(f"array: {array.ndim} dimensions (want 1-D mono or 2-D (samples, channels))")
    return np.ascontiguousarray(array, dtype=np.float32)


def _is_path(source):
    return isinstance(source, (str, bytes, os.PathLike))


class Model:
    """A trained model: ``"default"``, ``"whisper"`` (needs scripts/get-whisper-base.sh) or a model folder."""

    def __init__(self, model="default"):
        self._model = _Model(os.fspath(model))

    @property
    def labels(self):
        """The classes, in the order of ``probabilities``."""
        return self._model.labels

    def predict(self, source, sample_rate=None):
        """The emotion of a file (path) or of an array of samples at ``sample_rate``:
        a dict like one line of ``emofuse predict --json``."""
        if _is_path(source):
            if sample_rate is not None:
                raise ValueError("sample_rate is for arrays; a file states its own")
            return json.loads(self._model.predict_file_json(os.fspath(source)))
        if sample_rate is None:
            raise ValueError("array: sample_rate is needed with an array of samples")
        return json.loads(self._model.predict_samples_json(_mono_float32(source), int(sample_rate), "array"))

    def features(self, samples, sample_rate):
        """This model's input: float32 ``[42, frames]`` raw frame features computed with
        the model's own settings (its level normalisation), before standardisation —
        the input of its ONNX export (``emofuse export --onnx``)."""
        return self._model.features(_mono_float32(samples), int(sample_rate))

    def predict_batch(self, sources, sample_rate=None):
        """``predict`` of each path or array, in order."""
        return [self.predict(source, sample_rate) for source in sources]


_models = {}


def predict(source, sample_rate=None, model="default"):
    """``Model(model).predict(source, sample_rate)``, with the model loaded once per name."""
    key = os.fspath(model)
    if key not in _models:
        _models[key] = Model(key)
    return _models[key].predict(source, sample_rate)


def features(samples, sample_rate):
    """Frame features as ``emofuse features --npy`` writes them: float32 ``[42, frames]``
    (MFCC 1-40, zero-crossing rate, RMS), librosa-compatible, after resampling to 16 kHz."""
    return _features(_mono_float32(samples), int(sample_rate))


def load_audio(path):
    """A file decoded as emofuse decodes it: ``(float32 mono samples, 16000)``."""
    return _load_audio(os.fspath(path))
