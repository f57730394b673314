//! Whisper's front end and encoder against `transformers` 5.24, on the tiny
//! checkpoints of `scripts/golden_whisper.py` (HF safetensors and a
//! CTranslate2 file), in 30 s and trimmed mode.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use emofuse::audio;
use emofuse::model::whisper::{self, WhisperMel, WhisperMode};
use serde_json::Value;

use crate::util::{
    emofuse_in, files_under, golden_dir, golden_index, max_abs_error, read_golden, shared_data, tiny_manifest,
    train_tiny_output,
};

/// Max absolute error of the log-mel input ((log10 + 4) / 4 units) and of the hidden states.
const MEL_TOLERANCE: f32 = 1e-4;
const TOLERANCE: f32 = 1e-4;

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
        let (shape, theirs) = read_golden(dir, entry);
        let ours: Vec<f32> = ours.clone().narrow(1, 0, shape[0]).into_data().try_to_vec().unwrap();
        worst = worst.max(max_abs_error(&ours, &theirs));
    }
    assert!(worst <= TOLERANCE, "{what}: max abs error {worst:e}");
    worst
}

#[test]
fn front_end_and_encoder_match_transformers() {
    let index = golden_index("whisper");
    let device = Device::flex();
    let hf = golden_dir("whisper").join("hf");
    let (encoder, config) = whisper::load(&hf, &device).unwrap();
    let front_end = WhisperMel::new(config.num_mel_bins);
    for (clip, golden) in index["hf"].as_object().unwrap() {
        let samples = audio::load(shared_data().join(index["clips"][clip].as_str().unwrap()))
            .unwrap()
            .samples;
        assert_eq!(samples.len() as u64, golden["n_samples"].as_u64().unwrap());

        let mel30 = front_end.compute(&samples, WhisperMode::Padded30s);
        assert_eq!((mel30.n_mels, mel30.n_frames), (80, 3000));
        let (shape, theirs) = read_golden(&hf, &golden["log_mel"]);
        let mel_error = max_abs_error(&first_frames(&mel30.data, 3000, shape[1]), &theirs);
        let trimmed = front_end.compute(&samples, WhisperMode::Trimmed);
        let (shape, theirs) = read_golden(&hf, &golden["log_mel_trimmed"]);
        assert_eq!(
            [trimmed.n_mels, trimmed.n_frames],
            [shape[0], shape[1]],
            "{clip}: trimmed frame count"
        );
        let trimmed_error = max_abs_error(&trimmed.data, &theirs);
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
fn a_padded_batch_gives_each_clip_its_single_clip_states() {
    use emofuse::model::temporal::{BackboneConfig, FrozenBackbone};
    let index = golden_index("whisper");
    let device = Device::flex();
    let hf = golden_dir("whisper").join("hf");
    let backbone = FrozenBackbone::load(
        &BackboneConfig::from_dir(&hf, false, WhisperMode::Trimmed).unwrap(),
        &device,
    )
    .unwrap();
    let clips: Vec<Vec<f32>> = index["clips"]
        .as_object()
        .unwrap()
        .values()
        .map(|path| audio::load(shared_data().join(path.as_str().unwrap())).unwrap().samples)
        .collect();
    // Three lengths, so every clip but the longest is padded (and one by more than half).
    let clips = [
        clips[0].clone(),
        clips[1].clone(),
        clips[0][..clips[0].len() / 3].to_vec(),
    ];
    let all: Vec<&[f32]> = clips.iter().map(Vec::as_slice).collect();
    let (batch, batch_frames) = backbone.hidden_states(&all, &device);
    for (i, clip) in clips.iter().enumerate() {
        let (alone, frames) = backbone.hidden_states(&[clip], &device);
        assert_eq!(batch_frames[i], frames[0], "clip {i}: frames");
        for (layer, (batched, alone)) in batch.iter().zip(&alone).enumerate() {
            let batched: Vec<f32> = batched
                .clone()
                .narrow(0, i, 1)
                .narrow(1, 0, frames[0])
                .into_data()
                .try_to_vec()
                .unwrap();
            let alone: Vec<f32> = alone.clone().into_data().try_to_vec().unwrap();
            let error = max_abs_error(&batched, &alone);
            assert!(error <= 1e-5, "clip {i}, layer {layer}: max abs error {error:e}");
        }
    }
}

#[test]
fn ctranslate2_files_load_and_convert() {
    let index = golden_index("whisper");
    let device = Device::flex();
    let ct2 = golden_dir("whisper").join("ct2");
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

/// The real whisper-base (from `scripts/get-whisper-base.sh`) against
/// transformers on the converted weights: run `python3 scripts/golden_whisper.py
/// --real DIR`, then `EMOFUSE_WHISPER_BASE=DIR cargo test --release whisper_base -- --ignored --nocapture`.
#[test]
#[ignore = "needs whisper-base (scripts/get-whisper-base.sh) and its golden.json"]
fn whisper_base_matches_transformers() {
    let dir = PathBuf::from(std::env::var("EMOFUSE_WHISPER_BASE").expect("EMOFUSE_WHISPER_BASE names the folder"));
    let golden: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("golden.json")).unwrap()).unwrap();
    let index = golden_index("whisper");
    let (encoder, config) = whisper::load(&dir, &Device::flex()).unwrap();
    let samples = audio::load(shared_data().join(index["clips"]["ravdess"].as_str().unwrap()))
        .unwrap()
        .samples;
    let front_end = WhisperMel::new(config.num_mel_bins);
    let golden = &golden["ravdess"];
    let mel30 = front_end.compute(&samples, WhisperMode::Padded30s);
    let (shape, theirs) = read_golden(&dir, &golden["log_mel"]);
    let mel_error = max_abs_error(&first_frames(&mel30.data, 3000, shape[1]), &theirs);
    // Whisper-base's middle layers carry activations of ~430, where f32
    // rounding alone (ours and PyTorch's) is ~1e-3: the bound is 1e-3
    // absolute or 5e-6 of the layer's largest value, whichever is larger.
    let run = |mode: &str, mel: &whisper::audio::WhisperFeatures, entry: &Value| {
        let input = Tensor::<3>::from_data(
            TensorData::new(mel.data.clone(), [1, mel.n_mels, mel.n_frames]),
            &Device::flex(),
        );
        let output = encoder.forward(input, &[mel.n_frames]);
        for (layer, (ours, entry)) in output
            .hidden_states
            .iter()
            .zip(entry["hidden_states"].as_array().unwrap())
            .enumerate()
        {
            let (shape, theirs) = read_golden(&dir, entry);
            let ours: Vec<f32> = ours.clone().narrow(1, 0, shape[0]).into_data().try_to_vec().unwrap();
            let error = max_abs_error(&ours, &theirs);
            let largest = theirs.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            eprintln!(
                "whisper-base {mode}: hidden state {layer}: max abs error {error:.2e}, largest value {largest:.1}, relative {:.1e}",
                error / largest
            );
            assert!(error <= 1e-3f32.max(5e-6 * largest), "{mode} layer {layer}");
        }
    };
    eprintln!("whisper-base: log-mel max error {mel_error:.2e}");
    assert!(mel_error <= MEL_TOLERANCE);
    run("30 s", &mel30, &golden["mode30"]);
    run(
        "trimmed",
        &front_end.compute(&samples, WhisperMode::Trimmed),
        &golden["trimmed"],
    );
}

/// `emofuse embed --backbone` on a Whisper folder: every hidden state of the
/// trimmed clip as transformers computes it, the 30 s mode's last state
/// averaged over the clip's own frames, and a clip longer than the 30 s
/// Whisper hears cut to them (not a crash).
#[test]
fn embed_takes_a_whisper_backbone() {
    let index = golden_index("whisper");
    let hf = golden_dir("whisper").join("hf");
    let golden = &index["hf"]["ravdess"];
    let clip = shared_data().join(index["clips"]["ravdess"].as_str().unwrap());
    let out = tempfile::tempdir().unwrap();
    let embed = |extra: &[&str], npy: &Path| -> (Vec<u64>, Vec<f32>) {
        let mut args = vec![
            "embed",
            "--backbone",
            hf.to_str().unwrap(),
            "--npy",
            npy.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        crate::util::emofuse_ok(&args);
        let bytes = std::fs::read(npy).unwrap();
        let array = npyz::NpyFile::new(&bytes[..]).unwrap();
        (array.shape().to_vec(), array.into_vec::<f32>().unwrap())
    };

    let all = out.path().join("all.npy");
    let (shape, values) = embed(&[clip.to_str().unwrap(), "--layer", "all"], &all);
    let states = golden["trimmed"]["hidden_states"].as_array().unwrap();
    let (frames, hidden) = (205, 32);
    assert_eq!(shape, [states.len() as u64, frames, hidden]);
    for (layer, entry) in states.iter().enumerate() {
        let (_, theirs) = read_golden(&hf, entry);
        let ours = &values[layer * theirs.len()..(layer + 1) * theirs.len()];
        assert!(max_abs_error(ours, &theirs) <= TOLERANCE, "trimmed layer {layer}");
    }

    let pooled = out.path().join("pooled.npy");
    let args = [clip.to_str().unwrap(), "--whisper-mode", "padded30s", "--pool", "mean"];
    let (shape, values) = embed(&args, &pooled);
    assert_eq!(shape, [hidden]);
    let (_, last30) = read_golden(&hf, &golden["mode30"]["last_hidden_state"]);
    let mean: Vec<f32> = (0..hidden as usize)
        .map(|d| {
            (0..frames as usize)
                .map(|t| last30[t * hidden as usize + d])
                .sum::<f32>()
                / frames as f32
        })
        .collect();
    assert!(
        max_abs_error(&values, &mean) <= TOLERANCE,
        "30 s mode, mean of the last state"
    );

    let long = out.path().join("31s.wav");
    std::fs::write(
        &long,
        crate::util::wav16(&crate::util::sine(220.0, 0.3, 16_000, 31 * 16_000), 16_000),
    )
    .unwrap();
    let (shape, _) = embed(&[long.to_str().unwrap()], &out.path().join("long.npy"));
    assert_eq!(shape, [1500, hidden], "the first 30 s: 1500 encoder frames");
}

/// Hex sha256 of a file.
fn sha256_hex(path: &Path) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(std::fs::read(path).unwrap())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The single line a failed command printed, which must name `needle`.
fn one_line_error(output: &std::process::Output, needle: &str) -> String {
    assert!(!output.status.success(), "it should fail");
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(needle), "{needle:?} in {stderr}");
    stderr
}

/// A linear-probe head on the installed whisper-base (here the tiny test
/// checkpoint installed under a fresh cache root) names its backbone by
/// name and sha256, not by this machine's path: it predicts while that
/// backbone is installed, is refused with both checksums when another is,
/// and fails at once with one line naming the fetch script when none is.
/// The built-in `whisper` model is looked up the same way.
#[test]
fn models_on_whisper_base_name_it_by_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let installed = install_tiny_whisper_base(&cache);
    let clip = shared_data().join(golden_index("whisper")["clips"]["ravdess"].as_str().unwrap());
    let clip = clip.to_str().unwrap();
    let (model, trained) = train_tiny_output(dir.path(), "temporal", "probe", &PROBE);
    let stderr = String::from_utf8_lossy(&trained.stderr);
    assert!(stderr.contains("linear probe: C = "), "{stderr}");
    let config: Value = serde_json::from_slice(&std::fs::read(model.join("config.json")).unwrap()).unwrap();
    let backbone = &config["model"]["temporal"]["backbone"];
    let weights = installed.join("model.safetensors");
    assert_eq!(backbone["path"], "whisper-base", "no local path");
    assert_eq!(backbone["sha256"], sha256_hex(&weights));
    assert_eq!(config["model"]["classifier_hidden"], 0, "a linear head");
    let report: Value = serde_json::from_slice(&std::fs::read(model.join("probe.json")).unwrap()).unwrap();
    assert_eq!(report["grid"].as_array().unwrap().len(), 5);

    let predict = |model: &str| emofuse_in(&cache, &["predict", "--model", model, clip, "--json"]);
    let output = predict(model.to_str().unwrap());
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let why = dir.path().join("why");
    let e = explain_json(&cache, &model, clip, &why);
    let gap = e[0]["time_segments"]["efficiency_gap"].as_f64().unwrap();
    assert!(gap.abs() < 1e-5, "time-segment SHAP adds up (gap {gap})");
    assert!(why.join("explanation.png").is_file());
    // The tiny checkpoint is not the whisper-base the built-in head was trained on.
    one_line_error(&predict("whisper"), &sha256_hex(&weights));

    let mut bytes = std::fs::read(&weights).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&weights, &bytes).unwrap();
    let refused = one_line_error(&predict(model.to_str().unwrap()), backbone["sha256"].as_str().unwrap());
    assert!(
        refused.contains(&sha256_hex(&weights)),
        "the found checksum too: {refused}"
    );

    std::fs::remove_dir_all(&installed).unwrap();
    one_line_error(&predict(model.to_str().unwrap()), "scripts/get-whisper-base.sh");
    one_line_error(&predict("whisper"), "scripts/get-whisper-base.sh");
    let out = dir.path().join("why-whisper");
    let explained = emofuse_in(
        &cache,
        &["explain", "--model", "whisper", clip, "--out", out.to_str().unwrap()],
    );
    one_line_error(&explained, "scripts/get-whisper-base.sh");
}

/// `emofuse explain --json` of `clip` by `model`, pictures in `out`: its JSON, after checking it succeeded.
fn explain_json(cache: &Path, model: &Path, clip: &str, out: &Path) -> Value {
    let model = model.to_str().unwrap();
    let explained = emofuse_in(
        cache,
        &[
            "explain",
            clip,
            "--model",
            model,
            "--json",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(
        explained.status.success(),
        "{}",
        String::from_utf8_lossy(&explained.stderr)
    );
    serde_json::from_slice(&explained.stdout).unwrap()
}

/// The flags of a linear probe on whisper-base.
const PROBE: [&str; 6] = [
    "--backbone",
    "whisper-base",
    "--temporal-layers",
    "concat",
    "--temporal-pooling",
    "mean",
];

/// Installs the tiny Whisper checkpoint as `whisper-base` under the cache root
/// `cache`; returns its folder.
fn install_tiny_whisper_base(cache: &Path) -> PathBuf {
    let installed = cache.join("backbones/whisper-base");
    std::fs::create_dir_all(&installed).unwrap();
    for file in ["config.json", "model.safetensors", "preprocessor_config.json"] {
        std::fs::copy(golden_dir("whisper").join("hf").join(file), installed.join(file)).unwrap();
    }
    installed
}

/// A probe teaching a spectral student labels the clips from the hidden
/// states its own training cached (no encoder pass), and those give the
/// student the same weights as states computed afresh.
#[test]
fn a_probe_teacher_labels_from_the_hidden_states_it_cached() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    install_tiny_whisper_base(&cache);
    let (teacher, _) = train_tiny_output(dir.path(), "temporal", "teacher", &PROBE);
    let means = cache.join("hidden-means");
    let entries = || files_under(&means);
    let cached = entries();
    assert!(!cached.is_empty(), "the probe caches its frame means");

    let distil = ["--teacher", teacher.to_str().unwrap()];
    let (from_cache, _) = train_tiny_output(dir.path(), "spectral", "from-cache", &distil);
    assert_eq!(entries(), cached, "no hidden states computed or written again");

    std::fs::remove_dir_all(&means).unwrap();
    let (afresh, _) = train_tiny_output(dir.path(), "spectral", "afresh", &distil);
    assert_eq!(entries().len(), cached.len(), "the teacher cached what it computed");
    let weights = |model: &Path| std::fs::read(model.join("model.safetensors")).unwrap();
    assert!(
        weights(&from_cache) == weights(&afresh),
        "cached and computed hidden states teach alike"
    );
}

/// `--model fusion-concat` with the probe's flags fits the probe, trains the
/// spectral stream, chooses the spectral weight on the validation speaker and
/// saves one fusion model with a linear classifier, which predicts and
/// explains like any other; without validation speakers (none asked for, or
/// only one speaker) it is refused.
#[test]
fn a_probe_fuses_late_with_the_spectral_stream() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    install_tiny_whisper_base(&cache);
    let manifest = tiny_manifest(dir.path());
    let model = dir.path().join("late");
    let train = |validation: &str| {
        let mut args = vec![
            "train",
            "--data",
            manifest.to_str().unwrap(),
            "--model",
            "fusion-concat",
            "--epochs",
            "1",
            "--validation",
            validation,
            "--out",
            model.to_str().unwrap(),
            "--cache-dir",
            cache.to_str().unwrap(),
        ];
        args.extend_from_slice(&PROBE);
        emofuse_in(&cache, &args)
    };
    one_line_error(&train("0"), "--validation");
    let rows = std::fs::read_to_string(&manifest).unwrap();
    let one_speaker: Vec<&str> = rows
        .lines()
        .filter(|row| !row.ends_with(",2") && !row.ends_with(",3") && !row.ends_with(",4"))
        .collect();
    std::fs::write(&manifest, one_speaker.join("\n") + "\n").unwrap();
    one_line_error(&train("0.25"), "validation speakers apart from the training ones");
    std::fs::write(&manifest, rows).unwrap();

    let trained = train("0.25");
    let stderr = String::from_utf8_lossy(&trained.stderr);
    assert!(trained.status.success(), "{stderr}");
    assert!(stderr.contains("linear probe: C = "), "{stderr}");
    assert!(stderr.contains("late fusion: spectral weight "), "{stderr}");
    let read = |file: &str| -> Value { serde_json::from_slice(&std::fs::read(model.join(file)).unwrap()).unwrap() };
    let report = read("late-fusion.json");
    let grid: Vec<f64> = report["grid"]
        .as_array()
        .unwrap()
        .iter()
        .map(|score| score["spectral_weight"].as_f64().unwrap())
        .collect();
    assert_eq!(grid.len(), 11);
    assert!(grid.contains(&report["spectral_weight"].as_f64().unwrap()));
    assert_eq!(report["clips"], 14, "one validation speaker's clips");
    let config = read("config.json");
    assert_eq!(config["model"]["kind"], "fusion-concat");
    assert_eq!(config["model"]["classifier_hidden"], 0);

    let clip = shared_data().join(golden_index("whisper")["clips"]["ravdess"].as_str().unwrap());
    let clip = clip.to_str().unwrap();
    let predicted = emofuse_in(&cache, &["predict", "--model", model.to_str().unwrap(), clip, "--json"]);
    assert!(
        predicted.status.success(),
        "{}",
        String::from_utf8_lossy(&predicted.stderr)
    );
    let why = dir.path().join("why");
    let e = explain_json(&cache, &model, clip, &why);
    let gap = e[0]["streams"]["efficiency_gap"].as_f64().unwrap();
    assert!(gap.abs() < 1e-5, "stream SHAP adds up (gap {gap})");
}
