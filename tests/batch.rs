//! Sharded batch jobs as a scheduler runs them: shards in separate processes,
//! one killed half-way and rerun, then `emofuse merge`.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::util::{emofuse, emofuse_ok, golden_dir};

/// The four example clips and an undecodable file, in a temporary corpus folder.
fn corpus(dir: &Path) -> String {
    let corpus = dir.join("corpus");
    for actor in ["Actor_01", "Actor_02"] {
        let from = Path::new("examples/ravdess-mini").join(actor);
        std::fs::create_dir_all(corpus.join(actor)).unwrap();
        for entry in std::fs::read_dir(&from).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), corpus.join(actor).join(entry.file_name())).unwrap();
        }
    }
    std::fs::write(corpus.join("Actor_02/broken.wav"), b"RIFF....WAVEfmt ").unwrap();
    corpus.to_str().unwrap().to_owned()
}

fn run_shards(command: &[&str], out: &Path, count: usize) {
    for index in 0..count {
        let shard = format!("{index}/{count}");
        let mut args = command.to_vec();
        args.extend(["--out", out.to_str().unwrap(), "--shard", &shard, "--chunk-size", "2"]);
        emofuse_ok(&args);
    }
}

fn merged(out: &Path, file: &str) -> Vec<u8> {
    emofuse_ok(&["merge", out.to_str().unwrap()]);
    std::fs::read(out.join(file)).unwrap()
}

#[test]
fn sharded_predictions_merge_to_the_single_process_run_even_after_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = corpus(dir.path());
    let predict = ["predict", corpus.as_str()];
    run_shards(&predict, &dir.path().join("one"), 1);
    let single = merged(&dir.path().join("one"), "predictions.jsonl");
    run_shards(&predict, &dir.path().join("three"), 3);
    assert_eq!(merged(&dir.path().join("three"), "predictions.jsonl"), single);

    let lines: Vec<Value> = single
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    let paths: Vec<&str> = lines.iter().map(|line| line["path"].as_str().unwrap()).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(
        (paths.len(), paths.clone()),
        (5, sorted),
        "every file once, in path order"
    );
    let broken = &lines[paths.iter().position(|p| *p == "Actor_02/broken.wav").unwrap()];
    assert!(broken["error"].as_str().unwrap().contains("broken.wav"), "{broken}");
    let by_hand = emofuse_ok(&[
        "predict",
        "--json",
        &format!("{corpus}/Actor_01/03-01-03-02-01-01-01.flac"),
    ]);
    let by_hand: Value = serde_json::from_slice(&by_hand.stdout).unwrap();
    assert_eq!(lines[0]["probabilities"], by_hand["probabilities"]);

    // Shard 1 of 2 holds 3 files in chunks of 2: killed after 2 files, its
    // first chunk is on disk and the second is lost.
    let killed = dir.path().join("killed");
    run_shards(&predict, &killed, 2);
    std::fs::remove_dir_all(killed.join("shard-0001-of-0002")).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_emofuse"))
        .args(
            [
                &predict[..],
                &["--out", killed.to_str().unwrap(), "--shard", "1/2", "--chunk-size", "2"],
            ]
            .concat(),
        )
        .env("EMOFUSE_TEST_ABORT_AFTER_FILES", "2")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(killed.join("shard-0001-of-0002/chunk-00000.jsonl").is_file());
    let refused = emofuse(&["merge", killed.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("shard-0001-of-0002/chunk-00001.jsonl: missing"),
        "{stderr}"
    );
    let rerun = emofuse_ok(
        &[
            &predict[..],
            &["--out", killed.to_str().unwrap(), "--shard", "1/2", "--chunk-size", "2"],
        ]
        .concat(),
    );
    assert!(String::from_utf8_lossy(&rerun.stdout).contains("(2 done by an earlier run)"));
    assert_eq!(merged(&killed, "predictions.jsonl"), single);
}

#[test]
fn sharded_embeddings_index_the_same_arrays_as_npy_files() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = corpus(dir.path());
    let backbone = golden_dir("wav2vec2").join("w2v2_base_like");
    let embed = [
        "embed",
        corpus.as_str(),
        "--backbone",
        backbone.to_str().unwrap(),
        "--pool",
        "mean",
    ];
    let out = dir.path().join("out");
    run_shards(&embed, &out, 2);
    let index = merged(&out, "embeddings.jsonl");
    let entries: Vec<Value> = index
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(entries.len(), 5);
    for entry in entries {
        let path = entry["path"].as_str().unwrap();
        if path.ends_with("broken.wav") {
            assert!(entry["error"].is_string(), "{entry}");
            continue;
        }
        let npy = dir.path().join("one.npy");
        let file = format!("{corpus}/{path}");
        emofuse_ok(&[
            "embed",
            &file,
            "--backbone",
            backbone.to_str().unwrap(),
            "--pool",
            "mean",
            "--npy",
            npy.to_str().unwrap(),
        ]);
        let bytes = std::fs::read(&npy).unwrap();
        let want: Vec<f32> = npyz::NpyFile::new(&bytes[..]).unwrap().into_vec().unwrap();

        let chunk = std::fs::read(out.join(entry["chunk"].as_str().unwrap())).unwrap();
        let tensors = safetensors::SafeTensors::deserialize(&chunk).unwrap();
        let stacked = tensors.tensor(entry["tensor"].as_str().unwrap()).unwrap();
        let width = stacked.shape()[1];
        let row = entry["row"].as_u64().unwrap() as usize;
        let got: Vec<f32> = stacked.data()[row * width * 4..(row + 1) * width * 4]
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(got, want, "{path}");
    }
}

/// The example clips one after another, `copies` times, as one 16 kHz WAV.
fn long_recording(dir: &Path, copies: usize) -> std::path::PathBuf {
    let mut clips = Vec::new();
    for actor in ["Actor_01", "Actor_02"] {
        let mut files: Vec<_> = std::fs::read_dir(Path::new("examples/ravdess-mini").join(actor))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        files.sort();
        for file in files {
            clips.extend(emofuse::audio::load(&file).unwrap().samples);
        }
    }
    let samples: Vec<f32> = clips.iter().copied().cycle().take(clips.len() * copies).collect();
    crate::util::write(dir, "long.wav", &crate::util::wav16(&samples, 16_000))
}

#[test]
fn a_streamed_timeline_equals_the_loaded_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = long_recording(dir.path(), 5);
    let predictor = emofuse::infer::Predictor::builtin(&Default::default()).unwrap();
    let waveform = emofuse::audio::load(&path).unwrap();
    let loaded = predictor.timeline(&waveform, "long.wav", 3.0, 2.5).unwrap();
    let streamed = predictor.predict_stream(&path, (3.0, 2.5)).unwrap();
    let streamed = streamed.timeline.unwrap();
    assert!(waveform.duration_s() > 60.0, "more than two stream blocks");
    assert_eq!(streamed.windows.len(), loaded.windows.len());
    for (a, b) in streamed.windows.iter().zip(&loaded.windows) {
        assert_eq!((a.start_s, a.end_s, a.speech), (b.start_s, b.end_s, b.speech));
        let (a, b) = (a.prediction.as_ref(), b.prediction.as_ref());
        assert_eq!(a.map(|p| &p.label), b.map(|p| &p.label));
        for (label, p) in a.map(|p| p.probabilities.clone()).unwrap_or_default() {
            assert!((p - b.unwrap().probabilities[&label]).abs() < 1e-5, "{label}");
        }
    }
}

#[test]
fn recordings_over_the_input_limit_are_predicted_as_a_timeline() {
    let dir = tempfile::tempdir().unwrap();
    let path = long_recording(dir.path(), 48);
    let output = emofuse_ok(&["predict", "--json", path.to_str().unwrap()]);
    let prediction: Value = serde_json::from_slice(&output.stdout).unwrap();
    let duration = prediction["duration_s"].as_f64().unwrap();
    assert!(duration > 600.0, "{duration}");
    let timeline = &prediction["timeline"];
    assert_eq!(timeline["window_s"], 3.0);
    let windows = timeline["windows"].as_array().unwrap();
    assert_eq!(windows.len(), (duration / 3.0).ceil() as usize);
    assert_eq!(windows.last().unwrap()["end_s"].as_f64().unwrap(), duration);
    assert!(prediction["label"].is_string());
}
