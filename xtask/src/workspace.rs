//! Where the workspace and its build output live, and running programs in it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// The Cargo workspace xtask belongs to.
#[derive(Debug)]
pub struct Workspace {
    root: PathBuf,
    target_dir: PathBuf,
    cargo: OsString,
}

/// Which Cargo profile a binary was built with; it names the folder under `target/`.
#[derive(Debug, Clone, Copy)]
pub enum Profile {
    Debug,
    Release,
}

impl Workspace {
    /// Finds the workspace from xtask's own manifest directory, which is `<root>/xtask`.
    pub fn locate() -> Result<Self> {
        // Cargo sets CARGO_MANIFEST_DIR for `cargo run`; the compile-time value covers running
        // the built binary directly.
        let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
        let root = manifest_dir
            .parent()
            .with_context(|| format!("{} has no parent directory", manifest_dir.display()))?
            .to_path_buf();
        if !root.join("Cargo.toml").is_file() {
            bail!(
                "no Cargo.toml in {}, the expected workspace root",
                root.display()
            );
        }
        let target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
            // Cargo resolves a relative target dir against its working directory, and every
            // Cargo command xtask runs has the workspace root as its working directory.
            Some(dir) if !dir.is_empty() => root.join(dir),
            _ => root.join("target"),
        };
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
        Ok(Self {
            root,
            target_dir,
            cargo,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A `cargo` command (the same Cargo that runs xtask) working in the workspace root.
    pub fn cargo(&self) -> Command {
        let mut command = Command::new(&self.cargo);
        command.current_dir(&self.root);
        // `cargo run` describes xtask's own package in the environment. Passed on, those
        // variables reach build scripts that watch them (ring watches CARGO_MANIFEST_DIR),
        // and every dependency would rebuild between `cargo build` and `cargo xtask`.
        for (name, _) in std::env::vars_os() {
            if name.to_str().is_some_and(is_package_variable) {
                command.env_remove(name);
            }
        }
        command
    }

    /// Cargo's target directory (`CARGO_TARGET_DIR` or `target/`).
    pub fn target_dir(&self) -> &Path {
        &self.target_dir
    }

    /// The path of a binary built by `cargo build [--release]`.
    pub fn binary(&self, profile: Profile, name: &str) -> PathBuf {
        let profile_dir = match profile {
            Profile::Debug => "debug",
            Profile::Release => "release",
        };
        self.target_dir.join(profile_dir).join(name)
    }
}

/// Variables Cargo sets for the package it runs, as opposed to the caller's configuration.
fn is_package_variable(name: &str) -> bool {
    name.starts_with("CARGO_PKG_")
        || matches!(
            name,
            "CARGO_MANIFEST_DIR"
                | "CARGO_MANIFEST_PATH"
                | "CARGO_CRATE_NAME"
                | "CARGO_BIN_NAME"
                | "CARGO_PRIMARY_PACKAGE"
        )
}

/// Runs a command with inherited stdio, failing unless it exits successfully.
pub fn run_checked(command: &mut Command) -> Result<()> {
    let shown = describe(command);
    println!("$ {shown}");
    let status = command
        .status()
        .with_context(|| format!("could not start `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}

/// The command line as a person would type it, for logs and error messages.
pub fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether `program` is an executable file in one of the PATH directories.
pub fn on_path(program: &str) -> bool {
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| dir.join(program).is_file())
}

/// Whether we run under CI, where nothing may be skipped or left to a person.
pub fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| !value.is_empty() && value != "false" && value != "0")
}

/// `12.3s` below a minute, `4m 05s` above.
pub fn format_duration(duration: Duration) -> String {
    let secs = duration.as_secs_f64();
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        let whole = duration.as_secs();
        format!("{}m {:02}s", whole / 60, whole % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(format_duration(Duration::from_millis(12_340)), "12.3s");
        assert_eq!(format_duration(Duration::from_secs(245)), "4m 05s");
    }

    #[test]
    fn only_package_variables_are_dropped_for_nested_cargo() {
        assert!(is_package_variable("CARGO_MANIFEST_DIR"));
        assert!(is_package_variable("CARGO_PKG_NAME"));
        assert!(!is_package_variable("CARGO_TARGET_DIR"));
        assert!(!is_package_variable("CARGO_HOME"));
    }

    #[test]
    fn commands_are_described_as_typed() {
        let mut command = Command::new("cargo");
        command.args(["fmt", "--all", "--", "--check"]);
        assert_eq!(describe(&command), "cargo fmt --all -- --check");
    }
}
