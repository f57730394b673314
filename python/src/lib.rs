//! The compiled half of the `emofuse` Python package: the library's own
//! decoding, features and models behind a few functions. The Python half
//! (`python/emofuse/__init__.py`) turns arrays of any dtype and layout into
//! mono float32 and the JSON answers into dicts.

use std::path::PathBuf;
use std::sync::OnceLock;

use numpy::{PyArray1, PyArray2, PyReadonlyArray1};
use pyo3::exceptions::{PyFileNotFoundError, PyIsADirectoryError, PyOSError, PyValueError};
use pyo3::prelude::*;

use emofuse::audio::{self, AudioError, Waveform};
use emofuse::device::DeviceChoice;
use emofuse::features::{FeatureConfig, FeatureExtractor, FrameFeatures};
use emofuse::infer::{BuiltinModel, FilePrediction, InferError, Predictor};

/// The Python exception of an audio error, with the CLI's message.
fn audio_error(err: AudioError) -> PyErr {
    let message = err.to_string();
    match err {
        AudioError::NotFound { .. } => PyFileNotFoundError::new_err(message),
        AudioError::IsDirectory { .. } => PyIsADirectoryError::new_err(message),
        AudioError::Io { .. } => PyOSError::new_err(message),
        _ => PyValueError::new_err(message),
    }
}

fn infer_error(err: InferError) -> PyErr {
    match err {
        InferError::Audio(err) => audio_error(err),
        other => PyValueError::new_err(other.to_string()),
    }
}

/// Mono float32 samples at `sample_rate` → a checked 16 kHz waveform.
fn waveform(samples: PyReadonlyArray1<'_, f32>, sample_rate: u32, name: &str) -> PyResult<Waveform> {
    audio::from_samples(samples.as_slice()?.to_vec(), sample_rate, name).map_err(audio_error)
}

/// A file as mono float32 samples at 16 kHz: `(samples, 16000)`.
#[pyfunction]
fn load_audio(py: Python<'_>, path: PathBuf) -> PyResult<(Bound<'_, PyArray1<f32>>, u32)> {
    let waveform = py.detach(|| audio::load(&path)).map_err(audio_error)?;
    Ok((PyArray1::from_vec(py, waveform.samples), waveform.sample_rate))
}

/// Frame features `[42, frames]` (MFCC 1–40, ZCR, RMS) of mono float32 samples.
#[pyfunction]
fn features<'py>(
    py: Python<'py>,
    samples: PyReadonlyArray1<'py, f32>,
    sample_rate: u32,
) -> PyResult<Bound<'py, PyArray2<f32>>> {
    // Built once (window, FFT plan, mel bank, DCT), as the CLI builds it once per run.
    static EXTRACTOR: OnceLock<FeatureExtractor> = OnceLock::new();
    let waveform = waveform(samples, sample_rate, "array")?;
    let extractor = EXTRACTOR.get_or_init(|| {
        FeatureExtractor::new(FeatureConfig::default()).expect("the default feature settings are valid")
    });
    let features = py
        .detach(|| extractor.extract(&waveform.samples, waveform.sample_rate))
        .map_err(|err| PyValueError::new_err(format!("array: {err}")))?;
    rows(py, &features)
}

/// `[features, frames]` as a 2-D array.
fn rows<'py>(py: Python<'py>, features: &FrameFeatures) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let rows: Vec<Vec<f32>> = features
        .data
        .chunks_exact(features.n_frames.max(1))
        .map(<[f32]>::to_vec)
        .collect();
    Ok(PyArray2::from_vec2(py, &rows)?)
}

/// A trained model: a built-in one by name, or a model folder.
#[pyclass(frozen, module = "emofuse._emofuse")]
struct Model {
    // Boxed: Python allocates objects 16-byte aligned, and a model's tensors
    // may need more (64 with AVX-512), so the object holds only a pointer.
    predictor: Box<Predictor>,
}

#[pymethods]
impl Model {
    #[new]
    fn new(py: Python<'_>, model: &str) -> PyResult<Model> {
        let folder = PathBuf::from(model);
        if BuiltinModel::from_name(model).is_none() && !model.contains('/') && !folder.is_dir() {
            let message =
                format!("no model named {model:?}: name a built-in model (default, whisper) or a model folder");
            return Err(PyValueError::new_err(message));
        }
        let device = DeviceChoice::Cpu
            .open()
            .map_err(|err| PyValueError::new_err(err.to_string()))?;
        let predictor = py.detach(|| match BuiltinModel::from_name(model) {
            Some(which) => Predictor::named(which, &device),
            None => Predictor::load(&folder, &device),
        });
        predictor
            .map(|predictor| Model {
                predictor: Box::new(predictor),
            })
            .map_err(infer_error)
    }

    /// The classes, in the order of the probabilities.
    #[getter]
    fn labels(&self) -> Vec<String> {
        self.predictor.labels().to_vec()
    }

    /// The model's own input features `[42, frames]` (its level setting, before
    /// standardisation): what its ONNX export takes.
    fn features<'py>(
        &self,
        py: Python<'py>,
        samples: PyReadonlyArray1<'py, f32>,
        sample_rate: u32,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let waveform = waveform(samples, sample_rate, "array")?;
        let features = py
            .detach(|| {
                self.predictor
                    .extractor()
                    .extract(&waveform.samples, waveform.sample_rate)
            })
            .map_err(|err| PyValueError::new_err(format!("array: {err}")))?;
        rows(py, &features)
    }

    /// `predict --json`'s answer for a file, as a JSON string.
    fn predict_file_json(&self, py: Python<'_>, path: PathBuf) -> PyResult<String> {
        let prediction = py
            .detach(|| self.predictor.predict_file(&path, None))
            .map_err(infer_error)?;
        Ok(serde_json::to_string(&prediction).expect("a prediction serialises"))
    }

    /// The same for mono float32 samples at `sample_rate`, named `name`.
    fn predict_samples_json(
        &self,
        py: Python<'_>,
        samples: PyReadonlyArray1<'_, f32>,
        sample_rate: u32,
        name: &str,
    ) -> PyResult<String> {
        let waveform = waveform(samples, sample_rate, name)?;
        let prediction = py
            .detach(|| self.predictor.predict(&waveform, name))
            .map_err(infer_error)?;
        let prediction = FilePrediction {
            path: PathBuf::from(name),
            duration_s: waveform.duration_s(),
            prediction,
            labels: self.predictor.labels().to_vec(),
            timeline: None,
        };
        Ok(serde_json::to_string(&prediction).expect("a prediction serialises"))
    }
}

#[pymodule]
fn _emofuse(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(load_audio, module)?)?;
    module.add_function(wrap_pyfunction!(features, module)?)?;
    module.add_class::<Model>()?;
    Ok(())
}
