//! 1D Score-CAM (Wang et al., 2020): each channel of a feature map, upsampled
//! to the input's time axis and normalised to [0, 1], masks the input; the
//! model's score for the class on each masked input weighs its channel. The
//! saliency is `ReLU(Σ_k w_k A_k)`, `w = softmax_k(score_k − score_baseline)`.

/// A feature map of one clip: `channels × frames`, only the clip's own frames.
pub struct FeatureMap<'a> {
    pub values: &'a [f32],
    pub channels: usize,
    pub frames: usize,
}

impl FeatureMap<'_> {
    fn channel(&self, k: usize) -> &[f32] {
        &self.values[k * self.frames..(k + 1) * self.frames]
    }
}

/// Saliency on the feature map's frames, in [0, 1].
///
/// `score(masks)` gets one mask per used channel, each with `n_input` values
/// in [0, 1] (1 keeps the input at that position), plus an all-zero mask
/// first (the baseline), and returns the class score of each masked input.
/// Only the `top_channels` channels that vary most over time are used: a flat
/// channel's normalised mask says nothing about *when*.
pub fn score_cam(
    map: &FeatureMap,
    n_input: usize,
    top_channels: usize,
    mut score: impl FnMut(&[Vec<f32>]) -> Vec<f64>,
) -> Vec<f32> {
    let mut by_variance: Vec<(usize, f64)> = (0..map.channels)
        .map(|k| (k, variance(map.channel(k))))
        .filter(|&(_, v)| v > 0.0)
        .collect();
    by_variance.sort_by(|a, b| b.1.total_cmp(&a.1));
    by_variance.truncate(top_channels.max(1));
    if by_variance.is_empty() {
        return vec![0.0; map.frames];
    }
    let mut masks = vec![vec![0.0; n_input]];
    masks.extend(
        by_variance
            .iter()
            .map(|&(k, _)| normalised(&upsample(map.channel(k), n_input))),
    );
    let scores = score(&masks);
    assert_eq!(scores.len(), masks.len(), "one score per mask");
    let gains: Vec<f64> = scores[1..].iter().map(|s| s - scores[0]).collect();
    let weights = softmax(&gains);
    let mut saliency = vec![0.0f32; map.frames];
    for (&(k, _), w) in by_variance.iter().zip(&weights) {
        for (s, a) in saliency.iter_mut().zip(map.channel(k)) {
            *s += *w as f32 * a;
        }
    }
    saliency.iter_mut().for_each(|s| *s = s.max(0.0));
    normalised(&saliency)
}

/// Linear interpolation of `values` (frames centred on `(i + 0.5) / n` of the
/// clip) onto `n` equally spaced positions.
pub fn upsample(values: &[f32], n: usize) -> Vec<f32> {
    let m = values.len();
    if m == 0 {
        return vec![0.0; n];
    }
    (0..n)
        .map(|i| {
            let position = ((i as f64 + 0.5) * m as f64 / n as f64 - 0.5).clamp(0.0, (m - 1) as f64);
            let left = position.floor() as usize;
            let right = (left + 1).min(m - 1);
            let t = (position - left as f64) as f32;
            values[left] * (1.0 - t) + values[right] * t
        })
        .collect()
}

/// Min–max scaled to [0, 1]; a constant input gives zeros.
pub fn normalised(values: &[f32]) -> Vec<f32> {
    let (low, high) = values
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
    if high.partial_cmp(&low) != Some(std::cmp::Ordering::Greater) {
        return vec![0.0; values.len()];
    }
    values.iter().map(|v| (v - low) / (high - low)).collect()
}

fn variance(values: &[f32]) -> f64 {
    let n = values.len() as f64;
    let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    values.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n
}

fn softmax(values: &[f64]) -> Vec<f64> {
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exp: Vec<f64> = values.iter().map(|v| (v - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.iter().map(|e| e / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saliency_finds_the_frames_the_score_depends_on() {
        // The score is the input's mass in frames 30..40 of 60; channel 0 is
        // active there, channel 1 elsewhere, channel 2 is flat.
        let frames = 15;
        let mut values = vec![0.0f32; 3 * frames];
        for t in 0..frames {
            values[t] = if (7..10).contains(&t) { 1.0 } else { 0.0 };
            values[frames + t] = if (7..10).contains(&t) { 0.0 } else { 1.0 };
            values[2 * frames + t] = 0.5;
        }
        let map = FeatureMap {
            values: &values,
            channels: 3,
            frames,
        };
        let saliency = score_cam(&map, 60, 8, |masks| {
            masks
                .iter()
                .map(|m| m[30..40].iter().map(|&v| f64::from(v)).sum())
                .collect()
        });
        assert_eq!(saliency.len(), frames);
        let peak = (0..frames)
            .max_by(|&a, &b| saliency[a].total_cmp(&saliency[b]))
            .unwrap();
        assert!((7..10).contains(&peak), "peak at {peak}: {saliency:?}");
        assert!(saliency.iter().all(|s| (0.0..=1.0).contains(s)));
    }

    #[test]
    fn upsampling_keeps_the_ends_and_the_shape() {
        assert_eq!(upsample(&[1.0, 1.0], 5), vec![1.0; 5]);
        let up = upsample(&[0.0, 1.0], 4);
        assert!(up[0] == 0.0 && up[3] == 1.0 && up[1] < up[2]);
        assert_eq!(normalised(&[2.0, 2.0]), vec![0.0, 0.0]);
    }
}
