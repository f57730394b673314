//! The SNR sweep: each model scored on its own test clips, clean and mixed
//! with noise from the noise corpus' *test* pool at each SNR (optionally one
//! noise category at a time). Every model sees exactly the same noisy audio:
//! the noise clip and offset for a test clip depend only on the seed, the
//! clip's path, the SNR and the category.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::tensor::Device;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::audio::{self, Waveform};
use crate::data::{self, DataError, DatasetKind};
use crate::eval::{MeanStd, Metrics, argmax_rows};
use crate::infer::{InferError, Predictor};
use crate::model::saved::{ModelDirError, ModelFolder, SplitFile};
use crate::noise::{self, NoiseBank, SnrReference};
use crate::persist;
use crate::plot::{self, PlotError, Series};

/// One trained model and the clips it is tested on (its test fold).
pub struct ModelUnderTest {
    /// The name the tables use (the folder's name as given).
    pub name: String,
    pub fold: String,
    pub predictor: Predictor,
    /// Test clips: path and label.
    pub clips: Vec<(PathBuf, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum RobustnessError {
    #[error(transparent)]
    ModelDir(#[from] ModelDirError),
    #[error("{}: {source}", dir.display())]
    Model { dir: PathBuf, source: Box<InferError> },
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("{}: the model has no test fold (no split.json, or trained on every clip); it needs test clips from a corpus", dir.display())]
    NoTestClips { dir: PathBuf },
    #[error(transparent)]
    Write(#[from] persist::WriteError),
    #[error(transparent)]
    Plot(#[from] PlotError),
    #[error("the noise corpus: {0}")]
    Noise(#[from] noise::NoiseError),
}

/// A sweep ready to run: the models with their test clips, the noise
/// corpus' test pool, and what an earlier run of the same sweep finished.
pub struct Sweep {
    pub models: Vec<ModelUnderTest>,
    /// The test pool of the noise corpus (never heard in training).
    pub noise: NoiseBank,
    /// Clips of the whole noise corpus.
    pub noise_clips: usize,
    pub config: SweepConfig,
    /// Where the report goes, and the journal while the sweep runs.
    out: PathBuf,
    /// Finished conditions, on disk as they finish, so that a killed sweep
    /// run again with the same settings continues where it stopped.
    journal: persist::Journal,
    journal_path: PathBuf,
    /// Rows an earlier run of this sweep finished.
    done: Vec<SweepRow>,
}

impl Sweep {
    /// The models of each folder of `model_dirs` (see [`ModelUnderTest::load_all`]),
    /// on `device`, against the test pool of the noise corpus `noise_dir`,
    /// reported in `out` and journaled there (the models, their clips, the
    /// noise pool and the settings name the job).
    pub fn prepare(
        model_dirs: &[PathBuf],
        data: Option<(&Path, DatasetKind)>,
        noise_dir: &Path,
        config: SweepConfig,
        out: &Path,
        device: &Device,
    ) -> Result<Sweep, RobustnessError> {
        let corpus = NoiseBank::load(noise_dir)?;
        let (_, noise) = corpus.split(config.seed);
        let mut models = Vec::new();
        for dir in model_dirs {
            models.extend(ModelUnderTest::load_all(dir, data, device)?);
        }
        let job = serde_json::json!({
            "config": config,
            "noise": noise.clips.iter().map(|c| c.path.display().to_string()).collect::<Vec<_>>(),
            "models": models
                .iter()
                .map(|m| (&m.name, &m.fold, &m.predictor.config().training, &m.clips))
                .collect::<Vec<_>>(),
        });
        let key = serde_json::to_vec(&job).expect("a job serialises");
        let key = serde_json::json!(blake3::hash(&key).to_hex().to_string());
        let journal_path = out.join(".robustness.journal.jsonl");
        let (journal, done) =
            persist::Journal::open::<SweepRow>(&journal_path, &key).map_err(|source| persist::WriteError {
                path: journal_path.clone(),
                source,
            })?;
        Ok(Sweep {
            models,
            noise,
            noise_clips: corpus.clips.len(),
            config,
            out: out.to_owned(),
            journal,
            journal_path,
            done,
        })
    }

    /// Conditions of every model: clean, and each SNR with all the noise
    /// and, when asked, with each category alone.
    pub fn conditions(&self) -> usize {
        let noisy = self.config.snrs.iter().filter(|s| s.is_some()).count();
        let categories = if self.config.per_category {
            self.noise.categories().len()
        } else {
            0
        };
        self.models.len() * (noisy * (1 + categories) + self.config.snrs.len() - noisy)
    }

    /// Conditions finished by an earlier run.
    pub fn done(&self) -> usize {
        self.done.len()
    }

    /// Runs the rest of the sweep (`on_row` after each condition), writes the
    /// report ([`write_outputs`]) and removes the journal. A row that cannot
    /// be journaled costs only a restart's redone work: it comes back as a
    /// warning beside the complete report.
    pub fn run(mut self, mut on_row: impl FnMut()) -> Result<(SweepReport, Option<String>), RobustnessError> {
        let mut journal_error = None;
        let report = sweep(&self.models, &self.noise, &self.config, &self.done, |row| {
            on_row();
            if let Err(err) = self.journal.append(row) {
                journal_error.get_or_insert(err);
            }
        });
        write_outputs(&self.out, &report, &self.noise.categories())?;
        let path = self.journal_path;
        let warning = journal_error.map(|err| format!("cannot write {}: {err}", path.display()));
        self.journal
            .finish()
            .map_err(|source| persist::WriteError { path, source })?;
        Ok((report, warning))
    }
}

impl ModelUnderTest {
    /// The models of a folder (one model, or each fold of a cv folder), each
    /// with its test clips: those of its `split.json`, or, for a model trained
    /// on every clip, the corpus `data`.
    pub fn load_all(
        dir: &Path,
        data: Option<(&Path, DatasetKind)>,
        device: &Device,
    ) -> Result<Vec<ModelUnderTest>, RobustnessError> {
        let name = display_name(dir);
        ModelFolder::open(dir)?
            .models()
            .into_iter()
            .map(|(fold, model_dir)| {
                let predictor = Predictor::load(&model_dir, device).map_err(|source| RobustnessError::Model {
                    dir: model_dir.clone(),
                    source: Box::new(source),
                })?;
                let clips = test_clips(&model_dir, data)?;
                Ok(ModelUnderTest {
                    name: name.clone(),
                    fold,
                    predictor,
                    clips,
                })
            })
            .collect()
    }
}

/// The folder's name as given (a symlink names its model), or its real one
/// for `.` and `..`.
fn display_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .or_else(|| {
            let real = dir.canonicalize().ok()?;
            real.file_name().map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| dir.display().to_string())
}

/// The test clips (path, label) of the model in `dir`: its split's test
/// files, labelled by their corpus' layout as in training, or else `data`.
fn test_clips(dir: &Path, data: Option<(&Path, DatasetKind)>) -> Result<Vec<(PathBuf, String)>, RobustnessError> {
    let split_test = SplitFile::read(dir)?.map(|split| split.test).unwrap_or_default();
    let clips = match data {
        // The corpus names the test clips of a model trained on every clip.
        Some((data, kind)) if split_test.is_empty() => data::load(data, kind)?
            .clips
            .into_iter()
            .map(|c| (c.path, c.label))
            .collect(),
        _ if split_test.is_empty() => return Err(RobustnessError::NoTestClips { dir: dir.to_owned() }),
        _ => {
            let root = common_root(&split_test);
            let kind = data.map_or(DatasetKind::Auto, |(_, kind)| kind);
            let wanted: std::collections::HashSet<&PathBuf> = split_test.iter().collect();
            data::load(&root, kind)?
                .clips
                .into_iter()
                .filter(|c| wanted.contains(&c.path))
                .map(|c| (c.path, c.label))
                .collect()
        }
    };
    Ok(clips)
}

/// The deepest folder holding all `paths`.
fn common_root(paths: &[PathBuf]) -> PathBuf {
    let mut root = paths[0].parent().map(Path::to_path_buf).unwrap_or_default();
    while !paths.iter().all(|p| p.starts_with(&root)) {
        if !root.pop() {
            break;
        }
    }
    root
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
    /// Test clips whose label the model does not know (not scored).
    #[serde(default)]
    pub unscored_clips: usize,
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
                let outcomes: Vec<ClipOutcome> = model
                    .clips
                    .par_iter()
                    .map(|(path, label)| {
                        let Some(label) = model.predictor.labels().iter().position(|l| l == label) else {
                            return ClipOutcome::Unscored;
                        };
                        // Unreadable clips are problems already (decoding above).
                        let Some(waveform) = decoded.get(path) else {
                            return ClipOutcome::Unreadable;
                        };
                        let audio = match snr {
                            None => waveform.as_ref().clone(),
                            Some(snr) => match noisy(waveform, path, snr, category.as_deref(), &pool, config) {
                                Ok(audio) => audio,
                                Err(err) => {
                                    return ClipOutcome::Failed(format!(
                                        "{}: noise at {snr} dB: {err}",
                                        path.display()
                                    ));
                                }
                            },
                        };
                        match model.predictor.example(&audio, &path.display().to_string()) {
                            Ok(example) => ClipOutcome::Scored(label, example),
                            Err(err) => ClipOutcome::Failed(err.to_string()),
                        }
                    })
                    .collect();
                let (mut labels, mut examples, mut unscored_clips) = (Vec::new(), Vec::new(), 0);
                for outcome in outcomes {
                    match outcome {
                        ClipOutcome::Scored(label, example) => {
                            labels.push(label);
                            examples.push(example);
                        }
                        ClipOutcome::Unscored => unscored_clips += 1,
                        ClipOutcome::Unreadable => {}
                        ClipOutcome::Failed(problem) => problems.push(problem),
                    }
                }
                if examples.is_empty() {
                    problems.push(format!(
                        "{} {}: no test clip could be scored at {}",
                        model.name,
                        model.fold,
                        snr_name(snr)
                    ));
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
                    unscored_clips,
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

/// What became of one test clip in one condition.
enum ClipOutcome {
    Scored(usize, crate::model::input::Example),
    /// Its label is not one of the model's.
    Unscored,
    /// It could not be decoded (already a problem of the sweep).
    Unreadable,
    /// Why it could not be mixed or made into the model's input.
    Failed(String),
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

/// The table for people: mean UA ± std per model and condition, and the
/// mean UA relative to clean.
impl std::fmt::Display for SweepReport {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let snrs = &self.config.snrs;
        let header: String = snrs.iter().map(|s| format!("{:>12}", snr_name(*s))).collect();
        writeln!(
            out,
            "UA % (mean ± std over folds)\n{:<28}{header}{:>12}",
            "model", "mean rel."
        )?;
        for degradation in &self.degradation {
            let cells: String = snrs
                .iter()
                .map(|&snr| {
                    self.summary
                        .iter()
                        .find(|s| s.model == degradation.model && s.category.is_none() && s.snr_db == snr)
                        .map_or(format!("{:>12}", "-"), |s| {
                            format!("{:>7.1} ±{:>4.1}", 100.0 * s.ua.mean, 100.0 * s.ua.std)
                        })
                })
                .collect();
            writeln!(
                out,
                "{:<28}{cells}{:>11.1}%",
                degradation.model,
                100.0 * degradation.mean_relative_ua
            )?;
        }
        Ok(())
    }
}

/// A condition as users write it: `clean` → `None`, a number of dB → `Some`.
pub fn parse_condition(text: &str) -> Result<Option<f64>, String> {
    match text.trim() {
        "clean" => Ok(None),
        v => v
            .parse::<f64>()
            .ok()
            .filter(|snr| snr.is_finite())
            .map(Some)
            .ok_or_else(|| format!("want clean or a number of dB, not {v:?}")),
    }
}

/// `clean`, or `5 dB`.
pub fn snr_name(snr: Option<f64>) -> String {
    snr.map_or("clean".into(), |s| format!("{s} dB"))
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

/// Writes the report into `out`: `robustness.json`, `robustness.csv` (every
/// row), `summary.csv` (mean over folds), `ua_vs_snr.png` and, per model, a
/// heat map of the noise categories (`categories`) when swept one by one.
pub fn write_outputs(out: &Path, report: &SweepReport, categories: &[String]) -> Result<(), RobustnessError> {
    let write = |name: &str, bytes: &[u8]| persist::write_file(&out.join(name), bytes);
    write(
        "robustness.json",
        &serde_json::to_vec_pretty(report).expect("a report serialises"),
    )?;
    let mut rows = String::from("model,fold,snr_db,category,ua,wa,macro_f1,clips\n");
    for r in &report.rows {
        rows += &format!(
            "{},{},{},{},{:.4},{:.4},{:.4},{}\n",
            r.model,
            r.fold,
            r.snr_db.map_or("clean".into(), |s| s.to_string()),
            r.category.as_deref().unwrap_or("all"),
            r.ua,
            r.wa,
            r.macro_f1,
            r.clips
        );
    }
    write("robustness.csv", rows.as_bytes())?;
    let mut summary = String::from("model,snr_db,category,ua_mean,ua_std,wa_mean,macro_f1_mean,relative_ua\n");
    for s in &report.summary {
        summary += &format!(
            "{},{},{},{:.4},{:.4},{:.4},{:.4},{:.4}\n",
            s.model,
            s.snr_db.map_or("clean".into(), |v| v.to_string()),
            s.category.as_deref().unwrap_or("all"),
            s.ua.mean,
            s.ua.std,
            s.wa.mean,
            s.macro_f1.mean,
            s.relative_ua
        );
    }
    write("summary.csv", summary.as_bytes())?;

    // UA against SNR, clean on the left and the SNRs as given.
    let snrs = &report.config.snrs;
    let ticks: Vec<(f64, String)> = snrs.iter().enumerate().map(|(i, s)| (i as f64, snr_name(*s))).collect();
    let series: Vec<Series> = report
        .degradation
        .iter()
        .map(|d| Series {
            name: d.model.clone(),
            points: snrs
                .iter()
                .enumerate()
                .filter_map(|(i, &snr)| {
                    let s = report
                        .summary
                        .iter()
                        .find(|s| s.model == d.model && s.category.is_none() && s.snr_db == snr)?;
                    Some((i as f64, 100.0 * s.ua.mean, 100.0 * s.ua.std))
                })
                .collect(),
        })
        .collect();
    plot::lines(
        &out.join("ua_vs_snr.png"),
        "Unweighted accuracy under noise (test-pool noise)",
        ("condition", "UA % (mean ± std over folds)"),
        &ticks,
        0.0..100.0,
        &series,
    )?;
    if report.config.per_category {
        let noisy: Vec<f64> = snrs.iter().filter_map(|s| *s).collect();
        let columns: Vec<String> = noisy.iter().map(|s| snr_name(Some(*s))).collect();
        for d in &report.degradation {
            let values: Vec<Vec<Option<f64>>> = categories
                .iter()
                .map(|category| {
                    noisy
                        .iter()
                        .map(|&snr| {
                            report
                                .summary
                                .iter()
                                .find(|s| {
                                    s.model == d.model
                                        && s.category.as_deref() == Some(category)
                                        && s.snr_db == Some(snr)
                                })
                                .map(|s| s.ua.mean)
                        })
                        .collect()
                })
                .collect();
            let file = format!(
                "category_{}.png",
                d.model.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_")
            );
            plot::heatmap(
                &out.join(file),
                &format!("{}: UA % per noise category", d.model),
                ("SNR", "noise category"),
                &columns,
                categories,
                &values,
            )?;
        }
    }
    Ok(())
}
