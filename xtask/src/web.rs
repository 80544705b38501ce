//! The web app (`web/`): type-checked and built with Vite into `web/dist`, which `haven`
//! serves (read from disk by a debug build, embedded by a release build).

use std::process::Command;

use anyhow::{Context, Result};

use crate::npm;
use crate::workspace::{Workspace, run_checked};

const WEB_DIR: &str = "web";

/// Installs the web app's packages when needed, type-checks it and builds it.
pub fn build(workspace: &Workspace) -> Result<()> {
    let dir = workspace.root().join(WEB_DIR);
    npm::ci_if_stale(&dir, "the web app")?;
    run_checked(Command::new("npm").args(["run", "build"]).current_dir(&dir))
        .context("building the web app (npm run build in web/)")
}

/// For `cargo xtask run`, which must work with only a Rust toolchain: without Node.js the
/// server still starts, and its pages say how to build the app.
pub fn build_if_possible(workspace: &Workspace) -> Result<()> {
    if npm::available() {
        return build(workspace);
    }
    println!(
        "Node.js and npm were not found, so the web app is not built: Haven's API works, \
         and its pages explain how to build the app (Node.js 20.19 or later, then \
         `cargo xtask run` again)."
    );
    Ok(())
}
