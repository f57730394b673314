//! Records the git commit the binary is built from, for the provenance that
//! every trained model carries (`EMOFUSE_COMMIT`, "unknown" outside git).

fn main() {
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned());
    if let Some(commit) = commit {
        println!("cargo:rustc-env=EMOFUSE_COMMIT={commit}");
    }
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
}
