//! The one way commands write to the terminal: results on stdout; progress, outcomes, warnings and notes on
//! stderr, styled only where colour is on.

use std::fmt::Display;
use std::io::Write;

use console::style;

use super::output::Audience;
use crate::error::{LakeError, Result};

pub(super) struct Printer {
    out: std::io::StdoutLock<'static>,
    stdout_tty: bool,
}

fn stdout_error(e: std::io::Error) -> LakeError {
    LakeError::io("<stdout>", e)
}

impl Printer {
    pub(super) fn new(stdout_tty: bool) -> Printer {
        Printer {
            out: std::io::stdout().lock(),
            stdout_tty,
        }
    }

    /// Whether results go to a person at a terminal (who can also be asked questions) or to a pipe.
    pub(super) fn audience(&self) -> Audience {
        if self.stdout_tty {
            Audience::Terminal
        } else {
            Audience::Pipe
        }
    }

    /// Standard output, for the renderers that write to any writer.
    pub(super) fn out(&mut self) -> &mut std::io::StdoutLock<'static> {
        &mut self.out
    }

    /// Results, as they are (the text carries its own line ends).
    pub(super) fn print(&mut self, text: impl Display) -> Result<()> {
        write!(self.out, "{text}").map_err(stdout_error)
    }

    /// One line of results.
    pub(super) fn line(&mut self, text: impl Display) -> Result<()> {
        writeln!(self.out, "{text}").map_err(stdout_error)
    }

    /// A JSON document for scripts, pretty-printed on lines of its own.
    pub(super) fn json(&mut self, document: &impl serde::Serialize) -> Result<()> {
        let text =
            serde_json::to_string_pretty(document).map_err(|e| LakeError::Output(e.to_string()))?;
        self.line(text)
    }

    /// Makes what was printed so far visible, before a question or a long wait.
    pub(super) fn flush(&mut self) -> Result<()> {
        self.out.flush().map_err(stdout_error)
    }

    /// A finished piece of work: `✔ text`.
    pub(super) fn done(&self, text: impl Display) {
        eprintln!("{} {text}", style("✔").green());
    }

    pub(super) fn warning(&self, text: impl Display) {
        eprintln!("{} {text}", style("warning:").yellow().bold());
    }

    pub(super) fn note(&self, text: impl Display) {
        eprintln!("{} {text}", style("note:").yellow().bold());
    }

    pub(super) fn error(&self, text: impl Display) {
        eprintln!("{} {text}", style("error:").red().bold());
    }

    /// What is happening or why nothing did, for a person (stderr, so stdout stays the result).
    pub(super) fn status(&self, text: impl Display) {
        eprintln!("{text}");
    }
}

/// `1 model`, `2 models`.
pub(super) fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}
