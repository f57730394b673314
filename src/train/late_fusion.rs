//! Late fusion of a linear probe with a trained spectral stream: the fused
//! logits are `w · spectral + (1 − w) · temporal`, with `w` chosen on clips
//! neither stream was fitted on — the validation speakers, whose temporal
//! predictions come from the probe's inner models that did not hear them.
//!
//! Each `w` is scored by its negative log-likelihood after its own softmax
//! temperature: the two streams' logits have different scales, and only
//! their ratio changes a decision, so a `w` is judged by how well it ranks
//! the classes, not by how confident the mix happens to be.

use serde::{Deserialize, Serialize};

use crate::eval::{self, Metrics, argmax_rows};
use crate::infer::{self, log_probability};

/// Where a run writes its [`LateFusionReport`].
pub const REPORT_FILE: &str = "late-fusion.json";

/// The spectral weights tried; `0` (the probe alone) first, so a tie keeps it.
pub const SPECTRAL_WEIGHTS: [f64; 11] = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];

/// How the spectral weight was chosen, as written to `late-fusion.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LateFusionReport {
    pub spectral_weight: f64,
    /// The fused validation clips' temperature at that weight.
    pub temperature: f32,
    /// Validation clips (their noisy copies included) the weight was chosen on.
    pub clips: usize,
    pub grid: Vec<WeightScore>,
}

/// One spectral weight on the validation clips.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WeightScore {
    pub spectral_weight: f64,
    /// Mean negative log-likelihood at the weight's fitted temperature.
    pub nll: f64,
    pub ua: f64,
}

/// The softmax of `w · log p_spectral + (1 − w) · log p_temporal`, row by
/// row (`[clips][classes]`): the fused model's probabilities, since a row's
/// log-partition is a constant the softmax drops.
pub fn mix(temporal: &[f32], spectral: &[f32], spectral_weight: f64, n_classes: usize) -> Vec<f32> {
    assert_eq!(temporal.len(), spectral.len(), "both streams score the same clips");
    infer::softmax_rows(temporal.len() / n_classes, n_classes, |row, class| {
        let i = row * n_classes + class;
        (1.0 - spectral_weight) * log_probability(temporal[i]) + spectral_weight * log_probability(spectral[i])
    })
}

/// The spectral weight whose mix of the two streams' held-out probabilities
/// (`[clips][classes]` each) best predicts `truth`.
pub fn choose_spectral_weight(
    temporal: &[f32],
    spectral: &[f32],
    truth: &[usize],
    n_classes: usize,
) -> LateFusionReport {
    let mut best: Option<(f64, f32, f64)> = None;
    let mut grid = Vec::with_capacity(SPECTRAL_WEIGHTS.len());
    for w in SPECTRAL_WEIGHTS {
        let mixed = mix(temporal, spectral, w, n_classes);
        let temperature = eval::fit_temperature(&mixed, truth, n_classes);
        let calibrated = infer::with_temperature(&mixed, n_classes, temperature);
        let nll = mean_nll(&calibrated, truth, n_classes);
        let ua = Metrics::compute(truth, &argmax_rows(&mixed, n_classes), n_classes).ua;
        if best.is_none_or(|(_, _, lowest)| nll < lowest) {
            best = Some((w, temperature, nll));
        }
        grid.push(WeightScore {
            spectral_weight: w,
            nll,
            ua,
        });
    }
    let (spectral_weight, temperature, _) = best.expect("the grid is not empty");
    LateFusionReport {
        spectral_weight,
        temperature,
        clips: truth.len(),
        grid,
    }
}

fn mean_nll(probabilities: &[f32], truth: &[usize], n_classes: usize) -> f64 {
    let total: f64 = probabilities
        .chunks_exact(n_classes)
        .zip(truth)
        .map(|(row, &t)| -log_probability(row[t]))
        .sum();
    total / truth.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows of probabilities that put `confidence` on `class`, the rest spread evenly.
    fn rows(classes: &[usize], confidence: f32, n_classes: usize) -> Vec<f32> {
        let rest = (1.0 - confidence) / (n_classes - 1) as f32;
        classes
            .iter()
            .flat_map(|&c| (0..n_classes).map(move |k| if k == c { confidence } else { rest }))
            .collect()
    }

    #[test]
    fn mixing_follows_the_weight_from_one_stream_to_the_other() {
        let temporal = rows(&[0, 1], 0.7, 3);
        let spectral = rows(&[2, 2], 0.9, 3);
        let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6);
        assert!(close(&mix(&temporal, &spectral, 0.0, 3), &temporal));
        assert!(close(&mix(&temporal, &spectral, 1.0, 3), &spectral));
        let half = mix(&temporal, &spectral, 0.5, 3);
        assert!(half.chunks(3).all(|row| (row.iter().sum::<f32>() - 1.0).abs() < 1e-5));
    }

    /// A spectral stream that guesses gets no weight; one that is right where
    /// the temporal stream is wrong gets some, and the mix then beats the
    /// temporal stream alone.
    #[test]
    fn the_weight_goes_to_a_stream_only_when_it_helps() {
        let truth: Vec<usize> = (0..40).map(|i| i % 4).collect();
        // The temporal stream is right on 3 clips in 4, and confidently wrong on the 4th.
        let temporal_says: Vec<usize> = truth
            .iter()
            .enumerate()
            .map(|(i, &t)| if i % 8 < 6 { t } else { (t + 1) % 4 })
            .collect();
        let temporal = rows(&temporal_says, 0.6, 4);

        // Confident, and right one time in four.
        let guesses: Vec<usize> = (0..truth.len()).map(|i| (i * 7 + i / 5) % 4).collect();
        let guessing = rows(&guesses, 0.6, 4);
        let report = choose_spectral_weight(&temporal, &guessing, &truth, 4);
        assert_eq!(report.spectral_weight, 0.0, "{report:?}");

        let spectral = rows(&truth, 0.5, 4);
        let report = choose_spectral_weight(&temporal, &spectral, &truth, 4);
        assert!(report.spectral_weight > 0.0, "{report:?}");
        let chosen = report
            .grid
            .iter()
            .find(|score| score.spectral_weight == report.spectral_weight)
            .unwrap();
        assert!(
            chosen.nll < report.grid[0].nll && chosen.ua > report.grid[0].ua,
            "{report:?}"
        );
        assert_eq!(report.clips, 40);
    }
}
