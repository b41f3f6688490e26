//! `plan --select-model`: the models a plan leaves out keep the versions the environment it is compared with
//! has, as SQLMesh plans only the selected models' changes.

use std::collections::HashMap;

use crate::error::{LakeError, Result};
use crate::project::{ModelId, Project};
use crate::snapshot::{Fingerprint, Snapshot};
use crate::sql::ModelName;
use crate::state::{EnvSnapshot, StateStore};

/// The fingerprint each model `selectors` leaves out keeps: the compared environment's version's, from
/// state (its own definition; its parents are folded in anew, so a left-out child of a selected change is
/// still indirectly modified). A left-out model the environment does not have yet is an error naming it.
pub(super) fn kept_snapshots(
    project: &Project,
    state: &dyn StateStore,
    compared: &HashMap<&ModelName, &EnvSnapshot>,
    selectors: &[String],
) -> Result<HashMap<ModelId, Fingerprint>> {
    let selected = project.select(selectors)?;
    let mut left_out: Vec<(ModelId, &EnvSnapshot)> = Vec::new();
    for (id, loaded) in project.models().entries() {
        if selected.contains(&id) {
            continue;
        }
        let name = &loaded.model.meta.name;
        let Some(env) = compared.get(name) else {
            return Err(LakeError::Usage(
                format!(
                    "--select-model leaves out `{name}`, which the environment does not have yet"
                ),
                Some(format!(
                    "select it too (`--select-model {name}`): a plan cannot leave a new model out"
                )),
            ));
        };
        left_out.push((id, env));
    }
    let ids: Vec<&str> = left_out.iter().map(|(_, env)| env.id.as_str()).collect();
    let stored: HashMap<String, Snapshot> = state
        .snapshots(&ids)?
        .into_iter()
        .map(|s| (s.snapshot.id.clone(), s.snapshot))
        .collect();
    left_out
        .into_iter()
        .map(|(id, env)| {
            let snapshot = stored
                .get(&env.id)
                .ok_or_else(|| LakeError::StateConflict {
                    message: format!(
                        "the state has no record of {}'s version {}",
                        env.name, env.id
                    ),
                    help: Some("`lake plan` without --select-model plans every model".into()),
                })?;
            Ok((id, snapshot.fingerprint.clone()))
        })
        .collect()
}
