//! Loading real and synthetic audio, and refusing bad input with a clear error.

use std::path::Path;

use emofuse::audio::{self, AudioError, LoadOptions, SAMPLE_RATE};

use crate::util::{self, Encoding, Wav, shared_data, sine, wav16};

fn load_bytes(bytes: &[u8]) -> Result<audio::Waveform, AudioError> {
    audio::load_bytes(bytes, "upload.wav", &LoadOptions::default())
}

#[test]
fn every_wav_encoding_decodes_to_the_same_tone() {
    let tone = sine(440.0, 0.5, SAMPLE_RATE, 1600);
    for encoding in [
        Encoding::U8,
        Encoding::I16,
        Encoding::I24,
        Encoding::I32,
        Encoding::F32,
        Encoding::F64,
    ] {
        for extensible in [false, true] {
            let wav = Wav {
                extensible,
                ..Wav::new(encoding, 1, SAMPLE_RATE)
            };
            let loaded = load_bytes(&wav.bytes(&tone)).unwrap_or_else(|e| panic!("{encoding:?}: {e}"));
            assert_eq!(loaded.samples.len(), tone.len(), "{encoding:?}");
            // Within one quantisation step of the encoding (8-bit: 1/128).
            let step = if encoding.bits() == 8 {
                1.0 / 127.0
            } else {
                1.0 / 32767.0
            };
            let err = loaded
                .samples
                .iter()
                .zip(&tone)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(err <= step, "{encoding:?} extensible={extensible}: max error {err}");
        }
    }
}

#[test]
fn stereo_is_averaged_to_mono() {
    let left = sine(300.0, 0.6, SAMPLE_RATE, 800);
    let interleaved: Vec<f32> = left.iter().flat_map(|&l| [l, -0.5 * l]).collect();
    let loaded = load_bytes(&Wav::new(Encoding::F32, 2, SAMPLE_RATE).bytes(&interleaved)).unwrap();
    for (got, l) in loaded.samples.iter().zip(&left) {
        assert!((got - 0.25 * l).abs() < 1e-6);
    }
}

#[test]
fn other_rates_are_resampled_to_16k() {
    let loaded = load_bytes(&wav16(&sine(440.0, 0.5, 44_100, 44_100), 44_100)).unwrap();
    assert_eq!(loaded.sample_rate, SAMPLE_RATE);
    assert_eq!(loaded.samples.len(), 16_000);
    let want = sine(440.0, 0.5, SAMPLE_RATE, 16_000);
    let err = loaded.samples[400..15_600]
        .iter()
        .zip(&want[400..15_600])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(err < 2e-3, "max error {err}");
}

#[test]
fn committed_fixtures_in_every_container_decode() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let want = sine(440.0, 0.5, SAMPLE_RATE, 16_000);
    for name in [
        "tone.flac",
        "tone.aiff",
        "tone.mp3",
        "tone.ogg",
        "tone_stereo_22050.wav",
    ] {
        let loaded = audio::load(dir.join(name)).unwrap_or_else(|e| panic!("{e}"));
        // Lossy codecs add delay and padding; compare energy, not samples.
        let n = loaded.samples.len();
        assert!((15_000..=17_500).contains(&n), "{name}: {n} samples");
        let rms = (loaded.samples.iter().map(|s| s * s).sum::<f32>() / n as f32).sqrt();
        let want_rms = (want.iter().map(|s| s * s).sum::<f32>() / want.len() as f32).sqrt();
        assert!((rms / want_rms - 1.0).abs() < 0.05, "{name}: rms {rms} vs {want_rms}");
    }
}

/// Signal-to-noise ratio of `ours` against `reference`, after finding the
/// best alignment within ±`max_lag` samples.
fn aligned_snr_db(reference: &[f32], ours: &[f32], max_lag: isize) -> (f64, isize) {
    let n = reference.len().min(ours.len()) as isize;
    let mut best = (f64::NEG_INFINITY, 0);
    for lag in -max_lag..=max_lag {
        let (mut signal, mut noise) = (0.0f64, 0.0f64);
        for i in max_lag..n - max_lag {
            let r = f64::from(reference[i as usize]);
            let o = f64::from(ours[(i + lag) as usize]);
            signal += r * r;
            noise += (r - o) * (r - o);
        }
        let snr = 10.0 * (signal / noise).log10();
        if snr > best.0 {
            best = (snr, lag);
        }
    }
    best
}

#[test]
fn originals_match_the_soxr_conversions_within_40_db() {
    let data = shared_data();
    let pairs = [
        (
            "originals/ravdess/Actor_01/03-01-01-01-01-01-01.wav",
            "ravdess/Audio_Speech_Actors_01-24/Actor_01/03-01-01-01-01-01-01.flac",
        ),
        (
            "originals/ravdess/Actor_01/03-01-08-01-02-02-01.wav",
            "ravdess/Audio_Speech_Actors_01-24/Actor_01/03-01-08-01-02-02-01.flac",
        ),
        (
            "originals/tess/YAF_angry/YAF_germ_angry.wav",
            "tess/TESS/YAF_angry/YAF_germ_angry.flac",
        ),
        (
            "originals/tess/YAF_fear/YAF_neat_fear.wav",
            "tess/TESS/YAF_fear/YAF_neat_fear.flac",
        ),
        (
            "originals/tess/OAF_Fear/OAF_food_fear.wav",
            "tess/TESS/OAF_Fear/OAF_food_fear.flac",
        ),
        (
            "originals/urbansound8k/fold1/46654-6-0-0.wav",
            "noise/urbansound8k/fold1/46654-6-0-0.flac",
        ),
        (
            "originals/urbansound8k/fold10/77901-9-0-0.wav",
            "noise/urbansound8k/fold10/77901-9-0-0.flac",
        ),
    ];
    for (original, converted) in pairs {
        let ours = audio::load(data.join(original)).unwrap();
        let reference = audio::load(data.join(converted)).unwrap();
        let (snr, lag) = aligned_snr_db(&reference.samples, &ours.samples, 8);
        eprintln!("{original}: {snr:.1} dB at lag {lag}");
        assert!(snr >= 40.0, "{original}: {snr:.1} dB SNR against {converted}");
        assert_eq!(lag, 0, "{original}: our resampler shifts the signal by {lag} samples");
    }
}

#[test]
fn aiff_named_wav_is_sniffed_by_content() {
    let path = shared_data().join("originals/tess/YAF_angry/YAF_germ_angry.wav");
    let info = audio::probe(&path).unwrap();
    assert_eq!(info.container, audio::Container::Aiff);
    assert_eq!(info.sample_rate, 24_414);
}

#[test]
fn bytes_and_file_load_identically() {
    let path = shared_data().join("originals/ravdess/Actor_01/03-01-08-01-02-02-01.wav");
    let from_file = audio::load(&path).unwrap();
    let from_bytes = audio::load_bytes(&std::fs::read(&path).unwrap(), "x", &LoadOptions::default()).unwrap();
    assert_eq!(from_file, from_bytes);
}

// ---- bad input: each gets a typed error that names the file ----

fn expect_error(bytes: &[u8], check: impl Fn(&AudioError) -> bool) -> AudioError {
    let dir = tempfile::tempdir().unwrap();
    let path = util::write(dir.path(), "bad.wav", bytes);
    let err = audio::load(&path).expect_err("bad input must not load");
    assert!(check(&err), "unexpected error: {err:?}");
    assert_eq!(err.path(), path);
    assert!(
        err.to_string().starts_with(&path.display().to_string()),
        "message must name the file: {err}"
    );
    let upload = load_bytes(bytes).expect_err("bad bytes must not load");
    assert_eq!(
        std::mem::discriminant(&upload),
        std::mem::discriminant(&err),
        "{upload} vs {err}"
    );
    assert!(upload.to_string().starts_with("upload.wav: "), "{upload}");
    err
}

#[test]
fn missing_file() {
    let err = audio::load("/nonexistent/clip.wav").unwrap_err();
    assert!(matches!(err, AudioError::NotFound { .. }), "{err}");
    assert_eq!(err.to_string(), "/nonexistent/clip.wav: no such file");
}

#[test]
fn directory_instead_of_file() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(audio::load(dir.path()), Err(AudioError::IsDirectory { .. })));
}

#[test]
fn empty_file() {
    expect_error(b"", |e| matches!(e, AudioError::Empty { .. }));
}

#[test]
fn header_only_wav_has_no_samples() {
    expect_error(&wav16(&[], SAMPLE_RATE), |e| matches!(e, AudioError::NoSamples { .. }));
}

#[test]
fn wav_cut_inside_its_header() {
    let bytes = wav16(&sine(440.0, 0.5, SAMPLE_RATE, 100), SAMPLE_RATE);
    expect_error(&bytes[..30], |e| matches!(e, AudioError::Corrupt { .. }));
}

#[test]
fn wav_with_data_cut_short() {
    let wav = Wav {
        declared_frames: Some(16_000),
        ..Wav::new(Encoding::I16, 1, SAMPLE_RATE)
    };
    let err = expect_error(&wav.bytes(&sine(440.0, 0.5, SAMPLE_RATE, 1000)), |e| {
        matches!(
            e,
            AudioError::Truncated {
                expected: 16_000,
                decoded: 1000,
                ..
            }
        )
    });
    assert!(err.to_string().contains("truncated"));
}

#[test]
fn flac_cut_in_half() {
    let flac = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tone.flac")).unwrap();
    expect_error(&flac[..flac.len() / 2], |e| {
        matches!(e, AudioError::Truncated { .. } | AudioError::Corrupt { .. })
    });
}

#[test]
fn garbage_with_an_audio_extension() {
    let err = expect_error(b"this is not audio at all, just text", |e| {
        matches!(e, AudioError::UnknownFormat { .. })
    });
    assert!(err.to_string().contains("74 68 69 73"), "{err}");
}

#[test]
fn garbage_after_a_valid_magic() {
    for magic in [&b"OggS"[..], b"fLaC", b"ID3\x03\x00", b"FORM\x00\x00\x00\x10AIFF"] {
        let mut bytes = magic.to_vec();
        bytes.extend(std::iter::repeat_n(0x5Au8, 300));
        expect_error(&bytes, |e| {
            matches!(
                e,
                AudioError::Corrupt { .. } | AudioError::NoSamples { .. } | AudioError::Unsupported { .. }
            )
        });
    }
}

#[test]
fn unsupported_codec_inside_wav() {
    // Format tag 0x0161 is Windows Media Audio.
    let wav = Wav {
        format_tag: Some(0x0161),
        ..Wav::new(Encoding::I16, 1, SAMPLE_RATE)
    };
    expect_error(&wav.bytes(&sine(440.0, 0.5, SAMPLE_RATE, 100)), |e| {
        matches!(e, AudioError::Unsupported { .. })
    });
}

#[test]
fn unsupported_containers_are_named() {
    let err = expect_error(b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81", |e| {
        matches!(e, AudioError::Unsupported { .. })
    });
    assert!(err.to_string().contains("WebM"), "{err}");
    let err = expect_error(b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00", |e| {
        matches!(e, AudioError::Unsupported { .. })
    });
    assert!(err.to_string().contains("MP4"), "{err}");
}

#[test]
fn nan_samples() {
    let mut samples = sine(440.0, 0.5, SAMPLE_RATE, 1000);
    samples[500] = f32::NAN;
    let err = expect_error(&Wav::new(Encoding::F32, 1, SAMPLE_RATE).bytes(&samples), |e| {
        matches!(e, AudioError::NonFinite { index: 500, .. })
    });
    assert!(err.to_string().contains("NaN or infinite"));
}

#[test]
fn infinite_samples() {
    let mut samples = sine(440.0, 0.5, SAMPLE_RATE, 1000);
    samples[10] = f32::INFINITY;
    expect_error(&Wav::new(Encoding::F64, 1, SAMPLE_RATE).bytes(&samples), |e| {
        matches!(e, AudioError::NonFinite { index: 10, .. })
    });
}

#[test]
fn all_silent_audio_is_refused_unless_allowed() {
    let silence = wav16(&vec![0.0; 16_000], SAMPLE_RATE);
    expect_error(&silence, |e| matches!(e, AudioError::Silent { .. }));
    let options = LoadOptions {
        allow_silent: true,
        ..LoadOptions::default()
    };
    let loaded = audio::load_bytes(&silence, "silence.wav", &options).unwrap();
    assert_eq!(loaded.samples.len(), 16_000);
}

#[test]
fn absurd_sample_rates() {
    for rate in [1u32, 500, 5_000_000] {
        expect_error(&wav16(&sine(1.0, 0.5, 1000, 100), rate), |e| {
            matches!(e, AudioError::BadSampleRate { .. } | AudioError::Corrupt { .. })
        });
    }
}

#[test]
fn longer_than_the_limit_is_refused_from_the_header() {
    // The header promises 11 minutes; only a few bytes follow. Refused before decoding.
    let wav = Wav {
        declared_frames: Some(11 * 60 * 8000),
        ..Wav::new(Encoding::U8, 1, 8000)
    };
    let err = expect_error(&wav.bytes(&sine(440.0, 0.5, 8000, 100)), |e| {
        matches!(e, AudioError::TooLong { .. })
    });
    assert!(
        err.to_string().contains("660.0 s is longer than the 600.0 s limit"),
        "{err}"
    );
}

#[test]
fn the_duration_limit_is_configurable() {
    let bytes = wav16(&sine(440.0, 0.5, SAMPLE_RATE, 32_000), SAMPLE_RATE);
    let options = LoadOptions {
        max_duration_s: 1.5,
        ..LoadOptions::default()
    };
    let err = audio::load_bytes(&bytes, "two_seconds.wav", &options).unwrap_err();
    assert!(matches!(err, AudioError::TooLong { .. }), "{err}");
}

/// Found by fuzzing (`fuzz/artifacts/audio_bytes`): AIFF headers with a
/// sample rate of 0 made the decoder panic; now they are a clear error.
#[test]
fn fuzz_regression_aiff_with_a_zero_sample_rate() {
    for name in ["aiff-zero-rate.aiff", "aiff-zero-rate-2.aiff"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/fuzz")
            .join(name);
        let err = expect_error(&std::fs::read(path).unwrap(), |e| {
            matches!(e, AudioError::Corrupt { .. })
        });
        assert!(err.to_string().contains("sample rate of 0"), "{name}: {err}");
    }
    // An MP3-looking start with an AIFF further in: symphonia's probe finds the
    // AIFF and panics inside; the panic is caught and named.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz/mp3-then-aiff-zero-rate.bin");
    let err = expect_error(&std::fs::read(path).unwrap(), |e| {
        matches!(e, AudioError::Corrupt { .. })
    });
    assert!(err.to_string().contains("malformed"), "{err}");
}

/// A long recording read block by block equals the whole file loaded at once:
/// exactly at 16 kHz, within rounding through the resampler at other rates
/// and for stereo; a file cut short is still refused, at the end.
#[test]
fn streamed_blocks_join_to_the_loaded_file() {
    let dir = tempfile::tempdir().unwrap();
    let unlimited = LoadOptions {
        max_duration_s: f64::INFINITY,
        ..LoadOptions::default()
    };
    for (rate, channels, seconds, tolerance) in
        [(16_000, 1, 61.5, 0.0), (22_050, 2, 75.3, 1e-5), (8_000, 1, 60.0, 1e-5)]
    {
        let frames = (f64::from(rate) * seconds) as usize;
        // A chirp with a little noise, so that blocks cannot match by accident.
        let samples: Vec<f32> = (0..frames * channels)
            .map(|i| {
                let t = (i / channels) as f32 / rate as f32;
                0.3 * (2.0 * std::f32::consts::PI * (200.0 + 20.0 * t) * t).sin()
                    + 0.01 * ((i * 7919 % 101) as f32 / 101.0)
            })
            .collect();
        let path = util::write(
            dir.path(),
            &format!("long-{rate}.wav"),
            &Wav::new(Encoding::I16, channels as u16, rate).bytes(&samples),
        );
        let whole = audio::load_with(&path, &unlimited).unwrap().samples;
        let mut stream = audio::AudioStream::open(&path).unwrap();
        let mut joined = Vec::new();
        let mut blocks = 0;
        while let Some(block) = stream.next_block() {
            joined.extend(block.unwrap());
            blocks += 1;
        }
        assert_eq!(blocks, (seconds / 30.0).ceil() as usize, "{rate} Hz");
        assert_eq!(joined.len(), whole.len(), "{rate} Hz");
        let error = joined
            .iter()
            .zip(&whole)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(error <= tolerance, "{rate} Hz: max difference {error}");
    }
    let mut cut = Wav::new(Encoding::I16, 1, 16_000);
    cut.declared_frames = Some(16_000 * 70);
    let path = util::write(dir.path(), "cut.wav", &cut.bytes(&vec![0.1; 16_000 * 40]));
    let mut stream = audio::AudioStream::open(&path).unwrap();
    let mut last = None;
    while let Some(block) = stream.next_block() {
        last = Some(block);
    }
    let err = last.unwrap().unwrap_err().to_string();
    assert!(err.contains("cut.wav") && err.contains("truncated"), "{err}");
}
