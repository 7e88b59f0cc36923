//! Records the git revision the binary is built from, for `ringrift --version`.
//!
//! `RINGRIFT_GIT_REVISION` overrides it (for builds from a source tarball or in a container
//! without `.git`); without either, the revision reads `unknown`.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn main() {
    println!("cargo::rerun-if-env-changed=RINGRIFT_GIT_REVISION");
    let revision = std::env::var("RINGRIFT_GIT_REVISION")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_owned());
    if let Some(git_dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        // Rebuild when HEAD moves: HEAD itself, the branch it points to, and packed refs.
        println!("cargo::rerun-if-changed={git_dir}/HEAD");
        println!("cargo::rerun-if-changed={git_dir}/packed-refs");
        if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo::rerun-if-changed={git_dir}/{reference}");
        }
    }
    println!("cargo::rustc-env=RINGRIFT_GIT_REVISION={revision}");
}
