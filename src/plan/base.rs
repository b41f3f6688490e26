//! What a plan compares the project with: the target environment as it is, or for a new dev environment the
//! one it starts from (prod, or `--create-from`).

use std::collections::HashMap;

use super::PlanOptions;
use crate::PROD;
use crate::error::{LakeError, Result};
use crate::snapshot::EnvironmentName;
use crate::sql::ModelName;
use crate::state::{EnvSnapshot, Environment, StateStore};

pub(super) struct Base {
    /// The planned environment as it is now (`None`: this plan creates it).
    pub target: Option<Environment>,
    /// Prod, when planning a dev environment: the models a dev plan does not change get no names of their own.
    pub prod: Option<Environment>,
    /// The versions the project is compared with: the target's, else those of the environment it starts from.
    pub compared: Option<Environment>,
    /// The environment a new environment starts from.
    pub created_from: Option<String>,
}

impl Base {
    pub fn resolve(
        state: &dyn StateStore,
        environment: &EnvironmentName,
        options: &PlanOptions,
    ) -> Result<Base> {
        let target = state.environment(environment)?;
        let prod = if *environment == PROD {
            None
        } else {
            state.environment(PROD)?
        };
        let origin = match options.create_from.as_deref() {
            Some(_) if *environment == PROD => {
                return Err(LakeError::Usage(
                    "--create-from starts a new dev environment; prod is never created from another"
                        .into(),
                    Some("plan prod without --create-from".into()),
                ));
            }
            Some(from) if target.is_none() => Some(origin(state, from, environment)?),
            // An environment that exists already is compared with itself.
            _ => prod.clone().map(|p| (PROD.to_string(), p)),
        };
        let (compared, created_from) = match (&target, origin) {
            (Some(t), _) => (Some(t.clone()), None),
            (None, Some((from, env))) => (Some(env), Some(from)),
            (None, None) => (None, None),
        };
        Ok(Base {
            target,
            prod,
            compared,
            created_from,
        })
    }

    /// The compared versions by model name.
    pub fn by_name(&self) -> HashMap<&ModelName, &EnvSnapshot> {
        self.compared
            .as_ref()
            .map(|b| b.snapshots.iter().map(|s| (&s.name, s)).collect())
            .unwrap_or_default()
    }
}

/// `--create-from`'s environment, which must exist.
fn origin(
    state: &dyn StateStore,
    from: &str,
    environment: &EnvironmentName,
) -> Result<(String, Environment)> {
    let from = EnvironmentName::parse(from)?;
    let env = state.environment(&from)?.ok_or_else(|| {
        LakeError::Usage(
            format!("environment `{from}` to create `{environment}` from does not exist"),
            Some("`lake environments` lists them".into()),
        )
    })?;
    Ok((from.to_string(), env))
}
