//! Questions asked on a terminal: which category a change gets, whether to apply a plan, whether to destroy.

use std::collections::HashMap;
use std::io::Write;

use console::style;

use crate::error::{LakeError, Result};
use crate::plan::Category;
use crate::sql::ModelName;

/// The changes whose category a person may choose: models whose own data-affecting definition changed.
pub(super) fn uncategorised(plan: &crate::plan::Plan) -> Vec<&crate::plan::ModelChange> {
    plan.changes
        .iter()
        .filter(|c| {
            c.kind == crate::plan::ChangeKind::DirectlyModified
                && matches!(
                    c.category,
                    Some(Category::Breaking | Category::NonBreaking | Category::ForwardOnly)
                )
        })
        .collect()
}

/// Asks, for each model whose own data-affecting definition changed, whether to keep the automatic category;
/// with `must_choose` (`--no-auto-categorization`) no category is suggested and only a choice is accepted.
pub(super) fn choose_categories(
    plan: &crate::plan::Plan,
    must_choose: bool,
) -> Result<HashMap<ModelName, Category>> {
    let mut chosen = HashMap::new();
    for change in uncategorised(plan) {
        let Some(current) = change.category else {
            continue;
        };
        let reason = change
            .reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        let question = if must_choose {
            format!(
                "{} changed{reason}. Choose [b]reaking, [n]on-breaking or [f]orward-only: ",
                style(&change.name).bold()
            )
        } else {
            format!(
                "{} is {}{reason}. Keep it, or choose [b]reaking, [n]on-breaking, [f]orward-only? [Enter keeps]: ",
                style(&change.name).bold(),
                current.label()
            )
        };
        let category = loop {
            let Some(answer) = ask(&question)? else {
                // The input ended: keep the automatic category, or stop when there is none to keep.
                if must_choose {
                    return Err(LakeError::Usage(
                        format!("no category was chosen for {}", change.name),
                        Some("answer b, n or f for each changed model".into()),
                    ));
                }
                break current;
            };
            match answer.as_str() {
                "b" | "breaking" => break Category::Breaking,
                "n" | "non-breaking" => break Category::NonBreaking,
                "f" | "forward-only" => break Category::ForwardOnly,
                "" | "k" | "keep" if !must_choose => break current,
                _ if must_choose => eprintln!("Please answer b, n or f."),
                _ => eprintln!("Please answer b, n or f, or press Enter to keep it."),
            }
        };
        if category != current || must_choose {
            chosen.insert(change.name.clone(), category);
        }
    }
    Ok(chosen)
}

pub(super) fn confirm(environment: &str) -> Result<bool> {
    yes(&format!("Apply this plan to `{environment}`?"))
}

/// Asks `question` until the answer is yes (`y`, `yes`) or no (`n`, `no`); the end of the input is a no.
pub(super) fn yes(question: &str) -> Result<bool> {
    loop {
        match ask(&format!("{question} [y/n]: "))?.as_deref() {
            Some("y" | "yes") => return Ok(true),
            Some("n" | "no") | None => return Ok(false),
            Some(_) => eprintln!("Please answer y or n."),
        }
    }
}

/// Prints `question` on stderr and reads one answer, trimmed and lower-cased; `None` at the end of the input.
fn ask(question: &str) -> Result<Option<String>> {
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    let read = std::io::stdin()
        .read_line(&mut answer)
        .map_err(|e| LakeError::io("<stdin>", e))?;
    Ok((read > 0).then(|| answer.trim().to_ascii_lowercase()))
}
