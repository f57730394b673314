//! A linear probe on pooled embeddings: standardise each feature over the
//! training clips, then a class-balanced, L2-regularised logistic regression
//! whose strength `C` is chosen by an inner speaker-grouped cross-validation
//! on the training speakers alone (never on test speakers).
//!
//! The objective is scikit-learn's `LogisticRegression(C, class_weight =
//! "balanced")` divided by `C · n`, so a `C` means the same in both:
//! `1/n Σ_i s_i CE_i + ‖W‖² / (2 C n)`, with `s_i = n / (classes · n_class(i))`.
//! It is solved by Nesterov's accelerated gradient with adaptive restart on
//! burn tensors, preconditioned by a fixed quadratic upper bound of the loss
//! (Böhning's: the softmax's curvature is at most ½): each step is exact
//! Newton on that bound, so the concatenated layers' strongly correlated
//! features converge in tens of steps instead of thousands. The bound depends
//! on the rows only, so its eigendecomposition (faer) is shared by every `C`.
//! (argmin's L-BFGS was tried: its line search needed 10–20 evaluations per
//! iteration here and ended up slower.)

use burn::tensor::activation::softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::eval::Metrics;

/// Where a run writes its [`ProbeReport`].
pub const REPORT_FILE: &str = "probe.json";

/// The strengths tried, as in `scripts/probe.py`, weakest regularisation last:
/// each fit starts from the previous one's weights.
pub const C_GRID: [f64; 5] = [1e-4, 1e-3, 1e-2, 1e-1, 1.0];

/// Inner folds (fewer when there are fewer training speakers).
const INNER_FOLDS: usize = 4;

/// The training clips' pooled embeddings, their labels and speakers.
pub struct ProbeData<'a> {
    /// `[clips, width]`, row-major.
    pub x: &'a [f32],
    pub width: usize,
    pub labels: &'a [usize],
    pub origins: Origins<'a>,
    pub n_classes: usize,
}

/// Why a probe cannot be fitted.
#[derive(Debug, thiserror::Error)]
pub enum FitError {
    #[error("an embedding holds a NaN or an infinity")]
    NotFinite,
    #[error("the loss's curvature bound has no eigendecomposition ({0:?})")]
    Eigen(faer::linalg::evd::EvdError),
}

/// Where each training row came from, for the inner folds.
#[derive(Clone, Copy)]
pub struct Origins<'a> {
    /// The speaker of each row: inner folds never split one.
    pub speakers: &'a [&'a str],
    /// The recording each row was made from: a clip's noisy copies share
    /// it, and with one training speaker an inner fold keeps them together.
    pub sources: &'a [&'a str],
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

impl Origins<'_> {
    /// Whether the rows come from more than one speaker, so that inner folds
    /// can be speaker-grouped.
    fn several_speakers(&self) -> bool {
        self.speakers.iter().any(|&s| s != self.speakers[0])
    }
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
pub fn fit(data: &ProbeData, device: &Device) -> Result<Probe, FitError> {
    if data.x.iter().any(|v| !v.is_finite()) {
        return Err(FitError::NotFinite);
    }
    let all: Vec<usize> = (0..data.n()).collect();
    let folds = inner_folds(data);
    let k = data.n_classes;
    let mut out_of_fold = vec![vec![0.0f32; data.n() * k]; C_GRID.len()];
    let mut scores = vec![Vec::with_capacity(folds.len()); C_GRID.len()];
    for test in &folds {
        let train: Vec<usize> = all.iter().copied().filter(|i| !test.contains(i)).collect();
        let problem = Problem::new(data, &train, device)?;
        let test_rows = data.rows(test);
        let mut start = None;
        for (g, &c) in C_GRID.iter().enumerate() {
            let solution = problem.solve(c, start.take());
            let model = problem.fitted(solution.clone());
            let probabilities = model.probabilities(&test_rows, device);
            for (row, &i) in test.iter().enumerate() {
                out_of_fold[g][i * k..(i + 1) * k].copy_from_slice(&probabilities[row * k..(row + 1) * k]);
            }
            scores[g].push(inner_ua(data, &train, test, &probabilities));
            start = Some(solution);
        }
    }
    let grid: Vec<(f64, f64)> = C_GRID
        .iter()
        .zip(&scores)
        .map(|(&c, s)| (c, s.iter().sum::<f64>() / s.len().max(1) as f64))
        .collect();
    // The first of equals: the strongest regularisation that scores best.
    let best = (0..grid.len())
        .reduce(|best, g| if grid[g].1 > grid[best].1 { g } else { best })
        .expect("C_GRID is not empty");
    let c = grid[best].0;
    let problem = Problem::new(data, &all, device)?;
    let model = problem.fitted(problem.solve(c, None));
    Ok(Probe {
        mean: model.mean,
        scale: model.scale,
        weight: model.weight,
        bias: model.bias,
        report: ProbeReport {
            c,
            inner_folds: folds.len(),
            grid,
        },
        out_of_fold: data.origins.several_speakers().then(|| out_of_fold.swap_remove(best)),
    })
}

/// Test clips of each inner fold. Speakers are dealt largest first to the
/// fold with the fewest clips (scikit-learn's `GroupKFold`); with one
/// training speaker, its recordings are dealt round-robin within each class,
/// each with all its noisy copies (else a copy in another fold would score
/// its own recording, and every `C` would look perfect).
fn inner_folds(data: &ProbeData) -> Vec<Vec<usize>> {
    if !data.origins.several_speakers() {
        let recordings = data
            .origins
            .sources
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len();
        let n_folds = INNER_FOLDS.min(recordings).max(1);
        let mut folds = vec![Vec::new(); n_folds];
        let mut seen = vec![0usize; data.n_classes];
        let mut fold_of = std::collections::HashMap::new();
        for (i, (&label, &source)) in data.labels.iter().zip(data.origins.sources).enumerate() {
            let fold = *fold_of.entry(source).or_insert_with(|| {
                seen[label] += 1;
                (seen[label] - 1) % n_folds
            });
            folds[fold].push(i);
        }
        return folds;
    }
    let mut speakers: Vec<&str> = data.origins.speakers.to_vec();
    speakers.sort_unstable();
    speakers.dedup();
    let mut sizes: Vec<(usize, &str)> = speakers
        .iter()
        .map(|&s| (data.origins.speakers.iter().filter(|&&t| t == s).count(), s))
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
    for (i, speaker) in data.origins.speakers.iter().enumerate() {
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
/// Converged when no gradient entry exceeds this share of the largest at zero weights.
const TOLERANCE: f32 = 1e-4;

/// The standardised training rows of one fit, and what every `C` shares.
struct Problem {
    mean: Vec<f32>,
    scale: Vec<f32>,
    /// `[X 1]`, `[n, d + 1]`: the standardised rows and a column for the bias,
    /// so the weights `[W; b]` are one `[d + 1, k]` tensor.
    x: Tensor<2>,
    targets: Tensor<2>,
    /// `s_i / n`, `[n, 1]`: the balanced weight of each clip over the clip count.
    sample_weights: Tensor<2>,
    /// 1 for the weights' rows, 0 for the bias's (which is not penalised), `[d + 1, 1]`.
    penalised: Tensor<2>,
    /// The eigenvectors `[d + 1, r]` and eigenvalues `[r, 1]` of the loss's
    /// curvature bound `½ [X 1]ᵀ diag(s/n) [X 1]` (see [`curvature_bound`]).
    basis: Tensor<2>,
    curvature: Tensor<2>,
    /// The bound's curvature outside the basis's span: the floor.
    unspanned: f32,
    /// The largest gradient entry at zero weights: what convergence is measured against.
    reference: f32,
}

impl Problem {
    fn new(data: &ProbeData, rows: &[usize], device: &Device) -> Result<Problem, FitError> {
        let started = std::time::Instant::now();
        let (n, d, k) = (rows.len(), data.width, data.n_classes);
        let raw = data.rows(rows);
        let (mean, scale) = standardization(&raw, n, d);
        let x = Tensor::cat(
            vec![standardized(&raw, &mean, &scale, device), Tensor::ones([n, 1], device)],
            1,
        );
        let labels: Vec<i64> = rows.iter().map(|&i| data.labels[i] as i64).collect();
        let targets = Tensor::<1, Int>::from_data(TensorData::new(labels, [n]), device)
            .one_hot::<2>(k)
            .float();
        let mut counts = vec![0usize; k];
        rows.iter().for_each(|&i| counts[data.labels[i]] += 1);
        let present = counts.iter().filter(|&&c| c > 0).count().max(1);
        let sample_weights: Vec<f32> = rows
            .iter()
            .map(|&i| 1.0 / (present * counts[data.labels[i]]) as f32)
            .collect();
        let sample_weights = Tensor::<1>::from_data(TensorData::new(sample_weights, [n]), device).unsqueeze_dim::<2>(1);
        let CurvatureBound {
            basis,
            curvature,
            unspanned,
        } = curvature_bound(x.clone() * sample_weights.clone().sqrt(), device)?;
        let mut penalised = vec![1.0f32; d + 1];
        penalised[d] = 0.0;
        let mut problem = Problem {
            mean,
            scale,
            x,
            targets,
            sample_weights,
            penalised: Tensor::from_data(TensorData::new(penalised, [d + 1, 1]), device),
            basis,
            curvature,
            unspanned,
            reference: 0.0,
        };
        problem.reference = largest(problem.gradient(&Tensor::zeros([d + 1, k], device), 0.0));
        tracing::debug!(
            rows = n,
            seconds = started.elapsed().as_secs_f64(),
            "probe: curvature bound decomposed"
        );
        Ok(problem)
    }

    /// The gradient of the objective at `[W; b]`.
    fn gradient(&self, weights: &Tensor<2>, decay: f32) -> Tensor<2> {
        let residual =
            (softmax(self.x.clone().matmul(weights.clone()), 1) - self.targets.clone()) * self.sample_weights.clone();
        self.x.clone().transpose().matmul(residual) + weights.clone() * self.penalised.clone() * decay
    }

    /// The minimiser `[W; b]` for `C`, from `start` (zeros if `None`).
    fn solve(&self, c: f64, start: Option<Tensor<2>>) -> Tensor<2> {
        let [n, columns] = self.x.dims();
        let k = self.targets.dims()[1];
        let decay = (1.0 / (c * n as f64)) as f32;
        // The bound's Hessian plus the decay (on the bias too, which only
        // loosens the bound), inverted in its eigenbasis; the part of a
        // gradient outside the basis's span sees the floor's curvature:
        // `B (Bᵀg ⊙ inverse) + (g − B Bᵀg) · u` in one product.
        let unspanned_inverse = 1.0 / (self.unspanned + decay);
        let inverse = (self.curvature.clone() + decay).recip() - unspanned_inverse;
        let newton_step = |gradient: Tensor<2>| {
            let coordinates = self.basis.clone().transpose().matmul(gradient.clone());
            self.basis.clone().matmul(coordinates * inverse.clone()) + gradient * unspanned_inverse
        };
        let mut w = start.unwrap_or_else(|| Tensor::zeros([columns, k], &self.x.device()));
        let mut look = w.clone();
        let mut momentum = 1.0f32;
        let started = std::time::Instant::now();
        for step in 0..MAX_STEPS {
            let gradient = self.gradient(&look, decay);
            if largest(gradient.clone()) <= TOLERANCE * self.reference {
                tracing::debug!(c, step, seconds = started.elapsed().as_secs_f64(), "probe: converged");
                return look;
            }
            let next = look.clone() - newton_step(gradient.clone());
            // Restart the momentum when it points uphill (O'Donoghue & Candès).
            let uphill = (gradient * (next.clone() - w.clone())).sum().into_scalar::<f32>() > 0.0;
            let next_momentum = if uphill {
                1.0
            } else {
                0.5 * (1.0 + (1.0 + 4.0 * momentum * momentum).sqrt())
            };
            let push = if uphill { 0.0 } else { (momentum - 1.0) / next_momentum };
            look = next.clone() + (next.clone() - w) * push;
            (w, momentum) = (next, next_momentum);
        }
        tracing::warn!(c, "probe: not converged in {MAX_STEPS} steps");
        w
    }

    /// The probe of a solution `[W; b]`.
    fn fitted(&self, solution: Tensor<2>) -> Fitted {
        let [columns, k] = solution.dims();
        let d = columns - 1;
        let values: Vec<f32> = solution.into_data().try_into_vec().expect("f32 weights");
        let (weight, bias) = values.split_at(d * k);
        Fitted {
            mean: self.mean.clone(),
            scale: self.scale.clone(),
            weight: weight.to_vec(),
            bias: bias.to_vec(),
        }
    }
}

/// The largest absolute entry.
fn largest(t: Tensor<2>) -> f32 {
    t.abs().max().into_scalar::<f32>()
}

/// Directions of less curvature than this share of the largest are floored
/// at it: rounding could otherwise leave a direction's bound below its true
/// curvature, and a step there would overshoot.
const CURVATURE_FLOOR: f64 = 1e-6;

/// `½ AᵀA` in its eigenbasis (see [`curvature_bound`]).
struct CurvatureBound {
    /// `[m, r]`.
    basis: Tensor<2>,
    /// `[r, 1]`, floored.
    curvature: Tensor<2>,
    /// The floor, which bounds the curvature of every direction the basis misses.
    unspanned: f32,
}

/// The eigenvectors and eigenvalues of `½ AᵀA`, for `A` `[n, m]`. With fewer
/// rows than columns they come from the smaller `AAᵀ = U M Uᵀ`, as
/// `Aᵀu / √μ` with `λ = μ / 2`, and only `A`'s row space is spanned, where
/// the gradient lies in exact arithmetic. In f32 a small part of it can fall
/// outside (in one inner fold of RAVDESS, 1.2e-4 of the starting gradient:
/// above the tolerance, so the fit never converged), which no step along the
/// basis removes; steps there see the floor's curvature. That form
/// is computed in f64, since `1 / √μ` magnifies the error of a small `μ`'s
/// eigenvector (the noisy copies of a clip make many).
fn curvature_bound(a: Tensor<2>, device: &Device) -> Result<CurvatureBound, FitError> {
    let [n, m] = a.dims();
    let (basis, halved): (faer::Mat<f64>, Vec<f64>) = if n < m {
        let values: Vec<f32> = a.into_data().try_into_vec().expect("f32 rows");
        let a = faer::Mat::<f64>::from_fn(n, m, |i, j| f64::from(values[i * m + j]));
        let eigen = (&a * a.transpose())
            .self_adjoint_eigen(faer::Side::Lower)
            .map_err(FitError::Eigen)?;
        let (u, mu) = (eigen.U(), eigen.S().column_vector());
        let top = (0..n).map(|i| mu[i]).fold(0.0f64, f64::max);
        // Repeated rows leave directions of no curvature at all, with no
        // direction in the weights' space to stand for.
        let kept: Vec<usize> = (0..n).filter(|&i| mu[i] > 1e-13 * top).collect();
        let scaled = faer::Mat::<f64>::from_fn(n, kept.len(), |i, j| u[(i, kept[j])] / mu[kept[j]].sqrt());
        (a.transpose() * scaled, kept.iter().map(|&i| mu[i] / 2.0).collect())
    } else {
        let values: Vec<f32> = (a.clone().transpose().matmul(a) * 0.5)
            .into_data()
            .try_into_vec()
            .expect("f32 matrix");
        let bound = faer::Mat::<f64>::from_fn(m, m, |i, j| f64::from(values[i * m + j]));
        let eigen = bound.self_adjoint_eigen(faer::Side::Lower).map_err(FitError::Eigen)?;
        let lambda = eigen.S().column_vector();
        (eigen.U().to_owned(), (0..m).map(|i| lambda[i]).collect())
    };
    let r = halved.len();
    let floor = CURVATURE_FLOOR * halved.iter().copied().fold(0.0f64, f64::max);
    let curvature: Vec<f32> = halved.iter().map(|l| (l.max(0.0) + floor) as f32).collect();
    let basis: Vec<f32> = (0..m * r).map(|e| basis[(e / r, e % r)] as f32).collect();
    Ok(CurvatureBound {
        basis: Tensor::from_data(TensorData::new(basis, [m, r]), device),
        curvature: Tensor::from_data(TensorData::new(curvature, [r, 1]), device),
        unspanned: floor as f32,
    })
}

impl Fitted {
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

    /// A distinct recording name for each of `n` rows.
    fn recordings(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("clip{i}")).collect()
    }

    /// `check` on the probe data of these rows (3 classes), borrowing the names as it takes them.
    fn with_probe_data<R>(
        x: &[f32],
        width: usize,
        labels: &[usize],
        speakers: &[String],
        sources: &[String],
        check: impl FnOnce(&ProbeData) -> R,
    ) -> R {
        let speakers: Vec<&str> = speakers.iter().map(String::as_str).collect();
        let sources: Vec<&str> = sources.iter().map(String::as_str).collect();
        check(&ProbeData {
            x,
            width,
            labels,
            origins: Origins {
                speakers: &speakers,
                sources: &sources,
            },
            n_classes: 3,
        })
    }

    #[test]
    fn with_one_speaker_inner_folds_keep_a_recordings_noisy_copies_together() {
        // 21 recordings of one speaker (7 per class, not a multiple of the
        // fold count), then two noisy copies of each.
        let labels: Vec<usize> = (0..63).map(|i| i % 21 % 3).collect();
        let sources: Vec<String> = (0..63).map(|i| format!("clip{}", i % 21)).collect();
        let speakers = vec!["only".to_string(); 63];
        let folds = with_probe_data(&[0.0; 63], 1, &labels, &speakers, &sources, inner_folds);
        assert_eq!(folds.len(), INNER_FOLDS);
        assert_eq!(folds.iter().map(Vec::len).sum::<usize>(), 63);
        for fold in &folds {
            for &i in fold {
                assert!(fold.contains(&((i + 21) % 63)), "row {i}'s copy is in another fold");
            }
            for class in 0..3 {
                assert!(
                    fold.iter().any(|&i| labels[i] == class),
                    "class {class} missing from a fold"
                );
            }
        }
    }

    #[test]
    fn inner_folds_keep_each_speaker_whole_and_cover_every_clip() {
        let (x, labels, speakers) = clips(60, 4);
        let folds = with_probe_data(&x, 4, &labels, &speakers, &recordings(60), inner_folds);
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

    /// The objective's largest gradient entry at a fitted probe, over the
    /// largest at zero weights, computed here in f64 from the formula.
    fn relative_gradient(data: &ProbeData, fitted: &Fitted, c: f64) -> f64 {
        let (n, d, k) = (data.n(), data.width, data.n_classes);
        let mut counts = vec![0usize; k];
        data.labels.iter().for_each(|&l| counts[l] += 1);
        let gradient_at = |weight: &[f32], bias: &[f32]| {
            let mut gradient = vec![0.0f64; (d + 1) * k];
            for (i, row) in data.x.chunks_exact(d).enumerate() {
                let z: Vec<f64> = row
                    .iter()
                    .zip(&fitted.mean)
                    .zip(&fitted.scale)
                    .map(|((x, m), s)| f64::from((x - m) * s))
                    .collect();
                let logits: Vec<f64> = (0..k)
                    .map(|j| f64::from(bias[j]) + (0..d).map(|f| z[f] * f64::from(weight[f * k + j])).sum::<f64>())
                    .collect();
                let top = logits.iter().copied().fold(f64::MIN, f64::max);
                let total: f64 = logits.iter().map(|l| (l - top).exp()).sum();
                let sample_weight = 1.0 / (k * counts[data.labels[i]]) as f64;
                for j in 0..k {
                    let residual = (logits[j] - top).exp() / total - f64::from(u8::from(j == data.labels[i]));
                    for f in 0..d {
                        gradient[f * k + j] += sample_weight * residual * z[f];
                    }
                    gradient[d * k + j] += sample_weight * residual;
                }
            }
            for (g, w) in gradient.iter_mut().zip(weight) {
                *g += f64::from(*w) / (c * n as f64);
            }
            gradient.iter().fold(0.0f64, |m, g| m.max(g.abs()))
        };
        gradient_at(&fitted.weight, &fitted.bias) / gradient_at(&vec![0.0; d * k], &vec![0.0; k])
    }

    #[test]
    fn fitted_probe_separates_the_classes_at_the_objectives_minimum() {
        let device = Device::flex();
        // Fewer clips than features, and more (the bound's eigenbasis is
        // rank-deficient in the first).
        for (n, width) in [(90, 120), (240, 6)] {
            let (x, labels, speakers) = clips(n, width);
            with_probe_data(&x, width, &labels, &speakers, &recordings(n), |data| {
                let probe = fit(data, &device).unwrap();
                assert!(C_GRID.contains(&probe.report.c));
                assert_eq!(probe.out_of_fold.as_ref().map(Vec::len), Some(n * 3));
                let rows: Vec<usize> = (0..n).collect();
                let problem = Problem::new(data, &rows, &device).unwrap();
                let weak = problem.fitted(problem.solve(1.0, None));
                let predicted = crate::eval::argmax_rows(&weak.probabilities(&x, &device), 3);
                let ua = Metrics::compute(&labels, &predicted, 3).ua;
                assert!(ua > 0.9, "{n} clips, {width} features: training UA {ua} at C = 1");
                for c in [1e-3, 1.0] {
                    let gradient = relative_gradient(data, &problem.fitted(problem.solve(c, None)), c);
                    assert!(
                        gradient < 1e-3,
                        "{n} clips, {width} features, C {c}: gradient {gradient} of the start's"
                    );
                }
            });
        }
    }

    #[test]
    fn an_embedding_with_a_nan_is_refused() {
        let (mut x, labels, speakers) = clips(30, 4);
        x[17] = f32::NAN;
        let refused = with_probe_data(&x, 4, &labels, &speakers, &recordings(30), |data| {
            matches!(fit(data, &Device::flex()), Err(FitError::NotFinite))
        });
        assert!(refused);
    }
}
