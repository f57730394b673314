//! Frame features named and computed as in `librosa.feature`: mel
//! spectrogram, MFCC, RMS and zero-crossing rate. Every output is
//! `[n_features, n_frames]`, feature-major, as librosa returns them.

use super::filters::MelBand;
use super::spectrum::n_frames;

/// `mel_basis · S` for frame-major power frames: `[n_mels, n_frames]`.
pub fn melspectrogram(power: &[f32], n_bins: usize, bands: &[MelBand]) -> Vec<f32> {
    let n_frames = power.len() / n_bins;
    let mut out = vec![0.0f32; bands.len() * n_frames];
    for (t, frame) in power.chunks_exact(n_bins).enumerate() {
        for (m, band) in bands.iter().enumerate() {
            let bins = &frame[band.first_bin..band.first_bin + band.weights.len()];
            let energy: f64 = bins
                .iter()
                .zip(&band.weights)
                .map(|(&p, &w)| f64::from(p) * f64::from(w))
                .sum();
            out[m * n_frames + t] = energy as f32;
        }
    }
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

/// MFCC from a log-mel spectrogram: `[n_mfcc, n_frames]`.
pub fn mfcc(log_mel: &[f32], n_mels: usize, dct: &[f64]) -> Vec<f32> {
    let n_frames = log_mel.len() / n_mels;
    let n_mfcc = dct.len() / n_mels;
    let mut out = vec![0.0f32; n_mfcc * n_frames];
    for (k, row) in dct.chunks_exact(n_mels).enumerate() {
        for t in 0..n_frames {
            let value: f64 = row
                .iter()
                .enumerate()
                .map(|(m, &c)| c * f64::from(log_mel[m * n_frames + t]))
                .sum();
            out[k * n_frames + t] = value as f32;
        }
    }
    out
}

/// `librosa.feature.rms(y, frame_length, hop_length, center)`: frames padded
/// with zeros, root of the mean square.
pub fn rms(samples: &[f32], frame_length: usize, hop_length: usize, center: bool) -> Vec<f32> {
    let pad = if center { frame_length / 2 } else { 0 };
    let at = |i: isize| {
        if i >= 0 && (i as usize) < samples.len() {
            f64::from(samples[i as usize])
        } else {
            0.0
        }
    };
    (0..n_frames(samples.len(), frame_length, hop_length, center))
        .map(|t| {
            let start = (t * hop_length) as isize - pad as isize;
            let energy: f64 = (0..frame_length as isize).map(|i| at(start + i).powi(2)).sum();
            (energy / frame_length as f64).sqrt() as f32
        })
        .collect()
}

/// `librosa.feature.zero_crossing_rate(y, frame_length, hop_length, center)`:
/// frames padded by repeating the edge samples; values within ±1e-10 count
/// as zero, and zero counts as positive; crossings between the frame's
/// consecutive samples divided by `frame_length`.
pub fn zero_crossing_rate(samples: &[f32], frame_length: usize, hop_length: usize, center: bool) -> Vec<f32> {
    const THRESHOLD: f32 = 1e-10;
    let pad = if center { frame_length / 2 } else { 0 };
    let last = samples.len() as isize - 1;
    let negative = |i: isize| {
        let x = samples[i.clamp(0, last) as usize];
        x < -THRESHOLD
    };
    (0..n_frames(samples.len(), frame_length, hop_length, center))
        .map(|t| {
            let start = (t * hop_length) as isize - pad as isize;
            let crossings = (1..frame_length as isize)
                .filter(|&i| negative(start + i) != negative(start + i - 1))
                .count();
            crossings as f32 / frame_length as f32
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
