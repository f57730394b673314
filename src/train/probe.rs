//! A linear probe on pooled embeddings: standardise each feature over the
//! training clips, then a class-balanced, L2-regularised logistic regression
//! whose strength `C` is chosen by an inner speaker-grouped cross-validation
//! on the training speakers alone (never on test speakers).
//!
//! The objective is scikit-learn's `LogisticRegression(C, class_weight =
//! "balanced")` divided by `C · n`, so a `C` means the same in both:
//! `1/n Σ_i s_i CE_i + ‖W‖² / (2 C n)`, with `s_i = n / (classes · n_class(i))`.
//! It is solved by Nesterov's accelerated gradient with adaptive restart on
//! burn tensors: the problem is smooth and strongly convex, so a fixed step
//! `1/L` converges. (argmin's L-BFGS was tried: its line search needed
//! 10–20 evaluations per iteration here and ended up slower.)

use burn::tensor::activation::softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::eval::Metrics;

/// Where a run writes its [`ProbeReport`].
pub const REPORT_FILE: &str = "probe.json";

/// The strengths tried, as in `scripts/probe.py`.
pub const C_GRID: [f64; 5] = [1e-4, 1e-3, 1e-2, 1e-1, 1.0];

/// Inner folds (fewer when there are fewer training speakers).
const INNER_FOLDS: usize = 4;

/// The training clips' pooled embeddings, their labels and speakers.
pub struct ProbeData<'a> {
    /// `[clips, width]`, row-major.
    pub x: &'a [f32],
    pub width: usize,
    pub labels: &'a [usize],
    /// The speaker of each clip: inner folds never split one.
    pub speakers: &'a [&'a str],
    pub n_classes: usize,
}

/// A fitted probe: `logits = ((x − mean) · scale) W + b`.
pub struct Probe {
    pub mean: Vec<f32>,
    pub scale: Vec<f32>,
    /// `[width, classes]`, row-major (burn's `Linear` layout).
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub report: ProbeReport,
    /// Each training clip's class probabilities from the inner model that
    /// did not see its speaker, at the chosen `C` (`[clips, classes]`): what
    /// calibration is fitted on when no validation speakers are held out.
    /// `None` with one training speaker: its inner folds share the speaker,
    /// and a temperature fitted on them would be over-confident.
    pub out_of_fold: Option<Vec<f32>>,
}

/// How `C` was chosen, as written to `probe.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeReport {
    pub c: f64,
    pub inner_folds: usize,
    /// Mean UA over the inner folds for each `C` tried.
    pub grid: Vec<(f64, f64)>,
}

impl ProbeData<'_> {
    fn n(&self) -> usize {
        self.labels.len()
    }

    /// The rows at `rows` as a new matrix.
    fn rows(&self, rows: &[usize]) -> Vec<f32> {
        rows.iter()
            .flat_map(|&i| &self.x[i * self.width..(i + 1) * self.width])
            .copied()
            .collect()
    }
}

/// Fits the probe: `C` by inner cross-validation, then on every training clip.
pub fn fit(data: &ProbeData, device: &Device) -> Probe {
    let all: Vec<usize> = (0..data.n()).collect();
    let folds = inner_folds(data);
    let mut grid = Vec::with_capacity(C_GRID.len());
    let mut best: Option<(f64, f64, Vec<f32>)> = None;
    for &c in &C_GRID {
        let mut out_of_fold = vec![0.0f32; data.n() * data.n_classes];
        let mut scores = Vec::with_capacity(folds.len());
        for test in &folds {
            let train: Vec<usize> = all.iter().copied().filter(|i| !test.contains(i)).collect();
            let model = Fitted::new(data, &train, c, device);
            let probabilities = model.probabilities(&data.rows(test), device);
            for (k, &i) in test.iter().enumerate() {
                let row = &probabilities[k * data.n_classes..(k + 1) * data.n_classes];
                out_of_fold[i * data.n_classes..(i + 1) * data.n_classes].copy_from_slice(row);
            }
            scores.push(inner_ua(data, &train, test, &probabilities));
        }
        let ua = scores.iter().sum::<f64>() / scores.len().max(1) as f64;
        grid.push((c, ua));
        if best.as_ref().is_none_or(|(_, best_ua, _)| ua > *best_ua) {
            best = Some((c, ua, out_of_fold));
        }
    }
    let (c, _, out_of_fold) = best.expect("C_GRID is not empty");
    let speaker_grouped = data.speakers.iter().any(|&s| s != data.speakers[0]);
    let model = Fitted::new(data, &all, c, device);
    Probe {
        mean: model.mean,
        scale: model.scale,
        weight: model.weight,
        bias: model.bias,
        report: ProbeReport {
            c,
            inner_folds: folds.len(),
            grid,
        },
        out_of_fold: speaker_grouped.then_some(out_of_fold),
    }
}

/// Test clips of each inner fold. Speakers are dealt largest first to the
/// fold with the fewest clips (scikit-learn's `GroupKFold`); with one
/// training speaker, its clips are dealt round-robin within each class.
fn inner_folds(data: &ProbeData) -> Vec<Vec<usize>> {
    let mut speakers: Vec<&str> = data.speakers.to_vec();
    speakers.sort_unstable();
    speakers.dedup();
    if speakers.len() < 2 {
        let n_folds = INNER_FOLDS.min(data.n()).max(1);
        let mut folds = vec![Vec::new(); n_folds];
        let mut seen = vec![0usize; data.n_classes];
        for (i, &label) in data.labels.iter().enumerate() {
            folds[seen[label] % n_folds].push(i);
            seen[label] += 1;
        }
        return folds;
    }
    let mut sizes: Vec<(usize, &str)> = speakers
        .iter()
        .map(|&s| (data.speakers.iter().filter(|&&t| t == s).count(), s))
        .collect();
    sizes.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    let n_folds = INNER_FOLDS.min(speakers.len());
    let mut fold_of = std::collections::HashMap::new();
    let mut fold_sizes = vec![0usize; n_folds];
    for (size, speaker) in sizes {
        let smallest = (0..n_folds).min_by_key(|&f| fold_sizes[f]).expect("at least one fold");
        fold_sizes[smallest] += size;
        fold_of.insert(speaker, smallest);
    }
    let mut folds = vec![Vec::new(); n_folds];
    for (i, speaker) in data.speakers.iter().enumerate() {
        folds[fold_of[speaker]].push(i);
    }
    folds
}

/// UA on an inner test fold, over the classes both its halves have.
fn inner_ua(data: &ProbeData, train: &[usize], test: &[usize], probabilities: &[f32]) -> f64 {
    let k = data.n_classes;
    let mut in_train = vec![false; k];
    train.iter().for_each(|&i| in_train[data.labels[i]] = true);
    let (truth, predicted): (Vec<usize>, Vec<usize>) = test
        .iter()
        .enumerate()
        .filter(|&(_, &i)| in_train[data.labels[i]])
        .map(|(row, &i)| {
            (
                data.labels[i],
                crate::eval::argmax_rows(&probabilities[row * k..(row + 1) * k], k)[0],
            )
        })
        .unzip();
    Metrics::compute(&truth, &predicted, k).ua
}

/// One logistic regression fitted on some rows.
struct Fitted {
    mean: Vec<f32>,
    scale: Vec<f32>,
    weight: Vec<f32>,
    bias: Vec<f32>,
}

/// Most accelerated-gradient steps per fit.
const MAX_STEPS: usize = 3000;
/// Converged when no gradient entry exceeds this share of the largest at the start.
const TOLERANCE: f32 = 1e-4;

impl Fitted {
    fn new(data: &ProbeData, rows: &[usize], c: f64, device: &Device) -> Fitted {
        Self::with_design(data, rows, c, rows.len() < data.width, device)
    }

    /// `gram`: fit in the Gram matrix's coordinates (see [`Design`]).
    fn with_design(data: &ProbeData, rows: &[usize], c: f64, gram: bool, device: &Device) -> Fitted {
        let (n, d, k) = (rows.len(), data.width, data.n_classes);
        let raw = data.rows(rows);
        let (mean, scale) = standardization(&raw, n, d);
        let x = standardized(&raw, &mean, &scale, device);
        let labels: Vec<i64> = rows.iter().map(|&i| data.labels[i] as i64).collect();
        let targets = Tensor::<1, Int>::from_data(TensorData::new(labels, [n]), device)
            .one_hot::<2>(k)
            .float();
        let mut counts = vec![0usize; k];
        rows.iter().for_each(|&i| counts[data.labels[i]] += 1);
        let present = counts.iter().filter(|&&c| c > 0).count().max(1);
        // s_i / n: the balanced weight of clip i over the clip count.
        let sample_weights: Vec<f32> = rows
            .iter()
            .map(|&i| 1.0 / (present * counts[data.labels[i]]) as f32)
            .collect();
        let sample_weights = Tensor::<1>::from_data(TensorData::new(sample_weights, [n]), device).unsqueeze_dim::<2>(1);
        let decay = (1.0 / (c * n as f64)) as f32;
        let smallest_class = counts.iter().copied().filter(|&c| c > 0).min().unwrap_or(1);
        let largest_weight = 1.0 / (present * smallest_class) as f32;
        let design = Design::new(x, gram);
        // The softmax loss's curvature is at most ½ · λmax([X 1]ᵀ[X 1]) per
        // unit sample weight; the bias column adds n (it is orthogonal to the centred features).
        let lipschitz = 0.5 * largest_weight * design.largest_eigenvalue().max(n as f32) + decay;
        let step = 1.0 / lipschitz;

        // Gradient of the objective at (w, b), in the design's coordinates.
        let gradient = |w: &Tensor<2>, b: &Tensor<1>| {
            let logits = design.logits(w) + b.clone().unsqueeze::<2>();
            let residual = (softmax(logits, 1) - targets.clone()) * sample_weights.clone();
            let grad_b = residual.clone().sum_dim(0).reshape([k]);
            (design.gradient(residual, w, decay), grad_b)
        };
        let largest = |t: Tensor<2>, b: &Tensor<1>| -> f32 {
            t.abs()
                .max()
                .into_scalar::<f32>()
                .max(b.clone().abs().max().into_scalar::<f32>())
        };
        let (mut w, mut b) = (design.zeros(k, device), Tensor::<1>::zeros([k], device));
        let (mut w_look, mut b_look) = (w.clone(), b.clone());
        let mut momentum = 1.0f32;
        let mut start_size = None;
        for t in 0..MAX_STEPS {
            let (grad_w, grad_b) = gradient(&w_look, &b_look);
            if t % 25 == 0 {
                let size = largest(design.to_weights(grad_w.clone()), &grad_b);
                let start = *start_size.get_or_insert(size);
                if size <= TOLERANCE * start {
                    break;
                }
            }
            let w_next = w_look.clone() - grad_w.clone() * step;
            let b_next = b_look.clone() - grad_b.clone() * step;
            // Restart the momentum when it points uphill (O'Donoghue & Candès).
            let uphill = design.inner(grad_w, w_next.clone() - w.clone())
                + (grad_b * (b_next.clone() - b.clone())).sum().into_scalar::<f32>()
                > 0.0;
            let next_momentum = if uphill {
                1.0
            } else {
                0.5 * (1.0 + (1.0 + 4.0 * momentum * momentum).sqrt())
            };
            let push = if uphill { 0.0 } else { (momentum - 1.0) / next_momentum };
            w_look = w_next.clone() + (w_next.clone() - w) * push;
            b_look = b_next.clone() + (b_next.clone() - b) * push;
            (w, b, momentum) = (w_next, b_next, next_momentum);
        }
        Fitted {
            mean,
            scale,
            weight: design.to_weights(w).into_data().try_into_vec().expect("f32 weights"),
            bias: b.into_data().try_into_vec().expect("f32 bias"),
        }
    }

    /// Class probabilities of raw rows `[n, width]`.
    fn probabilities(&self, raw: &[f32], device: &Device) -> Vec<f32> {
        let (d, k) = (self.mean.len(), self.bias.len());
        let x = standardized(raw, &self.mean, &self.scale, device);
        let w = Tensor::<2>::from_data(TensorData::new(self.weight.clone(), [d, k]), device);
        let b = Tensor::<1>::from_data(TensorData::new(self.bias.clone(), [k]), device);
        let logits = x.matmul(w) + b.unsqueeze::<2>();
        softmax(logits, 1).into_data().try_to_vec().expect("f32 probabilities")
    }
}

/// Raw rows `[n, d]` as `(x − mean) · scale`, a tensor `[n, d]`.
fn standardized(raw: &[f32], mean: &[f32], scale: &[f32], device: &Device) -> Tensor<2> {
    let d = mean.len();
    let values: Vec<f32> = raw
        .chunks_exact(d)
        .flat_map(|row| row.iter().zip(mean).zip(scale).map(|((x, m), s)| (x - m) * s))
        .collect();
    Tensor::from_data(TensorData::new(values, [raw.len() / d, d]), device)
}

/// Per feature of `[n, d]` rows: the mean and 1 / std (1 for a constant feature).
fn standardization(x: &[f32], n: usize, d: usize) -> (Vec<f32>, Vec<f32>) {
    let mut mean = vec![0.0f64; d];
    let mut square = vec![0.0f64; d];
    for row in x.chunks_exact(d) {
        for ((m, s), &v) in mean.iter_mut().zip(&mut square).zip(row) {
            *m += f64::from(v);
            *s += f64::from(v) * f64::from(v);
        }
    }
    let n = n.max(1) as f64;
    let scale = mean
        .iter()
        .zip(&square)
        .map(|(m, s)| {
            let variance = (s / n - (m / n).powi(2)).max(0.0);
            if variance > 1e-12 {
                (1.0 / variance.sqrt()) as f32
            } else {
                1.0
            }
        })
        .collect();
    (mean.iter().map(|m| (m / n) as f32).collect(), scale)
}

/// The standardised rows `X` `[n, d]`, and the coordinates the weights are
/// fitted in. With fewer rows than features the minimiser lies in `X`'s row
/// space, `W = Xᵀ A`: gradient descent on `A` `[n, k]` with the Gram matrix
/// `K = X Xᵀ` takes exactly the steps it would take on `W`, each `d / n` times cheaper.
struct Design {
    x: Tensor<2>,
    gram: Option<Tensor<2>>,
}

impl Design {
    fn new(x: Tensor<2>, dual: bool) -> Design {
        let gram = dual.then(|| x.clone().matmul(x.clone().transpose()));
        Design { x, gram }
    }

    fn zeros(&self, k: usize, device: &Device) -> Tensor<2> {
        let [n, d] = self.x.dims();
        Tensor::zeros([if self.gram.is_some() { n } else { d }, k], device)
    }

    fn logits(&self, w: &Tensor<2>) -> Tensor<2> {
        match &self.gram {
            Some(gram) => gram.clone().matmul(w.clone()),
            None => self.x.clone().matmul(w.clone()),
        }
    }

    /// The gradient for the weighted residual `[n, k]` and the decay, in these coordinates.
    fn gradient(&self, residual: Tensor<2>, w: &Tensor<2>, decay: f32) -> Tensor<2> {
        match &self.gram {
            Some(_) => residual + w.clone() * decay,
            None => self.x.clone().transpose().matmul(residual) + w.clone() * decay,
        }
    }

    /// `⟨u, v⟩` of the weights these coordinates stand for.
    fn inner(&self, u: Tensor<2>, v: Tensor<2>) -> f32 {
        let v = match &self.gram {
            Some(gram) => gram.clone().matmul(v),
            None => v,
        };
        (u * v).sum().into_scalar::<f32>()
    }

    /// The weights `[d, k]`.
    fn to_weights(&self, w: Tensor<2>) -> Tensor<2> {
        match &self.gram {
            Some(_) => self.x.clone().transpose().matmul(w),
            None => w,
        }
    }

    /// λmax of `XᵀX` (that of `K` too), by power iteration, with 10 % added (an upper estimate).
    fn largest_eigenvalue(&self) -> f32 {
        let [_, d] = self.x.dims();
        let mut v = Tensor::<2>::ones([d, 1], &self.x.device()) / (d as f32).sqrt();
        let mut eigenvalue = 0.0;
        for _ in 0..30 {
            let product = self.x.clone().transpose().matmul(self.x.clone().matmul(v.clone()));
            eigenvalue = product.clone().square().sum().sqrt().into_scalar::<f32>();
            v = product / eigenvalue.max(1e-12);
        }
        1.1 * eigenvalue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// `n` clips of 3 classes, 6 speakers, `width` features: the class shifts
    /// the first two features, the speaker the third, the rest is noise.
    fn clips(n: usize, width: usize) -> (Vec<f32>, Vec<usize>, Vec<String>) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let labels: Vec<usize> = (0..n).map(|i| i % 3).collect();
        let speakers: Vec<String> = (0..n).map(|i| format!("s{}", i % 6)).collect();
        let x = (0..n)
            .flat_map(|i| {
                let (label, speaker) = (labels[i] as f32, (i % 6) as f32);
                let noise: Vec<f32> = (0..width).map(|_| rng.random_range(-1.0..1.0)).collect();
                (0..width).map(move |j| match j {
                    0 => 2.0 * label + noise[j],
                    1 => -label + noise[j],
                    2 => speaker + noise[j],
                    _ => noise[j],
                })
            })
            .collect();
        (x, labels, speakers)
    }

    #[test]
    fn inner_folds_keep_each_speaker_whole_and_cover_every_clip() {
        let (x, labels, speakers) = clips(60, 4);
        let speakers: Vec<&str> = speakers.iter().map(String::as_str).collect();
        let data = ProbeData {
            x: &x,
            width: 4,
            labels: &labels,
            speakers: &speakers,
            n_classes: 3,
        };
        let folds = inner_folds(&data);
        assert_eq!(folds.len(), INNER_FOLDS);
        let mut all: Vec<usize> = folds.concat();
        all.sort_unstable();
        assert_eq!(all, (0..60).collect::<Vec<_>>());
        for (f, fold) in folds.iter().enumerate() {
            for other in folds.iter().skip(f + 1) {
                assert!(
                    fold.iter().all(|&i| other.iter().all(|&j| speakers[i] != speakers[j])),
                    "a speaker in two inner folds"
                );
            }
        }
    }

    #[test]
    fn fitted_probe_separates_the_classes_and_both_designs_agree() {
        let device = Device::flex();
        let (x, labels, speakers) = clips(90, 120);
        let speakers: Vec<&str> = speakers.iter().map(String::as_str).collect();
        let data = ProbeData {
            x: &x,
            width: 120,
            labels: &labels,
            speakers: &speakers,
            n_classes: 3,
        };
        let probe = fit(&data, &device);
        assert!(C_GRID.contains(&probe.report.c));
        assert_eq!(probe.out_of_fold.map(|p| p.len()), Some(90 * 3));
        let rows: Vec<usize> = (0..90).collect();
        let gram = Fitted::with_design(&data, &rows, 0.1, true, &device);
        let plain = Fitted::with_design(&data, &rows, 0.1, false, &device);
        let predicted = crate::eval::argmax_rows(&gram.probabilities(&x, &device), 3);
        let ua = Metrics::compute(&labels, &predicted, 3).ua;
        assert!(ua > 0.9, "training UA {ua}");
        // The same steps in two coordinate systems: the same weights.
        let largest = plain.weight.iter().fold(0.0f32, |m, w| m.max(w.abs()));
        let worst = gram
            .weight
            .iter()
            .zip(&plain.weight)
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(worst <= 1e-3 * largest, "weights differ by {worst} (largest {largest})");
    }
}
