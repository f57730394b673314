//! Why the model said so, for one clip: SHAP over the two streams, over
//! feature groups of the spectral stream and over time segments; Score-CAM
//! saliency over time for each stream beside its attentive-pooling weights;
//! and a deletion check of how faithful the saliency is.
//!
//! Every explanation is of one class's probability. "Absent" means: a stream
//! → its mean pooled embedding over the training clips (stored with the
//! model); a feature group → its training mean (0 after standardisation); a
//! time segment → its frames left out of both streams' attentive pooling
//! (a clip with no frames left pools to the training mean).

pub mod picture;
pub mod score_cam;
pub mod shap;
pub mod snr_study;

use burn::tensor::activation::softmax;
use burn::tensor::{Bool, Device, Tensor, TensorData};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::audio::{self, AudioError, Waveform};
use crate::features::{FeatureError, FrameFeatures};
use crate::infer::{InferError, Predictor};
use crate::model::fusion::ModelOutput;
use crate::model::input::{self, Example, TemporalSource};
use crate::persist;
use score_cam::FeatureMap;
use shap::{Coalition, ShapOptions, Shapley};

/// How much work an explanation does.
#[derive(Debug, Clone, PartialEq)]
pub struct ExplainOptions {
    /// Explain this class (index into the labels); `None` = the predicted one.
    pub class: Option<usize>,
    /// Time segments of the segment-level SHAP.
    pub segments: usize,
    pub shap: ShapOptions,
    /// Channels of each stream's feature map used by Score-CAM.
    pub cam_channels: usize,
    /// Share of frames deleted at each step of the faithfulness check.
    pub deletion_fractions: Vec<f64>,
    /// Random deletion orders the saliency order is compared with.
    pub random_orders: usize,
}

impl Default for ExplainOptions {
    fn default() -> Self {
        Self {
            class: None,
            segments: 8,
            shap: ShapOptions::default(),
            cam_channels: 24,
            deletion_fractions: vec![0.1, 0.2, 0.3, 0.5],
            random_orders: 4,
        }
    }
}

/// Named Shapley values.
#[derive(Debug, Clone, Serialize)]
pub struct Attribution {
    pub players: Vec<String>,
    #[serde(flatten)]
    pub shapley: Shapley,
    pub efficiency_gap: f64,
}

impl Attribution {
    fn new(players: Vec<String>, shapley: Shapley) -> Self {
        Self {
            players,
            efficiency_gap: shapley.efficiency_gap(),
            shapley,
        }
    }
}

/// Time-segment SHAP: segment `i` spans `bounds_s[i]..bounds_s[i + 1]` seconds.
#[derive(Debug, Clone, Serialize)]
pub struct SegmentAttribution {
    pub bounds_s: Vec<f64>,
    #[serde(flatten)]
    pub attribution: Attribution,
}

/// Saliency and pooling weights of one stream, each at the times given.
#[derive(Debug, Clone, Serialize)]
pub struct StreamSaliency {
    /// Centre of each saliency value, in seconds.
    pub saliency_times_s: Vec<f64>,
    /// Score-CAM, in [0, 1].
    pub saliency: Vec<f32>,
    pub alpha_times_s: Vec<f64>,
    /// Attentive-pooling weights α over the stream's own frames (sum 1).
    pub alpha: Vec<f32>,
    pub faithfulness: Faithfulness,
}

/// The class probability as ever more of the input is deleted, most salient
/// first versus in random order. A faithful saliency makes the probability
/// fall faster: `auc_salient < auc_random`.
#[derive(Debug, Clone, Serialize)]
pub struct Faithfulness {
    pub fractions: Vec<f64>,
    pub salient_first: Vec<f64>,
    /// Mean over the random orders.
    pub random_order: Vec<f64>,
    /// Mean probability over the fractions (lower = probability falls faster).
    pub auc_salient: f64,
    pub auc_random: f64,
}

/// Everything `emofuse explain` reports for one clip.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub file: String,
    pub duration_s: f64,
    pub labels: Vec<String>,
    pub probabilities: Vec<f32>,
    pub predicted: String,
    /// The class whose probability is explained.
    pub explained: String,
    pub explained_probability: f32,
    pub streams: Attribution,
    /// Spectral stream only.
    pub feature_groups: Option<Attribution>,
    pub time_segments: SegmentAttribution,
    pub spectral: Option<StreamSaliency>,
    pub temporal: Option<StreamSaliency>,
    /// Mean fusion gate (the spectral stream's weight), gated fusion only.
    pub gate_spectral: Option<f32>,
}

/// A few lines for people: the answer, the streams' SHAP, and each
/// saliency's deletion check.
impl std::fmt::Display for Explanation {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let streams = self
            .streams
            .players
            .iter()
            .zip(&self.streams.shapley.values)
            .map(|(name, v)| format!("{name} {v:+.3}"))
            .collect::<Vec<_>>()
            .join(", ");
        writeln!(
            out,
            "{}: {} ({:.1} %); stream SHAP: {streams}",
            self.file,
            self.predicted,
            100.0 * self.explained_probability
        )?;
        for (name, stream) in [("spectral", &self.spectral), ("temporal", &self.temporal)] {
            if let Some(stream) = stream {
                let f = &stream.faithfulness;
                writeln!(
                    out,
                    "  {name} saliency: class probability after deletions {:.3} (most salient first) vs {:.3} (random)",
                    f.auc_salient, f.auc_random
                )?;
            }
        }
        Ok(())
    }
}

/// Over all `explanations`, per stream: the mean class probability after
/// deletions, most salient first and random, and how often the saliency
/// order did better.
pub fn faithfulness_summary(explanations: &[Explanation]) -> String {
    let mut lines = String::new();
    for name in ["spectral", "temporal"] {
        let checks: Vec<&Faithfulness> = explanations
            .iter()
            .filter_map(|e| if name == "spectral" { &e.spectral } else { &e.temporal }.as_ref())
            .map(|s| &s.faithfulness)
            .collect();
        if checks.is_empty() {
            continue;
        }
        let n = checks.len() as f64;
        let salient = checks.iter().map(|f| f.auc_salient).sum::<f64>() / n;
        let random = checks.iter().map(|f| f.auc_random).sum::<f64>() / n;
        let wins = checks.iter().filter(|f| f.auc_salient < f.auc_random).count();
        lines += &format!(
            "{name} saliency over {} files: probability after deletions {salient:.3} (most salient first) vs {random:.3} (random); salient-first lower in {wins}/{}\n",
            checks.len(),
            checks.len()
        );
    }
    lines
}

/// The spectral stream's feature groups: MFCC thirds, ZCR, RMS.
pub fn feature_groups(n_mfcc: usize) -> Vec<(String, std::ops::Range<usize>)> {
    let bounds = [0, n_mfcc / 3, 2 * n_mfcc / 3, n_mfcc];
    let mut groups: Vec<(String, std::ops::Range<usize>)> = bounds
        .windows(2)
        .filter(|w| w[1] > w[0])
        .map(|w| (format!("MFCC {}–{}", w[0] + 1, w[1]), w[0]..w[1]))
        .collect();
    groups.push(("ZCR".into(), n_mfcc..n_mfcc + 1));
    groups.push(("RMS".into(), n_mfcc + 1..n_mfcc + 2));
    groups
}

/// Explains one clip (`name` labels errors and the report).
pub fn explain(
    predictor: &Predictor,
    waveform: &Waveform,
    name: &str,
    options: &ExplainOptions,
) -> Result<Explanation, InferError> {
    predictor.check_speech(waveform, name)?;
    let example = predictor.example(waveform, name)?;
    let output = predictor.forward(&[&example]);
    // Calibrated, as `predict` reports them.
    let probabilities = predictor.calibrated(&to_vec(softmax(output.logits.clone(), 1)));
    let predicted = argmax(&probabilities);
    let class = options.class.unwrap_or(predicted);
    let labels = predictor.labels().to_vec();
    let duration_s = waveform.samples.len() as f64 / f64::from(waveform.sample_rate);
    let explainer = Explainer {
        predictor,
        example: &example,
        output: &output,
        class,
        device: predictor.device().clone(),
    };
    let spectral = explainer
        .output
        .spectral
        .as_ref()
        .map(|_| explainer.spectral_saliency(options, duration_s));
    let temporal = explainer
        .output
        .temporal
        .as_ref()
        .map(|_| explainer.temporal_saliency(options, duration_s));
    Ok(Explanation {
        file: name.to_owned(),
        duration_s,
        predicted: labels[predicted].clone(),
        explained: labels[class].clone(),
        explained_probability: probabilities[class],
        streams: explainer.stream_shap(),
        feature_groups: explainer
            .output
            .spectral
            .as_ref()
            .map(|_| explainer.feature_group_shap(options)),
        time_segments: explainer.segment_shap(options, duration_s),
        spectral,
        temporal,
        gate_spectral: mean_gate(&output),
        labels,
        probabilities,
    })
}

/// Why a clip could not be explained, or its explanation not drawn or written.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error(transparent)]
    Audio(#[from] AudioError),
    #[error(transparent)]
    Infer(#[from] InferError),
    #[error("{name}: log-mel spectrogram: {source}")]
    Spectrogram { name: String, source: FeatureError },
    #[error("{name}: cannot draw the explanation: {detail}")]
    Draw { name: String, detail: String },
    #[error(transparent)]
    Write(#[from] persist::WriteError),
}

/// [`explain`], and the picture of the explanation (PNG bytes).
pub fn explain_with_picture(
    predictor: &Predictor,
    waveform: &Waveform,
    name: &str,
    options: &ExplainOptions,
) -> Result<(Explanation, Vec<u8>), ExplainError> {
    let explanation = explain(predictor, waveform, name, options)?;
    let log_mel = predictor
        .extractor()
        .log_mel(&waveform.samples, waveform.sample_rate)
        .map_err(|source| ExplainError::Spectrogram {
            name: name.to_owned(),
            source,
        })?;
    let png = picture::render(&explanation, &waveform.samples, &log_mel).map_err(|detail| ExplainError::Draw {
        name: name.to_owned(),
        detail,
    })?;
    Ok((explanation, png))
}

/// Explains the audio file `file` and writes `explanation.png` and
/// `explanation.json` into `dir` (created if needed).
pub fn explain_file(
    predictor: &Predictor,
    file: &Path,
    options: &ExplainOptions,
    dir: &Path,
) -> Result<Explanation, ExplainError> {
    let waveform = audio::load(file)?;
    let (explanation, png) = explain_with_picture(predictor, &waveform, &file.display().to_string(), options)?;
    let write = |name: &str, bytes: &[u8]| persist::write_file(&dir.join(name), bytes);
    write("explanation.png", &png)?;
    write(
        "explanation.json",
        &serde_json::to_vec_pretty(&explanation).expect("an explanation serialises"),
    )?;
    Ok(explanation)
}

/// Explains each of `files` into `out`: the folder itself for one file, a
/// sub-folder named by each file's stem for several. `on_file` hears each
/// outcome and the folder it went to; the explanations made come back.
pub fn explain_files(
    predictor: &Predictor,
    files: &[PathBuf],
    options: &ExplainOptions,
    out: &Path,
    mut on_file: impl FnMut(&Path, &Result<Explanation, ExplainError>),
) -> Vec<Explanation> {
    let mut explanations = Vec::new();
    for file in files {
        let dir = match files.len() {
            1 => out.to_owned(),
            _ => out.join(file.file_stem().unwrap_or_default()),
        };
        let result = explain_file(predictor, file, options, &dir);
        on_file(&dir, &result);
        explanations.extend(result);
    }
    explanations
}

/// Stream-level SHAP of one clip only (cheap: one forward pass), for studies
/// over many clips. Returns the values and the mean fusion gate.
pub fn stream_shap(
    predictor: &Predictor,
    example: &Example,
    class: Option<usize>,
) -> (Attribution, usize, Option<f32>) {
    let output = predictor.forward(&[example]);
    let probabilities = to_vec(softmax(output.logits.clone(), 1));
    let predicted = argmax(&probabilities);
    let explainer = Explainer {
        predictor,
        example,
        output: &output,
        class: class.unwrap_or(predicted),
        device: predictor.device().clone(),
    };
    (explainer.stream_shap(), predicted, mean_gate(&output))
}

/// What is read off the model for the explained class. Score-CAM weighs
/// channels by the logit: a saturated probability (≈ 1 under every mask)
/// would give all channels the same weight.
#[derive(Debug, Clone, Copy)]
enum Score {
    Probability,
    Logit,
}

struct Explainer<'a> {
    predictor: &'a Predictor,
    example: &'a Example,
    output: &'a ModelOutput,
    class: usize,
    device: Device,
}

impl Explainer<'_> {
    /// Probability of the class for a batch of streams' embeddings (`[b, d]` each).
    fn head_probability(&self, spectral: Option<Tensor<2>>, temporal: Option<Tensor<2>>) -> Vec<f64> {
        self.head_score(spectral, temporal, Score::Probability)
    }

    fn head_score(&self, spectral: Option<Tensor<2>>, temporal: Option<Tensor<2>>, score: Score) -> Vec<f64> {
        let (logits, _) = self.predictor.model().head(spectral, temporal);
        self.class_column(logits, score)
    }

    fn class_column(&self, logits: Tensor<2>, score: Score) -> Vec<f64> {
        let [batch, classes] = logits.dims();
        let values = match score {
            // The calibrated probability: the number the user is shown.
            Score::Probability => to_vec(softmax(logits.div_scalar(self.predictor.config().temperature), 1)),
            Score::Logit => to_vec(logits),
        };
        (0..batch)
            .map(|b| f64::from(values[b * classes + self.class]))
            .collect()
    }

    /// `[n, d]`: the clip's embedding of a stream, repeated.
    fn repeated(embedding: &Tensor<2>, n: usize) -> Tensor<2> {
        embedding.clone().repeat_dim(0, n)
    }

    fn mean_embedding(&self, mean: &Option<Vec<f32>>, like: &Tensor<2>) -> Tensor<2> {
        let [_, d] = like.dims();
        // A model saved without means (none of ours) falls back to zeros.
        let values = mean.clone().unwrap_or_else(|| vec![0.0; d]);
        Tensor::from_data(TensorData::new(values, [1, d]), &self.device)
    }

    fn stream_shap(&self) -> Attribution {
        let means = &self.predictor.config().embedding_means;
        let streams: Vec<(&str, Tensor<2>, Tensor<2>)> = [
            self.output.spectral.as_ref().map(|s| {
                (
                    "spectral",
                    s.embedding.clone(),
                    self.mean_embedding(&means.spectral, &s.embedding),
                )
            }),
            self.output.temporal.as_ref().map(|t| {
                (
                    "temporal",
                    t.embedding.clone(),
                    self.mean_embedding(&means.temporal, &t.embedding),
                )
            }),
        ]
        .into_iter()
        .flatten()
        .collect();
        let has_spectral = self.output.spectral.is_some();
        let players = streams.iter().map(|s| s.0.to_owned()).collect();
        let shapley = shap::exact(streams.len(), |coalitions| {
            let pick = |player: usize| {
                let rows: Vec<Tensor<2>> = coalitions
                    .iter()
                    .map(|c| {
                        if c[player] {
                            streams[player].1.clone()
                        } else {
                            streams[player].2.clone()
                        }
                    })
                    .collect();
                Tensor::cat(rows, 0)
            };
            match (streams.len(), has_spectral) {
                (2, _) => self.head_probability(Some(pick(0)), Some(pick(1))),
                (_, true) => self.head_probability(Some(pick(0)), None),
                _ => self.head_probability(None, Some(pick(0))),
            }
        });
        Attribution::new(players, shapley)
    }

    /// Spectral embeddings of the clip's features with some edit per copy.
    fn spectral_embeddings(&self, variants: Vec<FrameFeatures>) -> Tensor<2> {
        let frame_multiple = self.predictor.config().model.spectral.frame_multiple();
        let refs: Vec<&FrameFeatures> = variants.iter().collect();
        let (features, n_frames) = input::pad_features(&refs, frame_multiple, &self.device);
        let spectral = self.predictor.model().spectral.as_ref().expect("a spectral stream");
        spectral.forward(features, &n_frames).embedding
    }

    /// Class score with the spectral input replaced by each variant.
    fn spectral_variants(&self, variants: Vec<FrameFeatures>, score: Score) -> Vec<f64> {
        let mut probabilities = Vec::with_capacity(variants.len());
        let mut variants = variants.into_iter().peekable();
        while variants.peek().is_some() {
            let chunk: Vec<FrameFeatures> = variants.by_ref().take(32).collect();
            let n = chunk.len();
            let spectral = self.spectral_embeddings(chunk);
            let temporal = self.output.temporal.as_ref().map(|t| Self::repeated(&t.embedding, n));
            probabilities.extend(self.head_score(Some(spectral), temporal, score));
        }
        probabilities
    }

    /// Class score with the waveform replaced by each variant (the spectral
    /// stream keeps the clip's own features).
    fn temporal_variants(&self, variants: Vec<Vec<f32>>, score: Score) -> Vec<f64> {
        let mut probabilities = Vec::with_capacity(variants.len());
        for chunk in variants.chunks(8) {
            let examples: Vec<Example> = chunk
                .iter()
                .map(|samples| Example {
                    temporal: Some(TemporalSource::Samples(Arc::new(samples.clone()))),
                    ..self.example.clone()
                })
                .collect();
            let refs: Vec<&Example> = examples.iter().collect();
            probabilities.extend(self.class_column(self.predictor.forward(&refs).logits, score));
        }
        probabilities
    }

    fn features(&self) -> &FrameFeatures {
        &self.example.features
    }

    /// Value a feature row takes when absent: its training mean, which is 0
    /// after standardisation; without statistics, the clip's own row mean.
    fn absent_value(&self, row: usize) -> f32 {
        if self.predictor.config().feature_stats.is_some() {
            return 0.0;
        }
        let values = self.features().row(row);
        values.iter().sum::<f32>() / values.len().max(1) as f32
    }

    fn feature_group_shap(&self, options: &ExplainOptions) -> Attribution {
        let groups = feature_groups(self.predictor.extractor().config().n_mfcc);
        let features = self.features();
        let shapley = shap::shapley(groups.len(), &options.shap, |coalitions| {
            let variants = coalitions
                .iter()
                .map(|c| {
                    let mut edited = features.clone();
                    for (present, (_, rows)) in c.iter().zip(&groups) {
                        if !present {
                            for row in rows.clone() {
                                let absent = self.absent_value(row);
                                let n = edited.n_frames;
                                edited.data[row * n..(row + 1) * n].fill(absent);
                            }
                        }
                    }
                    edited
                })
                .collect();
            self.spectral_variants(variants, Score::Probability)
        });
        Attribution::new(groups.into_iter().map(|(name, _)| name).collect(), shapley)
    }

    fn segment_shap(&self, options: &ExplainOptions, duration_s: f64) -> SegmentAttribution {
        let n = options.segments.max(1);
        let means = &self.predictor.config().embedding_means;
        let model = self.predictor.model();
        // Each stream: its frames, the segment of each frame, its pooling and mean.
        let pool = |stream: &crate::model::spectral_cnn::StreamOutput,
                    pooling: &dyn Fn(Tensor<3>, Option<Tensor<2, Bool>>) -> (Tensor<2>, Tensor<2>),
                    mean: &Option<Vec<f32>>,
                    coalitions: &[Coalition]| {
            let frames = stream.n_frames[0];
            let map = stream.feature_map.clone().narrow(2, 0, frames).swap_dims(1, 2); // [1, t, d]
            let segment_of: Vec<usize> = (0..frames).map(|t| segment_of_frame(t, frames, n)).collect();
            let absent: Vec<bool> = coalitions
                .iter()
                .flat_map(|c| segment_of.iter().map(|&s| !c[s]).collect::<Vec<_>>())
                .collect();
            let b = coalitions.len();
            let padding = Tensor::<2, Bool>::from_data(TensorData::new(absent.clone(), [b, frames]), &self.device);
            let (pooled, _) = pooling(map.repeat_dim(0, b), Some(padding));
            let mean = self.mean_embedding(mean, &stream.embedding);
            let rows: Vec<Tensor<2>> = (0..b)
                .map(|i| {
                    let empty = absent[i * frames..(i + 1) * frames].iter().all(|&a| a);
                    if empty {
                        mean.clone()
                    } else {
                        pooled.clone().narrow(0, i, 1)
                    }
                })
                .collect();
            Tensor::cat(rows, 0)
        };
        let shapley = shap::shapley(n, &options.shap, |coalitions| {
            let mut values = Vec::with_capacity(coalitions.len());
            for chunk in coalitions.chunks(256) {
                let spectral = self.output.spectral.as_ref().map(|s| {
                    let stream = model.spectral.as_ref().expect("a spectral stream");
                    pool(s, &|x, p| stream.pooling.forward(x, p), &means.spectral, chunk)
                });
                let temporal = self.output.temporal.as_ref().map(|t| {
                    let stream = model.temporal.as_ref().expect("a temporal stream");
                    pool(t, &|x, p| stream.pool(x, p), &means.temporal, chunk)
                });
                values.extend(self.head_probability(spectral, temporal));
            }
            values
        });
        SegmentAttribution {
            bounds_s: (0..=n).map(|i| duration_s * i as f64 / n as f64).collect(),
            attribution: Attribution::new((1..=n).map(|i| format!("segment {i}")).collect(), shapley),
        }
    }

    fn spectral_saliency(&self, options: &ExplainOptions, duration_s: f64) -> StreamSaliency {
        let stream = self.output.spectral.as_ref().expect("a spectral stream");
        let features = self.features();
        let masked = |mask: &[f32]| {
            let mut edited = features.clone();
            for row in 0..edited.n_features {
                let absent = self.absent_value(row);
                let n = edited.n_frames;
                for (value, &keep) in edited.data[row * n..(row + 1) * n].iter_mut().zip(mask) {
                    *value = absent + keep * (*value - absent);
                }
            }
            edited
        };
        let (map, frames) = feature_map(stream);
        let map = FeatureMap {
            values: &map,
            channels: map.len() / frames,
            frames,
        };
        let saliency = score_cam::score_cam(&map, features.n_frames, options.cam_channels, |masks| {
            self.spectral_variants(masks.iter().map(|m| masked(m)).collect(), Score::Logit)
        });
        let on_input = score_cam::normalised(&score_cam::upsample(&saliency, features.n_frames));
        let faithfulness = self.faithfulness(&on_input, options, |masks| {
            self.spectral_variants(masks.iter().map(|m| masked(m)).collect(), Score::Probability)
        });
        StreamSaliency {
            saliency_times_s: frame_times(features.n_frames, duration_s),
            saliency: on_input,
            alpha_times_s: frame_times(stream.n_frames[0], duration_s),
            alpha: to_vec(stream.alpha.clone().narrow(1, 0, stream.n_frames[0])),
            faithfulness,
        }
    }

    fn temporal_saliency(&self, options: &ExplainOptions, duration_s: f64) -> StreamSaliency {
        let stream = self.output.temporal.as_ref().expect("a temporal stream");
        let samples = self
            .example
            .temporal
            .as_ref()
            .expect("examples for a temporal stream carry its input")
            .samples();
        let (map, frames) = feature_map(stream);
        // Masks live on the stream's frames; each frame covers an equal share of the samples.
        let masked = |mask: &[f32]| -> Vec<f32> {
            samples
                .iter()
                .enumerate()
                .map(|(i, s)| s * mask[(i * frames / samples.len()).min(frames - 1)])
                .collect()
        };
        let map = FeatureMap {
            values: &map,
            channels: map.len() / frames,
            frames,
        };
        let saliency = score_cam::score_cam(&map, frames, options.cam_channels, |masks| {
            self.temporal_variants(masks.iter().map(|m| masked(m)).collect(), Score::Logit)
        });
        let faithfulness = self.faithfulness(&saliency, options, |masks| {
            self.temporal_variants(masks.iter().map(|m| masked(m)).collect(), Score::Probability)
        });
        let times = frame_times(frames, duration_s);
        StreamSaliency {
            saliency_times_s: times.clone(),
            saliency,
            alpha_times_s: times,
            alpha: to_vec(stream.alpha.clone().narrow(1, 0, frames)),
            faithfulness,
        }
    }

    /// Deletes the most salient frames first, and in random orders, and
    /// records the class probability. `probability(masks)` scores inputs with
    /// frames where the mask is 0 deleted.
    fn faithfulness(
        &self,
        saliency: &[f32],
        options: &ExplainOptions,
        probability: impl Fn(&[Vec<f32>]) -> Vec<f64>,
    ) -> Faithfulness {
        let n = saliency.len();
        let mut salient: Vec<usize> = (0..n).collect();
        salient.sort_by(|&a, &b| saliency[b].total_cmp(&saliency[a]));
        let mut rng = ChaCha8Rng::seed_from_u64(options.shap.seed);
        let mut orders = vec![salient];
        for _ in 0..options.random_orders {
            let mut order: Vec<usize> = (0..n).collect();
            order.shuffle(&mut rng);
            orders.push(order);
        }
        let masks: Vec<Vec<f32>> = orders
            .iter()
            .flat_map(|order| {
                options.deletion_fractions.iter().map(move |&fraction| {
                    let mut mask = vec![1.0; n];
                    let deleted = ((fraction * n as f64).round() as usize).min(n);
                    order[..deleted].iter().for_each(|&i| mask[i] = 0.0);
                    mask
                })
            })
            .collect();
        let scores = probability(&masks);
        let steps = options.deletion_fractions.len();
        let salient_first = scores[..steps].to_vec();
        let random_order: Vec<f64> = (0..steps)
            .map(|s| {
                let sum: f64 = (1..orders.len()).map(|o| scores[o * steps + s]).sum();
                sum / (orders.len() - 1).max(1) as f64
            })
            .collect();
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        Faithfulness {
            fractions: options.deletion_fractions.clone(),
            auc_salient: mean(&salient_first),
            auc_random: mean(&random_order),
            salient_first,
            random_order,
        }
    }
}

/// The first clip's feature map `channels × frames` (own frames only).
fn feature_map(stream: &crate::model::spectral_cnn::StreamOutput) -> (Vec<f32>, usize) {
    let frames = stream.n_frames[0];
    let map = stream.feature_map.clone().narrow(0, 0, 1).narrow(2, 0, frames);
    (to_vec(map), frames)
}

/// Segment (of `n` equal ones) holding the centre of frame `t` of `frames`.
fn segment_of_frame(t: usize, frames: usize, n: usize) -> usize {
    (((t as f64 + 0.5) / frames as f64 * n as f64) as usize).min(n - 1)
}

/// Centre times of `n` equal frames spanning `duration_s`.
fn frame_times(n: usize, duration_s: f64) -> Vec<f64> {
    (0..n).map(|t| (t as f64 + 0.5) * duration_s / n as f64).collect()
}

fn to_vec<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor.into_data().convert::<f32>().try_into_vec().expect("f32 values")
}

/// The predicted class of one clip's probabilities.
fn argmax(probabilities: &[f32]) -> usize {
    crate::eval::argmax_rows(probabilities, probabilities.len())[0]
}

/// The fusion gate averaged over its dimensions (gated fusion only).
fn mean_gate(output: &ModelOutput) -> Option<f32> {
    output.gate.as_ref().map(|g| {
        let g = to_vec(g.clone());
        g.iter().sum::<f32>() / g.len() as f32
    })
}
