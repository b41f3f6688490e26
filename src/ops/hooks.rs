//! config.yaml's `before_all` / `after_all`: statements run once before and after each applied plan and each
//! run, with the environment's `@this_env`, `@schemas` and `@views` (SQLMesh's environment statements).

use chrono::NaiveDateTime;

use super::Context;
use crate::engine::Engine;
use crate::error::{LakeError, Result, SourceFile};
use crate::project::macros::{self, MacroContext};
use crate::snapshot::{SuffixTarget, VirtualName};
use crate::sql::{ModelName, lex, quote_literal};

/// Which of the two lists.
#[derive(Debug, Clone, Copy)]
pub(super) enum Moment {
    BeforeAll,
    AfterAll,
}

impl Moment {
    fn key(self) -> &'static str {
        match self {
            Moment::BeforeAll => "before_all",
            Moment::AfterAll => "after_all",
        }
    }
}

/// Rendered statements, ready to run: rendered before a plan or run starts, so a statement that does not
/// render stops it before anything is built rather than after.
pub(super) struct EnvironmentStatements {
    key: &'static str,
    sql: Vec<String>,
}

impl EnvironmentStatements {
    pub fn run(&self, engine: &Engine) -> Result<()> {
        if self.sql.is_empty() {
            return Ok(());
        }
        let session = engine.session()?;
        for (n, sql) in self.sql.iter().enumerate() {
            session.execute(sql, || {
                format!("running statement {} of {} in config.yaml", n + 1, self.key)
            })?;
        }
        Ok(())
    }
}

impl Context {
    /// The `moment` statements for `environment`, whose views show the `exposed` models, rendered. Errors
    /// point into the statements as written in config.yaml.
    pub(super) fn environment_statements(
        &self,
        moment: Moment,
        environment: &str,
        suffix: SuffixTarget,
        exposed: &[ModelName],
        execution_time: NaiveDateTime,
    ) -> Result<EnvironmentStatements> {
        let config = &self.project.config;
        let key = moment.key();
        let written = match moment {
            Moment::BeforeAll => config.config.before_all.as_ref(),
            Moment::AfterAll => config.config.after_all.as_ref(),
        };
        let Some(written) = written.filter(|w| !w.is_empty()) else {
            return Ok(EnvironmentStatements {
                key,
                sql: Vec::new(),
            });
        };
        let file = SourceFile::new(format!("config.yaml ({key})"), written.join(";\n"));
        let mut ctx = MacroContext::for_loading(&config.gateway, &config.variables);
        ctx.runtime_stage = key;
        ctx.execution_time = execution_time;
        let views: Vec<VirtualName> = exposed
            .iter()
            .map(|model| VirtualName::new(model, environment, suffix))
            .collect();
        let mut schemas: Vec<&str> = views.iter().map(|v| v.schema.as_str()).collect();
        schemas.sort_unstable();
        schemas.dedup();
        let list = |items: Vec<String>| format!("[{}]", items.join(", "));
        ctx.locals
            .insert("this_env".into(), quote_literal(environment));
        ctx.locals.insert(
            "schemas".into(),
            list(schemas.into_iter().map(quote_literal).collect()),
        );
        ctx.locals.insert(
            "views".into(),
            list(
                views
                    .iter()
                    .map(|v| quote_literal(&v.to_string()))
                    .collect(),
            ),
        );
        let mut sql = Vec::new();
        for piece in lex::split_statements(&file.text, 0) {
            let rendered = macros::render(piece.text, &ctx).map_err(|e| {
                LakeError::from(
                    file.error(piece.offset + e.offset, e.len, e.message)
                        .with_optional_help(e.help),
                )
            })?;
            if !rendered.sql.trim().is_empty() {
                sql.push(rendered.sql);
            }
        }
        Ok(EnvironmentStatements { key, sql })
    }
}
