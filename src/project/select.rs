//! Model selection as SQLMesh's `--select-model` / `--backfill-model` write it: names (with or without the
//! default catalog), globs (`demo.*`), tags (`tag:finance`), and `+` for upstream (`+demo.full_model`) or
//! downstream (`demo.seed_model+`) models.

use std::collections::BTreeSet;

use super::{ModelId, Project};
use crate::error::{LakeError, Result};

impl Project {
    /// The models any of `selectors` selects; a selector that selects nothing is an error naming it.
    pub fn select(&self, selectors: &[String]) -> Result<BTreeSet<ModelId>> {
        let mut selected = BTreeSet::new();
        for selector in selectors {
            let found = self.select_one(selector)?;
            if found.is_empty() {
                let names: Vec<String> = self
                    .models()
                    .iter()
                    .map(|m| m.model.meta.name.to_string())
                    .collect();
                let hint = crate::error::did_you_mean(selector, names.iter().map(String::as_str))
                    .unwrap_or_else(|| {
                        "select models as `schema.name`, a glob (`schema.*`), `tag:name`, and `+` for upstream (`+schema.name`) or downstream (`schema.name+`)".into()
                    });
                return Err(LakeError::Usage(
                    format!("`{selector}` selects no model"),
                    Some(hint),
                ));
            }
            selected.extend(found);
        }
        Ok(selected)
    }

    fn select_one(&self, selector: &str) -> Result<BTreeSet<ModelId>> {
        let selector = selector.trim();
        let (upstream, rest) = match selector.strip_prefix('+') {
            Some(rest) => (true, rest),
            None => (false, selector),
        };
        let (downstream, core) = match rest.strip_suffix('+') {
            Some(core) => (true, core),
            None => (false, rest),
        };
        let matches = self.matching(core)?;
        let mut selected: BTreeSet<ModelId> = matches.iter().copied().collect();
        for &id in &matches {
            if upstream {
                selected.extend(self.dag.upstream(id));
            }
            if downstream {
                selected.extend(self.dag.downstream(id));
            }
        }
        Ok(selected)
    }

    /// The models one selector names, before `+` widens it.
    fn matching(&self, core: &str) -> Result<Vec<ModelId>> {
        let (text, by_tag) = match core.strip_prefix("tag:") {
            Some(tag) => (tag, true),
            None => (core, false),
        };
        if !by_tag && !text.contains(['*', '?', '[']) {
            return Ok(self.model_id_named(text).into_iter().collect());
        }
        let glob = globset::GlobBuilder::new(&text.to_lowercase())
            .literal_separator(false)
            .build()
            .map_err(|e| {
                LakeError::Usage(
                    format!("`{core}` is not a model selector: {e}"),
                    Some("write a glob such as `demo.*` or `tag:fin*`".into()),
                )
            })?
            .compile_matcher();
        let default_catalog = format!("{}.", self.default_catalog);
        Ok(self
            .models()
            .entries()
            .filter(|(_, m)| {
                let meta = &m.model.meta;
                if by_tag {
                    return meta.tags.iter().any(|t| glob.is_match(t.to_lowercase()));
                }
                let name = meta.name.to_string();
                glob.is_match(&name) || glob.is_match(format!("{default_catalog}{name}"))
            })
            .map(|(id, _)| id)
            .collect())
    }
}
