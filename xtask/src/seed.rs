//! `cargo xtask seed`: demonstration data in the default data directory (`./haven-data`,
//! the one `cargo xtask run` serves): synthetic patients, each with a chart of about a
//! hundred resources (`haven_fhir::synthetic`), and a clinician on their care teams whose
//! credentials it prints, so that a person can sign in and look.
//!
//! It starts `haven serve` itself on a loopback port and loads everything through the
//! public API, authorized, sealed and audited like any other write; the server must not be
//! running already (the data directory is locked while it does).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::bench::{Server, last_line_of_with, mint_token_with};
use crate::workspace::{Profile, Workspace, run_checked};

const PATIENTS_DEFAULT: usize = 100;
const PATIENTS_MAX: usize = 10_000;

#[derive(Debug)]
pub struct Options {
    patients: usize,
}

impl Options {
    pub fn parse(args: &[String]) -> Result<Self> {
        let mut options = Options {
            patients: PATIENTS_DEFAULT,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--patients" => {
                    let raw = args.next().context("--patients needs a number")?;
                    options.patients = raw
                        .parse()
                        .ok()
                        .filter(|n| (1..=PATIENTS_MAX).contains(n))
                        .with_context(|| {
                            format!("--patients must be between 1 and {PATIENTS_MAX}, not {raw}")
                        })?;
                }
                other => bail!("unexpected argument `{other}` to `cargo xtask seed`"),
            }
        }
        Ok(options)
    }
}

pub fn seed(workspace: &Workspace, options: &Options) -> Result<()> {
    run_checked(
        workspace
            .cargo()
            .args(["build", "-p", "haven-server", "--bin", "haven"]),
    )?;
    let haven = workspace.binary(Profile::Debug, "haven");
    let data_dir = workspace.root().join("haven-data");
    seed_into(&haven, &data_dir, options)
}

fn seed_into(haven: &Path, data_dir: &Path, options: &Options) -> Result<()> {
    let token = mint_token_with(haven, data_dir, "administrator", &[])
        .context("is `haven serve` running on this data directory? Stop it first")?;
    let invitation = last_line_of_with(haven, data_dir, &["admin", "bootstrap"], &[])?;
    let log_path = data_dir.join("seed-server.log");
    let mut server = Server::start_with(haven, data_dir, &log_path, &[])?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let address = server.address;
    let seeded = runtime.block_on(async {
        println!("registering {} patients", options.patients);
        let patients =
            crate::fhir_load::register_patients(address, &token, options.patients).await?;
        let clinician = crate::clinician::enrol(address, &token, &patients).await?;
        println!("importing their charts");
        let (report, _) =
            crate::fhir_load::import_charts(address, None, &clinician.token, &clinician.team)
                .await?;
        Ok::<_, anyhow::Error>((clinician, report))
    });
    // Give the checkpointer its second to sign what was written, then stop.
    std::thread::sleep(Duration::from_millis(1100));
    let stopped = server.stop();
    let (clinician, report) = seeded?;
    stopped?;
    print!("{report}");
    println!();
    println!("seeded {} into {}", options.patients, data_dir.display());
    println!("a clinician on their care teams:");
    println!("  login     {}", clinician.login);
    println!("  password  {}", clinician.password);
    println!(
        "  TOTP      {} (base32, for an authenticator app)",
        clinician.totp_secret
    );
    println!("an invitation for an administrator of the clinic: {invitation}");
    println!("start the server with `cargo xtask run`");
    Ok(())
}
