//! Shapley values of a set function `v` over `n` players: exact by
//! enumerating every coalition when `n` is small, else estimated by
//! permutation sampling (each sampled order and its reverse, seeded).
//!
//! Written here rather than taken from a crate: no maintained Rust crate
//! computes Shapley values over an arbitrary batched value function.

use std::collections::HashMap;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// A coalition: `true` for the players present.
pub type Coalition = Vec<bool>;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShapOptions {
    /// Up to this many players the values are exact (2^n evaluations).
    pub max_exact_players: usize,
    /// Sampled orders (each also walked in reverse) when not exact.
    pub permutations: usize,
    pub seed: u64,
}

impl Default for ShapOptions {
    fn default() -> Self {
        Self {
            max_exact_players: 10,
            permutations: 128,
            seed: 0,
        }
    }
}

/// Shapley values and the two ends they span.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Shapley {
    pub values: Vec<f64>,
    /// `v(∅)`: every player replaced by its baseline.
    pub base_value: f64,
    /// `v(N)`: the input as it is.
    pub full_value: f64,
    pub exact: bool,
    /// Distinct coalitions evaluated.
    pub evaluations: usize,
}

impl Shapley {
    /// `Σ φ_i − (v(N) − v(∅))`: zero up to rounding (efficiency).
    pub fn efficiency_gap(&self) -> f64 {
        self.values.iter().sum::<f64>() - (self.full_value - self.base_value)
    }
}

/// Shapley values of `value` over `n` players. `value` gets a batch of
/// coalitions and returns one number per coalition.
pub fn shapley(n: usize, options: &ShapOptions, value: impl FnMut(&[Coalition]) -> Vec<f64>) -> Shapley {
    if n <= options.max_exact_players {
        exact(n, value)
    } else {
        sampled(n, options.permutations.max(1), options.seed, value)
    }
}

/// `φ_i = Σ_{S ∌ i} |S|! (n − |S| − 1)! / n! · (v(S ∪ {i}) − v(S))` over all `2^n` coalitions.
pub fn exact(n: usize, mut value: impl FnMut(&[Coalition]) -> Vec<f64>) -> Shapley {
    assert!(n < 31, "exact Shapley values over {n} players are out of reach");
    let coalitions: Vec<Coalition> = (0..1u32 << n).map(|bits| to_coalition(bits, n)).collect();
    let values = value(&coalitions);
    assert_eq!(values.len(), coalitions.len(), "one value per coalition");
    // weight[s] = s! (n − s − 1)! / n!, built by ratios to stay finite for larger n.
    let weights: Vec<f64> = (0..n)
        .map(|s| {
            let mut w = 1.0 / n as f64;
            for k in 1..=s {
                w *= k as f64 / (n - k) as f64;
            }
            w
        })
        .collect();
    let mut phi = vec![0.0; n];
    for bits in 0..1u32 << n {
        let size = bits.count_ones() as usize;
        for (i, phi_i) in phi.iter_mut().enumerate() {
            if bits & (1 << i) == 0 {
                *phi_i += weights[size] * (values[(bits | 1 << i) as usize] - values[bits as usize]);
            }
        }
    }
    Shapley {
        values: phi,
        base_value: values[0],
        full_value: values[(1usize << n) - 1],
        exact: true,
        evaluations: coalitions.len(),
    }
}

/// Mean marginal contribution along `permutations` random orders and their
/// reverses. Each order's contributions sum to `v(N) − v(∅)`, so efficiency
/// holds exactly for the estimate too.
pub fn sampled(n: usize, permutations: usize, seed: u64, mut value: impl FnMut(&[Coalition]) -> Vec<f64>) -> Shapley {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut orders = Vec::with_capacity(2 * permutations);
    for _ in 0..permutations {
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rng);
        let reversed: Vec<usize> = order.iter().rev().copied().collect();
        orders.push(order);
        orders.push(reversed);
    }
    // Every prefix of every order, evaluated once however often it recurs.
    let mut index: HashMap<Coalition, usize> = HashMap::new();
    let mut coalitions = Vec::new();
    let mut prefixes = Vec::with_capacity(orders.len());
    for order in &orders {
        let mut coalition = vec![false; n];
        let mut path = Vec::with_capacity(n + 1);
        for step in 0..=n {
            if step > 0 {
                coalition[order[step - 1]] = true;
            }
            let next = coalitions.len();
            let id = *index.entry(coalition.clone()).or_insert(next);
            if id == next {
                coalitions.push(coalition.clone());
            }
            path.push(id);
        }
        prefixes.push(path);
    }
    let values = value(&coalitions);
    assert_eq!(values.len(), coalitions.len(), "one value per coalition");
    let mut phi = vec![0.0; n];
    for (order, path) in orders.iter().zip(&prefixes) {
        for (step, &player) in order.iter().enumerate() {
            phi[player] += values[path[step + 1]] - values[path[step]];
        }
    }
    phi.iter_mut().for_each(|p| *p /= orders.len() as f64);
    Shapley {
        values: phi,
        base_value: values[prefixes[0][0]],
        full_value: values[prefixes[0][n]],
        exact: false,
        evaluations: coalitions.len(),
    }
}

fn to_coalition(bits: u32, n: usize) -> Coalition {
    (0..n).map(|i| bits & (1 << i) != 0).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A nonlinear game with interactions, so the values are not trivial.
    fn game(weights: &[f64]) -> impl Fn(&[Coalition]) -> Vec<f64> + '_ {
        move |coalitions| {
            coalitions
                .iter()
                .map(|c| {
                    let linear: f64 = c.iter().zip(weights).filter(|(p, _)| **p).map(|(_, w)| w).sum();
                    let pair = if c[0] && c[1] { 0.7 } else { 0.0 };
                    linear.tanh() + pair
                })
                .collect()
        }
    }

    #[test]
    fn exact_values_are_efficient() {
        let weights = [0.3, -0.2, 0.9, 0.1, -0.5, 0.4];
        let values = exact(weights.len(), game(&weights));
        assert!(values.efficiency_gap().abs() < 1e-12, "gap {}", values.efficiency_gap());
        assert_eq!(values.evaluations, 64);
    }

    #[test]
    fn exact_values_of_a_linear_model_are_its_terms() {
        // f(x) = b + Σ w_i x_i with absent features at their mean: φ_i = w_i (x_i − E[x_i]).
        let (w, x, mean) = ([1.5, -2.0, 0.25, 3.0], [0.2, 1.0, -4.0, 0.5], [0.1, 0.4, 1.0, -0.5]);
        let values = exact(4, |coalitions| {
            coalitions
                .iter()
                .map(|c| 0.7 + (0..4).map(|i| w[i] * if c[i] { x[i] } else { mean[i] }).sum::<f64>())
                .collect()
        });
        for i in 0..4 {
            let closed_form = w[i] * (x[i] - mean[i]);
            assert!((values.values[i] - closed_form).abs() < 1e-12, "player {i}");
        }
    }

    #[test]
    fn sampled_values_converge_to_exact_ones() {
        let weights = [0.3, -0.2, 0.9, 0.1, -0.5, 0.4, 0.05, -0.3];
        let truth = exact(weights.len(), game(&weights)).values;
        let error = |permutations| {
            let estimate = sampled(weights.len(), permutations, 7, game(&weights));
            assert!(estimate.efficiency_gap().abs() < 1e-12);
            estimate
                .values
                .iter()
                .zip(&truth)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max)
        };
        let (few, many) = (error(4), error(2000));
        assert!(many < few, "more samples must help: {few} → {many}");
        assert!(many < 0.01, "2000 orders should be within 0.01, got {many}");
    }

    #[test]
    fn the_same_seed_gives_the_same_estimate() {
        let weights = [0.3, -0.2, 0.9, 0.1];
        let a = sampled(4, 10, 3, game(&weights));
        let b = sampled(4, 10, 3, game(&weights));
        assert_eq!(a, b);
    }
}
