//! Python tools some tests use as independent implementations to check Haven against
//! (`pyotp`, an RFC 6238 TOTP implementation that is not Haven's, and `requests`, the HTTP
//! client the FHIR API is checked with from the specification), installed into a virtual
//! environment under the target directory, pinned, from PyPI.
//!
//! The tests find the interpreter through `HAVEN_TEST_PYTHON`; they fail, not skip, when it
//! cannot import what they need.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::workspace::{Workspace, run_checked};

/// The variable that tells the tests which Python to run.
pub const PYTHON_VAR: &str = "HAVEN_TEST_PYTHON";
/// What the tests import, pinned.
const REQUIREMENTS: &[&str] = &["pyotp==2.9.0", "requests==2.32.3"];

fn venv_python(venv: &Path) -> PathBuf {
    venv.join("bin").join("python")
}

fn imports_ok(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import pyotp, requests"])
        .output()
        .is_ok_and(|output| output.status.success())
}

/// Creates the environment (once) and installs the requirements; returns its interpreter.
pub fn ensure(workspace: &Workspace) -> Result<PathBuf> {
    let venv = workspace.target_dir().join("haven-test-python");
    let python = venv_python(&venv);
    if python.is_file() && imports_ok(&python) {
        return Ok(python);
    }
    println!("creating the test Python environment in {}", venv.display());
    run_checked(Command::new("python3").args(["-m", "venv"]).arg(&venv))
        .context("python3 with the venv module is needed (Debian: apt-get install python3-venv)")?;
    run_checked(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(REQUIREMENTS),
    )?;
    if !imports_ok(&python) {
        bail!(
            "{} cannot import pyotp and requests after installing them",
            python.display()
        );
    }
    Ok(python)
}
