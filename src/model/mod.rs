//! The models: each in its own file (a folder for a big one), built from a
//! serde config (`init`) or from a checkpoint, with a forward pass that reads
//! top-down. [`weights`] hands checkpoint tensors to the builders by name.

pub mod fusion;
pub mod input;
pub mod pooling;
pub mod saved;
pub mod spectral_cnn;
pub mod temporal;
pub mod wav2vec2;
pub mod weights;
pub mod whisper;

use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

/// Exact-form GELU, `x · Φ(x) = x/2 · (1 + erf(x/√2))`, for inference.
///
/// The backend computes erf one element at a time with libm (an eighth of a
/// wav2vec2 forward); here it runs eight lanes at a time with Abramowitz &
/// Stegun's formula 7.1.26 (|error| ≤ 1.5e-7, below f32 resolution of the
/// result) and `wide`'s vectorised `exp`. No gradient: training keeps burn's op.
pub fn fast_gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let device = x.device();
    let shape = x.shape();
    let mut values: Vec<f32> = x
        .into_data()
        .convert::<f32>()
        .try_into_vec()
        .expect("f32 data after convert");
    values.par_chunks_mut(1 << 14).for_each(|block| {
        for chunk in block.chunks_mut(8) {
            let mut lanes = [0.0f32; 8];
            lanes[..chunk.len()].copy_from_slice(chunk);
            let out = gelu_lanes(wide::f32x8::from(lanes)).to_array();
            chunk.copy_from_slice(&out[..chunk.len()]);
        }
    });
    Tensor::from_data(TensorData::new(values, shape), &device)
}

fn gelu_lanes(x: wide::f32x8) -> wide::f32x8 {
    use wide::f32x8;
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [0.254_829_6, -0.284_496_74, 1.421_413_7, -1.453_152, 1.061_405_4];
    let z = x * std::f32::consts::FRAC_1_SQRT_2;
    let a = z.abs();
    let t = f32x8::ONE / (f32x8::ONE + f32x8::splat(P) * a);
    let poly = A.iter().rev().fold(f32x8::ZERO, |acc, &c| acc * t + f32x8::splat(c)) * t;
    let erf_abs = f32x8::ONE - poly * (-(a * a)).exp();
    let erf = erf_abs.copysign(z);
    x * 0.5 * (f32x8::ONE + erf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_gelu_matches_the_erf_definition() {
        let device = burn::tensor::Device::flex();
        let xs: Vec<f32> = (-4000..=4000).map(|i| i as f32 * 0.0025).collect();
        let n = xs.len();
        let ours = fast_gelu(Tensor::<1>::from_data(TensorData::new(xs.clone(), [n]), &device));
        let reference = burn::tensor::activation::gelu(Tensor::<1>::from_data(TensorData::new(xs, [n]), &device));
        let (ours, reference) = (
            ours.into_data().try_to_vec::<f32>().unwrap(),
            reference.into_data().try_to_vec::<f32>().unwrap(),
        );
        let worst = ours
            .iter()
            .zip(&reference)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(worst < 1e-6, "max abs error {worst:e} over [-10, 10]");
    }
}
