//! `tollgate store backup` and `tollgate store check`: maintenance of a store file, with or
//! without servers running on it.

use std::path::{Path, PathBuf};

use clap::Subcommand;

use super::CliError;
use crate::config::Config;
use crate::store::maintenance::{self, CheckReport};

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Write a consistent copy of the store to PATH, while servers run on it
    Backup {
        /// The file to write; refused if it exists, unless --force
        path: PathBuf,
        /// The store to copy [default: the config's store.path]
        #[arg(long, value_name = "PATH")]
        store: Option<PathBuf>,
        /// Replace PATH if it exists
        #[arg(long)]
        force: bool,
        /// Print what was written as one JSON object
        #[arg(long)]
        json: bool,
    },
    /// Verify a store file: schema version, pages, records, indexes; print the counts
    Check {
        path: PathBuf,
        /// Print the report as one JSON object
        #[arg(long)]
        json: bool,
    },
}

pub fn run(config_path: &Path, command: StoreCommand) -> Result<(), CliError> {
    match command {
        StoreCommand::Backup {
            path,
            store,
            force,
            json,
        } => {
            let source = match store {
                Some(source) => source,
                None => Config::load(config_path)?.store_path,
            };
            let report = maintenance::backup(&source, &path, force)?;
            if json {
                println!("{}", serde_json::json!(report));
            } else {
                println!(
                    "wrote {}: {} tokens, {} events (the last {}), {} retired digests, schema {}, {} bytes",
                    report.path.display(),
                    report.tokens,
                    report.events,
                    report
                        .last_event
                        .map_or_else(|| "-".to_owned(), |seq| seq.to_string()),
                    report.retired,
                    report.schema_version,
                    report.bytes
                );
            }
            Ok(())
        }
        StoreCommand::Check { path, json } => {
            let report = maintenance::check(&path, crate::time::now())?;
            if json {
                println!("{}", serde_json::json!(report));
            } else {
                print!("{}", human(&report));
            }
            if report.sound {
                Ok(())
            } else {
                Err(CliError::Failed(format!(
                    "{} is not sound: {} problem(s)",
                    path.display(),
                    report.problem_count
                )))
            }
        }
    }
}

fn human(r: &CheckReport) -> String {
    let mut out = format!(
        "file:     {}{}\n",
        r.path.display(),
        if r.in_use {
            " (in use by another process: checked beside it)"
        } else {
            ""
        }
    );
    let or_none = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
    out.push_str(&format!("schema:   {}\n", or_none(r.schema_version)));
    out.push_str(&format!(
        "tokens:   {} ({} active, {} revoked, {} expired)\n",
        r.tokens.total, r.tokens.active, r.tokens.revoked, r.tokens.expired
    ));
    out.push_str(&format!(
        "events:   {} (the last {})\n",
        r.events,
        or_none(r.last_event)
    ));
    out.push_str(&format!("retired:  {}\n", r.retired));
    for note in &r.notes {
        out.push_str(&format!("note:     {note}\n"));
    }
    for problem in &r.problems {
        out.push_str(&format!("problem:  {problem}\n"));
    }
    if r.problem_count > r.problems.len() {
        out.push_str(&format!(
            "problem:  … and {} more\n",
            r.problem_count - r.problems.len()
        ));
    }
    out.push_str(if r.sound { "sound\n" } else { "NOT SOUND\n" });
    out
}
