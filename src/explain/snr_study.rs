//! The "attention shift" study: as noise grows, does a fusion model lean
//! more on one stream? Per SNR, over a model's test clips: the share of the
//! stream-level SHAP attribution that goes to the temporal stream, the mean
//! SHAP of each stream and the mean fusion gate.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;

use burn::tensor::Device;

use crate::audio;
use crate::data::DatasetKind;
use crate::noise::{NoiseBank, NoiseError};
use crate::persist;
use crate::plot::{self, PlotError};
use crate::robustness::{ModelUnderTest, RobustnessError, SweepConfig, noisy, snr_name};

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

/// The study's rows, and the clips it had to leave out (`path: reason`).
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub struct Study {
    pub rows: Vec<StudyRow>,
    #[serde(skip)]
    pub problems: Vec<String>,
}

/// The rows as a tab-separated table for people.
impl std::fmt::Display for Study {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            out,
            "model\tSNR\tclips\ttemporal share\tSHAP spectral\tSHAP temporal\tgate (spectral)\taccuracy"
        )?;
        for r in &self.rows {
            writeln!(
                out,
                "{}\t{}\t{}\t{:.1} %\t{:+.3}\t{:+.3}\t{}\t{:.1} %",
                r.model,
                snr_name(r.snr_db),
                r.clips,
                100.0 * r.temporal_share,
                r.mean_shap_spectral,
                r.mean_shap_temporal,
                r.mean_gate_spectral.map_or("—".into(), |g| format!("{g:.3}")),
                100.0 * r.accuracy
            )?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StudyError {
    #[error(transparent)]
    Models(#[from] Box<RobustnessError>),
    #[error("the noise corpus: {0}")]
    Noise(#[from] NoiseError),
    #[error("{}: a {kind} model has one stream; the study compares two (train a fusion model)", dir.display())]
    OneStream { dir: PathBuf, kind: &'static str },
    #[error(transparent)]
    Write(#[from] persist::WriteError),
    #[error(transparent)]
    Plot(#[from] PlotError),
}

/// The fusion models of `model` (a model or a cv folder) with their test
/// clips, and the test pool of the noise corpus `noise_dir`.
pub fn prepare(
    model: &Path,
    data: Option<(&Path, DatasetKind)>,
    noise_dir: &Path,
    seed: u64,
    device: &Device,
) -> Result<(Vec<ModelUnderTest>, NoiseBank), StudyError> {
    let models = ModelUnderTest::load_all(model, data, device).map_err(Box::new)?;
    if let Some(one) = models.iter().find(|m| {
        let kind = m.predictor.config().model.kind;
        !(kind.has_spectral() && kind.has_temporal())
    }) {
        return Err(StudyError::OneStream {
            dir: model.to_owned(),
            kind: one.predictor.config().model.kind.as_str(),
        });
    }
    let (_, test_pool) = NoiseBank::load(noise_dir)?.split(seed);
    Ok((models, test_pool))
}

/// Runs the study on models with both streams; `on_step` after each (model
/// fold, SNR). Clips whose label a model does not know are not its test clips.
pub fn study(
    models: &[ModelUnderTest],
    noise: &NoiseBank,
    config: &SweepConfig,
    max_clips: Option<usize>,
    on_step: impl Fn() + Sync,
) -> Study {
    let pool = noise.of_category(None);
    let mut rows: Vec<StudyRow> = Vec::new();
    let mut problems = Vec::new();
    for &snr in &config.snrs {
        for model in models {
            let clips = &model.clips[..max_clips.unwrap_or(usize::MAX).min(model.clips.len())];
            let outcomes: Vec<Result<ClipAttribution, String>> = clips
                .par_iter()
                .filter_map(|(path, label)| {
                    let label = model.predictor.labels().iter().position(|l| l == label)?;
                    let attribution = || -> Result<ClipAttribution, String> {
                        let clean = audio::load(path).map_err(|e| e.to_string())?;
                        let waveform = match snr {
                            None => clean,
                            Some(snr) => noisy(&clean, path, snr, None, &pool, config)
                                .map_err(|e| format!("{}: noise at {snr} dB: {e}", path.display()))?,
                        };
                        let example = model
                            .predictor
                            .example(&waveform, &path.display().to_string())
                            .map_err(|e| e.to_string())?;
                        let (attribution, predicted, gate) = super::stream_shap(&model.predictor, &example, None);
                        let values = &attribution.shapley.values;
                        Ok((values[0], values[1], gate.map(f64::from), predicted == label))
                    };
                    Some(attribution())
                })
                .collect();
            let mut per_clip = Vec::with_capacity(outcomes.len());
            for outcome in outcomes {
                match outcome {
                    Ok(attribution) => per_clip.push(attribution),
                    Err(problem) => problems.push(problem),
                }
            }
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
    Study { rows, problems }
}

/// Writes `snr_study.json`, `snr_study.csv` and `snr_study.png` (the
/// temporal stream's share and gate weight against the conditions `snrs`) into `out`.
pub fn write_outputs(out: &Path, rows: &[StudyRow], snrs: &[Option<f64>]) -> Result<(), StudyError> {
    let write = |file: &str, bytes: &[u8]| persist::write_file(&out.join(file), bytes);
    write(
        "snr_study.json",
        &serde_json::to_vec_pretty(rows).expect("rows serialise"),
    )?;
    let mut csv = String::from(
        "model,snr_db,clips,temporal_share,mean_shap_spectral,mean_shap_temporal,mean_gate_spectral,accuracy\n",
    );
    for r in rows {
        csv.push_str(&format!(
            "{},{},{},{:.4},{:.4},{:.4},{},{:.4}\n",
            r.model,
            r.snr_db.map_or("clean".into(), |s| s.to_string()),
            r.clips,
            r.temporal_share,
            r.mean_shap_spectral,
            r.mean_shap_temporal,
            r.mean_gate_spectral.map_or(String::new(), |g| format!("{g:.4}")),
            r.accuracy
        ));
    }
    write("snr_study.csv", csv.as_bytes())?;
    let ticks: Vec<(f64, String)> = snrs.iter().enumerate().map(|(i, s)| (i as f64, snr_name(*s))).collect();
    let names: std::collections::BTreeSet<&str> = rows.iter().map(|r| r.model.as_str()).collect();
    let mut series = Vec::new();
    for name in names {
        let of = |f: &dyn Fn(&StudyRow) -> Option<f64>| -> Vec<(f64, f64, f64)> {
            snrs.iter()
                .enumerate()
                .filter_map(|(i, s)| {
                    let row = rows.iter().find(|r| r.model == name && r.snr_db == *s)?;
                    Some((i as f64, 100.0 * f(row)?, 0.0))
                })
                .collect()
        };
        series.push(plot::Series {
            name: format!("{name}: temporal share of stream SHAP"),
            points: of(&|r| Some(r.temporal_share)),
        });
        let gate = of(&|r| r.mean_gate_spectral.map(|g| 1.0 - g));
        if !gate.is_empty() {
            series.push(plot::Series {
                name: format!("{name}: temporal weight of the gate (1 − g)"),
                points: gate,
            });
        }
    }
    plot::lines(
        &out.join("snr_study.png"),
        "Attention shift under noise",
        ("condition", "% to the temporal stream"),
        &ticks,
        0.0..100.0,
        &series,
    )?;
    Ok(())
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
