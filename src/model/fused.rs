//! Fused ops on the CPU backend, for the hot paths of training and encoding.
//!
//! burn's generic path costs the spectral CNN's training step many passes
//! over every activation. GELU runs through scalar `libm::erff`; dropout
//! draws a Bernoulli tensor one ChaCha number at a time and multiplies
//! twice; layer norm over channels needs two transposes and, under autodiff,
//! about ten tracked element-wise ops, each with its own backward; conv1d
//! multiplies clip by clip in products too narrow for the matrix kernels.
//! Here each is one op with its backward written out: `dropout(gelu(x))` in
//! one pass each way (the keep mask a counter-based hash of the element's
//! index, recomputed in the backward instead of stored), the layer norm in
//! place over `[batch, channels, frames]`, and the convolution as one matrix
//! product over the whole batch. A linear layer is one product that adds
//! onto rows starting as its bias (burn's makes a second pass for the bias).
//! At inference, self-attention runs head by head with a softmax that
//! vectorises, and GELU overwrites a tensor nothing else holds.
//!
//! They are burn backend extensions implemented for Flex (and, for the
//! differentiable ones, autodiff over Flex); every other backend
//! (`--device gpu`) and dtype keeps burn's generic ops.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, DispatchDevice, Flex, backend_extension};
use burn::module::Param;
use burn::nn::conv::Conv1d;
use burn::nn::{Dropout, LayerNorm, Linear, PaddingConfig1d};
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, DType, Device, Distribution, Tensor, TensorData};
use rayon::prelude::*;

/// Elements per rayon task: small tensors stay on one thread.
const CHUNK: usize = 1 << 14;

#[backend_extension(Flex, Autodiff)]
pub trait FusedOps: Backend {
    /// `mask · gelu(x) / keep`, where element `i` is kept when the hash of
    /// `(seed, i)` falls below `keep`; `keep = 1` is plain GELU.
    fn gelu_dropout(x: FloatTensor<Self>, keep: f32, seed: u64) -> FloatTensor<Self>;

    /// Layer norm of `x: [batch, channels, frames]` over its channels, per
    /// frame: `(x − mean) / sqrt(var + LAYER_NORM_EPSILON) · gamma + beta`.
    fn channel_norm(x: FloatTensor<Self>, gamma: FloatTensor<Self>, beta: FloatTensor<Self>) -> FloatTensor<Self>;

    /// 1D convolution, stride 1, of `x: [batch, in, frames]` with
    /// `weight: [out, in, kernel]` and `bias: [out]`, zero-padded by `padding`
    /// frames (left, right).
    fn conv1d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        padding: (usize, usize),
    ) -> FloatTensor<Self>;

    /// `x · weight + bias` for `x: [rows, in]`, `weight: [in, out]` and
    /// `bias: [out]`.
    fn linear(x: FloatTensor<Self>, weight: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// burn's `LayerNormConfig` default (its modules keep their epsilon private).
const LAYER_NORM_EPSILON: f32 = 1e-5;

impl FusedOps for Flex {
    fn gelu_dropout(mut x: FlexTensor, keep: f32, seed: u64) -> FlexTensor {
        // At inference the input is usually a product no one else holds: no new buffer.
        if keep >= 1.0
            && let Some(values) = unique_values(&mut x)
        {
            values.par_chunks_mut(CHUNK).for_each(gelu_in_place);
            return x;
        }
        let x = x.to_contiguous();
        let shape = x.layout().shape().clone();
        let input = x.as_slice::<f32>().expect("contiguous f32 (checked by the caller)");
        let mut output = vec![0.0; input.len()];
        output
            .par_chunks_mut(CHUNK)
            .zip(input.par_chunks(CHUNK))
            .enumerate()
            .for_each(|(chunk, (out, x))| {
                gelu_dropout_forward(x, out, &KeepMask::new(keep, seed, chunk * CHUNK));
            });
        FlexTensor::from_data(TensorData::new(output, shape))
    }

    fn channel_norm(x: FlexTensor, gamma: FlexTensor, beta: FlexTensor) -> FlexTensor {
        channel_norm_forward(x.to_contiguous(), &gamma, &beta).0
    }

    fn conv1d(x: FlexTensor, weight: FlexTensor, bias: FlexTensor, padding: (usize, usize)) -> FlexTensor {
        conv1d_forward(&x, &weight, &bias, padding).0
    }

    fn linear(x: FlexTensor, weight: FlexTensor, bias: FlexTensor) -> FlexTensor {
        linear_forward(&x.to_contiguous(), &weight.to_contiguous(), &bias)
    }
}

impl<C: CheckpointStrategy> FusedOps for Autodiff<Flex, C> {
    fn gelu_dropout(x: FloatTensor<Self>, keep: f32, seed: u64) -> FloatTensor<Self> {
        match GeluDropoutBackward.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let input = x.primitive().to_contiguous();
                let output = Flex::gelu_dropout(input.clone(), keep, seed);
                prep.finish((input, keep, seed), output)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::gelu_dropout(x.into_primitive(), keep, seed)),
        }
    }

    fn channel_norm(x: FloatTensor<Self>, gamma: FloatTensor<Self>, beta: FloatTensor<Self>) -> FloatTensor<Self> {
        match ChannelNormBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let input = x.primitive().to_contiguous();
                let (output, statistics) = channel_norm_forward(input.clone(), gamma.primitive(), beta.primitive());
                prep.finish((input, gamma.primitive().clone(), statistics), output)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::channel_norm(
                x.into_primitive(),
                gamma.into_primitive(),
                beta.into_primitive(),
            )),
        }
    }

    fn conv1d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        padding: (usize, usize),
    ) -> FloatTensor<Self> {
        match Conv1dBackward
            .prepare::<C>([x.node(), weight.node(), bias.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (output, columns) = conv1d_forward(x.primitive(), weight.primitive(), bias.primitive(), padding);
                let input_shape = x.primitive().layout().shape().clone();
                prep.finish((columns, weight.primitive().clone(), input_shape, padding), output)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::conv1d(
                x.into_primitive(),
                weight.into_primitive(),
                bias.into_primitive(),
                padding,
            )),
        }
    }

    fn linear(x: FloatTensor<Self>, weight: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self> {
        match LinearBackward
            .prepare::<C>([x.node(), weight.node(), bias.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (input, weight) = (x.primitive().to_contiguous(), weight.primitive().to_contiguous());
                let output = linear_forward(&input, &weight, bias.primitive());
                prep.finish((input, weight), output)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::linear(
                x.into_primitive(),
                weight.into_primitive(),
                bias.into_primitive(),
            )),
        }
    }
}

#[derive(Debug)]
struct GeluDropoutBackward;

impl Backward<Flex, 1> for GeluDropoutBackward {
    /// The contiguous input, `keep` and the seed: the mask is recomputed.
    type State = (FlexTensor, f32, u64);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [parent] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node).to_contiguous();
        let Some(parent) = parent else { return };
        let (input, keep, seed) = ops.state;
        let shape = input.layout().shape().clone();
        let input = input.as_slice::<f32>().expect("stored contiguous");
        let grad = grad.as_slice::<f32>().expect("f32 gradient");
        let mut output = vec![0.0; input.len()];
        output
            .par_chunks_mut(CHUNK)
            .zip(input.par_chunks(CHUNK).zip(grad.par_chunks(CHUNK)))
            .enumerate()
            .for_each(|(chunk, (out, (x, g)))| {
                gelu_dropout_backward(x, g, out, &KeepMask::new(keep, seed, chunk * CHUNK));
            });
        grads.register::<Flex>(parent.id, FlexTensor::from_data(TensorData::new(output, shape)));
    }
}

/// Each frame's mean and `1 / sqrt(var + ε)`, `[batch · frames]` each.
#[derive(Debug, Clone)]
struct FrameStatistics {
    mean: Vec<f32>,
    inverse_std: Vec<f32>,
}

/// The forward, and the statistics the backward needs. Per clip, the sums
/// over channels run along the frames, which are contiguous.
fn channel_norm_forward(x: FlexTensor, gamma: &FlexTensor, beta: &FlexTensor) -> (FlexTensor, FrameStatistics) {
    let shape = x.layout().shape().clone();
    let (channels, frames) = (shape[1], shape[2]);
    let (gamma, beta) = (gamma.to_contiguous(), beta.to_contiguous());
    let (gamma, beta) = (
        gamma.as_slice::<f32>().expect("f32 gamma"),
        beta.as_slice::<f32>().expect("f32 beta"),
    );
    let input = x.as_slice::<f32>().expect("contiguous f32 (checked by the caller)");
    let clip = channels * frames;
    let mut output = vec![0.0; input.len()];
    let mut mean = vec![0.0; input.len() / channels];
    let mut inverse_std = vec![0.0; input.len() / channels];
    output
        .par_chunks_mut(clip)
        .zip(input.par_chunks(clip))
        .zip(mean.par_chunks_mut(frames).zip(inverse_std.par_chunks_mut(frames)))
        .for_each(|((out, x), (mean, inverse_std))| channel_norm_clip(x, gamma, beta, out, mean, inverse_std));
    (
        FlexTensor::from_data(TensorData::new(output, shape)),
        FrameStatistics { mean, inverse_std },
    )
}

/// One clip of [`channel_norm_forward`]: `x`, `out` are `[channels, frames]`;
/// writes the frames' statistics into `mean` and `inverse_std`.
#[multiversion::multiversion(targets("x86_64+avx512f", "x86_64+avx2+fma", "aarch64+neon"))]
fn channel_norm_clip(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    out: &mut [f32],
    mean: &mut [f32],
    inverse_std: &mut [f32],
) {
    let (channels, frames) = (gamma.len(), mean.len());
    for row in x.chunks(frames) {
        mean.iter_mut().zip(row).for_each(|(m, &x)| *m += x);
    }
    mean.iter_mut().for_each(|m| *m /= channels as f32);
    for row in x.chunks(frames) {
        for ((v, &x), &m) in inverse_std.iter_mut().zip(row).zip(mean.iter()) {
            *v += (x - m) * (x - m);
        }
    }
    inverse_std
        .iter_mut()
        .for_each(|v| *v = 1.0 / (*v / channels as f32 + LAYER_NORM_EPSILON).sqrt());
    for (c, (out, x)) in out.chunks_mut(frames).zip(x.chunks(frames)).enumerate() {
        for (((y, &x), &m), &s) in out.iter_mut().zip(x).zip(mean.iter()).zip(inverse_std.iter()) {
            *y = (x - m) * s * gamma[c] + beta[c];
        }
    }
}

/// One clip of the channel norm's backward: with x̂ = (x − μ)·s and ĝ = dy·γ,
/// `dx = s·(ĝ − mean_c ĝ − x̂·mean_c(ĝ·x̂))`; returns the clip's `Σ dy·x̂` and
/// `Σ dy` per channel (dγ, dβ), summed over clips by the caller.
#[multiversion::multiversion(targets("x86_64+avx512f", "x86_64+avx2+fma", "aarch64+neon"))]
fn channel_norm_clip_backward(
    x: &[f32],
    dy: &[f32],
    gamma: &[f32],
    mean: &[f32],
    inverse_std: &[f32],
    dx: &mut [f32],
) -> (Vec<f32>, Vec<f32>) {
    let (channels, frames) = (gamma.len(), mean.len());
    let mut d_gamma = vec![0.0f32; channels];
    let mut d_beta = vec![0.0f32; channels];
    let mut sum_g = vec![0.0f32; frames];
    let mut sum_gx = vec![0.0f32; frames];
    let mut product = vec![0.0f32; frames];
    for (c, (x, dy)) in x.chunks(frames).zip(dy.chunks(frames)).enumerate() {
        for j in 0..frames {
            let normalized = (x[j] - mean[j]) * inverse_std[j];
            let g = dy[j] * gamma[c];
            sum_g[j] += g;
            sum_gx[j] += g * normalized;
            product[j] = dy[j] * normalized;
        }
        d_gamma[c] = lane_sum(&product);
        d_beta[c] = lane_sum(dy);
    }
    let scale = 1.0 / channels as f32;
    for (c, (dx, (x, dy))) in dx
        .chunks_mut(frames)
        .zip(x.chunks(frames).zip(dy.chunks(frames)))
        .enumerate()
    {
        for j in 0..frames {
            let normalized = (x[j] - mean[j]) * inverse_std[j];
            let g = dy[j] * gamma[c];
            dx[j] = inverse_std[j] * (g - sum_g[j] * scale - normalized * sum_gx[j] * scale);
        }
    }
    (d_gamma, d_beta)
}

/// A sum in sixteen partial sums (lanes): a single running sum is a chain
/// the compiler may not reorder into vector adds.
#[inline(always)]
fn lane_sum(values: &[f32]) -> f32 {
    let mut partial = [0.0f32; 16];
    let chunks = values.chunks_exact(16);
    let tail: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        partial.iter_mut().zip(chunk).for_each(|(p, &x)| *p += x);
    }
    partial.iter().sum::<f32>() + tail
}

#[derive(Debug)]
struct ChannelNormBackward;

impl Backward<Flex, 3> for ChannelNormBackward {
    /// The contiguous input, gamma and the frames' statistics.
    type State = (FlexTensor, FlexTensor, FrameStatistics);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [x_node, gamma_node, beta_node] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node).to_contiguous();
        let (input, gamma, statistics) = ops.state;
        let shape = input.layout().shape().clone();
        let (channels, frames) = (shape[1], shape[2]);
        let clip = channels * frames;
        let gamma = gamma.to_contiguous();
        let gamma = gamma.as_slice::<f32>().expect("f32 gamma");
        let input = input.as_slice::<f32>().expect("stored contiguous");
        let grad = grad.as_slice::<f32>().expect("f32 gradient");
        let mut dx = vec![0.0; input.len()];
        let (d_gamma, d_beta) = dx
            .par_chunks_mut(clip)
            .zip(input.par_chunks(clip).zip(grad.par_chunks(clip)))
            .zip(
                statistics
                    .mean
                    .par_chunks(frames)
                    .zip(statistics.inverse_std.par_chunks(frames)),
            )
            .map(|((dx, (x, dy)), (mean, inverse_std))| channel_norm_clip_backward(x, dy, gamma, mean, inverse_std, dx))
            .reduce(
                || (vec![0.0; channels], vec![0.0; channels]),
                |(mut g, mut b), (g2, b2)| {
                    g.iter_mut().zip(g2).for_each(|(a, b)| *a += b);
                    b.iter_mut().zip(b2).for_each(|(a, b)| *a += b);
                    (g, b)
                },
            );
        let tensor = |values: Vec<f32>, shape| FlexTensor::from_data(TensorData::new(values, shape));
        if let Some(node) = x_node {
            grads.register::<Flex>(node.id, tensor(dx, shape.clone()));
        }
        if let Some(node) = gamma_node {
            grads.register::<Flex>(node.id, tensor(d_gamma, [channels].into()));
        }
        if let Some(node) = beta_node {
            grads.register::<Flex>(node.id, tensor(d_beta, [channels].into()));
        }
    }
}

/// The convolution as one matrix product over the whole batch: `columns`
/// (`[batch · frames_out, in · kernel]`, each output frame's receptive field)
/// times the weight. burn's generic conv multiplies clip by clip, in products
/// too narrow for the matrix kernels (the profile's `x1x6`); one product of
/// `batch · frames` rows keeps them busy, forward and backward. Returns the
/// output `[batch, out, frames_out]` (a transposed view of the product's
/// rows) and the columns, which the backward reuses.
fn conv1d_forward(
    x: &FlexTensor,
    weight: &FlexTensor,
    bias: &FlexTensor,
    padding: (usize, usize),
) -> (FlexTensor, Vec<f32>) {
    let (x, weight, bias) = (x.to_contiguous(), weight.to_contiguous(), bias.to_contiguous());
    let input = x.as_slice::<f32>().expect("contiguous f32 (checked by the caller)");
    let weight_shape = weight.layout().shape();
    let [batch, channels_in, frames] = [x.layout().shape()[0], x.layout().shape()[1], x.layout().shape()[2]];
    let (channels_out, kernel) = (weight_shape[0], weight_shape[2]);
    let frames_out = frames + padding.0 + padding.1 + 1 - kernel;
    let width = channels_in * kernel;
    let mut columns = vec![0.0f32; batch * frames_out * width];
    columns
        .par_chunks_mut(frames_out * width)
        .zip(input.par_chunks(channels_in * frames))
        .for_each(|(columns, x)| {
            for (j, row) in columns.chunks_mut(width).enumerate() {
                for (c, taps) in row.chunks_mut(kernel).enumerate() {
                    for (r, tap) in taps.iter_mut().enumerate() {
                        let at = (j + r).checked_sub(padding.0).filter(|&t| t < frames);
                        *tap = at.map_or(0.0, |t| x[c * frames + t]);
                    }
                }
            }
        });
    let rows = batch * frames_out;
    let mut product = vec![0.0f32; rows * channels_out];
    let weight = weight.as_slice::<f32>().expect("f32 weight");
    // product [rows, out] = columns [rows, width] · weightᵀ [width, out]
    matmul(
        &mut product,
        (channels_out, 1),
        (&columns, width, 1),
        (weight, 1, width),
        (rows, channels_out, width),
    );
    let bias = bias.as_slice::<f32>().expect("f32 bias");
    product
        .par_chunks_mut(channels_out)
        .for_each(|row| row.iter_mut().zip(bias).for_each(|(y, b)| *y += b));
    let output = FlexTensor::from_data(TensorData::new(product, [batch, frames_out, channels_out])).transpose(1, 2);
    (output, columns)
}

#[derive(Debug)]
struct Conv1dBackward;

impl Backward<Flex, 3> for Conv1dBackward {
    /// The forward's columns, the weight, the input's shape and the padding.
    type State = (Vec<f32>, FlexTensor, burn::tensor::Shape, (usize, usize));

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [x_node, weight_node, bias_node] = ops.parents;
        let (columns, weight, input_shape, padding) = ops.state;
        let weight = weight.to_contiguous();
        let weight_shape = weight.layout().shape().clone();
        let (channels_out, channels_in, kernel) = (weight_shape[0], weight_shape[1], weight_shape[2]);
        let (batch, frames) = (input_shape[0], input_shape[2]);
        let width = channels_in * kernel;
        // The output gradient as the product's rows, [batch · frames_out, out].
        let grad = grads.consume::<Flex>(&ops.node).transpose(1, 2).to_contiguous();
        let frames_out = grad.layout().shape()[1];
        let grad = grad.as_slice::<f32>().expect("f32 gradient");
        let rows = batch * frames_out;
        let tensor =
            |values: Vec<f32>, shape: burn::tensor::Shape| FlexTensor::from_data(TensorData::new(values, shape));
        if let Some(node) = weight_node {
            // d weight [out, width] = gradᵀ [out, rows] · columns [rows, width]
            let mut d_weight = vec![0.0f32; channels_out * width];
            matmul(
                &mut d_weight,
                (width, 1),
                (grad, 1, channels_out),
                (&columns, width, 1),
                (channels_out, width, rows),
            );
            grads.register::<Flex>(node.id, tensor(d_weight, weight_shape.clone()));
        }
        if let Some(node) = bias_node {
            let d_bias = column_sums(grad, channels_out);
            grads.register::<Flex>(node.id, tensor(d_bias, [channels_out].into()));
        }
        if let Some(node) = x_node {
            // d columns [rows, width] = grad [rows, out] · weight [out, width], then
            // each column entry goes back to the input frame it was copied from.
            let mut d_columns = vec![0.0f32; rows * width];
            let weight = weight.as_slice::<f32>().expect("f32 weight");
            matmul(
                &mut d_columns,
                (width, 1),
                (grad, channels_out, 1),
                (weight, width, 1),
                (rows, width, channels_out),
            );
            let mut dx = vec![0.0f32; batch * channels_in * frames];
            dx.par_chunks_mut(channels_in * frames)
                .zip(d_columns.par_chunks(frames_out * width))
                .for_each(|(dx, d_columns)| {
                    for (j, row) in d_columns.chunks(width).enumerate() {
                        for (c, taps) in row.chunks(kernel).enumerate() {
                            for (r, tap) in taps.iter().enumerate() {
                                if let Some(t) = (j + r).checked_sub(padding.0).filter(|&t| t < frames) {
                                    dx[c * frames + t] += tap;
                                }
                            }
                        }
                    }
                });
            grads.register::<Flex>(node.id, tensor(dx, input_shape));
        }
    }
}

/// `x · weight + bias`, each output row starting as the bias so that the
/// product adds to it and the bias costs no pass of its own.
fn linear_forward(x: &FlexTensor, weight: &FlexTensor, bias: &FlexTensor) -> FlexTensor {
    let bias = bias.to_contiguous();
    let bias = bias.as_slice::<f32>().expect("f32 bias");
    let (rows, inputs) = (x.layout().shape()[0], x.layout().shape()[1]);
    let outputs = bias.len();
    let mut output = bias.repeat(rows);
    gemm_strided(
        &mut output,
        (outputs, 1),
        (
            x.as_slice::<f32>().expect("contiguous f32 (checked by the caller)"),
            inputs,
            1,
        ),
        (weight.as_slice::<f32>().expect("contiguous f32 weight"), outputs, 1),
        (rows, outputs, inputs),
        Accumulate::Add,
        gemm::Parallelism::Rayon(rayon::current_num_threads()),
    );
    FlexTensor::from_data(TensorData::new(output, [rows, outputs]))
}

#[derive(Debug)]
struct LinearBackward;

impl Backward<Flex, 3> for LinearBackward {
    /// The contiguous input `[rows, in]` and weight `[in, out]`.
    type State = (FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [x_node, weight_node, bias_node] = ops.parents;
        let (input, weight) = ops.state;
        let grad = grads.consume::<Flex>(&ops.node).to_contiguous();
        let (rows, outputs) = (grad.layout().shape()[0], grad.layout().shape()[1]);
        let inputs = input.layout().shape()[1];
        let grad = grad.as_slice::<f32>().expect("f32 gradient");
        let tensor = |values: Vec<f32>, shape: [usize; 2]| FlexTensor::from_data(TensorData::new(values, shape));
        if let Some(node) = x_node {
            // dx [rows, in] = grad [rows, out] · weightᵀ [out, in]
            let mut dx = vec![0.0f32; rows * inputs];
            let weight = weight.as_slice::<f32>().expect("stored contiguous");
            matmul(
                &mut dx,
                (inputs, 1),
                (grad, outputs, 1),
                (weight, 1, outputs),
                (rows, inputs, outputs),
            );
            grads.register::<Flex>(node.id, tensor(dx, [rows, inputs]));
        }
        if let Some(node) = weight_node {
            // d weight [in, out] = inputᵀ [in, rows] · grad [rows, out]
            let mut d_weight = vec![0.0f32; inputs * outputs];
            let input = input.as_slice::<f32>().expect("stored contiguous");
            matmul(
                &mut d_weight,
                (outputs, 1),
                (input, 1, inputs),
                (grad, outputs, 1),
                (inputs, outputs, rows),
            );
            grads.register::<Flex>(node.id, tensor(d_weight, [inputs, outputs]));
        }
        if let Some(node) = bias_node {
            let d_bias = column_sums(grad, outputs);
            grads.register::<Flex>(node.id, FlexTensor::from_data(TensorData::new(d_bias, [outputs])));
        }
    }
}

/// The sums over the rows of a row-major `[rows, width]` matrix: a bias's gradient.
fn column_sums(values: &[f32], width: usize) -> Vec<f32> {
    values.chunks(width).fold(vec![0.0f32; width], |mut sum, row| {
        sum.iter_mut().zip(row).for_each(|(s, g)| *s += g);
        sum
    })
}

/// `out = lhs · rhs` with `(m, n, k)` sizes; `out` is given with its row
/// stride and column stride, `lhs` and `rhs` as (values, row stride, column
/// stride), so transposes cost nothing.
fn matmul(
    out: &mut [f32],
    out_strides: (usize, usize),
    lhs: (&[f32], usize, usize),
    rhs: (&[f32], usize, usize),
    sizes: (usize, usize, usize),
) {
    let threads = gemm::Parallelism::Rayon(rayon::current_num_threads());
    gemm_strided(out, out_strides, lhs, rhs, sizes, Accumulate::Replace, threads);
}

/// [`matmul`] on the calling thread, for callers already running in parallel.
fn matmul_serial(
    out: &mut [f32],
    out_strides: (usize, usize),
    lhs: (&[f32], usize, usize),
    rhs: (&[f32], usize, usize),
    sizes: (usize, usize, usize),
) {
    gemm_strided(
        out,
        out_strides,
        lhs,
        rhs,
        sizes,
        Accumulate::Replace,
        gemm::Parallelism::None,
    );
}

/// Whether a product overwrites its output or adds to what is there.
#[derive(Clone, Copy, PartialEq)]
enum Accumulate {
    Replace,
    Add,
}

fn gemm_strided(
    out: &mut [f32],
    (out_row, out_column): (usize, usize),
    (lhs, lhs_row, lhs_column): (&[f32], usize, usize),
    (rhs, rhs_row, rhs_column): (&[f32], usize, usize),
    (m, n, k): (usize, usize, usize),
    accumulate: Accumulate,
    parallelism: gemm::Parallelism,
) {
    // An empty product leaves `out` as it is: zeros, or the bias it adds onto.
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    let last = |rows: usize, columns: usize, row: usize, column: usize| (rows - 1) * row + (columns - 1) * column;
    assert!(
        last(m, n, out_row, out_column) < out.len()
            && last(m, k, lhs_row, lhs_column) < lhs.len()
            && last(k, n, rhs_row, rhs_column) < rhs.len(),
        "matmul shapes"
    );
    let add = accumulate == Accumulate::Add;
    // SAFETY: the assert above keeps the last element gemm reads or writes,
    // and so every one (strides are non-negative), inside its slice; `out`
    // is borrowed mutably, so it aliases neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            out_column as isize,
            out_row as isize,
            add,
            lhs.as_ptr(),
            lhs_column as isize,
            lhs_row as isize,
            rhs.as_ptr(),
            rhs_column as isize,
            rhs_row as isize,
            if add { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Inference-only fused ops (no autodiff implementation: callers check).
#[backend_extension(Flex)]
pub trait FusedInference: Backend {
    /// Multi-head self-attention of `q`, `k`, `v: [batch, frames, hidden]`
    /// (heads side by side in `hidden`), clip `b` attending to its first
    /// `key_lengths[b]` frames; scores scaled by `1/sqrt(head width)`.
    /// Returns `[batch, frames, hidden]`.
    fn attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        heads: usize,
        key_lengths: Vec<usize>,
    ) -> FloatTensor<Self>;

    /// A strided, unpadded convolution over time of channels-last frames
    /// `x: [batch, frames, in]` with `weight: [out, in, kernel]` and
    /// `bias: [out]`. Returns `[batch, frames_out, out]`.
    fn frame_conv1d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: usize,
    ) -> FloatTensor<Self>;
}

impl FusedInference for Flex {
    fn attention(q: FlexTensor, k: FlexTensor, v: FlexTensor, heads: usize, key_lengths: Vec<usize>) -> FlexTensor {
        let (q, k, v) = (q.to_contiguous(), k.to_contiguous(), v.to_contiguous());
        let shape = q.layout().shape().clone();
        let (frames, hidden) = (shape[1], shape[2]);
        let width = hidden / heads;
        let scale = 1.0 / (width as f32).sqrt();
        let clip = frames * hidden;
        let [q, k, v] = [&q, &k, &v].map(|t| t.as_slice::<f32>().expect("contiguous f32 (checked by the caller)"));
        // One task per (clip, head): its scores [frames, keys] are the only ones alive.
        let contexts: Vec<Vec<f32>> = (0..key_lengths.len() * heads)
            .into_par_iter()
            .map(|task| {
                let (b, h) = (task / heads, task % heads);
                let keys = key_lengths[b];
                let head = b * clip + h * width..(b + 1) * clip;
                let (q, k, v) = (&q[head.clone()], &k[head.clone()], &v[head]);
                let mut scores = vec![0.0f32; frames * keys];
                // scores [frames, keys] = q_h [frames, width] · k_hᵀ [width, keys]
                matmul_serial(
                    &mut scores,
                    (keys, 1),
                    (q, hidden, 1),
                    (k, 1, hidden),
                    (frames, keys, width),
                );
                scores.chunks_mut(keys).for_each(|row| softmax_in_place(row, scale));
                let mut context = vec![0.0f32; frames * width];
                // context [frames, width] = weights [frames, keys] · v_h [keys, width]
                matmul_serial(
                    &mut context,
                    (width, 1),
                    (&scores, keys, 1),
                    (v, hidden, 1),
                    (frames, width, keys),
                );
                context
            })
            .collect();
        let mut output = vec![0.0f32; q.len()];
        output.par_chunks_mut(clip).enumerate().for_each(|(b, out)| {
            for (h, context) in contexts[b * heads..(b + 1) * heads].iter().enumerate() {
                for (row, values) in out.chunks_mut(hidden).zip(context.chunks(width)) {
                    row[h * width..(h + 1) * width].copy_from_slice(values);
                }
            }
        });
        FlexTensor::from_data(TensorData::new(output, shape))
    }

    /// In channels-last frames, output frame `j`'s receptive field is one
    /// contiguous run of `kernel · in` values starting at row `j · stride`,
    /// so the windows are a strided view of the input: one product per clip,
    /// with no im2col copy (the feature encoder's inputs are up to 65 MB per
    /// layer at 10 s).
    fn frame_conv1d(x: FlexTensor, weight: FlexTensor, bias: FlexTensor, stride: usize) -> FlexTensor {
        let (x, weight, bias) = (x.to_contiguous(), weight.to_contiguous(), bias.to_contiguous());
        let shape = x.layout().shape();
        let [batch, frames, channels_in] = [shape[0], shape[1], shape[2]];
        let weight_shape = weight.layout().shape();
        let (channels_out, kernel) = (weight_shape[0], weight_shape[2]);
        let frames_out = frames.checked_sub(kernel).map_or(0, |span| span / stride + 1);
        let width = kernel * channels_in;
        // Each filter with its taps outermost, as in a window: [out, kernel · in].
        let weight = weight.as_slice::<f32>().expect("f32 weight");
        let mut taps = vec![0.0f32; channels_out * width];
        for (filter, taps) in weight.chunks(width).zip(taps.chunks_mut(width)) {
            for (c, channel) in filter.chunks(kernel).enumerate() {
                for (r, &w) in channel.iter().enumerate() {
                    taps[r * channels_in + c] = w;
                }
            }
        }
        let bias = bias.as_slice::<f32>().expect("f32 bias");
        let mut output = bias.repeat(batch * frames_out);
        let input = x.as_slice::<f32>().expect("contiguous f32 (checked by the caller)");
        let threads = gemm::Parallelism::Rayon(rayon::current_num_threads());
        let (clip_in, clip_out) = (frames * channels_in, frames_out * channels_out);
        for b in 0..batch {
            // out [frames_out, out] += windows [frames_out, width] · tapsᵀ [width, out]
            // (a clip shorter than the kernel is an empty product: nothing to do)
            gemm_strided(
                &mut output[b * clip_out..(b + 1) * clip_out],
                (channels_out, 1),
                (&input[b * clip_in..(b + 1) * clip_in], stride * channels_in, 1),
                (&taps, 1, width),
                (frames_out, channels_out, width),
                Accumulate::Add,
                threads,
            );
        }
        FlexTensor::from_data(TensorData::new(output, [batch, frames_out, channels_out]))
    }
}

/// `row = softmax(scale · row)`, with `exp` written out so that it vectorises;
/// the max and the sum keep sixteen partial results (lanes), because a
/// single running one is a chain the compiler may not reorder.
#[multiversion::multiversion(targets("x86_64+avx512f", "x86_64+avx2+fma", "aarch64+neon"))]
fn softmax_in_place(row: &mut [f32], scale: f32) {
    const LANES: usize = 16;
    let lanes = |row: &[f32], start: f32, combine: fn(f32, f32) -> f32| {
        let mut partial = [start; LANES];
        let chunks = row.chunks_exact(LANES);
        let tail = chunks.remainder().iter().fold(start, |a, &x| combine(a, x));
        for chunk in chunks {
            for (p, &x) in partial.iter_mut().zip(chunk) {
                *p = combine(*p, x);
            }
        }
        partial.iter().fold(tail, |a, &p| combine(a, p))
    };
    let max = lanes(row, f32::NEG_INFINITY, f32::max);
    row.iter_mut().for_each(|x| *x = exp_nonpositive((*x - max) * scale));
    let inverse = 1.0 / lanes(row, 0.0, |a, b| a + b);
    row.iter_mut().for_each(|x| *x *= inverse);
}

/// `exp(x)` for `x ≤ 0` (softmax after its max is subtracted): `2^n · p(r)`
/// with `x = n·ln 2 + r`, `|r| ≤ ln 2 / 2`, and Cephes' `expf` polynomial
/// (relative error about 1e-7). Plain arithmetic, unlike libm's `expf`, so
/// the loop around it runs eight or sixteen lanes at a time.
#[inline(always)]
fn exp_nonpositive(x: f32) -> f32 {
    const LN2_HIGH: f32 = 0.693_359_4;
    const LN2_LOW: f32 = -2.121_944_4e-4;
    // Adding 1.5·2²³ rounds to an integer in the low mantissa bits, without
    // the scalar fix-ups of `round` and `as i32`.
    const ROUNDER: f32 = 12_582_912.0;
    let x = x.max(-87.0);
    let shifted = x * std::f32::consts::LOG2_E + ROUNDER;
    let n = shifted - ROUNDER;
    let r = x - n * LN2_HIGH - n * LN2_LOW;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let p = p * r * r + r + 1.0;
    let two_to_n = f32::from_bits((shifted.to_bits().wrapping_sub(ROUNDER.to_bits()).wrapping_add(127)) << 23);
    p * two_to_n
}

/// `out = mask · gelu(x)`.
#[multiversion::multiversion(targets("x86_64+avx512f", "x86_64+avx2+fma", "aarch64+neon"))]
fn gelu_dropout_forward(x: &[f32], out: &mut [f32], mask: &KeepMask) {
    for (i, (y, &x)) in out.iter_mut().zip(x).enumerate() {
        let (cdf, _) = normal_cdf_and_density(x);
        *y = x * cdf * mask.scale(i);
    }
}

/// `x = gelu(x)`.
#[multiversion::multiversion(targets("x86_64+avx512f", "x86_64+avx2+fma", "aarch64+neon"))]
fn gelu_in_place(values: &mut [f32]) {
    for x in values {
        *x *= normal_cdf_and_density(*x).0;
    }
}

/// The values of a contiguous f32 tensor that nothing else shares, to write in place.
fn unique_values(x: &mut FlexTensor) -> Option<&mut [f32]> {
    let (start, end) = x.layout().contiguous_offsets()?;
    if x.dtype() != DType::F32 {
        return None;
    }
    Some(&mut x.try_storage_mut::<f32>()?[start..end])
}

/// `out = g · mask · gelu′(x)`, where `gelu′(x) = Φ(x) + x·φ(x)`.
#[multiversion::multiversion(targets("x86_64+avx512f", "x86_64+avx2+fma", "aarch64+neon"))]
fn gelu_dropout_backward(x: &[f32], g: &[f32], out: &mut [f32], mask: &KeepMask) {
    for (i, ((y, &x), &g)) in out.iter_mut().zip(x).zip(g).enumerate() {
        let (cdf, density) = normal_cdf_and_density(x);
        *y = g * (cdf + x * density) * mask.scale(i);
    }
}

/// Φ(x), the standard normal CDF, and φ(x), its density: erf by
/// Abramowitz & Stegun 7.1.26 (|error| ≤ 1.5e-7, below f32's resolution of
/// the result), sharing its `exp(−x²/2)` with the density. Plain arithmetic,
/// so the loops above run it eight or sixteen lanes at a time.
#[inline(always)]
fn normal_cdf_and_density(x: f32) -> (f32, f32) {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [0.254_829_6, -0.284_496_74, 1.421_413_7, -1.453_152, 1.061_405_4];
    const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;
    let z = x * std::f32::consts::FRAC_1_SQRT_2;
    let a = z.abs();
    let t = 1.0 / (1.0 + P * a);
    let poly = A.iter().rev().fold(0.0, |acc, &c| acc * t + c) * t;
    let gauss = exp_nonpositive(-(a * a));
    let erf = (1.0 - poly * gauss).copysign(z);
    (0.5 * (1.0 + erf), gauss * FRAC_1_SQRT_2PI)
}

/// The dropout mask as a pure function of `(seed, element index)`, so the
/// backward regenerates it and threads need no shared generator.
struct KeepMask {
    /// Keep when the hash's top 24 bits are below this.
    threshold: u32,
    scale: f32,
    seed: u32,
    offset: usize,
}

impl KeepMask {
    fn new(keep: f32, seed: u64, offset: usize) -> Self {
        Self {
            threshold: (keep as f64 * (1 << 24) as f64).round() as u32,
            scale: 1.0 / keep,
            seed: hash32(seed as u32 ^ hash32((seed >> 32) as u32)),
            offset,
        }
    }

    /// `1/keep` where element `offset + i` is kept, 0 where it is dropped.
    #[inline(always)]
    fn scale(&self, i: usize) -> f32 {
        if self.threshold >= 1 << 24 {
            return 1.0;
        }
        let kept = hash32(((self.offset + i) as u32) ^ self.seed) >> 8 < self.threshold;
        if kept { self.scale } else { 0.0 }
    }
}

/// Chris Wellons' lowbias32 integer hash: a bijection with good avalanche,
/// enough for dropout masks at a fraction of a ChaCha draw's cost.
fn hash32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^ (x >> 16)
}

/// Exact-form GELU, `x · Φ(x)`: the fused op on the CPU, burn's elsewhere.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if !on_flex_f32(&x) {
        return burn::tensor::activation::gelu(x);
    }
    Tensor::from_dispatch(<Dispatch as FusedOps>::gelu_dropout(x.into_dispatch(), 1.0, 0))
}

/// `dropout(gelu(x))` in one pass on the CPU. Like burn's [`Dropout`], it
/// drops only while training on an autodiff device; the mask's seed is drawn
/// from the device's seeded generator, so a seed fixes it.
pub fn gelu_dropout<const D: usize>(x: Tensor<D>, dropout: &Dropout) -> Tensor<D> {
    let dropping = dropout.training.is_enabled() && x.device().is_autodiff() && dropout.prob > 0.0;
    if !on_flex_f32(&x) {
        return dropout.forward(burn::tensor::activation::gelu(x));
    }
    let (keep, seed) = if dropping {
        (1.0 - dropout.prob as f32, draw_seed(&x))
    } else {
        (1.0, 0)
    };
    Tensor::from_dispatch(<Dispatch as FusedOps>::gelu_dropout(x.into_dispatch(), keep, seed))
}

/// `linear`'s forward (`x · weight + bias` over the last axis); on the CPU
/// one matrix product that adds onto the bias, without a pass of its own.
pub fn linear<const D: usize>(x: Tensor<D>, linear: &Linear) -> Tensor<D> {
    if !on_flex_f32(&x) {
        return linear.forward(x);
    }
    let mut shape = x.dims();
    let [inputs, outputs] = linear.weight.dims();
    let rows = shape[..D - 1].iter().product();
    let bias = bias_or_zeros(linear.bias.as_ref(), outputs, &x.device());
    let output = Tensor::<2>::from_dispatch(<Dispatch as FusedOps>::linear(
        x.reshape([rows, inputs]).into_dispatch(),
        linear.weight.val().into_dispatch(),
        bias.into_dispatch(),
    ));
    shape[D - 1] = outputs;
    output.reshape(shape)
}

/// `conv`'s forward; on the CPU as one batched matrix product when the
/// convolution is plain (stride 1, no dilation, no groups, with a bias).
pub fn conv1d(x: Tensor<3>, conv: &Conv1d) -> Tensor<3> {
    let padding = match conv.padding {
        PaddingConfig1d::Explicit(left, right) => Some((left, right)),
        PaddingConfig1d::Valid => Some((0, 0)),
        PaddingConfig1d::Same => None,
    };
    let plain = conv.stride == 1 && conv.dilation == 1 && conv.groups == 1;
    match (&conv.bias, padding) {
        (Some(bias), Some(padding)) if plain && on_flex_f32(&x) => {
            Tensor::from_dispatch(<Dispatch as FusedOps>::conv1d(
                x.into_dispatch(),
                conv.weight.val().into_dispatch(),
                bias.val().into_dispatch(),
                padding,
            ))
        }
        _ => conv.forward(x),
    }
}

/// Multi-head self-attention of the projections `q`, `k`, `v: [batch,
/// frames, hidden]` → `[batch, frames, hidden]`, scores scaled by
/// `1/sqrt(head width)`; `padding: [batch, heads, frames, frames]` is true
/// where the key is padding. At inference on the CPU it runs head by head in
/// parallel with its own softmax (burn's op spends a third of a Whisper
/// forward in scalar loops and `expf`); elsewhere it is burn's `attention`.
pub fn self_attention(
    q: Tensor<3>,
    k: Tensor<3>,
    v: Tensor<3>,
    heads: usize,
    padding: Option<Tensor<4, Bool>>,
) -> Tensor<3> {
    let [batch, frames, hidden] = q.dims();
    let key_lengths = match &padding {
        _ if !on_flex_f32(&q) || q.is_autodiff() => None,
        None => Some(vec![frames; batch]),
        Some(padding) => key_lengths(padding.clone()),
    };
    if let Some(key_lengths) = key_lengths {
        return Tensor::from_dispatch(<Dispatch as FusedInference>::attention(
            q.into_dispatch(),
            k.into_dispatch(),
            v.into_dispatch(),
            heads,
            key_lengths,
        ));
    }
    let split = |t: Tensor<3>| t.reshape([batch, frames, heads, hidden / heads]).swap_dims(1, 2);
    let context = attention(
        split(q),
        split(k),
        split(v),
        padding,
        None,
        AttentionModuleOptions::default(),
    ); // [b, heads, t, d]
    context.swap_dims(1, 2).reshape([batch, frames, hidden])
}

/// `conv` (strided, unpadded, ungrouped, undilated) over channels-last
/// frames: `x: [batch, frames, in]` → `[batch, frames_out, out]`. At
/// inference on the CPU the windows are read in place; elsewhere they are
/// unfolded and multiplied by burn's ops (which autodiff trains through).
pub fn frame_conv1d(x: Tensor<3>, conv: &Conv1d) -> Tensor<3> {
    let [channels_out, channels_in, kernel] = conv.weight.dims();
    if on_flex_f32(&x) && !x.is_autodiff() {
        let bias = bias_or_zeros(conv.bias.as_ref(), channels_out, &x.device());
        return Tensor::from_dispatch(<Dispatch as FusedInference>::frame_conv1d(
            x.into_dispatch(),
            conv.weight.val().into_dispatch(),
            bias.into_dispatch(),
            conv.stride,
        ));
    }
    let windows = x.unfold::<4, _>(1, kernel, conv.stride); // [b, t, in, k]
    let [batch, frames, _, _] = windows.dims();
    let windows = windows.swap_dims(2, 3).reshape([batch, frames, kernel * channels_in]);
    let taps = conv
        .weight
        .val()
        .permute([2, 1, 0])
        .reshape([kernel * channels_in, channels_out]); // [k·in, out]
    let y = windows.matmul(taps.unsqueeze_dim::<3>(0));
    match &conv.bias {
        Some(bias) => y + bias.val().reshape([1, 1, channels_out]),
        None => y,
    }
}

/// Each clip's real keys, when the padding mask pads the end of each clip
/// (as [`super::pooling::padding_mask`] makes it); `None` for any other mask.
fn key_lengths(padding: Tensor<4, Bool>) -> Option<Vec<usize>> {
    let [batch, _, _, frames] = padding.dims();
    let keys: Vec<bool> = padding
        .narrow(1, 0, 1)
        .narrow(2, 0, 1)
        .reshape([batch, frames])
        .into_data()
        .convert::<bool>()
        .try_to_vec()
        .ok()?;
    keys.chunks(frames)
        .map(|row| {
            let real = row.iter().take_while(|&&padded| !padded).count();
            row[real..].iter().all(|&padded| padded).then_some(real)
        })
        .collect()
}

/// `norm` over the channels of `[batch, channels, frames]`, per frame (a
/// layer norm of the transposed tensor, without transposing on the CPU).
pub fn channel_norm(x: Tensor<3>, norm: &LayerNorm) -> Tensor<3> {
    match &norm.beta {
        Some(beta) if on_flex_f32(&x) => Tensor::from_dispatch(<Dispatch as FusedOps>::channel_norm(
            x.into_dispatch(),
            norm.gamma.val().into_dispatch(),
            beta.val().into_dispatch(),
        )),
        _ => norm.forward(x.swap_dims(1, 2)).swap_dims(1, 2),
    }
}

/// A layer's bias, or zeros for a layer without one: the fused products
/// always add onto a bias.
fn bias_or_zeros(bias: Option<&Param<Tensor<1>>>, len: usize, device: &Device) -> Tensor<1> {
    bias.map_or_else(|| Tensor::zeros([len], device), |bias| bias.val())
}

fn on_flex_f32<const D: usize>(x: &Tensor<D>) -> bool {
    x.dtype() == DType::F32 && matches!(x.device().as_dispatch().clone().inner(), DispatchDevice::Flex(_))
}

/// 48 random bits from the backend's seeded generator (two uniform f32 draws).
fn draw_seed<const D: usize>(like: &Tensor<D>) -> u64 {
    let device = like.device().without_autodiff();
    let draws: Vec<f32> = Tensor::<1>::random([2], Distribution::Default, &device)
        .into_data()
        .try_to_vec()
        .expect("f32 draws");
    let bits = |u: f32| (u * (1 << 24) as f32) as u64;
    bits(draws[0]) << 24 | bits(draws[1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::conv::Conv1dConfig;
    use burn::nn::{DropoutConfig, LayerNormConfig, LinearConfig};

    fn values(n: usize) -> Vec<f32> {
        (0..n).map(|i| (i as f32 * 0.37 + 0.1).sin() * 4.0).collect()
    }

    fn vec_of<const D: usize>(x: Tensor<D>) -> Vec<f32> {
        x.into_data().try_to_vec().unwrap()
    }

    fn worst(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    /// `∂ loss / ∂ values[i]` by central differences with step `h`.
    fn central_difference(values: &[f32], i: usize, h: f32, loss: impl Fn(&[f32]) -> f64) -> f32 {
        let (mut up, mut down) = (values.to_vec(), values.to_vec());
        up[i] += h;
        down[i] -= h;
        ((loss(&up) - loss(&down)) / (2.0 * h as f64)) as f32
    }

    #[test]
    fn gelu_and_its_gradient_match_burns_generic_op() {
        let device = Device::flex().autodiff();
        let xs: Vec<f32> = (-4000..=4000).map(|i| i as f32 * 0.0025).collect();
        let n = xs.len();
        let x = Tensor::<1>::from_data(TensorData::new(xs.clone(), [n]), &device).require_grad();
        let reference = Tensor::<1>::from_data(TensorData::new(xs, [n]), &device).require_grad();
        let ours = gelu(x.clone());
        let theirs = burn::tensor::activation::gelu(reference.clone());
        assert!(worst(&vec_of(ours.clone()), &vec_of(theirs.clone())) < 1e-6);
        let (ours_grad, theirs_grad) = (ours.sum().backward(), theirs.sum().backward());
        let (ours_grad, theirs_grad) = (
            vec_of(x.grad(&ours_grad).unwrap()),
            vec_of(reference.grad(&theirs_grad).unwrap()),
        );
        let error = worst(&ours_grad, &theirs_grad);
        assert!(error < 1e-6, "gradient differs by {error:e} over [-10, 10]");
    }

    #[test]
    fn the_gradient_matches_finite_differences_with_dropout() {
        let device = Device::flex().autodiff();
        let n = 3000;
        let xs = values(n);
        let weights: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
        let loss = |xs: &[f32]| -> f32 {
            let x = Tensor::<1>::from_data(TensorData::new(xs.to_vec(), [n]), &device);
            let y = Tensor::from_dispatch(<Dispatch as FusedOps>::gelu_dropout(x.into_dispatch(), 0.8, 99));
            let w = Tensor::<1>::from_data(TensorData::new(weights.clone(), [n]), &device);
            (y * w).sum().into_scalar()
        };
        let x = Tensor::<1>::from_data(TensorData::new(xs.clone(), [n]), &device).require_grad();
        let y = Tensor::from_dispatch(<Dispatch as FusedOps>::gelu_dropout(x.clone().into_dispatch(), 0.8, 99));
        let w = Tensor::<1>::from_data(TensorData::new(weights.clone(), [n]), &device);
        let analytic = vec_of(x.grad(&(y * w).sum().backward()).unwrap());
        let h = 1e-2;
        for i in (0..n).step_by(97) {
            let numeric = central_difference(&xs, i, h, |xs| loss(xs) as f64);
            let error = (numeric - analytic[i]).abs();
            assert!(
                error < 2e-2 * (1.0 + numeric.abs()),
                "element {i}: analytic {} numeric {numeric}",
                analytic[i]
            );
        }
    }

    #[test]
    fn dropout_keeps_the_expected_share_scaled_and_the_gradient_follows_the_mask() {
        let device = Device::flex().autodiff();
        device.seed(3);
        let n = 200_000;
        let xs = values(n);
        let dropout = DropoutConfig::new(0.2).init();
        let x = Tensor::<1>::from_data(TensorData::new(xs.clone(), [n]), &device).require_grad();
        let y = gelu_dropout(x.clone(), &dropout);
        let gradient = vec_of(x.grad(&y.clone().sum().backward()).unwrap());
        let plain = vec_of(gelu(Tensor::<1>::from_data(TensorData::new(xs.clone(), [n]), &device)));
        let reference = Tensor::<1>::from_data(TensorData::new(xs.clone(), [n]), &device).require_grad();
        let slope = vec_of(reference.grad(&gelu(reference.clone()).sum().backward()).unwrap());
        let y = vec_of(y);
        let mut kept = 0;
        for i in 0..n {
            // Dropped: output and gradient are zero. Kept: both scaled by 1/0.8.
            if y[i] != 0.0 {
                kept += 1;
                assert!(
                    (y[i] - plain[i] / 0.8).abs() <= 1e-5 * (1.0 + y[i].abs()),
                    "element {i}"
                );
                assert!((gradient[i] - slope[i] / 0.8).abs() < 1e-5, "element {i}");
            } else {
                assert_eq!(gradient[i], 0.0, "element {i}");
            }
        }
        let share = kept as f64 / n as f64;
        assert!((share - 0.8).abs() < 0.005, "kept {share}");
    }

    #[test]
    fn a_seed_fixes_the_mask_and_inference_does_not_drop() {
        let device = Device::flex().autodiff();
        let dropout = DropoutConfig::new(0.5).init();
        let x = || Tensor::<1>::from_data(TensorData::new(values(4096), [4096]), &device);
        let run = |seed| {
            device.seed(seed);
            vec_of(gelu_dropout(x(), &dropout))
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
        let inference = gelu_dropout(x().inner(), &dropout);
        assert_eq!(vec_of(inference), vec_of(gelu(x())));
    }

    /// A layer norm over 24 channels with uneven gamma and beta, and a random `[3, 24, 37]` input.
    fn norm_and_input(device: &Device) -> (LayerNorm, Vec<f32>) {
        let mut norm = LayerNormConfig::new(24).init(device);
        let gamma: Vec<f32> = (0..24).map(|c| 0.5 + (c as f32 * 0.7).sin()).collect();
        let beta: Vec<f32> = (0..24).map(|c| (c as f32 * 1.3).cos()).collect();
        norm.gamma = Param::from_tensor(Tensor::from_data(TensorData::new(gamma, [24]), device));
        norm.beta = Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(beta, [24]),
            device,
        )));
        let xs = (0..3 * 24 * 37)
            .map(|i| (i as f32 * 0.61).sin() * 3.0 + (i % 5) as f32)
            .collect();
        (norm, xs)
    }

    #[test]
    fn channel_norm_and_its_gradients_match_burns_layer_norm() {
        let device = Device::flex().autodiff();
        let (norm, xs) = norm_and_input(&device);
        let weights = Tensor::<3>::from_data(
            TensorData::new((0..3 * 24 * 37).map(|i| (i as f32 * 0.23).cos()).collect(), [3, 24, 37]),
            &device,
        );
        let x = Tensor::<3>::from_data(TensorData::new(xs.clone(), [3, 24, 37]), &device).require_grad();
        let reference = Tensor::<3>::from_data(TensorData::new(xs, [3, 24, 37]), &device).require_grad();
        let ours = channel_norm(x.clone(), &norm);
        let theirs = norm.forward(reference.clone().swap_dims(1, 2)).swap_dims(1, 2);
        assert!(worst(&vec_of(ours.clone()), &vec_of(theirs.clone())) < 1e-5);
        let ours_grads = (ours * weights.clone()).sum().backward();
        let ours_gamma = vec_of(norm.gamma.grad(&ours_grads).unwrap());
        let ours_beta = vec_of(norm.beta.as_ref().unwrap().grad(&ours_grads).unwrap());
        let ours_x = vec_of(x.grad(&ours_grads).unwrap());
        let theirs_grads = (theirs * weights).sum().backward();
        let theirs_gamma = vec_of(norm.gamma.grad(&theirs_grads).unwrap());
        let theirs_beta = vec_of(norm.beta.as_ref().unwrap().grad(&theirs_grads).unwrap());
        let theirs_x = vec_of(reference.grad(&theirs_grads).unwrap());
        assert!(
            worst(&ours_x, &theirs_x) < 1e-4,
            "dx differs by {}",
            worst(&ours_x, &theirs_x)
        );
        assert!(
            worst(&ours_gamma, &theirs_gamma) < 1e-3,
            "dgamma differs by {}",
            worst(&ours_gamma, &theirs_gamma)
        );
        assert!(
            worst(&ours_beta, &theirs_beta) < 1e-3,
            "dbeta differs by {}",
            worst(&ours_beta, &theirs_beta)
        );
    }

    #[test]
    fn channel_norm_gradients_match_finite_differences() {
        let device = Device::flex().autodiff();
        let (norm, xs) = norm_and_input(&device);
        let n = xs.len();
        let weights: Vec<f32> = (0..n).map(|i| (i as f32 * 0.23).cos()).collect();
        let loss = |xs: &[f32], norm: &LayerNorm| -> f64 {
            let x = Tensor::<3>::from_data(TensorData::new(xs.to_vec(), [3, 24, 37]), &device);
            let y = vec_of(channel_norm(x, norm));
            y.iter().zip(&weights).map(|(&y, &w)| y as f64 * w as f64).sum()
        };
        let x = Tensor::<3>::from_data(TensorData::new(xs.clone(), [3, 24, 37]), &device).require_grad();
        let w = Tensor::<3>::from_data(TensorData::new(weights.clone(), [3, 24, 37]), &device);
        let grads = (channel_norm(x.clone(), &norm) * w).sum().backward();
        let analytic_x = vec_of(x.grad(&grads).unwrap());
        let analytic_gamma = vec_of(norm.gamma.grad(&grads).unwrap());
        let h = 1e-2;
        for i in (0..n).step_by(131) {
            let numeric = central_difference(&xs, i, h, |xs| loss(xs, &norm));
            let error = (numeric - analytic_x[i]).abs();
            assert!(
                error < 2e-2 * (1.0 + numeric.abs()),
                "x[{i}]: analytic {} numeric {numeric}",
                analytic_x[i]
            );
        }
        let gamma = vec_of(norm.gamma.val());
        for c in [0, 7, 23] {
            let numeric = central_difference(&gamma, c, h, |gamma| {
                let mut norm = norm.clone();
                norm.gamma = Param::from_tensor(Tensor::from_data(TensorData::new(gamma.to_vec(), [24]), &device));
                loss(&xs, &norm)
            });
            let error = (numeric - analytic_gamma[c]).abs();
            assert!(
                error < 2e-2 * (1.0 + numeric.abs()),
                "gamma[{c}]: analytic {} numeric {numeric}",
                analytic_gamma[c]
            );
        }
    }

    #[test]
    fn conv1d_and_its_gradients_match_burns_conv() {
        let device = Device::flex().autodiff();
        device.seed(5);
        for padding in [
            PaddingConfig1d::Explicit(2, 2),
            PaddingConfig1d::Explicit(1, 3),
            PaddingConfig1d::Valid,
        ] {
            let conv = Conv1dConfig::new(6, 9, 5).with_padding(padding.clone()).init(&device);
            let xs: Vec<f32> = (0..3 * 6 * 23).map(|i| (i as f32 * 0.47).sin()).collect();
            let x = Tensor::<3>::from_data(TensorData::new(xs.clone(), [3, 6, 23]), &device).require_grad();
            let reference = Tensor::<3>::from_data(TensorData::new(xs, [3, 6, 23]), &device).require_grad();
            let ours = conv1d(x.clone(), &conv);
            let theirs = conv.forward(reference.clone());
            assert_eq!(ours.dims(), theirs.dims(), "{padding:?}");
            assert!(
                worst(&vec_of(ours.clone()), &vec_of(theirs.clone())) < 1e-5,
                "{padding:?}"
            );
            let n = ours.shape().num_elements();
            let weights = || {
                let values = (0..n).map(|i| (i as f32 * 0.29).cos()).collect();
                Tensor::<3>::from_data(TensorData::new(values, ours.dims()), &device)
            };
            let ours_grads = (ours.clone() * weights()).sum().backward();
            let theirs_grads = (theirs * weights()).sum().backward();
            let pairs = [
                (
                    vec_of(x.grad(&ours_grads).unwrap()),
                    vec_of(reference.grad(&theirs_grads).unwrap()),
                ),
                (
                    vec_of(conv.weight.grad(&ours_grads).unwrap()),
                    vec_of(conv.weight.grad(&theirs_grads).unwrap()),
                ),
            ];
            for (i, (a, b)) in pairs.into_iter().enumerate() {
                let error = worst(&a, &b);
                assert!(error < 1e-4, "{padding:?}: gradient {i} differs by {error}");
            }
            let bias = conv.bias.as_ref().unwrap();
            let error = worst(
                &vec_of(bias.grad(&ours_grads).unwrap()),
                &vec_of(bias.grad(&theirs_grads).unwrap()),
            );
            assert!(error < 1e-4, "{padding:?}: bias gradient differs by {error}");
        }
    }

    #[test]
    fn conv1d_gradients_match_finite_differences() {
        let device = Device::flex().autodiff();
        device.seed(6);
        let conv = Conv1dConfig::new(4, 5, 3)
            .with_padding(PaddingConfig1d::Explicit(1, 1))
            .init(&device);
        let xs: Vec<f32> = (0..2 * 4 * 11).map(|i| (i as f32 * 0.53).sin()).collect();
        let weights: Vec<f32> = (0..2 * 5 * 11).map(|i| (i as f32 * 0.31).cos()).collect();
        let loss = |xs: &[f32], conv: &Conv1d| -> f64 {
            let x = Tensor::<3>::from_data(TensorData::new(xs.to_vec(), [2, 4, 11]), &device);
            let y = vec_of(conv1d(x, conv));
            y.iter().zip(&weights).map(|(&y, &w)| y as f64 * w as f64).sum()
        };
        let x = Tensor::<3>::from_data(TensorData::new(xs.clone(), [2, 4, 11]), &device).require_grad();
        let w = Tensor::<3>::from_data(TensorData::new(weights.clone(), [2, 5, 11]), &device);
        let grads = (conv1d(x.clone(), &conv) * w).sum().backward();
        let analytic_x = vec_of(x.grad(&grads).unwrap());
        let analytic_weight = vec_of(conv.weight.grad(&grads).unwrap().flatten::<1>(0, 2));
        let h = 1e-2;
        for (i, &analytic) in analytic_x.iter().enumerate() {
            let numeric = central_difference(&xs, i, h, |xs| loss(xs, &conv));
            // Linear in x and in the weight: the difference is exact up to rounding.
            assert!(
                (numeric - analytic).abs() < 2e-3,
                "x[{i}]: analytic {analytic} numeric {numeric}"
            );
        }
        let weight = vec_of(conv.weight.val().flatten::<1>(0, 2));
        for i in (0..weight.len()).step_by(7) {
            let numeric = central_difference(&weight, i, h, |weight| {
                let mut conv = conv.clone();
                conv.weight =
                    Param::from_tensor(Tensor::from_data(TensorData::new(weight.to_vec(), [5, 4, 3]), &device));
                loss(&xs, &conv)
            });
            let error = (numeric - analytic_weight[i]).abs();
            assert!(
                error < 2e-3,
                "weight[{i}]: analytic {} numeric {numeric}",
                analytic_weight[i]
            );
        }
    }

    #[test]
    fn linear_and_its_gradients_match_burns_linear() {
        let device = Device::flex().autodiff();
        device.seed(8);
        for bias in [true, false] {
            let layer = LinearConfig::new(7, 5).with_bias(bias).init(&device);
            let xs = values(2 * 3 * 7);
            let x = Tensor::<3>::from_data(TensorData::new(xs.clone(), [2, 3, 7]), &device).require_grad();
            let reference = Tensor::<3>::from_data(TensorData::new(xs, [2, 3, 7]), &device).require_grad();
            let (ours, theirs) = (linear(x.clone(), &layer), layer.forward(reference.clone()));
            assert_eq!(ours.dims(), [2, 3, 5]);
            assert!(
                worst(&vec_of(ours.clone()), &vec_of(theirs.clone())) < 1e-5,
                "bias {bias}"
            );
            let weights = || {
                let values = (0..30).map(|i| (i as f32 * 0.29).cos()).collect();
                Tensor::<3>::from_data(TensorData::new(values, [2, 3, 5]), &device)
            };
            let ours_grads = (ours * weights()).sum().backward();
            let theirs_grads = (theirs * weights()).sum().backward();
            let mut pairs = vec![
                (
                    x.grad(&ours_grads).map(vec_of),
                    reference.grad(&theirs_grads).map(vec_of),
                ),
                (
                    layer.weight.grad(&ours_grads).map(vec_of),
                    layer.weight.grad(&theirs_grads).map(vec_of),
                ),
            ];
            if let Some(b) = &layer.bias {
                pairs.push((b.grad(&ours_grads).map(vec_of), b.grad(&theirs_grads).map(vec_of)));
            }
            for (i, (a, b)) in pairs.into_iter().enumerate() {
                let error = worst(&a.expect("our gradient"), &b.expect("burn's gradient"));
                assert!(error < 1e-4, "bias {bias}: gradient {i} differs by {error}");
            }
        }
    }

    #[test]
    fn linear_gradients_match_finite_differences() {
        let device = Device::flex().autodiff();
        device.seed(9);
        let layer = LinearConfig::new(4, 3).init(&device);
        let xs = values(5 * 4);
        let weights: Vec<f32> = (0..5 * 3).map(|i| (i as f32 * 0.31).cos()).collect();
        let loss = |xs: &[f32], layer: &Linear| -> f64 {
            let x = Tensor::<2>::from_data(TensorData::new(xs.to_vec(), [5, 4]), &device);
            let y = vec_of(linear(x, layer));
            y.iter().zip(&weights).map(|(&y, &w)| y as f64 * w as f64).sum()
        };
        let x = Tensor::<2>::from_data(TensorData::new(xs.clone(), [5, 4]), &device).require_grad();
        let w = Tensor::<2>::from_data(TensorData::new(weights.clone(), [5, 3]), &device);
        let grads = (linear(x.clone(), &layer) * w).sum().backward();
        let analytic_x = vec_of(x.grad(&grads).unwrap());
        let analytic_weight = vec_of(layer.weight.grad(&grads).unwrap());
        let h = 1e-2;
        // Linear in x and in the weight: central differences are exact up to rounding.
        for (i, &analytic) in analytic_x.iter().enumerate() {
            let numeric = central_difference(&xs, i, h, |xs| loss(xs, &layer));
            assert!((numeric - analytic).abs() < 2e-3, "x[{i}]: {analytic} vs {numeric}");
        }
        let weight = vec_of(layer.weight.val());
        for (i, &analytic) in analytic_weight.iter().enumerate() {
            let numeric = central_difference(&weight, i, h, |weight| {
                let mut layer = layer.clone();
                layer.weight = Param::from_tensor(Tensor::from_data(TensorData::new(weight.to_vec(), [4, 3]), &device));
                loss(&xs, &layer)
            });
            let error = (numeric - analytic).abs();
            assert!(error < 2e-3, "weight[{i}]: {analytic} vs {numeric}");
        }
    }

    #[test]
    fn an_empty_batch_through_linear_is_empty_not_a_panic() {
        let device = Device::flex();
        let layer = LinearConfig::new(4, 3).init(&device);
        assert_eq!(linear(Tensor::<2>::zeros([0, 4], &device), &layer).dims(), [0, 3]);
    }

    #[test]
    fn inference_gelu_writes_in_place_only_what_nothing_else_holds() {
        let device = Device::flex();
        let xs = values(3 * 50);
        let x = Tensor::<2>::from_data(TensorData::new(xs.clone(), [3, 50]), &device);
        let expected = vec_of(burn::tensor::activation::gelu(x.clone()));
        let shared = x.clone();
        assert!(worst(&vec_of(gelu(x)), &expected) < 1e-6);
        assert_eq!(
            vec_of(shared.clone()),
            xs,
            "a tensor another holder shares is left as it was"
        );
        assert!(
            worst(&vec_of(gelu(shared)), &expected) < 1e-6,
            "and the last holder's is computed in place"
        );
    }

    #[test]
    fn frame_conv1d_matches_burns_conv_in_place_and_under_autodiff() {
        // (in, out, kernel, stride, bias, frames): the feature encoder's first
        // layer (one input channel, wide stride) and its later ones.
        let cases = [
            (1, 8, 10, 5, false, 203),
            (7, 5, 3, 2, true, 40),
            (6, 4, 2, 2, false, 9),
            (3, 4, 5, 1, true, 5),
        ];
        for (channels_in, channels_out, kernel, stride, bias, frames) in cases {
            let device = Device::flex();
            device.seed(9);
            let conv = Conv1dConfig::new(channels_in, channels_out, kernel)
                .with_stride(stride)
                .with_padding(PaddingConfig1d::Valid)
                .with_bias(bias)
                .init(&device);
            let xs = values(2 * frames * channels_in);
            let x = Tensor::<3>::from_data(TensorData::new(xs.clone(), [2, frames, channels_in]), &device);
            let theirs = vec_of(conv.forward(x.clone().swap_dims(1, 2)).swap_dims(1, 2));
            let in_place = frame_conv1d(x, &conv);
            assert_eq!(in_place.dims()[1], theirs.len() / (2 * channels_out), "frames out");
            let in_place = vec_of(in_place);
            assert!(
                worst(&in_place, &theirs) < 1e-4,
                "in place: {}",
                worst(&in_place, &theirs)
            );

            let autodiff = Device::flex().autodiff();
            let weight = TensorData::new(vec_of(conv.weight.val()), conv.weight.dims());
            let conv = Conv1d {
                weight: Param::from_tensor(Tensor::from_data(weight, &autodiff)),
                bias: conv
                    .bias
                    .map(|b| Param::from_tensor(Tensor::from_data(b.val().into_data(), &autodiff))),
                ..conv
            };
            let x = Tensor::<3>::from_data(TensorData::new(xs, [2, frames, channels_in]), &autodiff);
            let generic = vec_of(frame_conv1d(x, &conv));
            assert!(worst(&generic, &theirs) < 1e-4, "generic: {}", worst(&generic, &theirs));
        }
    }

    #[test]
    fn a_clip_shorter_than_the_kernel_has_no_frames_not_a_panic() {
        let device = Device::flex();
        let conv = Conv1dConfig::new(2, 3, 5)
            .with_padding(PaddingConfig1d::Valid)
            .init(&device);
        let x = Tensor::<3>::from_data(TensorData::new(values(8), [1, 4, 2]), &device);
        assert_eq!(frame_conv1d(x, &conv).dims(), [1, 0, 3]);
    }

    #[test]
    fn attention_matches_burns_with_and_without_padding() {
        let device = Device::flex();
        let (batch, frames, heads, hidden) = (3, 37, 4, 32);
        let projection = |phase: f32| {
            let values = (0..batch * frames * hidden)
                .map(|i| (i as f32 * 0.13 + phase).sin() * 2.0)
                .collect();
            Tensor::<3>::from_data(TensorData::new(values, [batch, frames, hidden]), &device)
        };
        let (q, k, v) = (projection(0.0), projection(1.0), projection(2.0));
        let padding = crate::model::pooling::padding_mask(&[37, 20, 1], frames, &device)
            .unsqueeze_dims::<4>(&[1, 2])
            .expand([batch, heads, frames, frames]);
        for padding in [None, Some(padding)] {
            let ours = self_attention(q.clone(), k.clone(), v.clone(), heads, padding.clone());
            let split = |t: Tensor<3>| t.reshape([batch, frames, heads, hidden / heads]).swap_dims(1, 2);
            let theirs = attention(
                split(q.clone()),
                split(k.clone()),
                split(v.clone()),
                padding,
                None,
                AttentionModuleOptions::default(),
            )
            .swap_dims(1, 2)
            .reshape([batch, frames, hidden]);
            let error = worst(&vec_of(ours), &vec_of(theirs));
            assert!(error < 1e-5, "differs by {error}");
        }
    }

    #[test]
    fn the_vectorised_exp_is_accurate() {
        for i in 0..=100_000 {
            let x = -87.0 * i as f32 / 100_000.0;
            let (ours, exact) = (exp_nonpositive(x), (x as f64).exp());
            assert!(
                ((ours as f64 - exact) / exact).abs() < 4e-7,
                "exp({x}) = {ours}, not {exact}"
            );
        }
        assert_eq!(
            exp_nonpositive(-1e9),
            exp_nonpositive(-87.0),
            "clamped, never a denormal or NaN"
        );
    }
}
