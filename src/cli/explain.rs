//! `lake plan --explain`: why each model is in a plan, rule by rule (its change, its category, what it builds
//! and why), printed instead of applying.

use std::fmt::Write;

use crate::plan::{Backfill, Category, ChangeKind, Fill, ModelChange, Plan};

/// The explanation of `plan`, one block per model the plan touches, in the plan's order.
pub fn render(plan: &Plan) -> String {
    let base = plan.created_from.as_deref().unwrap_or(&plan.environment);
    let mut out = format!(
        "Why each model is in the plan for `{}` (compared with `{base}`); nothing is applied:\n",
        plan.environment
    );
    let mut names: Vec<&crate::sql::ModelName> = plan.changes.iter().map(|c| &c.name).collect();
    for backfill in &plan.backfills {
        if !names.contains(&&backfill.name) {
            names.push(&backfill.name);
        }
    }
    if names.is_empty() {
        out.push_str("\nNothing: every model matches the environment and has its data.\n");
    }
    for name in names {
        let _ = writeln!(out, "\n{name}");
        if let Some(change) = plan.changes.iter().find(|c| &c.name == name) {
            let _ = writeln!(out, "  change:   {}", change_rule(change, base));
            if let Some(category) = change.category {
                let _ = writeln!(out, "  category: {}", category_rule(category, change));
            }
        }
        match plan.backfills.iter().find(|b| &b.name == name) {
            Some(backfill) => {
                let _ = writeln!(
                    out,
                    "  build:    [{}] into {}: {}",
                    backfill.label(),
                    backfill.table,
                    build_rule(backfill, plan)
                );
            }
            None => {
                let _ = writeln!(out, "  build:    none: {}", no_build_rule(plan, name));
            }
        }
    }
    let _ = writeln!(
        out,
        "\nVirtual layer: {} name(s) of `{}` change to show these versions.",
        plan.virtual_changes.len(),
        plan.environment
    );
    out
}

fn change_rule(change: &ModelChange, base: &str) -> String {
    match change.kind {
        ChangeKind::Added => format!("added: `{base}` does not have it"),
        ChangeKind::Removed => format!("removed: `{base}` has it, the project no longer does"),
        ChangeKind::DirectlyModified => format!(
            "directly modified: its definition differs from the version `{base}` has{}",
            change
                .reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ),
        ChangeKind::IndirectlyModified => {
            let upstream: Vec<String> = change.because_of.iter().map(ToString::to_string).collect();
            format!(
                "indirectly modified: it depends on {}, which changed",
                upstream.join(", ")
            )
        }
    }
}

fn category_rule(category: Category, change: &ModelChange) -> String {
    let rule = match category {
        Category::Breaking if change.kind == ChangeKind::Added => {
            "a new model gets a table of its own"
        }
        Category::Breaking => {
            "existing rows may change, so it and every model downstream get new tables and are rebuilt"
        }
        Category::NonBreaking => {
            "only added columns, so it gets a new table while the models downstream keep theirs"
        }
        Category::IndirectBreaking => {
            "a change upstream is breaking, so it gets a new table and is rebuilt"
        }
        Category::IndirectNonBreaking => {
            "the changes upstream are non-breaking or forward-only, so it keeps its table"
        }
        Category::ForwardOnly => {
            "it keeps its table, and the new logic applies to data built from now on (or from --effective-from)"
        }
        Category::Metadata => "only metadata changed, so its table is reused as it is",
    };
    format!("{}: {rule}", category.label())
}

fn build_rule(backfill: &Backfill, plan: &Plan) -> String {
    let why = if backfill.action == crate::plan::BackfillAction::CreateView {
        "the view of this version is created (a view holds no rows)".to_string()
    } else if backfill.restatement {
        "restated (--restate-model, or --effective-from for a forward-only change): these intervals are rebuilt".to_string()
    } else if backfill.recreate {
        "prod's in-place table no longer fits the model and is rebuilt from nothing".to_string()
    } else if plan.changes.iter().any(|c| c.name == backfill.name) && backfill.batches.len() > 1 {
        format!(
            "a version with no data yet: all {} interval batches",
            backfill.batches.len()
        )
    } else if !backfill.batches.is_empty() {
        format!(
            "{} interval batch(es) of this version are missing",
            backfill.batches.len()
        )
    } else {
        "this version has no data recorded yet".to_string()
    };
    match backfill.fill {
        Fill::Rows => why,
        Fill::Empty {
            record_intervals: false,
        } => format!(
            "{why}; created without rows as asked (--skip-backfill or not selected by --backfill-model)"
        ),
        Fill::Empty {
            record_intervals: true,
        } => format!("{why}; created without rows and recorded as built (--empty-backfill)"),
    }
}

fn no_build_rule(plan: &Plan, name: &crate::sql::ModelName) -> &'static str {
    match plan.changes.iter().find(|c| &c.name == name) {
        Some(c) if c.kind == ChangeKind::Removed => "its name leaves the environment",
        Some(c)
            if matches!(
                c.category,
                Some(Category::IndirectNonBreaking | Category::Metadata | Category::ForwardOnly)
            ) =>
        {
            "it keeps the table it has"
        }
        _ => "the version's table exists and holds its data",
    }
}
