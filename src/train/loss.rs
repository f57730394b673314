//! The training losses: class-weighted cross-entropy, and its mix with a
//! teacher's softened probabilities for distillation.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::config::{Balance, Distillation};
use crate::model::input::Example;

/// Per-class loss weights: inverse frequency, mean 1 over present classes.
pub fn class_weights(train: &[Example], n_classes: usize, balance: Balance) -> Vec<f32> {
    if balance != Balance::ClassWeights {
        return vec![1.0; n_classes];
    }
    let mut counts = vec![0usize; n_classes];
    for example in train {
        counts[example.label] += 1;
    }
    let present = counts.iter().filter(|&&c| c > 0).count() as f64;
    let total = train.len() as f64;
    counts
        .iter()
        .map(|&c| {
            if c == 0 {
                0.0
            } else {
                (total / (present * c as f64)) as f32
            }
        })
        .collect()
}

/// Weighted mean of `−log p(label)`.
pub fn cross_entropy(logits: Tensor<2>, labels: Tensor<1, Int>, class_weights: &[f32], device: &Device) -> Tensor<1> {
    let weights = Tensor::<1>::from_data(TensorData::new(class_weights.to_vec(), [class_weights.len()]), device);
    let weights = weights.select(0, labels.clone()); // [b]
    let log_probs = log_softmax(logits, 1); // [b, classes]
    let picked = log_probs.gather(1, labels.unsqueeze_dim::<2>(1)).squeeze_dim::<1>(1); // [b]
    (picked * weights.clone()).sum().neg() / weights.sum()
}

/// The teacher's probabilities `p` sharpened or softened to temperature `t`
/// (`p^(1/t)`, renormalised: the softmax of its logits over `t`), `[batch, classes]`.
pub fn soft_targets<'a>(rows: impl Iterator<Item = &'a Vec<f32>>, t: f64, device: &Device) -> Tensor<2> {
    let mut values = Vec::new();
    let mut n_rows = 0;
    for row in rows {
        let tempered: Vec<f64> = row.iter().map(|&p| f64::from(p.max(1e-12)).powf(1.0 / t)).collect();
        let total: f64 = tempered.iter().sum();
        values.extend(tempered.iter().map(|&v| (v / total) as f32));
        n_rows += 1;
    }
    let n_classes = values.len() / n_rows.max(1);
    Tensor::from_data(TensorData::new(values, [n_rows, n_classes]), device)
}

/// `(1 − w) · CE(labels) + w · T² · CE(targets, softmax(logits / T))`; the
/// `T²` keeps the soft term's gradients on the hard term's scale.
pub fn distillation_loss(
    logits: Tensor<2>,
    labels: Tensor<1, Int>,
    targets: Tensor<2>,
    class_weights: &[f32],
    distillation: &Distillation,
    device: &Device,
) -> Tensor<1> {
    let (w, t) = (distillation.weight, distillation.temperature);
    let batch = logits.dims()[0] as f64;
    let hard = cross_entropy(logits.clone(), labels, class_weights, device);
    let soft = (targets * log_softmax(logits / t, 1)).sum().neg() / batch;
    hard * (1.0 - w) + soft * (w * t * t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> Device {
        Device::flex()
    }

    fn scalar(t: Tensor<1>) -> f32 {
        t.into_scalar::<f32>()
    }

    #[test]
    fn soft_targets_are_tempered_distributions() {
        let rows = [vec![0.7f32, 0.2, 0.1], vec![0.25, 0.25, 0.5]];
        let at_one: Vec<f32> = soft_targets(rows.iter(), 1.0, &device())
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        for (a, b) in at_one.iter().zip(rows.iter().flatten()) {
            assert!((a - b).abs() < 1e-6);
        }
        let hot: Vec<f32> = soft_targets(rows.iter(), 4.0, &device())
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        for row in hot.chunks(3) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
        // A higher temperature flattens: the top class loses mass.
        assert!(hot[0] < 0.7 && hot[0] > 1.0 / 3.0);
    }

    #[test]
    fn distillation_loss_spans_labels_to_teacher() {
        let logits = Tensor::<2>::from_data(
            TensorData::new(vec![2.0f32, -1.0, 0.5, 0.0, 1.0, -0.5], [2, 3]),
            &device(),
        );
        let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 2], [2]), &device());
        let weights = [1.0f32, 1.0, 1.0];
        let hard = scalar(cross_entropy(logits.clone(), labels.clone(), &weights, &device()));
        let loss = |targets: Vec<f32>, weight: f64, temperature: f64| {
            let distillation = Distillation {
                teacher: String::new(),
                weight,
                temperature,
            };
            let targets = Tensor::<2>::from_data(TensorData::new(targets, [2, 3]), &device());
            scalar(distillation_loss(
                logits.clone(),
                labels.clone(),
                targets,
                &weights,
                &distillation,
                &device(),
            ))
        };
        let teacher = vec![0.2f32, 0.3, 0.5, 0.6, 0.3, 0.1];
        assert!(
            (loss(teacher.clone(), 0.0, 2.0) - hard).abs() < 1e-6,
            "weight 0 is the labels' loss"
        );
        // A one-hot teacher agreeing with the labels, at T = 1, is the labels' loss again.
        let one_hot = vec![1.0f32, 0.0, 0.0, 0.0, 0.0, 1.0];
        assert!((loss(one_hot, 1.0, 1.0) - hard).abs() < 1e-5);
        // Otherwise the teacher moves it.
        assert!((loss(teacher, 0.5, 1.0) - hard).abs() > 1e-3);
    }
}
