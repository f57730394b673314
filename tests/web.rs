//! The page in headless Chromium (tests/web/e2e.mjs, playwright-core): the
//! emotion shown matches `/api/predict`; keyboard-only upload; the same file
//! twice; an error replaces the old result; a second file chosen during an
//! explanation wins; a 360 px screen never scrolls sideways; axe-core finds
//! no serious accessibility problem; recording warns of nothing. It saves
//! target/web-desktop.png and target/web-phone.png (copied to docs/).
//! `scripts/test.sh` installs Chromium and the npm package; without them the
//! test fails on CI and is skipped, saying so, elsewhere.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::util::shared_data;

/// Kills the server when the test ends, however it ends.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_page_shows_the_emotion_the_api_predicts() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let web = root.join("tests/web");
    let ready = Path::new("/usr/bin/chromium").is_file() && web.join("node_modules/playwright-core").is_dir();
    if !ready {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the browser test: scripts/test.sh installs chromium and tests/web's npm packages"
        );
        eprintln!("skipped: no /usr/bin/chromium or tests/web/node_modules (run scripts/test.sh)");
        return;
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_emofuse"))
        .args(["serve", "--addr", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let _server = Server(child);
    let mut line = String::new();
    BufReader::new(stderr).read_line(&mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("emofuse serving on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_owned();
    let ravdess = shared_data().join("ravdess/Audio_Speech_Actors_01-24");
    let clip = ravdess.join("Actor_04/03-01-04-01-02-01-04.flac");
    let other_clip = ravdess.join("Actor_01/03-01-06-02-02-01-01.flac");
    let shots = root.join("target");
    let output = Command::new("node")
        .current_dir(&web)
        .args(["e2e.mjs", &url])
        .arg(&clip)
        .arg(&other_clip)
        .arg(&shots)
        .output()
        .expect("node runs");
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    for shot in ["web-desktop.png", "web-phone.png"] {
        assert!(shots.join(shot).is_file(), "{shot} not saved");
    }
}
