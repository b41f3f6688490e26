//! Command-line interface: argument parsing and output only; every operation lives in the library.

mod args;
mod commands;
mod dag_page;
mod explain;
pub mod output;
mod printer;
mod prompt;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use crate::profile;
use args::{Cli, ColorChoice};
use printer::Printer;

/// The command line, or the exit code after clap printed help, the version or a usage error.
fn parse() -> std::result::Result<Cli, ExitCode> {
    Cli::try_parse().map_err(|e| {
        let _ = e.print();
        if e.use_stderr() {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        }
    })
}

/// Entry point of the `lake-engine` binary: runs the command.
pub fn main() -> ExitCode {
    let cli = match parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let stderr_tty = std::io::stderr().is_terminal();
    let stdout_tty = std::io::stdout().is_terminal();
    let no_color_env = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let (out_color, err_color) = match cli.color {
        ColorChoice::Always => (true, true),
        ColorChoice::Never => (false, false),
        ColorChoice::Auto => (stdout_tty && !no_color_env, stderr_tty && !no_color_env),
    };
    console::set_colors_enabled(out_color);
    console::set_colors_enabled_stderr(err_color);
    let _ = miette::set_hook(Box::new(move |_| {
        let opts = miette::MietteHandlerOpts::new()
            .color(err_color)
            .unicode(true)
            .terminal_links(false)
            .context_lines(2);
        // Logs and snapshots need a stable width; a terminal uses its own.
        let opts = if stderr_tty { opts } else { opts.width(100) };
        Box::new(opts.build())
    }));
    let started = std::time::Instant::now();
    if cli.profile {
        profile::enable();
    }
    let outcome = profile::timed(profile::Phase::Command, || {
        commands::run(&cli, &mut Printer::new(stdout_tty))
    });
    if cli.profile {
        output::print_profile(started.elapsed());
    }
    match outcome {
        Ok(code) => code,
        Err(e) => {
            let usage = e.is_usage();
            if cli.debug {
                // The variant's name and every cause's message; not the fields, which may hold a
                // connection's settings.
                let debug = format!("{e:?}");
                let variant = debug.split(['(', ' ', '{']).next().unwrap_or_default();
                eprintln!("debug: {variant}: {}", crate::error::error_chain(&e));
            }
            eprintln!("{:?}", miette::Report::new(e));
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}
