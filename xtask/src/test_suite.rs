//! `cargo xtask test`: every check CI runs, in order, stopping at the first failure.
//!
//! The steps are formatting, lints, the web app's type check and build, PostgreSQL, the
//! tests themselves and the security advisories. Each prints a heading and its time; the last line says how many passed or
//! which one failed.

use std::ffi::OsString;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::workspace::{Workspace, format_duration, on_path, run_checked};
use crate::{advisories, postgres, web};

/// The checks, in the order they run: cheap and likely-to-fail first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Fmt,
    Clippy,
    Web,
    Postgres,
    Tests,
    Advisories,
}

const ALL_STEPS: [Step; 6] = [
    Step::Fmt,
    Step::Clippy,
    Step::Web,
    Step::Postgres,
    Step::Tests,
    Step::Advisories,
];

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::Fmt => "fmt",
            Step::Clippy => "clippy",
            Step::Web => "web",
            Step::Postgres => "postgres",
            Step::Tests => "tests",
            Step::Advisories => "advisories",
        }
    }

    fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "fmt" => Step::Fmt,
            "clippy" => Step::Clippy,
            "web" => Step::Web,
            "postgres" => Step::Postgres,
            "tests" => Step::Tests,
            "advisories" | "audit" => Step::Advisories,
            other => bail!(
                "unknown step `{other}`; the steps are fmt, clippy, web, postgres, tests, advisories"
            ),
        })
    }
}

#[derive(Debug)]
pub struct Options {
    steps: Vec<Step>,
    nextest_args: Vec<OsString>,
}

impl Options {
    pub fn parse(args: &[OsString]) -> Result<Self> {
        let mut only: Option<Vec<Step>> = None;
        let mut nextest_args = Vec::new();
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.to_str() {
                Some("--") => {
                    nextest_args.extend(args.by_ref().cloned());
                }
                Some("--only") => {
                    let value = args
                        .next()
                        .and_then(|value| value.to_str())
                        .context("--only needs a step name, e.g. `--only postgres`")?;
                    let selected = only.get_or_insert_with(Vec::new);
                    for name in value.split(',').filter(|name| !name.is_empty()) {
                        selected.push(Step::parse(name)?);
                    }
                }
                _ => bail!(
                    "unexpected argument {arg:?} to `cargo xtask test`; \
                     arguments for nextest go after `--`"
                ),
            }
        }
        // Always run in the canonical order, whatever order --only named them in.
        let steps = match only {
            Some(selected) => ALL_STEPS
                .into_iter()
                .filter(|step| selected.contains(step))
                .collect(),
            None => ALL_STEPS.to_vec(),
        };
        Ok(Self {
            steps,
            nextest_args,
        })
    }
}

pub fn test(workspace: &Workspace, options: &Options) -> Result<ExitCode> {
    let started = Instant::now();
    let total = options.steps.len();
    // Set by the postgres step for the tests step; `--only tests` falls back to the default.
    let mut postgres_url: Option<String> = None;

    for (index, &step) in options.steps.iter().enumerate() {
        let number = index + 1;
        println!();
        println!("==> [{number}/{total}] {}", step.name());
        let step_started = Instant::now();
        let outcome = match step {
            Step::Fmt => run_checked(workspace.cargo().args(["fmt", "--all", "--", "--check"])),
            Step::Clippy => run_checked(workspace.cargo().args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--locked",
                "--",
                "-D",
                "warnings",
            ])),
            Step::Web => web::build(workspace),
            Step::Postgres => postgres::ensure().map(|url| postgres_url = Some(url)),
            Step::Tests => {
                let url = postgres_url
                    .clone()
                    .unwrap_or_else(postgres::configured_url);
                // The tests serve the built web app; `--only tests` builds it too.
                let web_built = options.steps.contains(&Step::Web);
                run_tests(workspace, &url, &options.nextest_args, web_built)
            }
            Step::Advisories => advisories::check(workspace),
        };
        let step_elapsed = format_duration(step_started.elapsed());
        match outcome {
            Ok(()) => println!("<== {} passed in {step_elapsed}", step.name()),
            Err(error) => {
                eprintln!();
                eprintln!("error: {error:#}");
                println!(
                    "xtask test: step {number}/{total} `{}` failed after {step_elapsed} \
                     (total {})",
                    step.name(),
                    format_duration(started.elapsed()),
                );
                return Ok(ExitCode::FAILURE);
            }
        }
    }

    println!();
    let steps = if total == 1 { "step" } else { "steps" };
    println!(
        "xtask test: {total} {steps} passed in {}",
        format_duration(started.elapsed())
    );
    Ok(ExitCode::SUCCESS)
}

fn run_tests(
    workspace: &Workspace,
    postgres_url: &str,
    nextest_args: &[OsString],
    web_built: bool,
) -> Result<()> {
    ensure_nextest(workspace)?;
    if !web_built {
        web::build(workspace)?;
    }
    let python = crate::python_tools::ensure(workspace)?;
    crate::browser_tools::ensure(workspace)?;
    println!("{} is set for the tests", postgres::URL_VAR);
    run_checked(
        workspace
            .cargo()
            .args([
                "nextest",
                "run",
                "--workspace",
                "--locked",
                "--no-fail-fast",
            ])
            .args(nextest_args)
            .env(postgres::URL_VAR, postgres_url)
            .env(crate::python_tools::PYTHON_VAR, &python),
    )?;
    // nextest does not run doc tests.
    run_checked(
        workspace
            .cargo()
            .args(["test", "--workspace", "--doc", "--locked"])
            .env(postgres::URL_VAR, postgres_url),
    )
}

fn ensure_nextest(workspace: &Workspace) -> Result<()> {
    if on_path("cargo-nextest") {
        return Ok(());
    }
    println!("cargo-nextest is not installed; installing it");
    run_checked(
        workspace
            .cargo()
            .args(["install", "cargo-nextest", "--locked"]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn no_arguments_run_every_step() -> Result<()> {
        let options = Options::parse(&[])?;
        assert_eq!(options.steps, ALL_STEPS.to_vec());
        assert!(options.nextest_args.is_empty());
        Ok(())
    }

    #[test]
    fn only_keeps_the_canonical_order_and_accepts_audit() -> Result<()> {
        let options = Options::parse(&os(&["--only", "audit,postgres"]))?;
        assert_eq!(options.steps, vec![Step::Postgres, Step::Advisories]);
        Ok(())
    }

    #[test]
    fn arguments_after_double_dash_go_to_nextest() -> Result<()> {
        let options = Options::parse(&os(&["--", "-E", "test(store)", "--only"]))?;
        assert_eq!(options.steps, ALL_STEPS.to_vec());
        assert_eq!(options.nextest_args, os(&["-E", "test(store)", "--only"]));
        Ok(())
    }

    #[test]
    fn unknown_steps_and_arguments_are_refused() {
        assert!(Options::parse(&os(&["--only", "lint"])).is_err());
        assert!(Options::parse(&os(&["--only"])).is_err());
        assert!(Options::parse(&os(&["store"])).is_err());
    }
}
