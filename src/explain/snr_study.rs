//! The "attention shift" study: as noise grows, does a fusion model lean
//! more on one stream? Per SNR, over a model's test clips: the share of the
//! stream-level SHAP attribution that goes to the temporal stream, the mean
//! SHAP of each stream and the mean fusion gate.

use rayon::prelude::*;
use serde::Serialize;

use crate::audio;
use crate::noise::NoiseBank;
use crate::robustness::{ModelUnderTest, SweepConfig, noisy};

/// Per clip: stream SHAP (spectral, temporal), mean gate, predicted right.
type ClipAttribution = (f64, f64, Option<f64>, bool);

/// One model at one SNR, over all its folds' test clips.
#[derive(Debug, Clone, Serialize)]
pub struct StudyRow {
    pub model: String,
    /// `None`: clean.
    pub snr_db: Option<f64>,
    pub clips: usize,
    /// Mean over clips of `|φ_temporal| / (|φ_spectral| + |φ_temporal|)`.
    pub temporal_share: f64,
    pub mean_shap_spectral: f64,
    pub mean_shap_temporal: f64,
    /// Mean fusion gate (weight of the spectral stream); gated fusion only.
    pub mean_gate_spectral: Option<f64>,
    /// Share of clips predicted right, beside the attributions.
    pub accuracy: f64,
}

/// Runs the study on models with both streams; `on_step` after each (model fold, SNR).
pub fn study(
    models: &[ModelUnderTest],
    noise: &NoiseBank,
    config: &SweepConfig,
    max_clips: Option<usize>,
    on_step: impl Fn() + Sync,
) -> Vec<StudyRow> {
    let pool = noise.of_category(None);
    let mut rows: Vec<StudyRow> = Vec::new();
    for &snr in &config.snrs {
        for model in models {
            let clips = &model.clips[..max_clips.unwrap_or(usize::MAX).min(model.clips.len())];
            let per_clip: Vec<ClipAttribution> = clips
                .par_iter()
                .filter_map(|(path, label)| {
                    let label = model.predictor.labels().iter().position(|l| l == label)?;
                    let clean = audio::load(path).ok()?;
                    let waveform = match snr {
                        None => clean,
                        Some(snr) => noisy(&clean, path, snr, None, &pool, config).ok()?,
                    };
                    let example = model.predictor.example(&waveform, &path.display().to_string()).ok()?;
                    let (attribution, predicted, gate) = super::stream_shap(&model.predictor, &example, None);
                    let values = &attribution.shapley.values;
                    Some((values[0], values[1], gate.map(f64::from), predicted == label))
                })
                .collect();
            on_step();
            match rows.iter_mut().find(|r| r.model == model.name && r.snr_db == snr) {
                Some(row) => accumulate(row, &per_clip),
                None => {
                    let mut row = StudyRow {
                        model: model.name.clone(),
                        snr_db: snr,
                        clips: 0,
                        temporal_share: 0.0,
                        mean_shap_spectral: 0.0,
                        mean_shap_temporal: 0.0,
                        mean_gate_spectral: None,
                        accuracy: 0.0,
                    };
                    accumulate(&mut row, &per_clip);
                    rows.push(row);
                }
            }
        }
    }
    rows
}

/// Folds `per_clip` into the running means of `row`.
fn accumulate(row: &mut StudyRow, per_clip: &[ClipAttribution]) {
    let (old, new) = (row.clips as f64, per_clip.len() as f64);
    if new == 0.0 {
        return;
    }
    let mean = |f: &dyn Fn(&ClipAttribution) -> f64| per_clip.iter().map(f).sum::<f64>() / new;
    let merge = |running: f64, batch: f64| (running * old + batch * new) / (old + new);
    let share = |&(s, t, _, _): &ClipAttribution| {
        let total = s.abs() + t.abs();
        if total > 0.0 { t.abs() / total } else { 0.5 }
    };
    row.temporal_share = merge(row.temporal_share, mean(&share));
    row.mean_shap_spectral = merge(row.mean_shap_spectral, mean(&|c| c.0));
    row.mean_shap_temporal = merge(row.mean_shap_temporal, mean(&|c| c.1));
    row.accuracy = merge(row.accuracy, mean(&|c| if c.3 { 1.0 } else { 0.0 }));
    if per_clip.iter().all(|c| c.2.is_some()) {
        let gate = mean(&|c| c.2.unwrap_or(0.0));
        row.mean_gate_spectral = Some(match row.mean_gate_spectral {
            Some(running) => merge(running, gate),
            None => gate,
        });
    }
    row.clips += per_clip.len();
}
