//! The SNR sweep: each model scored on its own test clips, clean and mixed
//! with noise from the noise corpus' *test* pool at each SNR (optionally one
//! noise category at a time). Every model sees exactly the same noisy audio:
//! the noise clip and offset for a test clip depend only on the seed, the
//! clip's path, the SNR and the category.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::audio::{self, Waveform};
use crate::eval::{MeanStd, Metrics, argmax_rows};
use crate::infer::Predictor;
use crate::noise::{self, NoiseBank, SnrReference};

/// One trained model and the clips it is tested on (its test fold).
pub struct ModelUnderTest {
    /// The name the tables use (a model kind, or the folder's name).
    pub name: String,
    pub fold: String,
    pub predictor: Predictor,
    /// Test clips: path and label.
    pub clips: Vec<(PathBuf, String)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepConfig {
    /// SNRs in dB; `None` is the clean condition.
    pub snrs: Vec<Option<f64>>,
    /// Also sweep each noise category alone.
    pub per_category: bool,
    pub reference: SnrReference,
    pub seed: u64,
}

/// Scores of one model on one fold in one condition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepRow {
    pub model: String,
    pub fold: String,
    /// `None`: clean.
    pub snr_db: Option<f64>,
    /// `None`: all categories mixed.
    pub category: Option<String>,
    pub ua: f64,
    pub wa: f64,
    pub macro_f1: f64,
    pub clips: usize,
}

/// Mean over folds of one model in one condition, and its share of the clean UA.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepSummary {
    pub model: String,
    pub snr_db: Option<f64>,
    pub category: Option<String>,
    pub ua: MeanStd,
    pub wa: MeanStd,
    pub macro_f1: MeanStd,
    /// Mean UA here / mean clean UA.
    pub relative_ua: f64,
}

/// Per model: mean relative UA over the noisy SNRs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Degradation {
    pub model: String,
    pub clean_ua: f64,
    /// `(snr, UA / clean UA)` for each noisy SNR.
    pub relative_ua: Vec<(f64, f64)>,
    pub mean_relative_ua: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepReport {
    pub config: SweepConfig,
    pub noise_test_clips: usize,
    pub rows: Vec<SweepRow>,
    pub summary: Vec<SweepSummary>,
    pub degradation: Vec<Degradation>,
    /// Test clips that could not be read or mixed (left out).
    pub problems: Vec<String>,
}

/// Runs the sweep. Conditions with a row in `done` (from an interrupted run
/// of the same sweep) are not run again; `on_row` gets each new row.
pub fn sweep(
    models: &[ModelUnderTest],
    noise: &NoiseBank,
    config: &SweepConfig,
    done: &[SweepRow],
    mut on_row: impl FnMut(&SweepRow),
) -> SweepReport {
    let mut problems = Vec::new();
    let decoded: HashMap<PathBuf, Arc<Waveform>> = {
        let paths: Vec<&PathBuf> = models
            .iter()
            .flat_map(|m| m.clips.iter().map(|(p, _)| p))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let results: Vec<_> = paths.par_iter().map(|p| ((*p).clone(), audio::load(p))).collect();
        results
            .into_iter()
            .filter_map(|(path, result)| match result {
                Ok(waveform) => Some((path, Arc::new(waveform))),
                Err(err) => {
                    problems.push(err.to_string());
                    None
                }
            })
            .collect()
    };
    let mut categories: Vec<Option<String>> = vec![None];
    if config.per_category {
        categories.extend(noise.categories().into_iter().map(Some));
    }
    let mut rows = Vec::new();
    for model in models {
        for category in &categories {
            let pool = noise.of_category(category.as_deref());
            for &snr in &config.snrs {
                if snr.is_none() && category.is_some() {
                    continue; // Clean audio has no category.
                }
                let earlier = done.iter().find(|row| {
                    row.model == model.name && row.fold == model.fold && row.snr_db == snr && &row.category == category
                });
                if let Some(row) = earlier {
                    rows.push(row.clone());
                    continue;
                }
                let (labels, examples): (Vec<usize>, Vec<_>) = model
                    .clips
                    .par_iter()
                    .filter_map(|(path, label)| {
                        let label = model.predictor.labels().iter().position(|l| l == label)?;
                        let waveform = decoded.get(path)?;
                        let audio = match snr {
                            None => waveform.as_ref().clone(),
                            Some(snr) => noisy(waveform, path, snr, category.as_deref(), &pool, config).ok()?,
                        };
                        let example = model.predictor.example(&audio, &path.display().to_string()).ok()?;
                        Some((label, example))
                    })
                    .unzip();
                if examples.is_empty() {
                    continue;
                }
                let n_classes = model.predictor.labels().len();
                let probabilities = model.predictor.probabilities(&examples);
                let metrics = Metrics::compute(&labels, &argmax_rows(&probabilities, n_classes), n_classes);
                let row = SweepRow {
                    model: model.name.clone(),
                    fold: model.fold.clone(),
                    snr_db: snr,
                    category: category.clone(),
                    ua: metrics.ua,
                    wa: metrics.wa,
                    macro_f1: metrics.macro_f1,
                    clips: metrics.clips,
                };
                on_row(&row);
                rows.push(row);
            }
        }
    }
    let summary = summarise(&rows);
    let degradation = degradation(&summary, &config.snrs);
    SweepReport {
        config: config.clone(),
        noise_test_clips: noise.clips.len(),
        rows,
        summary,
        degradation,
        problems,
    }
}

/// `waveform` with test-pool noise at `snr`, chosen by (seed, path, snr, category):
/// the same clip gets the same noise in every run and for every model.
pub fn noisy(
    waveform: &Waveform,
    path: &std::path::Path,
    snr: f64,
    category: Option<&str>,
    pool: &[&noise::NoiseClip],
    config: &SweepConfig,
) -> Result<Waveform, noise::MixError> {
    let mut key = blake3::Hasher::new();
    key.update(&config.seed.to_le_bytes());
    key.update(path.to_string_lossy().as_bytes());
    key.update(&snr.to_le_bytes());
    key.update(category.unwrap_or("").as_bytes());
    let seed: [u8; 32] = *key.finalize().as_bytes();
    let mut rng = ChaCha8Rng::from_seed(seed);
    let clip = pool[rng.random_range(0..pool.len())];
    let mixture = noise::mix(&waveform.samples, &clip.samples, snr, config.reference, &mut rng)?;
    Ok(Waveform {
        samples: mixture.samples,
        sample_rate: waveform.sample_rate,
    })
}

/// Rows of one (model, category), by condition (see [`snr_key`]).
type ConditionRows<'a> = BTreeMap<String, Vec<&'a SweepRow>>;

fn summarise(rows: &[SweepRow]) -> Vec<SweepSummary> {
    let mut groups: BTreeMap<(String, Option<String>), ConditionRows> = BTreeMap::new();
    for row in rows {
        groups
            .entry((row.model.clone(), row.category.clone()))
            .or_default()
            .entry(snr_key(row.snr_db))
            .or_default()
            .push(row);
    }
    let mut clean_ua: HashMap<String, f64> = HashMap::new();
    for ((model, category), by_snr) in &groups {
        if category.is_none()
            && let Some(clean) = by_snr.get(&snr_key(None))
        {
            clean_ua.insert(
                model.clone(),
                MeanStd::of(&clean.iter().map(|r| r.ua).collect::<Vec<_>>()).mean,
            );
        }
    }
    let mut summary = Vec::new();
    for ((model, category), by_snr) in groups {
        for rows in by_snr.values() {
            let pick = |f: fn(&SweepRow) -> f64| MeanStd::of(&rows.iter().map(|r| f(r)).collect::<Vec<_>>());
            let ua = pick(|r| r.ua);
            let clean = clean_ua.get(&model).copied().unwrap_or(f64::NAN);
            summary.push(SweepSummary {
                model: model.clone(),
                snr_db: rows[0].snr_db,
                category: category.clone(),
                ua,
                wa: pick(|r| r.wa),
                macro_f1: pick(|r| r.macro_f1),
                relative_ua: ua.mean / clean,
            });
        }
    }
    summary
}

/// Orders clean first, then SNRs from high to low.
fn snr_key(snr: Option<f64>) -> String {
    match snr {
        None => "0 clean".into(),
        Some(snr) => format!("1 {:+010.3}", -snr),
    }
}

fn degradation(summary: &[SweepSummary], snrs: &[Option<f64>]) -> Vec<Degradation> {
    let models: Vec<String> = summary
        .iter()
        .map(|s| s.model.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    models
        .into_iter()
        .map(|model| {
            let of = |snr: Option<f64>| {
                summary
                    .iter()
                    .find(|s| s.model == model && s.category.is_none() && s.snr_db == snr)
            };
            let clean_ua = of(None).map_or(f64::NAN, |s| s.ua.mean);
            let relative_ua: Vec<(f64, f64)> = snrs
                .iter()
                .filter_map(|&snr| Some((snr?, of(snr)?.relative_ua)))
                .collect();
            let mean_relative_ua = relative_ua.iter().map(|(_, r)| r).sum::<f64>() / relative_ua.len().max(1) as f64;
            Degradation {
                model,
                clean_ua,
                relative_ua,
                mean_relative_ua,
            }
        })
        .collect()
}
