//! Training as users run it: a tiny real corpus, killed and resumed, must end
//! with exactly the weights of an uninterrupted run with the same seed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{emofuse, files_under, golden_dir, shared_data, tiny_manifest, train_tiny};

fn train_args(manifest: &Path, out: &Path, cache: &Path) -> Vec<String> {
    [
        "train",
        "--data",
        manifest.to_str().unwrap(),
        "--model",
        "spectral",
        "--epochs",
        "20",
        "--batch-size",
        "8",
        "--validation",
        "0.25",
        "--patience",
        "0",
        "--seed",
        "3",
        "--out",
        out.to_str().unwrap(),
        "--cache-dir",
        cache.to_str().unwrap(),
    ]
    .map(str::to_owned)
    .to_vec()
}

/// `train_args` for a 2-fold `cv` of `epochs` epochs.
fn cv_args(manifest: &Path, out: &Path, cache: &Path, epochs: usize) -> Vec<String> {
    let mut args = train_args(manifest, out, cache);
    args[0] = "cv".into();
    set_epochs(&mut args, epochs);
    args.extend(["--protocol", "kfold", "--k", "2"].map(str::to_owned));
    args
}

fn set_epochs(args: &mut [String], epochs: usize) {
    let at = args.iter().position(|a| a == "--epochs").unwrap();
    args[at + 1] = epochs.to_string();
}

fn run(args: &[String]) -> std::process::Output {
    emofuse(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// [`run`], which must succeed.
fn run_ok(args: &[String]) -> std::process::Output {
    crate::util::emofuse_ok(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Starts emofuse with `args` and kills it (SIGKILL) once `ready` holds
/// (polled; at most 5 minutes).
fn kill_when(args: &[String], ready: impl Fn() -> bool) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_emofuse"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    while !ready() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn killed_and_resumed_training_ends_with_the_same_weights() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = tiny_manifest(dir.path());
    let cache = dir.path().join("cache");

    let straight = dir.path().join("straight");
    let args = train_args(&manifest, &straight, &cache);
    let started = Instant::now();
    run_ok(&args);
    let full_run = started.elapsed();
    let reference = std::fs::read(straight.join("model.safetensors")).unwrap();

    // Kill (SIGKILL) each run once it has finished an epoch (so every run
    // makes progress), a varying time later: mid-batch, mid-validation or
    // while the next checkpoint is being written. Then resume.
    let killed = dir.path().join("killed");
    let checkpoint = killed.join("checkpoint.bin");
    let mut args = train_args(&manifest, &killed, &cache);
    args.push("--resume".into());
    let stamp = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let mut kills = 0;
    for attempt in 0u64.. {
        assert!(attempt < 40, "the resumed run never finished");
        let before = stamp(&checkpoint);
        let mut child = Command::new(env!("CARGO_BIN_EXE_emofuse"))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + full_run * 4;
        while stamp(&checkpoint) == before && child.try_wait().unwrap().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(attempt * 37 % 150));
        if child.try_wait().unwrap().is_some() {
            break;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
    }
    assert!(kills >= 5, "only {kills} kills landed mid-run");
    let resumed = std::fs::read(killed.join("model.safetensors")).unwrap();
    assert!(
        resumed == reference,
        "after {kills} kills the weights differ from the uninterrupted run"
    );
    let log = std::fs::read_to_string(killed.join("train_log.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 20, "one log line per epoch, none repeated: {log}");
}

#[test]
fn ctrl_c_checkpoints_and_resume_continues() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = tiny_manifest(dir.path());
    let cache = dir.path().join("cache");
    let out = dir.path().join("run");
    let args = train_args(&manifest, &out, &cache);
    let child = Command::new(env!("CARGO_BIN_EXE_emofuse"))
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the first checkpoint, then interrupt as Ctrl-C does.
    let checkpoint = out.join("checkpoint.bin");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !checkpoint.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "an interrupted run does not report success");
    assert!(
        stderr.contains("--resume"),
        "the user is told how to continue: {stderr}"
    );
    assert!(
        !out.join("model.safetensors").exists(),
        "no model is written for an unfinished run"
    );

    let mut resume = args.clone();
    resume.push("--resume".into());
    let output = run_ok(&resume);
    let result: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(result["split"], "all clips");
    assert!(out.join("model.safetensors").exists());
}

/// A frozen encoder (the committed tiny Whisper) with noise augmentation: its
/// hidden states are cached for the clean clips and for two noisy copies of
/// each training clip, so a second run computes none of them again.
#[test]
fn a_frozen_encoder_trains_on_cached_clean_and_noisy_hidden_states() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let backbone = golden_dir("whisper").join("hf");
    let noise = shared_data().join("noise/urbansound8k");
    let run = |out: &str| {
        let extra = [
            "--backbone",
            backbone.to_str().unwrap(),
            "--noise-dir",
            noise.to_str().unwrap(),
            "--snr-range",
            "0:10",
        ];
        std::fs::read(train_tiny(dir.path(), "fusion-gated", out, &extra).join("model.safetensors")).unwrap()
    };
    let entries = || -> usize {
        files_under(&cache.join("hidden"))
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "feat"))
            .count()
    };
    let first = run("first");
    let cached = entries();
    assert!(
        cached >= 3 * 56,
        "56 clean clips + 2 noisy copies each, got {cached} entries"
    );
    let second = run("second");
    assert_eq!(entries(), cached, "the second run reuses every cached state");
    assert_eq!(first, second, "same seed, same noisy copies, same weights");
}

/// `cv` killed (SIGKILL) in its second fold and started again continues where
/// it stopped: the finished fold is kept, the interrupted one resumes from its
/// checkpoint, and every fold ends with the weights of an uninterrupted run.
#[test]
fn killed_cv_continues_where_it_stopped_with_the_same_results() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = tiny_manifest(dir.path());
    let cache = dir.path().join("cache");
    let straight = dir.path().join("straight");
    run_ok(&cv_args(&manifest, &straight, &cache, 6));

    let killed = dir.path().join("killed");
    let args = cv_args(&manifest, &killed, &cache, 6);
    // Kill once the second fold has written its first checkpoint.
    kill_when(&args, || killed.join("fold-2/checkpoint.bin").exists());
    assert!(
        killed.join("fold-1/results.json").is_file(),
        "fold 1 finished before the kill"
    );
    assert!(!killed.join("summary.json").exists(), "no summary for an unfinished cv");

    run_ok(&args);
    for fold in ["fold-1", "fold-2"] {
        let a = std::fs::read(straight.join(fold).join("model.safetensors")).unwrap();
        let b = std::fs::read(killed.join(fold).join("model.safetensors")).unwrap();
        assert!(a == b, "{fold}: the resumed cv ends with other weights");
    }
    let ua = |dir: &Path| -> Vec<Value> {
        let summary: Value = serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
        summary["folds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["test"]["ua"].clone())
            .collect()
    };
    assert_eq!(ua(&straight), ua(&killed));
}

/// `robustness` killed (SIGKILL) mid-sweep and started again reuses the
/// conditions it had finished (journaled) and writes the same report as an
/// uninterrupted sweep; no report exists until the sweep is complete.
#[test]
fn killed_robustness_sweep_continues_with_the_same_report() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = tiny_manifest(dir.path());
    let cache = dir.path().join("cache");
    let models = dir.path().join("cv");
    run_ok(&cv_args(&manifest, &models, &cache, 2));

    let noise = shared_data().join("noise/urbansound8k");
    let sweep_args = |out: &Path| -> Vec<String> {
        [
            "robustness",
            "--model",
            models.to_str().unwrap(),
            "--noise-dir",
            noise.to_str().unwrap(),
            "--per-category",
            "--out",
            out.to_str().unwrap(),
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let straight = dir.path().join("straight");
    run_ok(&sweep_args(&straight));
    assert!(
        !straight.join(".robustness.journal.jsonl").exists(),
        "the journal goes when the sweep is done"
    );

    let killed = dir.path().join("killed");
    let journal = killed.join(".robustness.journal.jsonl");
    // Kill once a few conditions are journaled (the header is the first line).
    let lines = || std::fs::read_to_string(&journal).map_or(0, |t| t.lines().count());
    kill_when(&sweep_args(&killed), || lines() >= 4);
    assert!(lines() >= 4, "the sweep journaled nothing before the deadline");
    assert!(
        !killed.join("robustness.json").exists(),
        "no report for an unfinished sweep"
    );

    let output = run_ok(&sweep_args(&killed));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("were done earlier"),
        "the second run continues the first"
    );
    for file in ["robustness.csv", "summary.csv"] {
        let a = std::fs::read_to_string(straight.join(file)).unwrap();
        let b = std::fs::read_to_string(killed.join(file)).unwrap();
        assert_eq!(a, b, "{file} differs after the kill");
    }
}

/// Distillation: a teacher's probabilities enter the loss (weight 0 gives the
/// plain run's exact weights, weight 0.5 others), and a teacher trained on a
/// different split — one that may have heard the test speakers — is refused.
#[test]
fn a_student_learns_from_its_folds_teacher_and_never_from_another_fold() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = tiny_manifest(dir.path());
    let cache = dir.path().join("cache");
    let teachers = dir.path().join("teachers");
    let student = |out: &str, fold: &str, extra: &[&str]| {
        let mut args = train_args(&manifest, &dir.path().join(out), &cache);
        set_epochs(&mut args, 2);
        args.extend(["--protocol", "kfold", "--k", "2", "--fold", fold].map(str::to_owned));
        args.extend(extra.iter().map(|a| a.to_string()));
        run(&args)
    };
    run_ok(&cv_args(&manifest, &teachers, &cache, 2));

    let teacher = teachers.to_str().unwrap();
    let weights = |out: &str| std::fs::read(dir.path().join(out).join("model.safetensors")).unwrap();
    for (out, extra) in [
        ("plain", vec![]),
        ("weight-0", vec!["--teacher", teacher, "--teacher-weight", "0"]),
        ("weight-half", vec!["--teacher", teacher, "--teacher-weight", "0.5"]),
    ] {
        let output = student(out, "2", &extra);
        assert!(
            output.status.success(),
            "{out}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert!(
        weights("plain") == weights("weight-0"),
        "a teacher of weight 0 changes nothing"
    );
    assert!(
        weights("plain") != weights("weight-half"),
        "the teacher's targets reach the loss"
    );

    let fold_1_teacher = teachers.join("fold-1");
    let output = student("leaky", "2", &["--teacher", fold_1_teacher.to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("kfold fold 1, not on this split (kfold fold 2)") && stderr.contains("test speakers"),
        "{stderr}"
    );
}

/// A disk that takes no more (simulated with a file-size limit, which works
/// for root too, unlike permissions): the next checkpoint cannot be written,
/// the run stops with an error naming the file, the previous checkpoint is
/// untouched, and once there is room the run resumes to the uninterrupted weights.
#[test]
fn a_full_disk_stops_training_clearly_and_keeps_the_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = tiny_manifest(dir.path());
    let cache = dir.path().join("cache");
    let straight = dir.path().join("straight");
    run_ok(&train_args(&manifest, &straight, &cache));

    let run_dir = dir.path().join("run");
    let checkpoint = run_dir.join("checkpoint.bin");
    let mut args = train_args(&manifest, &run_dir, &cache);
    args.push("--resume".into());
    kill_when(&args, || checkpoint.exists());
    let saved = std::fs::read(&checkpoint).unwrap();

    // Files may grow to half the checkpoint's size; SIGXFSZ is ignored so that
    // the write fails with EFBIG, as a full disk fails it with ENOSPC.
    let limit_blocks = saved.len() / 2 / 1024;
    let output = Command::new("bash")
        .arg("-c")
        .arg(format!("ulimit -f {limit_blocks}; trap '' XFSZ; exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_emofuse"))
        .args(&args)
        .output()
        .unwrap();
    assert!(!output.status.success(), "the run cannot have finished");
    assert_eq!(
        output.status.code(),
        Some(1),
        "an error exit, not a crash: {:?}",
        output.status
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("checkpoint.bin: cannot write"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        std::fs::read(&checkpoint).unwrap(),
        saved,
        "the last checkpoint is untouched"
    );
    let leftovers: Vec<_> = files_under(&run_dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left behind: {leftovers:?}");

    run_ok(&args);
    assert!(
        std::fs::read(run_dir.join("model.safetensors")).unwrap()
            == std::fs::read(straight.join("model.safetensors")).unwrap(),
        "resumed after the full disk, the weights differ from the uninterrupted run"
    );
}

/// Issue 18: a noise folder of one recording left training an empty pool to
/// draw from (a panic in the random draw); it is refused before training.
#[test]
fn issue_18_a_noise_corpus_too_small_to_split_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let noise = dir.path().join("noise");
    let hum = crate::util::wav16(&crate::util::sine(50.0, 0.3, 16_000, 16_000), 16_000);
    crate::util::write(&noise, "hum/one.wav", &hum);
    let manifest = tiny_manifest(dir.path());
    let out = dir.path().join("run");
    let cache = dir.path().join("cache");
    let mut args = train_args(&manifest, &out, &cache);
    set_epochs(&mut args, 1);
    args.extend(["--noise-dir", noise.to_str().unwrap()].map(str::to_owned));
    let output = run(&args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("too few recordings for a training pool"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A manifest pooling two corpora by its `dataset` column: RAVDESS actors 1
/// and 2 (neutral, calm, happy, sad) and EmoDB speakers 03 and 08 (anger,
/// boredom, neutral, sadness), 2 clips of each emotion per speaker.
fn two_corpus_manifest(dir: &Path) -> PathBuf {
    let mut rows = String::from("path,label,speaker,dataset\n");
    let ravdess = shared_data().join("ravdess/Audio_Speech_Actors_01-24");
    for actor in 1..=2 {
        for (code, label) in [("01", "neutral"), ("02", "calm"), ("03", "happy"), ("04", "sad")] {
            for take in ["01-01", "02-02"] {
                let path = ravdess.join(format!("Actor_{actor:02}/03-01-{code}-01-{take}-{actor:02}.flac"));
                rows += &format!("{},{label},{actor:02},ravdess\n", path.display());
            }
        }
    }
    let mut emodb: Vec<PathBuf> = std::fs::read_dir(shared_data().join("emodb/wav"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    emodb.sort();
    for speaker in ["03", "08"] {
        for (letter, label) in [('W', "angry"), ('L', "boredom"), ('N', "neutral"), ('T', "sad")] {
            let mine = emodb.iter().filter(|path| {
                let stem = path.file_stem().unwrap().to_str().unwrap();
                stem.starts_with(speaker) && stem.chars().nth(5) == Some(letter)
            });
            for path in mine.take(2) {
                rows += &format!("{},{label},{speaker},emodb\n", path.display());
            }
        }
    }
    let manifest = dir.join("two-corpora.csv");
    std::fs::write(&manifest, rows).unwrap();
    manifest
}

#[test]
fn leave_one_corpus_out_tests_each_corpus_on_the_shared_labels() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = two_corpus_manifest(dir.path());
    let (out, cache) = (dir.path().join("loco"), dir.path().join("cache"));
    let mut args = cv_args(&manifest, &out, &cache, 1);
    args.truncate(args.len() - 4);
    args.extend(["--protocol", "leave-one-corpus-out"].map(str::to_owned));
    let validation = args.iter().position(|a| a == "--validation").unwrap();
    args[validation + 1] = "0".into();
    let output = run_ok(&args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("calm → neutral 4 clips"), "{stderr}");
    assert!(stderr.contains("boredom 4 clips"), "{stderr}");

    let summary: Value = serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["protocol"], "leave-one-corpus-out");
    let folds = summary["folds"].as_array().unwrap();
    let splits: Vec<&str> = folds.iter().map(|f| f["split"].as_str().unwrap()).collect();
    assert_eq!(
        splits,
        [
            "leave-one-corpus-out fold 1 (ravdess)",
            "leave-one-corpus-out fold 2 (emodb)"
        ]
    );
    // Trained on EmoDB without boredom; tested on RAVDESS with calm as neutral:
    // happy (4 clips) never occurs in training, so it is not scored.
    assert_eq!(folds[0]["labels"], serde_json::json!(["neutral", "sad", "angry"]));
    assert_eq!(folds[0]["unscored_test_clips"], 4);
    assert_eq!(folds[0]["test"]["clips"], 12);
    // Trained on RAVDESS; tested on EmoDB, whose anger it never heard.
    assert_eq!(folds[1]["labels"], serde_json::json!(["neutral", "happy", "sad"]));
    assert_eq!(folds[1]["test"]["clips"], 8);
    let csv = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    let row = csv.lines().nth(2).unwrap();
    assert!(row.ends_with(",\"leave-one-corpus-out fold 2 (emodb)\""), "{csv}");
    assert!(stderr.contains("no validation clips to calibrate on"), "{stderr}");

    // A model trained by the same recipe carries this result, without local folders.
    let model = dir.path().join("model");
    let mut train = train_args(&manifest, &model, &cache);
    set_epochs(&mut train, 1);
    let summary_path = out.join("summary.json");
    train.extend(["--cv-summary".into(), summary_path.to_str().unwrap().into()]);
    run_ok(&train);
    let config: Value = serde_json::from_slice(&std::fs::read(model.join("config.json")).unwrap()).unwrap();
    let recorded = &config["training"]["cross_validation"][0];
    assert_eq!(recorded["protocol"], "leave-one-corpus-out");
    assert_eq!(recorded["folds"], 2);
    assert_eq!(recorded["ua_mean"], summary["summary"]["ua"]["mean"]);
    let corpora = recorded["corpora"].as_array().unwrap();
    assert!(corpora.iter().all(|c| !c.as_str().unwrap().contains('/')), "{recorded}");
    // … and a model of another kind refuses it.
    let at = train.iter().position(|a| a == "spectral").unwrap();
    train[at] = "fusion-gated".into();
    let refused = run(&train);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(stderr.contains("cross-validated a spectral model"), "{stderr}");
}
