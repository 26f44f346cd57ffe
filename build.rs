//! The git commit the binary is built from, for `rostersync --version` and
//! `rostersync_build_info`. `ROSTERSYNC_COMMIT` overrides it (a build from a source tarball,
//! where there is no repository); without either it is `unknown`.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
}

fn main() {
    println!("cargo:rerun-if-env-changed=ROSTERSYNC_COMMIT");
    let commit = std::env::var("ROSTERSYNC_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    // A new commit moves HEAD or a ref: build again so the version says so.
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        for watched in ["HEAD", "refs", "packed-refs"] {
            println!("cargo:rerun-if-changed={dir}/{watched}");
        }
    }
    println!("cargo:rustc-env=ROSTERSYNC_COMMIT={commit}");
}
