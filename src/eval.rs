//! How well a model recognises emotions: UA (unweighted average recall, the
//! headline number of EmoBox and the paper), WA (accuracy), macro-F1,
//! per-class recall and the confusion matrix; the mean ± std over folds; and
//! a model scored on a corpus, with the files `emofuse eval` writes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::audio;
use crate::data::{Clip, Problem};
use crate::infer::Predictor;
use crate::persist;
use crate::plot::{self, PlotError};

/// Scores of one set of predictions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Mean of the per-class recalls over the classes present in the labels.
    pub ua: f64,
    /// Fraction of clips predicted right.
    pub wa: f64,
    /// Mean of the per-class F1 over the classes present in the labels.
    pub macro_f1: f64,
    /// Recall of each class (`None` when the class has no clip).
    pub per_class_recall: Vec<Option<f64>>,
    /// `confusion[true][predicted]` clip counts.
    pub confusion: Vec<Vec<usize>>,
    pub clips: usize,
}

impl Metrics {
    /// Scores `predicted` against `truth` (class indices below `n_classes`).
    pub fn compute(truth: &[usize], predicted: &[usize], n_classes: usize) -> Metrics {
        assert_eq!(truth.len(), predicted.len(), "one prediction per clip");
        let mut confusion = vec![vec![0usize; n_classes]; n_classes];
        for (&t, &p) in truth.iter().zip(predicted) {
            confusion[t][p] += 1;
        }
        let support: Vec<usize> = confusion.iter().map(|row| row.iter().sum()).collect();
        let predicted_as: Vec<usize> = (0..n_classes)
            .map(|c| confusion.iter().map(|row| row[c]).sum())
            .collect();
        let per_class_recall: Vec<Option<f64>> = (0..n_classes)
            .map(|c| (support[c] > 0).then(|| confusion[c][c] as f64 / support[c] as f64))
            .collect();
        let present: Vec<usize> = (0..n_classes).filter(|&c| support[c] > 0).collect();
        let mean = |values: Vec<f64>| {
            if values.is_empty() {
                0.0
            } else {
                values.iter().sum::<f64>() / values.len() as f64
            }
        };
        let ua = mean(present.iter().map(|&c| per_class_recall[c].unwrap_or(0.0)).collect());
        let f1 = |c: usize| {
            let tp = confusion[c][c] as f64;
            let denominator = (support[c] + predicted_as[c]) as f64;
            if denominator == 0.0 {
                0.0
            } else {
                2.0 * tp / denominator
            }
        };
        let correct: usize = (0..n_classes).map(|c| confusion[c][c]).sum();
        Metrics {
            ua,
            wa: if truth.is_empty() {
                0.0
            } else {
                correct as f64 / truth.len() as f64
            },
            macro_f1: mean(present.iter().map(|&c| f1(c)).collect()),
            per_class_recall,
            confusion,
            clips: truth.len(),
        }
    }
}

/// `UA 50.00, WA 50.00, macro-F1 50.00` (percent).
impl std::fmt::Display for Metrics {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            out,
            "UA {:.2}, WA {:.2}, macro-F1 {:.2}",
            100.0 * self.ua,
            100.0 * self.wa,
            100.0 * self.macro_f1
        )
    }
}

/// Mean and (population) standard deviation of one score over folds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MeanStd {
    pub mean: f64,
    pub std: f64,
}

impl MeanStd {
    pub fn of(values: &[f64]) -> MeanStd {
        let n = values.len().max(1) as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        MeanStd { mean, std: var.sqrt() }
    }
}

/// UA, WA and macro-F1 as mean ± std over folds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FoldSummary {
    pub folds: usize,
    pub ua: MeanStd,
    pub wa: MeanStd,
    pub macro_f1: MeanStd,
}

impl FoldSummary {
    pub fn of(folds: &[Metrics]) -> FoldSummary {
        let pick = |f: fn(&Metrics) -> f64| MeanStd::of(&folds.iter().map(f).collect::<Vec<_>>());
        FoldSummary {
            folds: folds.len(),
            ua: pick(|m| m.ua),
            wa: pick(|m| m.wa),
            macro_f1: pick(|m| m.macro_f1),
        }
    }
}

/// How far confidence is from accuracy: clips binned by their top
/// probability into 15 equal-width bins, with the summed confidence and the
/// right answers of each. Bins add up across folds, so the pooled expected
/// calibration error (ECE) is that of all folds' test clips together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reliability {
    pub clips: Vec<usize>,
    pub confidence: Vec<f64>,
    pub correct: Vec<usize>,
}

impl Reliability {
    pub const BINS: usize = 15;

    /// The bins of `[clips][classes]` probabilities against the true classes.
    pub fn of(probabilities: &[f32], truth: &[usize], n_classes: usize) -> Reliability {
        let mut bins = Reliability::empty();
        for (row, &t) in probabilities.chunks_exact(n_classes).zip(truth) {
            let (best, &confidence) = row
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .expect("at least one class");
            let bin = ((f64::from(confidence) * Self::BINS as f64) as usize).min(Self::BINS - 1);
            bins.clips[bin] += 1;
            bins.confidence[bin] += f64::from(confidence);
            bins.correct[bin] += usize::from(best == t);
        }
        bins
    }

    pub fn empty() -> Reliability {
        Reliability {
            clips: vec![0; Self::BINS],
            confidence: vec![0.0; Self::BINS],
            correct: vec![0; Self::BINS],
        }
    }

    /// Both sets of clips in one.
    pub fn add(&mut self, other: &Reliability) {
        for bin in 0..Self::BINS {
            self.clips[bin] += other.clips[bin];
            self.confidence[bin] += other.confidence[bin];
            self.correct[bin] += other.correct[bin];
        }
    }

    /// Expected calibration error: the clip-weighted mean over bins of
    /// |accuracy − mean confidence|, 0 (perfect) to 1.
    pub fn ece(&self) -> f64 {
        let total: usize = self.clips.iter().sum();
        if total == 0 {
            return 0.0;
        }
        (0..Self::BINS)
            .filter(|&bin| self.clips[bin] > 0)
            .map(|bin| (self.correct[bin] as f64 - self.confidence[bin]).abs())
            .sum::<f64>()
            / total as f64
    }
}

/// The softmax temperature that makes `[clips][classes]` probabilities
/// most likely for the true classes (least negative log-likelihood):
/// temperature scaling (Guo et al., 2017). The log-likelihood is concave in
/// 1/T, so a golden-section search over log T in [0.05, 20] finds it.
pub fn fit_temperature(probabilities: &[f32], truth: &[usize], n_classes: usize) -> f32 {
    let logits: Vec<f64> = probabilities
        .iter()
        .map(|&p| crate::infer::log_probability(p))
        .collect();
    let nll = |log_t: f64| {
        let inverse = (-log_t).exp();
        logits
            .chunks_exact(n_classes)
            .zip(truth)
            .map(|(row, &t)| {
                let top = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = row.iter().map(|z| ((z - top) * inverse).exp()).sum();
                sum.ln() - (row[t] - top) * inverse
            })
            .sum::<f64>()
    };
    let ratio = (5f64.sqrt() - 1.0) / 2.0;
    let (mut low, mut high) = (0.05f64.ln(), 20f64.ln());
    for _ in 0..60 {
        let (a, b) = (high - ratio * (high - low), low + ratio * (high - low));
        if nll(a) < nll(b) {
            high = b;
        } else {
            low = a;
        }
    }
    ((low + high) / 2.0).exp() as f32
}

/// The class with the highest score in each row of `[clips][classes]` scores.
pub fn argmax_rows(scores: &[f32], n_classes: usize) -> Vec<usize> {
    scores
        .chunks_exact(n_classes)
        .map(|row| {
            row.iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, _)| i)
                .expect("at least one class")
        })
        .collect()
}

/// How a model's classes meet a test set's labels. Calm counts as neutral
/// where only one side has calm (the cross-corpus policy of
/// [`crate::data::shared_label`]); a label the model does not have is not
/// scored, and a class the test set does not have can still be predicted
/// (and is then wrong).
#[derive(Debug, Clone, PartialEq)]
pub struct Scoring {
    /// The classes scored: the model's, less calm when it counts as neutral.
    pub labels: Vec<String>,
    /// `column[c]`: the scored class of the model's class `c`.
    column: Vec<usize>,
    /// Test labels read as another (`calm` → `neutral`).
    truth_as: Option<(&'static str, &'static str)>,
    /// What was merged, in words.
    pub note: Option<String>,
}

impl Scoring {
    /// The scoring of a model with classes `model_labels` on clips labelled `test_labels`.
    pub fn new<'a>(model_labels: &[String], test_labels: impl IntoIterator<Item = &'a str>) -> Scoring {
        let has = |label: &str| model_labels.iter().any(|l| l == label);
        let test_has_calm = test_labels.into_iter().any(|l| l == "calm");
        let identity = || Scoring {
            labels: model_labels.to_vec(),
            column: (0..model_labels.len()).collect(),
            truth_as: None,
            note: None,
        };
        if !has("neutral") {
            return identity();
        }
        match (has("calm"), test_has_calm) {
            (true, false) => {
                let labels: Vec<String> = model_labels.iter().filter(|l| *l != "calm").cloned().collect();
                let neutral = labels.iter().position(|l| l == "neutral").expect("checked above");
                let column = model_labels
                    .iter()
                    .map(|l| match l.as_str() {
                        "calm" => neutral,
                        _ => labels.iter().position(|k| k == l).expect("kept above"),
                    })
                    .collect();
                Scoring {
                    labels,
                    column,
                    truth_as: None,
                    note: Some("the model's calm counts as neutral (the test clips have no calm)".into()),
                }
            }
            (false, true) => Scoring {
                truth_as: Some(("calm", "neutral")),
                note: Some("calm clips count as neutral (the model has no calm)".into()),
                ..identity()
            },
            _ => identity(),
        }
    }

    /// The scored class of a clip labelled `label`, if the model has it.
    pub fn truth(&self, label: &str) -> Option<usize> {
        let label = match self.truth_as {
            Some((from, to)) if label == from => to,
            _ => label,
        };
        self.labels.iter().position(|l| l == label)
    }

    /// `[clips][model classes]` probabilities as `[clips][scored classes]`
    /// (merged classes summed).
    pub fn probabilities(&self, model: &[f32]) -> Vec<f32> {
        let (from, to) = (self.column.len(), self.labels.len());
        let mut merged = vec![0.0; model.len() / from * to];
        for (row, out) in model.chunks_exact(from).zip(merged.chunks_exact_mut(to)) {
            for (c, &p) in row.iter().enumerate() {
                out[self.column[c]] += p;
            }
        }
        merged
    }
}

/// A model's answers on a set of clips, and their scores.
pub struct Evaluation {
    /// The scored classes (see [`Scoring`]).
    pub labels: Vec<String>,
    pub metrics: Metrics,
    /// The scored classes the test clips have: those both label sets share.
    pub shared_labels: Vec<String>,
    /// How calm was matched to neutral, if it was.
    pub label_note: Option<String>,
    /// Clips whose label the model does not have (not scored), per label.
    pub unscored: BTreeMap<String, usize>,
    /// The scored clips, with their true and predicted classes and `[clips][classes]` probabilities.
    pub clips: Vec<PathBuf>,
    pub truth: Vec<usize>,
    pub predicted: Vec<usize>,
    pub probabilities: Vec<f32>,
    /// Clips that could not be read (left out).
    pub problems: Vec<Problem>,
}

/// What `metrics.json` holds: the scores and where they come from.
#[derive(Debug, Serialize)]
pub struct EvalReport<'a> {
    pub model: String,
    pub data: &'a Path,
    pub fold: Option<String>,
    pub labels: &'a [String],
    pub shared_labels: &'a [String],
    pub label_note: Option<&'a str>,
    pub metrics: &'a Metrics,
    /// Expected calibration error of the model's (calibrated) confidence on these clips.
    pub ece: f64,
    /// Clips not scored, per label the model does not have.
    pub unscored: &'a BTreeMap<String, usize>,
}

/// The scores for people: UA, WA and macro-F1, each class' recall.
impl std::fmt::Display for EvalReport<'_> {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = self.metrics;
        writeln!(
            out,
            "{} clips: UA {:.2}  WA {:.2}  macro-F1 {:.2}",
            m.clips,
            100.0 * m.ua,
            100.0 * m.wa,
            100.0 * m.macro_f1
        )?;
        writeln!(out, "expected calibration error {:.3} (15 bins)", self.ece)?;
        for (label, recall) in self.labels.iter().zip(&m.per_class_recall) {
            if let Some(recall) = recall {
                writeln!(out, "  {label:<10} recall {:.2}", 100.0 * recall)?;
            }
        }
        if self.shared_labels.len() < self.labels.len() || !self.unscored.is_empty() {
            writeln!(
                out,
                "scored on the classes both share: {}",
                self.shared_labels.join(", ")
            )?;
        }
        if let Some(note) = self.label_note {
            writeln!(out, "{note}")?;
        }
        if !self.unscored.is_empty() {
            let counts: Vec<String> = self.unscored.iter().map(|(l, n)| format!("{l} {n}")).collect();
            writeln!(out, "not scored (the model has no such class): {}", counts.join(", "))?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("no clip has a label the model knows ({})", labels.join(", "))]
    NothingToScore { labels: Vec<String> },
    #[error(transparent)]
    Write(#[from] persist::WriteError),
    #[error(transparent)]
    Plot(#[from] PlotError),
}

/// Scores `predictor` on `clips`, decoded on all cores; `on_clip` is called
/// once per clip that has a label the model knows.
pub fn evaluate(predictor: &Predictor, clips: &[&Clip], on_clip: impl Fn() + Sync) -> Result<Evaluation, EvalError> {
    let scoring = Scoring::new(predictor.labels(), clips.iter().map(|c| c.label.as_str()));
    let (known, unknown): (Vec<&Clip>, Vec<&Clip>) = clips.iter().partition(|c| scoring.truth(&c.label).is_some());
    let mut unscored = BTreeMap::new();
    for clip in unknown {
        *unscored.entry(clip.label.clone()).or_insert(0) += 1;
    }
    let examples: Vec<_> = known
        .par_iter()
        .map(|clip| {
            let name = clip.path.display().to_string();
            let example = audio::load(&clip.path)
                .map_err(|e| e.to_string())
                .and_then(|w| predictor.example(&w, &name).map_err(|e| e.to_string()))
                .map(|mut example| {
                    example.label = scoring.truth(&clip.label).expect("known label");
                    example
                });
            on_clip();
            example
        })
        .collect();
    let (mut scored_clips, mut scored, mut problems) = (Vec::new(), Vec::new(), Vec::new());
    for (clip, example) in known.iter().zip(examples) {
        match example {
            Ok(example) => {
                scored_clips.push(clip.path.clone());
                scored.push(example);
            }
            Err(reason) => problems.push(Problem {
                path: clip.path.clone(),
                reason,
            }),
        }
    }
    let labels = scoring.labels.clone();
    if scored.is_empty() {
        return Err(EvalError::NothingToScore { labels });
    }
    let probabilities = scoring.probabilities(&predictor.probabilities(&scored));
    let truth: Vec<usize> = scored.iter().map(|e| e.label).collect();
    let predicted = argmax_rows(&probabilities, labels.len());
    let metrics = Metrics::compute(&truth, &predicted, labels.len());
    let shared_labels = (0..labels.len())
        .filter(|&c| metrics.per_class_recall[c].is_some())
        .map(|c| labels[c].clone())
        .collect();
    Ok(Evaluation {
        metrics,
        labels,
        shared_labels,
        label_note: scoring.note,
        unscored,
        clips: scored_clips,
        truth,
        predicted,
        probabilities,
        problems,
    })
}

impl Evaluation {
    /// The report of these scores for `model` on `data` (and `fold`).
    pub fn report<'a>(&'a self, model: String, data: &'a Path, fold: Option<String>) -> EvalReport<'a> {
        EvalReport {
            model,
            data,
            fold,
            labels: &self.labels,
            shared_labels: &self.shared_labels,
            label_note: self.label_note.as_deref(),
            metrics: &self.metrics,
            ece: Reliability::of(&self.probabilities, &self.truth, self.labels.len()).ece(),
            unscored: &self.unscored,
        }
    }

    /// Writes `metrics.json` (the report), `metrics.csv`, `predictions.csv`
    /// (every clip's classes and probabilities) and `confusion.png` into `out`.
    pub fn write_files(&self, out: &Path, report: &EvalReport) -> Result<(), EvalError> {
        let write = |name: &str, bytes: &[u8]| persist::write_file(&out.join(name), bytes);
        write(
            "metrics.json",
            &serde_json::to_vec_pretty(report).expect("a report serialises"),
        )?;
        let (labels, m) = (&self.labels, &self.metrics);
        let mut csv = String::from("metric,value\n");
        csv += &format!(
            "ua,{:.4}\nwa,{:.4}\nmacro_f1,{:.4}\nece,{:.4}\nclips,{}\n",
            m.ua, m.wa, m.macro_f1, report.ece, m.clips
        );
        for (label, recall) in labels.iter().zip(&m.per_class_recall) {
            if let Some(recall) = recall {
                csv += &format!("recall_{label},{recall:.4}\n");
            }
        }
        write("metrics.csv", csv.as_bytes())?;
        let mut rows = format!(
            "path,true,predicted,{}\n",
            labels.iter().map(|l| format!("p_{l}")).collect::<Vec<_>>().join(",")
        );
        for (i, path) in self.clips.iter().enumerate() {
            let p: Vec<String> = self.probabilities[i * labels.len()..(i + 1) * labels.len()]
                .iter()
                .map(|v| format!("{v:.5}"))
                .collect();
            rows += &format!(
                "{},{},{},{}\n",
                path.display(),
                labels[self.truth[i]],
                labels[self.predicted[i]],
                p.join(",")
            );
        }
        write("predictions.csv", rows.as_bytes())?;
        let title = format!(
            "UA {:.1} %  WA {:.1} %  ({} clips)",
            100.0 * m.ua,
            100.0 * m.wa,
            m.clips
        );
        plot::confusion_matrix(&out.join("confusion.png"), labels, &m.confusion, &title)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ua_weighs_classes_equally_and_wa_clips() {
        // Class 0: 8 clips, all right; class 1: 2 clips, one right.
        let truth = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1];
        let predicted = [0, 0, 0, 0, 0, 0, 0, 0, 1, 0];
        let m = Metrics::compute(&truth, &predicted, 3);
        assert!((m.ua - 0.75).abs() < 1e-12, "class 2 has no clips and is left out");
        assert!((m.wa - 0.9).abs() < 1e-12);
        // F1: class 0 = 2·8/(8+9), class 1 = 2·1/(2+1).
        assert!((m.macro_f1 - (16.0 / 17.0 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
        assert_eq!(m.confusion[1], vec![1, 1, 0]);
        assert_eq!(m.per_class_recall[2], None);
    }

    fn labels(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn calm_counts_as_neutral_where_one_side_lacks_it() {
        // An 8-class RAVDESS model on TESS: its calm answers are neutral.
        let model = labels(&["neutral", "calm", "happy"]);
        let scoring = Scoring::new(&model, ["neutral", "happy"]);
        assert_eq!(scoring.labels, labels(&["neutral", "happy"]));
        let merged = scoring.probabilities(&[0.25, 0.5, 0.25, 0.5, 0.125, 0.375]);
        assert_eq!(merged, vec![0.75, 0.25, 0.625, 0.375]);
        // A model without calm on RAVDESS: calm clips are neutral ones.
        let model = labels(&["neutral", "happy", "boredom"]);
        let scoring = Scoring::new(&model, ["calm", "happy", "surprise"]);
        assert_eq!(scoring.truth("calm"), Some(0));
        assert_eq!(scoring.truth("surprise"), None, "a class the model lacks is not scored");
        assert_eq!(scoring.probabilities(&[0.5, 0.25, 0.25]), vec![0.5, 0.25, 0.25]);
        // Within one corpus nothing is merged.
        let model = labels(&["neutral", "calm"]);
        assert_eq!(Scoring::new(&model, ["calm", "neutral"]).labels, model);
        assert!(Scoring::new(&model, ["calm", "neutral"]).note.is_none());
    }

    #[test]
    fn temperature_scaling_fixes_overconfidence() {
        // Always 90 % sure, right 60 % of the time: too confident.
        let mut probabilities = Vec::new();
        let mut truth = Vec::new();
        for i in 0..100 {
            probabilities.extend([0.9f32, 0.05, 0.05]);
            truth.push(if i % 5 < 3 { 0 } else { 1 + i % 2 });
        }
        let before = Reliability::of(&probabilities, &truth, 3);
        assert!((before.ece() - 0.3).abs() < 1e-6, "{}", before.ece());
        let t = fit_temperature(&probabilities, &truth, 3);
        assert!(t > 1.0, "overconfidence needs a softer softmax: {t}");
        let calibrated = crate::infer::with_temperature(&probabilities, 3, t);
        let after = Reliability::of(&calibrated, &truth, 3);
        assert!(after.ece() < 0.01, "{}", after.ece());
        assert!(
            (calibrated[0] - 0.6).abs() < 0.01,
            "the top class gets its accuracy: {}",
            calibrated[0]
        );
        let mut both = before.clone();
        both.add(&after);
        assert_eq!(both.clips.iter().sum::<usize>(), 200);
    }

    #[test]
    fn fold_summary_is_mean_and_population_std() {
        let s = MeanStd::of(&[0.5, 0.7]);
        assert!((s.mean - 0.6).abs() < 1e-12 && (s.std - 0.1).abs() < 1e-12);
    }
}
