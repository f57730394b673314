//! How well a model recognises emotions: UA (unweighted average recall, the
//! headline number of EmoBox and the paper), WA (accuracy), macro-F1,
//! per-class recall and the confusion matrix; and the mean ± std over folds.

use serde::{Deserialize, Serialize};

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

    #[test]
    fn fold_summary_is_mean_and_population_std() {
        let s = MeanStd::of(&[0.5, 0.7]);
        assert!((s.mean - 0.6).abs() < 1e-12 && (s.std - 0.1).abs() < 1e-12);
    }
}
