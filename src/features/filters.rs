//! Mel filter bank, as `librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax,
//! htk=False, norm="slaney")`: triangles on the Slaney mel scale, each scaled
//! to unit area.

/// Converts Hz to Slaney mels: linear below 1 kHz, logarithmic above
/// (`librosa.hz_to_mel(htk=False)`).
pub fn hz_to_mel(hz: f64) -> f64 {
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    let min_log_mel = MIN_LOG_HZ / F_SP;
    let log_step = 6.4f64.ln() / 27.0;
    if hz >= MIN_LOG_HZ {
        min_log_mel + (hz / MIN_LOG_HZ).ln() / log_step
    } else {
        hz / F_SP
    }
}

/// Inverse of [`hz_to_mel`] (`librosa.mel_to_hz(htk=False)`).
pub fn mel_to_hz(mel: f64) -> f64 {
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    let min_log_mel = MIN_LOG_HZ / F_SP;
    let log_step = 6.4f64.ln() / 27.0;
    if mel >= min_log_mel {
        MIN_LOG_HZ * (log_step * (mel - min_log_mel)).exp()
    } else {
        F_SP * mel
    }
}

/// One mel band: its non-zero weights, starting at FFT bin `first_bin`.
#[derive(Debug, Clone, PartialEq)]
pub struct MelBand {
    pub first_bin: usize,
    pub weights: Vec<f32>,
}

/// The filter bank, stored sparsely (each band touches a few bins).
/// Weights are rounded to `f32` as librosa's default `dtype=np.float32` does.
pub fn mel(sr: u32, n_fft: usize, n_mels: usize, fmin: f64, fmax: f64) -> Vec<MelBand> {
    let n_bins = n_fft / 2 + 1;
    let fft_freqs: Vec<f64> = (0..n_bins).map(|k| k as f64 * f64::from(sr) / n_fft as f64).collect();
    let (mel_min, mel_max) = (hz_to_mel(fmin), hz_to_mel(fmax));
    let mel_f: Vec<f64> = (0..n_mels + 2)
        .map(|i| mel_to_hz(mel_min + (mel_max - mel_min) * i as f64 / (n_mels + 1) as f64))
        .collect();
    (0..n_mels)
        .map(|m| {
            let (lo, centre, hi) = (mel_f[m], mel_f[m + 1], mel_f[m + 2]);
            let slaney_norm = 2.0 / (hi - lo);
            let weight = |f: f64| {
                let lower = (f - lo) / (centre - lo);
                let upper = (hi - f) / (hi - centre);
                (lower.min(upper).max(0.0) * slaney_norm) as f32
            };
            let weights: Vec<f32> = fft_freqs.iter().map(|&f| weight(f)).collect();
            let first_bin = weights.iter().position(|&w| w > 0.0).unwrap_or(0);
            let last_bin = weights.iter().rposition(|&w| w > 0.0).map_or(first_bin, |i| i + 1);
            MelBand {
                first_bin,
                weights: weights[first_bin..last_bin].to_vec(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mel_scale_round_trips_and_is_linear_below_1khz() {
        assert!((hz_to_mel(600.0) - 9.0).abs() < 1e-12);
        assert!((hz_to_mel(1000.0) - 15.0).abs() < 1e-12);
        for hz in [0.0, 440.0, 1000.0, 3999.0, 8000.0] {
            assert!((mel_to_hz(hz_to_mel(hz)) - hz).abs() < 1e-9);
        }
    }

    #[test]
    fn bands_have_unit_area_in_hz() {
        // Slaney normalisation: each triangle integrates to ~1 over frequency
        // (2 / width × width / 2), up to the bin sampling.
        let bands = mel(16_000, 2048, 40, 0.0, 8000.0);
        let bin_hz = 16_000.0 / 2048.0;
        for band in &bands[10..] {
            let area: f64 = band.weights.iter().map(|&w| f64::from(w) * bin_hz).sum();
            assert!((area - 1.0).abs() < 0.05, "area {area}");
        }
    }
}
