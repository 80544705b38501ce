//! `cargo xtask run`: build the server and start it with zero configuration.

use std::ffi::OsString;
use std::process::{Command, ExitCode};

use anyhow::Result;

use crate::workspace::{Profile, Workspace, run_checked};

/// Builds `haven` (debug) and replaces this process with `haven serve ARGS...`, so signals
/// (Ctrl-C) reach the server directly and its exit status is ours.
pub fn run(workspace: &Workspace, args: &[OsString]) -> Result<ExitCode> {
    crate::web::build_if_possible(workspace)?;
    run_checked(
        workspace
            .cargo()
            .args(["build", "-p", "haven-server", "--bin", "haven"]),
    )?;

    let mut serve = Command::new(workspace.binary(Profile::Debug, "haven"));
    // The workspace root is the working directory so the default data directory is the
    // git-ignored `./haven-data`, wherever `cargo xtask run` was typed.
    serve.arg("serve").args(args).current_dir(workspace.root());
    replace_process(serve)
}

#[cfg(unix)]
fn replace_process(mut command: Command) -> Result<ExitCode> {
    use std::os::unix::process::CommandExt;

    let shown = crate::workspace::describe(&command);
    // `exec` only returns if it failed.
    let error = command.exec();
    Err(anyhow::Error::new(error).context(format!("could not start `{shown}`")))
}

#[cfg(not(unix))]
fn replace_process(mut command: Command) -> Result<ExitCode> {
    use anyhow::Context;

    let shown = crate::workspace::describe(&command);
    let status = command
        .status()
        .with_context(|| format!("could not start `{shown}`"))?;
    let code = status
        .code()
        .and_then(|code| u8::try_from(code).ok())
        .unwrap_or(1);
    Ok(ExitCode::from(code))
}
