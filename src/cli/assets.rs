//! `rostersync assets DIR` (hidden): the man pages and shell completions a package ships,
//! made from the clap definitions at packaging time (nothing generated is committed).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::{Cli, Failure};

#[derive(Debug, Args)]
pub struct AssetsArgs {
    /// Where to write `man/*.1` and `completions/{rostersync.bash,_rostersync,rostersync.fish}`.
    #[arg(value_name = "DIR")]
    out: PathBuf,
}

pub fn run(args: &AssetsArgs) -> Result<(), Failure> {
    write(&args.out).map_err(Failure::failed)
}

fn write(out: &Path) -> anyhow::Result<()> {
    let man = out.join("man");
    let completions = out.join("completions");
    for dir in [&man, &completions] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    // One page for rostersync and one per subcommand (rostersync-school-add.1, ...).
    clap_mangen::generate_to(Cli::command(), &man)
        .with_context(|| format!("cannot write the man pages to {}", man.display()))?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut Cli::command(), "rostersync", &completions)
            .with_context(|| format!("cannot write the {shell} completion"))?;
    }
    let pages = std::fs::read_dir(&man)?.count();
    println!(
        "Wrote {pages} man page(s) to {} and bash, zsh and fish completions to {}.",
        man.display(),
        completions.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_man_pages_and_completions_describe_the_commands() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path()).expect("written");
        let main = std::fs::read_to_string(dir.path().join("man/rostersync.1")).expect("page");
        assert!(main.contains(".TH rostersync"), "{main}");
        assert!(main.contains("check\\-config") || main.contains("check-config"));
        assert!(dir.path().join("man/rostersync-school-add.1").exists());
        let bash =
            std::fs::read_to_string(dir.path().join("completions/rostersync.bash")).expect("bash");
        assert!(bash.contains("check-config") && bash.contains("--dry-run"));
        assert!(dir.path().join("completions/_rostersync").exists());
        assert!(dir.path().join("completions/rostersync.fish").exists());
    }
}
