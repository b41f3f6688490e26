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
            eprint!("{question}");
            let _ = std::io::stderr().flush();
            let mut answer = String::new();
            let read = std::io::stdin()
                .read_line(&mut answer)
                .map_err(|e| LakeError::io("<stdin>", e))?;
            match answer.trim().to_ascii_lowercase().as_str() {
                "b" | "breaking" => break Category::Breaking,
                "n" | "non-breaking" => break Category::NonBreaking,
                "f" | "forward-only" => break Category::ForwardOnly,
                _ if !must_choose => break current,
                _ if read == 0 => {
                    return Err(LakeError::Usage(
                        format!("no category was chosen for {}", change.name),
                        Some("answer b, n or f for each changed model".into()),
                    ));
                }
                _ => continue,
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

/// Asks `question`; only `y` or `yes` is a yes.
pub(super) fn yes(question: &str) -> Result<bool> {
    eprint!("{question} [y/n]: ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|e| LakeError::io("<stdin>", e))?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}
