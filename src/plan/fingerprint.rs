//! Fingerprints of the project's models: the hashes that tell a new model version from an unchanged one,
//! split into data and metadata so a metadata-only change reuses its table.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{LakeError, Result};
use crate::project::Project;
use crate::project::{ModelId, PerModel};
use crate::snapshot::{Fingerprint, Snapshot};

struct Hasher(Sha256);

impl Hasher {
    fn new(domain: &str) -> Self {
        let mut h = Hasher(Sha256::new());
        h.field(domain);
        h
    }

    /// Length-prefixed, so adjacent fields can never run together into the same bytes.
    fn field(&mut self, value: &str) -> &mut Self {
        self.0.update((value.len() as u64).to_le_bytes());
        self.0.update(value.as_bytes());
        self
    }

    fn json<T: Serialize>(&mut self, value: &T) -> &mut Self {
        // Serialising plain data structs (strings, vectors, options) cannot fail.
        let text = serde_json::to_string(value).unwrap_or_default();
        self.field(&text)
    }

    fn finish(self) -> String {
        hex::encode(&self.0.finalize()[..8])
    }
}

/// Computes the snapshots of every model, parents first.
pub fn compute(project: &Project) -> Result<PerModel<Snapshot>> {
    compute_keeping(project, &HashMap::new())
}

/// [`compute`], with the models of `kept` hashed as the fingerprint given says they were defined (a plan's
/// `--select-model` keeps the environment's definition of the models it leaves out) instead of as their
/// files say; their parents are folded in as for any model.
pub fn compute_keeping(
    project: &Project,
    kept: &HashMap<ModelId, Fingerprint>,
) -> Result<PerModel<Snapshot>> {
    let seed_hashes: HashMap<ModelId, String> = project
        .models()
        .entries()
        .filter_map(|(i, m)| m.model.seed_path.as_ref().map(|p| (i, p)))
        .map(|(i, path)| {
            let bytes = std::fs::read(path).map_err(|e| LakeError::Io {
                path: path.clone(),
                source: e,
            })?;
            Ok((i, hex::encode(Sha256::digest(&bytes))))
        })
        .collect::<Result<_>>()?;
    // A model's own hashes need nothing of its parents, so they are computed on every core; only
    // folding in the parents' hashes has to follow the DAG.
    let mut own = project.models().par_map(|i, _| {
        Some(own_hashes(
            project,
            i,
            seed_hashes.get(&i).map_or("", String::as_str),
        ))
    });
    let mut snapshots: PerModel<Option<Snapshot>> = project.models().map(|_, _| None);
    for &i in &project.order {
        let computed = own[i]
            .take()
            .expect("the topological order names each model once");
        let OwnHashes {
            data_parts,
            data_hash,
            metadata_hash,
        } = match kept.get(&i) {
            Some(stored) => OwnHashes {
                data_parts: stored.data_parts.clone(),
                data_hash: stored.data_hash.clone(),
                metadata_hash: stored.metadata_hash.clone(),
            },
            None => computed,
        };
        let mut parents: Vec<&Snapshot> = project
            .analysis(i)
            .parents
            .iter()
            .map(|&p| {
                snapshots[p]
                    .as_ref()
                    .expect("topological order computes parents first")
            })
            .collect();
        parents.sort_by(|a, b| a.name.cmp(&b.name));
        // Content, not versions: versions depend on how earlier plans categorised changes, fingerprints do not.
        let mut parent_data = Hasher::new("parent-data/v2");
        let mut parent_meta = Hasher::new("parent-metadata/v1");
        for p in &parents {
            parent_data
                .field(&p.name.to_string())
                .field(&p.fingerprint.data_hash)
                .field(&p.fingerprint.parent_data_hash);
            parent_meta.field(&p.name.to_string()).field(&p.id);
        }
        let fingerprint = Fingerprint {
            data_hash,
            metadata_hash,
            parent_data_hash: parent_data.finish(),
            parent_metadata_hash: parent_meta.finish(),
            data_parts,
        };
        let meta = &project.model(i).meta;
        let name = meta.name.clone();
        let mut version = Hasher::new("version/v1");
        version
            .field(&name.to_string())
            .field(&fingerprint.data_hash)
            .field(&fingerprint.parent_data_hash);
        let mut id = Hasher::new("snapshot/v1");
        id.field(&name.to_string())
            .field(&fingerprint.data_hash)
            .field(&fingerprint.metadata_hash)
            .field(&fingerprint.parent_data_hash)
            .field(&fingerprint.parent_metadata_hash);
        snapshots[i] = Some(Snapshot {
            name,
            id: id.finish(),
            version: version.finish(),
            fingerprint,
            kind_name: meta.kind.name().to_string(),
            parents: parents.iter().map(|p| p.name.clone()).collect(),
            physical_schema: project
                .config
                .physical_schemas
                .schema_for(&meta.name.schema)
                .map(str::to_string),
        });
    }
    Ok(snapshots
        .into_values()
        .into_iter()
        .map(|s| s.expect("every model is in the topological order"))
        .collect())
}

/// The hashes of what a model itself says, before its parents are folded in.
struct OwnHashes {
    data_parts: BTreeMap<String, String>,
    data_hash: String,
    metadata_hash: String,
}

fn own_hashes(project: &Project, i: ModelId, seed_hash: &str) -> OwnHashes {
    let model = project.model(i);
    let meta = &model.meta;
    let analysis = project.analysis(i);
    let part = |label: &str, fill: &dyn Fn(&mut Hasher)| {
        let mut h = Hasher::new(label);
        fill(&mut h);
        (label.to_string(), h.finish())
    };
    let statements = |list: &[crate::project::model::Statement]| {
        list.iter()
            .map(|s| s.text.trim().to_string())
            .collect::<Vec<_>>()
    };
    // Each data-affecting part is hashed on its own, so a later plan can say which part changed.
    let data_parts: BTreeMap<String, String> = [
        part("query", &|h| {
            h.field(analysis.normalized_query.as_deref().unwrap_or(""));
        }),
        part("kind", &|h| {
            h.json(&meta.kind.as_data());
        }),
        part("columns", &|h| {
            h.json(&meta.columns);
        }),
        part("statements", &|h| {
            h.json(&statements(&model.pre_statements))
                .json(&statements(&model.post_statements));
        }),
        part("seed", &|h| {
            h.field(seed_hash);
        }),
        part("physical", &|h| {
            h.json(&meta.partitioned_by)
                .json(&meta.clustered_by)
                .json(&meta.table_format)
                .json(&meta.storage_format)
                .json(&meta.physical_properties)
                .json(&meta.session_properties);
        }),
        part("dialect", &|h| {
            h.field(&meta.dialect);
        }),
        part("stamp", &|h| {
            h.json(&meta.stamp).json(&meta.physical_version);
        }),
    ]
    .into_iter()
    .chain(
        // Only in dev_only mode, so other models keep their fingerprints; switching modes rebuilds, as in
        // SQLMesh, since the tables move between the versioned and the in-place layout.
        project.dev_only(i).then(|| {
            part("virtual_environment_mode", &|h| {
                h.field("dev_only");
            })
        }),
    )
    .collect();
    let mut data = Hasher::new("data/v2");
    data.json(&data_parts);
    let mut metadata = Hasher::new("metadata/v1");
    metadata
        .json(&meta.owner)
        .json(&meta.description)
        .json(&meta.tags)
        .field(meta.cron.expression())
        .json(&meta.cron_tz)
        .json(&meta.start)
        .json(&meta.end)
        .json(&meta.interval_unit)
        .json(&meta.grains)
        .json(&meta.references)
        .json(&meta.column_descriptions)
        .json(&meta.audits)
        .json(&meta.allow_partials)
        .json(&meta.signals)
        .json(&meta.virtual_properties)
        .json(&meta.grants)
        .json(&meta.grants_target_layer)
        .json(&meta.gateway)
        .json(&meta.project)
        .json(&meta.optimize_query)
        .json(&meta.ignored_rules)
        .json(&meta.formatting)
        .json(&meta.virtual_environment_mode);
    // Only when set, so models without it keep their fingerprints.
    if let Some(lanes) = meta.kind.batch_concurrency() {
        metadata.field("batch_concurrency").json(&lanes);
    }
    // Only when there are some, so models without project audits keep their fingerprints.
    let audits = audit_definitions(project, i);
    if !audits.is_empty() {
        metadata.json(&audits);
    }
    // Statements run on promotion are metadata, as in SQLMesh; only hashed when present.
    let on_virtual_update: Vec<String> = model
        .on_virtual_update
        .iter()
        .map(|st| crate::sql::layout_free_text(&st.text))
        .collect();
    if !on_virtual_update.is_empty() {
        metadata.json(&on_virtual_update);
    }
    OwnHashes {
        data_parts,
        data_hash: data.finish(),
        metadata_hash: metadata.finish(),
    }
}

/// The text of the project audits model `i` uses: editing one is a metadata change of the model.
fn audit_definitions(project: &crate::project::Project, i: ModelId) -> Vec<(String, bool, String)> {
    project
        .model_audits(i)
        .iter()
        .filter_map(|a| match &a.source {
            crate::project::audit::AuditSource::Project(p) => {
                // Laid out freely: `lake format` on an audit file is no change of the model.
                Some((
                    p.name.clone(),
                    p.blocking,
                    crate::sql::layout_free_text(&p.query),
                ))
            }
            crate::project::audit::AuditSource::Builtin(_) => None,
        })
        .collect()
}
