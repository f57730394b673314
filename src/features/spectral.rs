//! Frame features named and computed as in `librosa.feature`: mel
//! spectrogram, MFCC, RMS and zero-crossing rate. The mel spectrogram stays
//! frame-major (`[n_frames, n_mels]`, each frame contiguous for the DCT);
//! MFCC, RMS and ZCR are `[n_features, n_frames]` as librosa returns them.

use multiversion::multiversion;

use super::filters::MelBand;
use super::spectrum::{BLOCK, PowerSpectrum, n_frames};

/// Samples within ±this count as zero in `zero_crossing_rate` (librosa's `threshold`).
const ZERO_THRESHOLD: f32 = 1e-10;

/// `mel_basis · S` of one block of power frames (`[n_bins][BLOCK]`, see
/// [`PowerSpectrum::power_blocks`]) into frames `first..first + n` of the
/// `[n_mels, n_frames]` mel spectrogram `out`.
#[multiversion(targets("x86_64+avx2", "x86_64+avx512f", "aarch64+neon"))]
pub fn melspectrogram_block(
    block: &[[f32; BLOCK]],
    bands: &[MelBand],
    out: &mut [f32],
    n_frames: usize,
    first: usize,
    n: usize,
) {
    for (row, band) in out.chunks_exact_mut(n_frames).zip(bands) {
        let mut energy = [0.0f32; BLOCK];
        for (bin, &w) in block[band.first_bin..].iter().zip(&band.weights) {
            for (e, &p) in energy.iter_mut().zip(bin) {
                *e += w * p;
            }
        }
        row[first..first + n].copy_from_slice(&energy[..n]);
    }
}

/// `librosa.feature.melspectrogram(y, …, power=2)`: `[n_mels, n_frames]`.
pub fn melspectrogram(spectrum: &PowerSpectrum, samples: &[f32], n_frames: usize, bands: &[MelBand]) -> Vec<f32> {
    let mut out = vec![0.0f32; bands.len() * n_frames];
    spectrum.power_blocks(samples, |first, n, block| {
        melspectrogram_block(block, bands, &mut out, n_frames, first, n);
    });
    out
}

/// The orthonormal DCT-II matrix (`scipy.fft.dct(type=2, norm="ortho")`),
/// first `n_mfcc` rows: `[n_mfcc, n_mels]`.
pub fn dct_matrix(n_mfcc: usize, n_mels: usize) -> Vec<f64> {
    let n = n_mels as f64;
    let mut basis = vec![0.0; n_mfcc * n_mels];
    for k in 0..n_mfcc {
        let scale = if k == 0 { (1.0 / n).sqrt() } else { (2.0 / n).sqrt() };
        for m in 0..n_mels {
            let angle = std::f64::consts::PI * k as f64 * (2 * m + 1) as f64 / (2.0 * n);
            basis[k * n_mels + m] = scale * angle.cos();
        }
    }
    basis
}

/// MFCC from a log-mel spectrogram and the DCT matrix (`[n_mfcc, n_mels]`):
/// `[n_mels, n_frames]` → `[n_mfcc, n_frames]`, summed along time rows so
/// the loops vectorise.
///
/// The product is one matrix multiply (the `gemm` crate, with runtime
/// AVX2/AVX-512/FMA dispatch). Each frame's mean is taken out first (in f64): every DCT row but the
/// first sums to zero, so only c₀ depends on it, and it is added back there.
/// Left in, the mean (down to −100 dB per band) makes f32 sums drift by
/// ~1e-3 dB, the whole parity budget.
#[multiversion(targets("x86_64+avx2", "x86_64+avx512f", "aarch64+neon"))]
pub fn mfcc(log_mel: &[f32], n_frames: usize, dct: &[f32]) -> Vec<f32> {
    let n_mels = log_mel.len() / n_frames.max(1);
    let mut mean = vec![0.0f64; n_frames];
    for row in log_mel.chunks_exact(n_frames) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += f64::from(v);
        }
    }
    mean.iter_mut().for_each(|m| *m /= n_mels as f64);
    let mut centred = vec![0.0f32; log_mel.len()];
    for (out_row, row) in centred.chunks_exact_mut(n_frames).zip(log_mel.chunks_exact(n_frames)) {
        for ((c, &v), &m) in out_row.iter_mut().zip(row).zip(&mean) {
            *c = (f64::from(v) - m) as f32;
        }
    }
    let n_mfcc = dct.len() / n_mels;
    let mut out = vec![0.0f32; n_mfcc * n_frames];
    matmul(dct, &centred, &mut out, n_mfcc, n_mels, n_frames);
    // c₀ = Σ value / √n_mels = √n_mels · mean.
    for (c0, &m) in out.iter_mut().zip(&mean) {
        *c0 += ((n_mels as f64).sqrt() * m) as f32;
    }
    out
}

/// `out = a · b` for row-major `a` (`[m, k]`), `b` (`[k, n]`), `out` (`[m, n]`).
fn matmul(a: &[f32], b: &[f32], out: &mut [f32], m: usize, k: usize, n: usize) {
    assert!(
        a.len() == m * k && b.len() == k * n && out.len() == m * n,
        "matmul shapes"
    );
    // SAFETY: the assert above keeps every index gemm derives from these
    // sizes and strides inside the three slices, and `out` is borrowed
    // mutably, so it does not alias `a` or `b`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            1,
            n as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Sums `value(i)` over blocks of `block` consecutive indices of the centred
/// (padded) signal, `0..n_samples + 2·pad`. Frames of `frame_length` that
/// start every `hop_length` samples then cover whole blocks when `block`
/// divides both: each frame adds up a few block sums instead of all its
/// samples, which makes overlapping frames cost linear time.
fn block_sums<T: Copy + std::iter::Sum<T>>(
    n_samples: usize,
    pad: usize,
    block: usize,
    value: impl Fn(std::ops::Range<usize>) -> T,
) -> Vec<T> {
    let padded_len = n_samples + 2 * pad;
    (0..padded_len.div_ceil(block))
        .map(|b| {
            let (start, end) = (b * block, ((b + 1) * block).min(padded_len));
            // The part of the block inside the signal, in sample indices.
            let first = start.saturating_sub(pad).min(n_samples);
            let last = end.saturating_sub(pad).min(n_samples);
            value(first..last)
        })
        .collect()
}

/// Pairs `(earlier[i], later[i])` on opposite sides of zero (see
/// [`zero_crossing_rate`]), summed as integers so the loop vectorises.
#[multiversion(targets("x86_64+avx2", "x86_64+avx512f", "aarch64+neon"))]
fn count_sign_changes(later: &[f32], earlier: &[f32]) -> u32 {
    later
        .iter()
        .zip(earlier)
        .map(|(&a, &b)| u32::from((a < -ZERO_THRESHOLD) != (b < -ZERO_THRESHOLD)))
        .sum()
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// `librosa.feature.rms(y, frame_length, hop_length, center)`: frames padded
/// with zeros, root of the mean square (squares summed in f64).
pub fn rms(samples: &[f32], frame_length: usize, hop_length: usize, center: bool) -> Vec<f32> {
    let pad = if center { frame_length / 2 } else { 0 };
    let block = gcd(frame_length, hop_length);
    let energies = block_sums(samples.len(), pad, block, |range| sum_of_squares(&samples[range]));
    let (blocks_per_frame, blocks_per_hop) = (frame_length / block, hop_length / block);
    (0..n_frames(samples.len(), frame_length, hop_length, center))
        .map(|t| {
            let first = t * blocks_per_hop;
            let energy: f64 = energies[first..first + blocks_per_frame].iter().sum();
            (energy / frame_length as f64).sqrt() as f32
        })
        .collect()
}

/// `Σ x²` in f64, with four partial sums so it vectorises.
#[multiversion(targets("x86_64+avx2", "x86_64+avx512f", "aarch64+neon"))]
fn sum_of_squares(x: &[f32]) -> f64 {
    let (x4, rest) = x.as_chunks::<4>();
    let mut acc = [0.0f64; 4];
    for chunk in x4 {
        for lane in 0..4 {
            acc[lane] += f64::from(chunk[lane]) * f64::from(chunk[lane]);
        }
    }
    acc.iter().sum::<f64>() + rest.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>()
}

/// `librosa.feature.zero_crossing_rate(y, frame_length, hop_length, center)`:
/// frames padded by repeating the edge samples; values within ±1e-10 count
/// as zero, and zero counts as positive; crossings between the frame's
/// consecutive samples divided by `frame_length`.
///
/// A crossing is counted at the later sample of its pair. Edge padding
/// repeats a sample, so crossings only happen at signal samples `1..len`;
/// they are counted per block (integers, exact) and frames add up blocks.
pub fn zero_crossing_rate(samples: &[f32], frame_length: usize, hop_length: usize, center: bool) -> Vec<f32> {
    let pad = if center { frame_length / 2 } else { 0 };
    let negative = |x: f32| x < -ZERO_THRESHOLD;
    let crossing_at = |i: usize| i > 0 && i < samples.len() && negative(samples[i]) != negative(samples[i - 1]);
    let block = gcd(frame_length, hop_length);
    let counts = block_sums(samples.len(), pad, block, |range| {
        // Pairs (i − 1, i) whose later sample i is in the block.
        let later = range.start.max(1)..range.end;
        if later.is_empty() {
            return 0;
        }
        count_sign_changes(&samples[later.clone()], &samples[later.start - 1..later.end - 1])
    });
    let (blocks_per_frame, blocks_per_hop) = (frame_length / block, hop_length / block);
    (0..n_frames(samples.len(), frame_length, hop_length, center))
        .map(|t| {
            let first = t * blocks_per_hop;
            let blocks: u32 = counts[first..first + blocks_per_frame].iter().sum();
            // The frame's first sample has no partner inside the frame.
            let start = t * hop_length;
            let own_first = start.checked_sub(pad).is_some_and(crossing_at);
            (blocks - u32::from(own_first)) as f32 / frame_length as f32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_of_a_constant_is_the_constant_away_from_the_edges() {
        let values = rms(&[0.5; 8192], 2048, 512, true);
        assert!(values[4..values.len() - 4].iter().all(|&v| (v - 0.5).abs() < 1e-6));
        assert!(values[0] < 0.5, "the first frame is half zero padding");
    }

    #[test]
    fn alternating_signs_cross_every_sample() {
        let signal: Vec<f32> = (0..4096).map(|i| if i % 2 == 0 { 1.0 } else { -1.0 }).collect();
        let zcr = zero_crossing_rate(&signal, 2048, 512, false);
        assert!(zcr.iter().all(|&z| z == 2047.0 / 2048.0));
        assert!(
            zero_crossing_rate(&[0.0; 4096], 2048, 512, true)
                .iter()
                .all(|&z| z == 0.0)
        );
    }

    #[test]
    fn dct_is_orthonormal() {
        let basis = dct_matrix(8, 8);
        for a in 0..8 {
            for b in 0..8 {
                let dot: f64 = (0..8).map(|m| basis[a * 8 + m] * basis[b * 8 + m]).sum();
                assert!((dot - f64::from(u8::from(a == b))).abs() < 1e-12);
            }
        }
    }
}
