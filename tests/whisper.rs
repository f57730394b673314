//! Whisper's front end and encoder against `transformers` 5.24, on the tiny
//! checkpoints of `scripts/golden_whisper.py` (HF safetensors and a
//! CTranslate2 file), in 30 s and trimmed mode.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use emofuse::audio;
use emofuse::model::whisper::{self, WhisperMel, WhisperMode};
use serde_json::Value;

use crate::util::shared_data;

/// Max absolute error of the log-mel input ((log10 + 4) / 4 units) and of the hidden states.
const MEL_TOLERANCE: f32 = 1e-4;
const TOLERANCE: f32 = 1e-4;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/whisper")
}

fn read(dir: &Path, entry: &Value) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(dir.join(entry["file"].as_str().unwrap())).unwrap();
    let values = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let shape = entry["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    (shape, values)
}

fn max_error(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// `[n_mels, frames]` → the first `keep` frames of each row.
fn first_frames(data: &[f32], frames: usize, keep: usize) -> Vec<f32> {
    data.chunks_exact(frames).flat_map(|row| row[..keep].to_vec()).collect()
}

/// Runs `encoder` on one clip's features and compares `golden` (hidden states and last).
fn check_encoder(
    what: &str,
    encoder: &whisper::WhisperEncoder,
    mel: &whisper::audio::WhisperFeatures,
    dir: &Path,
    golden: &Value,
) -> f32 {
    let device = Device::flex();
    let input = Tensor::<3>::from_data(
        TensorData::new(mel.data.clone(), [1, mel.n_mels, mel.n_frames]),
        &device,
    );
    let output = encoder.forward(input, &[mel.n_frames]);
    let mut worst = 0.0f32;
    let states = golden["hidden_states"].as_array().unwrap();
    assert_eq!(output.hidden_states.len(), states.len(), "{what}");
    for (ours, entry) in output
        .hidden_states
        .iter()
        .chain([&output.last_hidden_state])
        .zip(states.iter().chain([&golden["last_hidden_state"]]))
    {
        let (shape, theirs) = read(dir, entry);
        let ours: Vec<f32> = ours.clone().narrow(1, 0, shape[0]).into_data().try_to_vec().unwrap();
        worst = worst.max(max_error(&ours, &theirs));
    }
    assert!(worst <= TOLERANCE, "{what}: max abs error {worst:e}");
    worst
}

#[test]
fn front_end_and_encoder_match_transformers() {
    let index: Value =
        serde_json::from_str(&std::fs::read_to_string(golden_dir().join("index.json")).unwrap()).unwrap();
    let device = Device::flex();
    let hf = golden_dir().join("hf");
    let (encoder, config) = whisper::load(&hf, &device).unwrap();
    let front_end = WhisperMel::new(config.num_mel_bins);
    for (clip, golden) in index["hf"].as_object().unwrap() {
        let samples = audio::load(shared_data().join(index["clips"][clip].as_str().unwrap()))
            .unwrap()
            .samples;
        assert_eq!(samples.len() as u64, golden["n_samples"].as_u64().unwrap());

        let mel30 = front_end.compute(&samples, WhisperMode::Padded30s);
        assert_eq!((mel30.n_mels, mel30.n_frames), (80, 3000));
        let (shape, theirs) = read(&hf, &golden["log_mel"]);
        let mel_error = max_error(&first_frames(&mel30.data, 3000, shape[1]), &theirs);
        let trimmed = front_end.compute(&samples, WhisperMode::Trimmed);
        let (shape, theirs) = read(&hf, &golden["log_mel_trimmed"]);
        assert_eq!(
            [trimmed.n_mels, trimmed.n_frames],
            [shape[0], shape[1]],
            "{clip}: trimmed frame count"
        );
        let trimmed_error = max_error(&trimmed.data, &theirs);
        eprintln!("{clip:>8}: log-mel max error {mel_error:.2e} (30 s), {trimmed_error:.2e} (trimmed)");
        assert!(
            mel_error <= MEL_TOLERANCE && trimmed_error <= MEL_TOLERANCE,
            "{clip}: log-mel"
        );

        let e30 = check_encoder(&format!("{clip} 30 s"), &encoder, &mel30, &hf, &golden["mode30"]);
        let et = check_encoder(&format!("{clip} trimmed"), &encoder, &trimmed, &hf, &golden["trimmed"]);
        eprintln!("{clip:>8}: encoder max error {e30:.2e} (30 s), {et:.2e} (trimmed)");
    }
}

#[test]
fn ctranslate2_files_load_and_convert() {
    let index: Value =
        serde_json::from_str(&std::fs::read_to_string(golden_dir().join("index.json")).unwrap()).unwrap();
    let device = Device::flex();
    let ct2 = golden_dir().join("ct2");
    let golden = &index["ct2"]["ravdess"]["mode30"];
    let samples = audio::load(shared_data().join(index["clips"]["ravdess"].as_str().unwrap()))
        .unwrap()
        .samples;
    let mel = WhisperMel::new(80).compute(&samples, WhisperMode::Padded30s);

    let (encoder, _) = whisper::load::load_ct2(&ct2.join("model.bin"), &device).unwrap();
    let error = check_encoder("model.bin", &encoder, &mel, &ct2, golden);
    eprintln!("CTranslate2 file: max error {error:.2e}");

    let out = tempfile::tempdir().unwrap();
    whisper::convert_ct2(&ct2.join("model.bin"), out.path()).unwrap();
    let (converted, config) = whisper::load(out.path(), &device).unwrap();
    assert_eq!(
        (config.d_model, config.encoder_layers, config.encoder_attention_heads),
        (32, 2, 4)
    );
    check_encoder("converted", &converted, &mel, &ct2, golden);

    // A cut file is an error naming it, not a panic.
    let bytes = std::fs::read(ct2.join("model.bin")).unwrap();
    let cut = out.path().join("cut.bin");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let message = whisper::load::load_ct2(&cut, &device).err().unwrap().to_string();
    assert!(
        message.contains("cut.bin") && message.contains("truncated"),
        "{message}"
    );
}
