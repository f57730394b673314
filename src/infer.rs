//! A trained model ready to use: a model directory (or the model built into
//! the binary) → a [`Predictor`] that turns 16 kHz audio into emotion
//! probabilities. `predict`, `eval`, `explain` and `serve` all go through it,
//! so every number they report comes from the same code path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor};
use serde::Serialize;

use crate::audio::{self, AudioError, Waveform};
use crate::features::{FeatureError, FeatureExtractor, speech};
use crate::model::fusion::{EmotionModel, EmotionModelConfig, ModelOutput};
use crate::model::input::{self, Example, ExampleBuilder};
use crate::model::saved::{self, ModelConfig, ModelDirError};
use crate::model::temporal::{BackboneConfig, BackboneError, FrozenBackbone};
use crate::model::wav2vec2::Preprocessor;
use crate::model::whisper::WhisperMode;

/// Window and hop (s) of the timeline of a recording longer than the input
/// limit when the caller names none: windows side by side, a line each.
pub const LONG_RECORDING_WINDOW: (f64, f64) = (3.0, 3.0);

/// The models built into the binary (`config.json` and `model.safetensors`
/// of `models/<name>/`, whose README says how each was trained).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BuiltinModel {
    /// The small spectral model: works with nothing else installed.
    Default,
    /// A linear probe on the frozen Whisper-base encoder (needs
    /// `scripts/get-whisper-base.sh`; the head names the backbone by sha256).
    Whisper,
}

impl BuiltinModel {
    /// The built-in model called `name`, if there is one.
    pub fn from_name(name: &str) -> Option<BuiltinModel> {
        <BuiltinModel as clap::ValueEnum>::value_variants()
            .iter()
            .copied()
            .find(|model| model.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            BuiltinModel::Default => "default",
            BuiltinModel::Whisper => "whisper",
        }
    }

    fn files(self) -> (&'static [u8], &'static [u8]) {
        match self {
            BuiltinModel::Default => (
                include_bytes!("../models/default/config.json"),
                include_bytes!("../models/default/model.safetensors"),
            ),
            BuiltinModel::Whisper => (
                include_bytes!("../models/whisper/config.json"),
                include_bytes!("../models/whisper/model.safetensors"),
            ),
        }
    }
}

/// Why a predictor could not be made or could not read a clip.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    #[error(transparent)]
    Audio(#[from] AudioError),
    #[error(transparent)]
    ModelDir(#[from] ModelDirError),
    // Transparent: the error names the backbone, and `{:#}` would print a `{0}` twice.
    #[error(transparent)]
    Backbone(#[from] crate::model::temporal::BackboneError),
    #[error("bad feature settings in the model: {0}")]
    Features(FeatureError),
    #[error("{name}: {source}")]
    Clip { name: String, source: FeatureError },
    #[error("{name}: too short for the model ({samples} samples; the encoder needs at least {min})")]
    TooShort { name: String, samples: usize, min: usize },
    #[error(
        "{name}: no speech to judge ({seconds:.2} s of speech detected; at least {min_s} s is needed, louder than {floor} dBFS and not noise-like)",
        min_s = speech::MIN_SPEECH_S,
        floor = speech::SPEECH_FLOOR_DBFS
    )]
    NoSpeech { name: String, seconds: f64 },
    #[error("{name:?}: the model's classes are {}", classes.join(", "))]
    UnknownClass { name: String, classes: Vec<String> },
}

/// The model, the builder of its input and (for a frozen pretrained encoder) the encoder.
pub struct Predictor {
    config: ModelConfig,
    model: EmotionModel,
    builder: ExampleBuilder,
    frozen: Option<FrozenBackbone>,
    device: Device,
}

/// One clip's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    pub label: String,
    pub confidence: f32,
    /// Probability of each class, in the order of [`ModelConfig::labels`].
    pub probabilities: Vec<f32>,
}

/// Predictions of consecutive windows of a long recording.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Timeline {
    pub window_s: f64,
    pub hop_s: f64,
    pub windows: Vec<TimelineWindow>,
}

/// One file's prediction, as `emofuse predict` reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FilePrediction {
    pub path: PathBuf,
    pub duration_s: f64,
    #[serde(flatten)]
    pub prediction: Prediction,
    pub labels: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeline: Option<Timeline>,
}

impl FilePrediction {
    /// The header of the table whose rows are predictions' `Display`.
    pub fn header(labels: &[String]) -> String {
        let classes: String = labels.iter().map(|l| format!("{l:>9}")).collect();
        format!("{:<40} {:<9} {:>6} {classes}", "file", "emotion", "conf")
    }
}

/// A table row (the end of a long path, which tells files apart), and one
/// line per timeline window.
impl std::fmt::Display for FilePrediction {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name: Vec<char> = self.path.display().to_string().chars().collect();
        let name: String = match name.len() {
            0..=40 => name.iter().collect(),
            n => std::iter::once('…').chain(name[n - 39..].iter().copied()).collect(),
        };
        let p = &self.prediction;
        let probabilities: String = p.probabilities.iter().map(|p| format!("{p:>9.3}")).collect();
        writeln!(out, "{name:<40} {:<9} {:>6.3} {probabilities}", p.label, p.confidence)?;
        for window in self.timeline.iter().flat_map(|t| &t.windows) {
            write!(out, "  {:>6.2}–{:<6.2} s ", window.start_s, window.end_s)?;
            match &window.prediction {
                Some(p) => writeln!(out, "{:<9} {:>6.3}", p.label, p.confidence)?,
                None => writeln!(out, "(no speech: skipped)")?,
            }
        }
        Ok(())
    }
}

/// A prediction with its probabilities keyed by label, as the JSON answers
/// (`/api/predict`, timeline windows) show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelledPrediction {
    pub label: String,
    pub confidence: f32,
    pub probabilities: BTreeMap<String, f32>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineWindow {
    pub start_s: f64,
    pub end_s: f64,
    /// Whether the window has enough speech to judge; without, no prediction.
    pub speech: bool,
    #[serde(flatten)]
    pub prediction: Option<LabelledPrediction>,
}

impl Predictor {
    /// The model in directory `dir`, on `device`.
    pub fn load(dir: &Path, device: &Device) -> Result<Predictor, InferError> {
        let (config, model) = saved::load(dir, device)?;
        Self::from_parts(config, model, device)
    }

    /// The default model built into the binary, on `device`.
    pub fn builtin(device: &Device) -> Result<Predictor, InferError> {
        Self::named(BuiltinModel::Default, device)
    }

    /// A model built into the binary, on `device`.
    pub fn named(which: BuiltinModel, device: &Device) -> Result<Predictor, InferError> {
        let path = PathBuf::from(format!("(built-in model {})", which.name()));
        let (config, weights) = which.files();
        let config = ModelConfig::from_json(config, &path)?;
        let model = saved::model_from_bytes(&config, weights.to_vec(), &path, device)?;
        Self::from_parts(config, model, device)
    }

    /// A predictor for a model in memory (just trained, or loaded) on `device`.
    pub fn from_parts(config: ModelConfig, model: EmotionModel, device: &Device) -> Result<Predictor, InferError> {
        let builder = ExampleBuilder::new(&config.model, &config.features, config.feature_stats.clone())
            .map_err(InferError::Features)?;
        let backbone = &config.model.temporal.backbone;
        let frozen = (config.model.kind.has_temporal() && !backbone.is_trained())
            .then(|| FrozenBackbone::load(backbone, device))
            .transpose()?;
        Ok(Predictor {
            config,
            model: burn::module::Module::valid(&model),
            builder,
            frozen,
            device: device.clone(),
        })
    }

    /// Everything the model's `config.json` holds.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn labels(&self) -> &[String] {
        &self.config.labels
    }

    /// The index of class `name` among [`Self::labels`].
    pub fn class_index(&self, name: &str) -> Result<usize, InferError> {
        self.labels()
            .iter()
            .position(|l| l == name)
            .ok_or_else(|| InferError::UnknownClass {
                name: name.to_owned(),
                classes: self.labels().to_vec(),
            })
    }

    pub fn model(&self) -> &EmotionModel {
        &self.model
    }

    pub fn extractor(&self) -> &FeatureExtractor {
        self.builder.extractor()
    }

    /// The frozen pretrained encoder outside the model, if it has one.
    pub fn frozen(&self) -> Option<&FrozenBackbone> {
        self.frozen.as_ref()
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Samples the temporal encoder needs at least (1 without one: any clip).
    pub fn min_samples(&self) -> usize {
        if !self.config.model.kind.has_temporal() {
            return 1;
        }
        self.config.model.temporal.backbone.min_samples()
    }

    /// The model's input for one clip (`name` labels errors).
    pub fn example(&self, waveform: &Waveform, name: &str) -> Result<Example, InferError> {
        let min = self.min_samples();
        if waveform.samples.len() < min {
            return Err(InferError::TooShort {
                name: name.to_owned(),
                samples: waveform.samples.len(),
                min,
            });
        }
        self.builder
            .from_samples(&waveform.samples, waveform.sample_rate, 0)
            .map_err(|source| InferError::Clip {
                name: name.to_owned(),
                source,
            })
    }

    /// Calibrated class probabilities of examples, `[clips][classes]`, in batches.
    pub fn probabilities(&self, examples: &[Example]) -> Vec<f32> {
        let raw = probabilities(
            &self.model,
            &self.config.model,
            examples,
            self.frozen.as_ref(),
            &self.device,
        );
        self.calibrated(&raw)
    }

    /// `[clips][classes]` probabilities of the model's raw softmax at its
    /// fitted temperature.
    pub fn calibrated(&self, raw: &[f32]) -> Vec<f32> {
        with_temperature(raw, self.config.labels.len(), self.config.temperature)
    }

    /// Everything the model computes for a batch (explanations use the streams' outputs).
    pub fn forward(&self, examples: &[&Example]) -> ModelOutput {
        let input = input::model_input(&self.config.model, examples, self.frozen.as_ref(), &self.device);
        self.model.forward(input)
    }

    /// Decodes and predicts the file at `path`; with `window` (`(window_s,
    /// hop_s)`), also the timeline of its windows. A file longer than the
    /// input limit is predicted as a timeline (`window`, else
    /// [`LONG_RECORDING_WINDOW`]), streamed.
    pub fn predict_file(&self, path: &Path, window: Option<(f64, f64)>) -> Result<FilePrediction, InferError> {
        let name = path.display().to_string();
        let waveform = match audio::load(path) {
            Err(AudioError::TooLong { .. }) => {
                return self.predict_stream(path, window.unwrap_or(LONG_RECORDING_WINDOW));
            }
            loaded => loaded?,
        };
        let timeline = window
            .map(|(window_s, hop_s)| self.timeline(&waveform, &name, window_s, hop_s))
            .transpose()?;
        Ok(FilePrediction {
            path: path.to_owned(),
            duration_s: waveform.duration_s(),
            prediction: self.predict(&waveform, &name)?,
            labels: self.labels().to_vec(),
            timeline,
        })
    }

    /// Refuses a clip with too little speech to judge ([`speech::MIN_SPEECH_S`]).
    pub fn check_speech(&self, waveform: &Waveform, name: &str) -> Result<(), InferError> {
        let seconds = speech::speech_seconds(&waveform.samples, waveform.sample_rate);
        if seconds < speech::MIN_SPEECH_S {
            return Err(InferError::NoSpeech {
                name: name.to_owned(),
                seconds,
            });
        }
        Ok(())
    }

    /// Predicts one clip, if it has speech.
    pub fn predict(&self, waveform: &Waveform, name: &str) -> Result<Prediction, InferError> {
        self.check_speech(waveform, name)?;
        let example = self.example(waveform, name)?;
        Ok(self.prediction(&self.probabilities(&[example])))
    }

    /// A prediction from one row of probabilities.
    pub fn prediction(&self, probabilities: &[f32]) -> Prediction {
        let (best, &confidence) = probabilities
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .expect("a model has classes");
        Prediction {
            label: self.config.labels[best].clone(),
            confidence,
            probabilities: probabilities.to_vec(),
        }
    }

    /// `prediction` with each probability named by its label.
    pub fn labelled(&self, prediction: Prediction) -> LabelledPrediction {
        LabelledPrediction {
            probabilities: self
                .config
                .labels
                .iter()
                .cloned()
                .zip(prediction.probabilities)
                .collect(),
            label: prediction.label,
            confidence: prediction.confidence,
        }
    }

    /// Predictions of windows of `window_s` seconds every `hop_s` seconds
    /// (the last window ends at the end of the recording); a window with too
    /// little speech has no prediction.
    pub fn timeline(&self, waveform: &Waveform, name: &str, window_s: f64, hop_s: f64) -> Result<Timeline, InferError> {
        let mut timeline = TimelineBuilder::new(self, name, waveform.sample_rate, (window_s, hop_s));
        timeline.push(&waveform.samples)?;
        Ok(timeline.finish()?.0)
    }

    /// A recording too long to hold in memory ([`audio::AudioStream`]) as a
    /// timeline of windows, predicted as it is decoded; the file's own
    /// prediction is the mean of its spoken windows' probabilities.
    pub fn predict_stream(&self, path: &Path, (window_s, hop_s): (f64, f64)) -> Result<FilePrediction, InferError> {
        let name = path.display().to_string();
        let mut stream = audio::AudioStream::open(path)?;
        let mut timeline = TimelineBuilder::new(self, &name, audio::SAMPLE_RATE, (window_s, hop_s));
        while let Some(block) = stream.next_block() {
            timeline.push(&block?)?;
        }
        let duration_s = timeline.received as f64 / f64::from(timeline.rate);
        let (timeline, mean) = timeline.finish()?;
        let mean = mean.ok_or(InferError::NoSpeech { name, seconds: 0.0 })?;
        Ok(FilePrediction {
            path: path.to_owned(),
            duration_s,
            prediction: self.prediction(&mean),
            labels: self.labels().to_vec(),
            timeline: Some(timeline),
        })
    }
}

/// Windows of `window` samples every `hop` along a recording whose samples
/// arrive in pieces, predicted as soon as they are complete; it keeps only
/// the samples a window still needs. The windows are those of a whole
/// recording of `n` samples: starts 0, hop, 2·hop… below `n - window`, and a
/// last one ending at `n` (one window of all `n` when `n <= window`).
struct TimelineBuilder<'a> {
    predictor: &'a Predictor,
    name: &'a str,
    rate: u32,
    window_s: f64,
    hop_s: f64,
    window: usize,
    hop: usize,
    /// Samples from `buffer_start` on.
    buffer: Vec<f32>,
    buffer_start: usize,
    received: usize,
    next_start: usize,
    windows: Vec<TimelineWindow>,
    spoken_sum: Vec<f32>,
    spoken: usize,
}

impl<'a> TimelineBuilder<'a> {
    fn new(predictor: &'a Predictor, name: &'a str, rate: u32, (window_s, hop_s): (f64, f64)) -> TimelineBuilder<'a> {
        TimelineBuilder {
            predictor,
            name,
            rate,
            window_s,
            hop_s,
            window: (window_s * f64::from(rate)) as usize,
            hop: ((hop_s * f64::from(rate)) as usize).max(1),
            buffer: Vec::new(),
            buffer_start: 0,
            received: 0,
            next_start: 0,
            windows: Vec::new(),
            spoken_sum: vec![0.0; predictor.labels().len()],
            spoken: 0,
        }
    }

    /// Takes the next samples; predicts the windows known to be complete and not the last.
    fn push(&mut self, samples: &[f32]) -> Result<(), InferError> {
        self.buffer.extend_from_slice(samples);
        self.received += samples.len();
        let mut starts = Vec::new();
        while self.next_start + self.window < self.received {
            starts.push(self.next_start);
            self.next_start += self.hop;
        }
        self.predict(&starts)?;
        // The last window ends at the recording's end: keep `window` samples for it.
        let keep_from = self.next_start.min(self.received.saturating_sub(self.window));
        if keep_from > self.buffer_start {
            self.buffer.drain(..keep_from - self.buffer_start);
            self.buffer_start = keep_from;
        }
        Ok(())
    }

    /// The timeline, and the mean probabilities of its spoken windows (none without speech).
    fn finish(mut self) -> Result<(Timeline, Option<Vec<f32>>), InferError> {
        // Every window predicted so far starts below `n - window`.
        self.predict(&[self.received.saturating_sub(self.window)])?;
        let mean = (self.spoken > 0).then(|| {
            let spoken = self.spoken as f32;
            self.spoken_sum.iter().map(|p| p / spoken).collect()
        });
        let timeline = Timeline {
            window_s: self.window_s,
            hop_s: self.hop_s,
            windows: self.windows,
        };
        Ok((timeline, mean))
    }

    /// Predicts the windows at `starts` (all inside the buffer) in one batch.
    fn predict(&mut self, starts: &[usize]) -> Result<(), InferError> {
        let rate = f64::from(self.rate);
        let predictor = self.predictor;
        let mut spoken = Vec::with_capacity(starts.len());
        let mut examples = Vec::new();
        for &start in starts {
            let end = (start + self.window).min(self.received);
            let clip = Waveform {
                samples: self.buffer[start - self.buffer_start..end - self.buffer_start].to_vec(),
                sample_rate: self.rate,
            };
            let has_speech = predictor.check_speech(&clip, self.name).is_ok();
            if has_speech {
                examples.push(predictor.example(&clip, self.name)?);
            }
            spoken.push(has_speech);
        }
        let probabilities = predictor.probabilities(&examples);
        let mut rows = probabilities.chunks_exact(predictor.labels().len());
        for (&start, has_speech) in starts.iter().zip(spoken) {
            let prediction = has_speech.then(|| rows.next().expect("a row per spoken window"));
            if let Some(row) = prediction {
                self.spoken += 1;
                self.spoken_sum.iter_mut().zip(row).for_each(|(sum, p)| *sum += p);
            }
            self.windows.push(TimelineWindow {
                start_s: start as f64 / rate,
                end_s: (start + self.window).min(self.received) as f64 / rate,
                speech: has_speech,
                prediction: prediction.map(|row| predictor.labelled(predictor.prediction(row))),
            });
        }
        Ok(())
    }
}

/// `[clips][classes]` softmax probabilities as the softmax of the same
/// logits divided by `temperature` (above 1 softer, below 1 sharper). The
/// log-probabilities are the logits up to a per-clip constant, which the
/// softmax ignores.
pub fn with_temperature(probabilities: &[f32], n_classes: usize, temperature: f32) -> Vec<f32> {
    if temperature == 1.0 {
        return probabilities.to_vec();
    }
    softmax_rows(probabilities.len() / n_classes, n_classes, |row, class| {
        log_probability(probabilities[row * n_classes + class]) / f64::from(temperature)
    })
}

/// A probability's natural log, the probability floored at the smallest
/// normal f32 so that a 0 gives a finite log.
pub fn log_probability(p: f32) -> f64 {
    f64::from(p.max(f32::MIN_POSITIVE)).ln()
}

/// `[rows][classes]` probabilities: the softmax of each row's
/// `score(row, class)`, in f64.
pub fn softmax_rows(rows: usize, n_classes: usize, score: impl Fn(usize, usize) -> f64) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows * n_classes);
    for row in 0..rows {
        let scores: Vec<f64> = (0..n_classes).map(|class| score(row, class)).collect();
        let top = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = scores.iter().map(|s| (s - top).exp()).sum();
        out.extend(scores.iter().map(|s| ((s - top).exp() / sum) as f32));
    }
    out
}

/// Class probabilities of `examples` under `model`, in batches: `[clips][classes]`.
/// The one way a model is run for its answer: prediction, validation during
/// training and scoring all come through here.
pub fn probabilities(
    model: &EmotionModel,
    config: &EmotionModelConfig,
    examples: &[Example],
    frozen: Option<&FrozenBackbone>,
    device: &Device,
) -> Vec<f32> {
    let mut probabilities = Vec::with_capacity(examples.len() * config.n_classes);
    for chunk in examples.chunks(16) {
        let refs: Vec<&Example> = chunk.iter().collect();
        let logits = model.forward(input::model_input(config, &refs, frozen, device)).logits;
        let probs = burn::tensor::activation::softmax(logits, 1);
        probabilities.extend(
            probs
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .expect("f32 probabilities"),
        );
    }
    probabilities
}

/// A pretrained encoder (wav2vec 2.0 / HuBERT or Whisper) whose hidden
/// states users take for their own probes (`emofuse embed`).
pub struct Embedder {
    backbone: FrozenBackbone,
    /// wav2vec 2.0's input normalisation; Whisper's front end is inside the backbone.
    preprocessor: Option<Preprocessor>,
}

/// Which hidden states [`Embedder::embed`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbedLayer {
    /// After the final layer norm.
    Last,
    /// 0 = the input of the first transformer layer, N = the output of layer N.
    Index(usize),
    /// Every one of them.
    All,
}

/// How [`Embedder::embed`] treats the frame axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EmbedPool {
    /// Every frame.
    None,
    /// The mean over frames: one vector.
    Mean,
    /// The mean and then the standard deviation over frames: one vector of twice the width.
    MeanStd,
}

impl Embedder {
    /// The encoder `name` names (`whisper-base`, or a Hugging Face wav2vec 2.0 /
    /// HuBERT or Whisper folder) on `device`; a Whisper encoder hears each clip as `mode` says.
    pub fn load(name: &str, mode: WhisperMode, device: &Device) -> Result<Embedder, BackboneError> {
        let config = BackboneConfig::from_name(name, false, mode)?;
        let preprocessor = match &config {
            BackboneConfig::Wav2vec2 { preprocessor, .. } => Some(preprocessor.clone()),
            BackboneConfig::Whisper { .. } => None,
            BackboneConfig::Scratch { .. } => return Err(BackboneError::NotPretrained),
        };
        Ok(Embedder {
            backbone: FrozenBackbone::load(&config, device)?,
            preprocessor,
        })
    }

    /// `last`, `all` or a layer number of this encoder.
    pub fn layer(&self, name: &str) -> Result<EmbedLayer, String> {
        let n_layers = self.backbone.n_layers() - 1;
        match name {
            "last" => Ok(EmbedLayer::Last),
            "all" => Ok(EmbedLayer::All),
            number => match number.parse::<usize>() {
                Ok(i) if i <= n_layers => Ok(EmbedLayer::Index(i)),
                _ => Err(format!(
                    "want last, all or a layer from 0 to {n_layers}, not {number:?}"
                )),
            },
        }
    }

    /// The hidden states of 16 kHz `samples`: their shape (`[frames,
    /// hidden]`, `[layers, …]` with [`EmbedLayer::All`], no frame axis with
    /// [`EmbedPool::Mean`]) and values; `None` for a clip too short for one frame.
    pub fn embed(&self, samples: &[f32], layer: EmbedLayer, pool: EmbedPool) -> Option<(Vec<u64>, Vec<f32>)> {
        if self.backbone.n_frames(samples.len()) == 0 {
            return None;
        }
        let output = match &self.preprocessor {
            Some(preprocessor) => self.backbone.encode(&[&preprocessor.apply(samples)]),
            None => self.backbone.encode(&[samples]),
        };
        let chosen: Vec<Tensor<3>> = match layer {
            EmbedLayer::Last => vec![output.last_hidden_state],
            EmbedLayer::Index(i) => vec![output.hidden_states[i].clone()],
            EmbedLayer::All => output.hidden_states,
        };
        let per_layer: Vec<Tensor<2>> = chosen
            .into_iter()
            .map(|h| match pool {
                EmbedPool::None => h.squeeze_dim(0),             // [frames, hidden]
                EmbedPool::Mean => h.mean_dim(1).squeeze_dim(0), // [1, hidden]
                EmbedPool::MeanStd => {
                    let mean = h.clone().mean_dim(1);
                    let std = (h - mean.clone()).square().mean_dim(1).sqrt();
                    Tensor::cat(vec![mean, std], 2).squeeze_dim(0) // [1, 2 · hidden]
                }
            })
            .collect();
        let [frames, hidden] = per_layer[0].dims();
        let layers = (layer == EmbedLayer::All).then_some(per_layer.len() as u64);
        let frames = (pool == EmbedPool::None).then_some(frames as u64);
        let shape = layers.into_iter().chain(frames).chain([hidden as u64]).collect();
        let values = Tensor::cat(per_layer, 0)
            .into_data()
            .convert::<f32>()
            .try_into_vec()
            .expect("f32 data");
        Some((shape, values))
    }
}
