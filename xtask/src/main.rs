//! Haven's developer commands, run as `cargo xtask <command>` (see `cargo xtask help`).
//!
//! Everything a contributor or CI needs goes through here so that a fresh machine needs
//! nothing but a Rust toolchain: `run` starts the server with zero configuration, `test`
//! installs what the tests need and runs all of them, `bench` measures the patient, FHIR and messaging APIs, `seed` loads demonstration data.

// xtask is a command-line tool: printing to stdout is its job.
#![allow(clippy::print_stdout)]

mod advisories;
mod bench;
mod browser_tools;
mod clinician;
mod cpu;
mod fhir_load;
mod load;
mod messaging_load;
mod npm;
mod postgres;
mod python_tools;
mod run;
mod seed;
mod sign_in_load;
mod test_suite;
mod visits_load;
mod web;
mod workspace;

use std::ffi::OsString;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use crate::workspace::Workspace;

const HELP: &str = "\
cargo xtask <command>

Commands:
  run [ARGS...]
      Build the web app (web/, when Node.js is installed) and the server (debug), and
      run `haven serve ARGS...` from the workspace root.

  test [--only STEP[,STEP...]] [-- NEXTEST_ARGS...]
      Run every check CI runs, in order, stopping at the first failure:
        fmt         cargo fmt --all -- --check
        clippy      cargo clippy --workspace --all-targets --locked -- -D warnings
        web         npm ci (when stale) and npm run build in web/: type-check and
                    build the web app the tests serve
        postgres    install/start PostgreSQL on 127.0.0.1:5432 and create database `test`
        tests       cargo nextest run --workspace (plus doc tests), with
                    HAVEN_TEST_POSTGRES_URL set (an existing value is respected)
        advisories  cargo audit against the offline RustSec database
                    (../shared/advisory-db); ignores live in .cargo/audit.toml
      --only runs just the named steps (`audit` is an alias of `advisories`);
      it is for working on one step, CI always runs all of them.
      Arguments after `--` go to `cargo nextest run`.

  bench [--seconds N] [--connections C] [--fhir-only | --messaging-only | --visits-only]
        [--engine sqlite|postgres] [--keep]
      Build the server (release), start it on a temporary data directory and load
      POST /api/v1/patients, then GET /api/v1/patients/{id}, with C keep-alive
      connections (default 64) for N seconds each (default 10), then the FHIR phases
      (import, create, read, search) on SQLite and on PostgreSQL, then the messaging
      phases on SQLite and on PostgreSQL: C conversations between patients and
      clinicians, 1 KiB sealed messages to 2 recipient devices each, timed to the
      event on each recipient's WebSocket, with one closed-loop sender per
      conversation and then at a steady 1000 messages/s, then the video-visit phase
      on SQLite: 1000 signaling sessions (500 visits entered and admitted), memory
      per idle session, and signals relayed at 2000/s for N seconds, timed from
      sender to receiver. Prints requests, errors, throughput, latency percentiles
      and the server's peak memory; the patient and FHIR phases also print the CPU
      time the server spent per request, and the bench's own. The load runs from a
      release build of xtask, built first, so it takes as little of the machine as
      it can.
      --fhir-only runs just the FHIR phases on SQLite; --messaging-only just the
      messaging phases; --visits-only just the visit phase. --engine runs the FHIR
      or messaging phases on that engine only. --keep keeps the data directories
      and server logs.

  seed [--patients N]
      Build the server (debug) and fill the default data directory (./haven-data)
      with N synthetic patients (default 100), each with a chart of about a hundred
      FHIR resources, and a clinician on their care teams whose login, password and
      TOTP secret it prints. The server must not be running.

  help
      Print this message.
";

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    match dispatch(args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(args: Vec<OsString>) -> Result<ExitCode> {
    let mut args = args.into_iter();
    let Some(command) = args.next() else {
        print!("{HELP}");
        return Ok(ExitCode::FAILURE);
    };
    let rest: Vec<OsString> = args.collect();
    let command = command
        .into_string()
        .map_err(|raw| anyhow::anyhow!("command {raw:?} is not UTF-8"))?;
    match command.as_str() {
        "help" | "--help" | "-h" => {
            print!("{HELP}");
            Ok(ExitCode::SUCCESS)
        }
        "run" => run::run(&Workspace::locate()?, &rest),
        "test" => {
            let options = test_suite::Options::parse(&rest)?;
            test_suite::test(&Workspace::locate()?, &options)
        }
        "seed" => {
            let options = seed::Options::parse(&utf8_args(&rest)?)?;
            seed::seed(&Workspace::locate()?, &options)?;
            Ok(ExitCode::SUCCESS)
        }
        "bench" => {
            let options = bench::Options::parse(&utf8_args(&rest)?)?;
            if cfg!(debug_assertions) {
                return bench::hand_over_to_release(&Workspace::locate()?, &rest);
            }
            bench::bench(&Workspace::locate()?, &options)?;
            Ok(ExitCode::SUCCESS)
        }
        other => bail!("unknown command `{other}`; try `cargo xtask help`"),
    }
}

fn utf8_args(args: &[OsString]) -> Result<Vec<String>> {
    args.iter()
        .map(|arg| {
            arg.clone()
                .into_string()
                .map_err(|raw| anyhow::anyhow!("argument {raw:?} is not UTF-8"))
        })
        .collect::<Result<Vec<_>>>()
        .context("reading arguments")
}
