//! Questions asked on a terminal: which category a change gets, whether to apply a plan, whether to destroy.

use std::collections::HashMap;
use std::io::Write;

use console::style;

use crate::error::{LakeError, Result};
use crate::plan::Category;
use crate::sql::ModelName;

/// Asks, for each model whose own data-affecting definition changed, whether to keep the automatic category.
pub(super) fn choose_categories(plan: &crate::plan::Plan) -> Result<HashMap<ModelName, Category>> {
    let mut chosen = HashMap::new();
    let candidates: Vec<_> = plan
        .changes
        .iter()
        .filter(|c| {
            c.kind == crate::plan::ChangeKind::DirectlyModified
                && matches!(
                    c.category,
                    Some(Category::Breaking | Category::NonBreaking | Category::ForwardOnly)
                )
        })
        .collect();
    for change in candidates {
        let Some(current) = change.category else {
            continue;
        };
        eprint!(
            "{} is {}{}. Keep it, or choose [b]reaking, [n]on-breaking, [f]orward-only? [Enter keeps]: ",
            style(&change.name).bold(),
            current.label(),
            change
                .reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        );
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin()
            .read_line(&mut answer)
            .map_err(|e| LakeError::io("<stdin>", e))?;
        let category = match answer.trim().to_ascii_lowercase().as_str() {
            "b" | "breaking" => Category::Breaking,
            "n" | "non-breaking" => Category::NonBreaking,
            "f" | "forward-only" => Category::ForwardOnly,
            _ => continue,
        };
        if category != current {
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
