//! The cache of analysed model queries in `cache_dir` (`.lake/cache/`): a plan of unchanged models skips rendering and parsing.
//!
//! An entry holds what rendering a model's query at load time produced — its normalized text and the parts of
//! each table it reads — under a SHA-256 key of everything that rendering reads (see `docs/design/plan-cache.md`).
//! References are resolved again on every load, so adding or removing a model elsewhere never makes an entry
//! wrong. The file is safe to delete, is ignored when unreadable, and is never trusted across builds of lake.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::sql::IdentPart;

use super::model::Model;

/// Bumped when the meaning of an entry changes; with the build identity it keeps foreign files out.
const FORMAT: u32 = 1;

/// What rendering one model's query at load time produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedQuery {
    pub normalized: String,
    /// The dotted parts of each table the query reads, in query order.
    pub references: Vec<Vec<IdentPart>>,
}

/// A model's cache key: SHA-256 of the project-wide inputs and the model's own.
pub type CacheKey = [u8; 32];

/// How one model's analysis used the cache.
#[derive(Debug)]
pub enum CacheUse {
    /// The model is never cached (no query, a Jinja query, a lenient load).
    Bypassed,
    Hit(CacheKey),
    /// Rendered now; `Some` when the result may be stored.
    Miss(CacheKey, Option<CachedQuery>),
}

#[derive(Serialize, Deserialize)]
struct CacheFile {
    format: u32,
    build: String,
    entries: HashMap<String, CachedQuery>,
}

/// The entries read at load, and the inputs every model's key starts with.
pub struct AnalysisCache {
    path: PathBuf,
    build: String,
    salt: CacheKey,
    entries: HashMap<String, CachedQuery>,
}

/// Everything outside a model's file that its load-time rendering reads.
pub struct ProjectInputs<'a> {
    pub gateway: &'a str,
    pub variables: &'a std::collections::BTreeMap<String, serde_json::Value>,
    /// `model_defaults`, in any form that changes whenever they do.
    pub model_defaults: String,
    pub macro_definitions: Vec<&'a str>,
    pub jinja_macros: &'a str,
    pub python_macros: &'a std::collections::BTreeMap<String, String>,
}

impl AnalysisCache {
    /// Reads `analyses.json` in the cache folder (`cache_dir`); `None` when this build of lake cannot identify
    /// itself (then nothing is cached, rather than risking entries from another build).
    pub fn open(cache_dir: &Path, inputs: &ProjectInputs) -> Option<AnalysisCache> {
        let build = build_identity()?;
        let path = cache_dir.join("analyses.json");
        let entries = std::fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<CacheFile>(&bytes).ok())
            .filter(|file| file.format == FORMAT && file.build == build)
            .map(|file| file.entries)
            .unwrap_or_default();
        let mut salt = Hasher::new();
        salt.field(build.as_bytes());
        salt.field(inputs.gateway.as_bytes());
        // serde_json writes a BTreeMap in key order, so equal variables give equal bytes.
        salt.field(
            serde_json::to_string(inputs.variables)
                .unwrap_or_default()
                .as_bytes(),
        );
        salt.field(inputs.model_defaults.as_bytes());
        salt.field(&(inputs.macro_definitions.len() as u64).to_le_bytes());
        for definition in &inputs.macro_definitions {
            salt.field(definition.as_bytes());
        }
        salt.field(inputs.jinja_macros.as_bytes());
        for (name, file) in inputs.python_macros {
            salt.field(name.as_bytes());
            salt.field(file.as_bytes());
        }
        Some(AnalysisCache {
            path,
            build,
            salt: salt.finish(),
            entries,
        })
    }

    /// The key of `model`: the project-wide inputs, then what the model's rendering reads of its own (its
    /// file's text, which holds its query and `@DEF`s, its name, kind and blueprint variables).
    pub fn key(&self, model: &Model) -> CacheKey {
        let mut hasher = Hasher::new();
        hasher.field(&self.salt);
        hasher.field(model.meta.name.sql().as_bytes());
        hasher.field(model.meta.kind.name().as_bytes());
        hasher.field(&(model.blueprint.len() as u64).to_le_bytes());
        for (name, value) in &model.blueprint {
            hasher.field(name.as_bytes());
            hasher.field(value.as_bytes());
        }
        hasher.field(model.file.text.as_bytes());
        hasher.finish()
    }

    pub fn get(&self, key: &CacheKey) -> Option<&CachedQuery> {
        self.entries.get(&hex::encode(key))
    }

    /// Keeps the entries this load used, adds the new ones, and rewrites the file when that changed it.
    /// Failing to write (a read-only checkout, say) only costs the next load its speed.
    pub fn update(mut self, uses: Vec<CacheUse>) {
        let added = uses
            .iter()
            .any(|used| matches!(used, CacheUse::Miss(_, Some(_))));
        let hits = uses
            .iter()
            .filter(|used| matches!(used, CacheUse::Hit(_)))
            .count();
        if !added && hits == self.entries.len() {
            return;
        }
        let mut kept = HashMap::with_capacity(uses.len());
        for used in uses {
            match used {
                CacheUse::Bypassed | CacheUse::Miss(_, None) => {}
                CacheUse::Hit(key) => {
                    let key = hex::encode(key);
                    if let Some(entry) = self.entries.remove(&key) {
                        kept.insert(key, entry);
                    }
                }
                CacheUse::Miss(key, Some(entry)) => {
                    kept.insert(hex::encode(key), entry);
                }
            }
        }
        let file = CacheFile {
            format: FORMAT,
            build: self.build,
            entries: kept,
        };
        // Deliberately ignored: see above.
        let _ = write_atomically(&self.path, &file);
    }
}

/// Writes beside `path` and renames over it, so a reader sees the old file or the new one, never a part.
/// No sync: after a power cut a torn file fails to parse and is rebuilt.
fn write_atomically(path: &Path, file: &CacheFile) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    remove_abandoned_temporaries(dir);
    let mut temporary = tempfile::NamedTempFile::new_in(dir)?;
    {
        let mut writer = std::io::BufWriter::new(temporary.as_file_mut());
        serde_json::to_writer(&mut writer, file)?;
        writer.flush()?;
    }
    temporary.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Deletes temporary files a killed lake left in the cache folder. Only those an hour old: a younger one may be
/// another lake's write in progress.
fn remove_abandoned_temporaries(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let hour = std::time::Duration::from_secs(3600);
    for entry in entries.flatten() {
        let abandoned = entry.file_name().to_string_lossy().starts_with(".tmp")
            && entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|modified| modified.elapsed().ok())
                .is_some_and(|age| age > hour);
        if abandoned {
            // Best effort, like the cache itself.
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// What tells one build of lake from another: its version and its executable's size and modification time
/// (development builds keep the version while the code changes).
fn build_identity() -> Option<String> {
    let exe = std::env::current_exe().ok()?;
    let meta = std::fs::metadata(exe).ok()?;
    let modified = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    Some(format!(
        "{} {} {}.{:09}",
        env!("CARGO_PKG_VERSION"),
        meta.len(),
        modified.as_secs(),
        modified.subsec_nanos()
    ))
}

/// SHA-256 over length-prefixed fields, so no two different field lists hash the same bytes.
struct Hasher(Sha256);

impl Hasher {
    fn new() -> Self {
        Hasher(Sha256::new())
    }

    fn field(&mut self, bytes: &[u8]) {
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
    }

    fn finish(self) -> CacheKey {
        self.0.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use proptest::prelude::*;

    use crate::project::Project;

    /// A generated model `s.m<i>`: what its query reads and which rendering inputs it uses.
    #[derive(Debug, Clone)]
    struct ModelSpec {
        /// Indices of earlier models it reads (taken modulo its own index).
        parents: Vec<usize>,
        reads_external: bool,
        uses_variable: bool,
        uses_macro: bool,
        /// `@STAR` over its first parent, whose columns may be declared or inferred.
        stars_first_parent: bool,
        /// `Some(type)` declares `columns (id <type>)`.
        declared_type: Option<&'static str>,
        jinja: bool,
    }

    #[derive(Debug, Clone)]
    enum Edit {
        Variable(i32),
        MacroIncrement(i32),
        Rewrite(usize, ModelSpec),
        Add(ModelSpec),
        RemoveLast,
        /// Only the declared column type of one model, which `@STAR` over it renders.
        DeclaredType(usize, Option<&'static str>),
    }

    fn model_spec() -> impl Strategy<Value = ModelSpec> {
        (
            prop::collection::vec(0usize..8, 0..3),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            declared_type(),
            prop::bool::weighted(0.15),
        )
            .prop_map(
                |(
                    parents,
                    reads_external,
                    uses_variable,
                    uses_macro,
                    stars,
                    declared_type,
                    jinja,
                )| {
                    ModelSpec {
                        parents,
                        reads_external,
                        uses_variable,
                        uses_macro,
                        stars_first_parent: stars,
                        declared_type,
                        jinja,
                    }
                },
            )
    }

    fn declared_type() -> impl Strategy<Value = Option<&'static str>> {
        prop::option::of(prop::sample::select(vec!["INT", "BIGINT", "TEXT"]))
    }

    fn edit() -> impl Strategy<Value = Edit> {
        prop_oneof![
            (-3i32..3).prop_map(Edit::Variable),
            (-3i32..3).prop_map(Edit::MacroIncrement),
            (0usize..8, model_spec()).prop_map(|(i, spec)| Edit::Rewrite(i, spec)),
            model_spec().prop_map(Edit::Add),
            Just(Edit::RemoveLast),
            (0usize..8, declared_type()).prop_map(|(i, t)| Edit::DeclaredType(i, t)),
        ]
    }

    fn model_text(index: usize, spec: &ModelSpec) -> String {
        let mut parents: Vec<usize> = if index == 0 {
            Vec::new()
        } else {
            spec.parents.iter().map(|p| p % index).collect()
        };
        parents.dedup();
        let mut columns = vec!["1 AS id".to_string()];
        if spec.uses_variable {
            columns.push("@VAR('v') AS v".into());
        }
        if spec.uses_macro {
            columns.push("@bump(2) AS bumped".into());
        }
        if let (true, Some(first)) = (spec.stars_first_parent, parents.first()) {
            columns.push(format!("@STAR(s.m{first}, prefix := 'p_')"));
        }
        let mut tables: Vec<String> = parents.iter().map(|p| format!("s.m{p}")).collect();
        if spec.reads_external {
            tables.push("ext.events".into());
        }
        let from = if tables.is_empty() {
            String::new()
        } else {
            format!(" FROM {}", tables.join(" CROSS JOIN "))
        };
        let declared = spec
            .declared_type
            .map(|t| format!(", columns (id {t})"))
            .unwrap_or_default();
        let query = format!("SELECT {}{from}", columns.join(", "));
        let query = if spec.jinja {
            format!("JINJA_QUERY_BEGIN;\n{query} -- {{{{ var('v') }}}}\nJINJA_END;")
        } else {
            query
        };
        format!("MODEL (name s.m{index}, kind FULL{declared});\n{query}\n")
    }

    struct Generated {
        root: tempfile::TempDir,
        models: Vec<ModelSpec>,
        variable: i32,
        increment: i32,
    }

    impl Generated {
        fn new(models: Vec<ModelSpec>) -> Generated {
            let generated = Generated {
                root: tempfile::tempdir().expect("a temporary directory"),
                models,
                variable: 1,
                increment: 1,
            };
            let root = generated.root.path();
            std::fs::create_dir_all(root.join("models")).expect("models/");
            std::fs::create_dir_all(root.join("macros")).expect("macros/");
            std::fs::write(
                root.join("external_models.yaml"),
                "- name: ext.events\n  columns:\n    id: INT\n    payload: TEXT\n",
            )
            .expect("external_models.yaml");
            generated.write_all();
            generated
        }

        fn write_all(&self) {
            let root = self.root.path();
            std::fs::write(
                root.join("config.yaml"),
                format!(
                    "gateways:\n  local:\n    connection:\n      type: duckdb\n      database: db.db\n\
                     default_gateway: local\nvariables:\n  v: {}\nmodel_defaults:\n  dialect: duckdb\n  start: 2020-01-01\n",
                    self.variable
                ),
            )
            .expect("config.yaml");
            std::fs::write(
                root.join("macros/m.sql"),
                format!("@DEF(bump, x -> x + {});\n", self.increment),
            )
            .expect("macros/m.sql");
            for entry in std::fs::read_dir(root.join("models")).expect("models/") {
                std::fs::remove_file(entry.expect("an entry").path()).expect("a model file");
            }
            for (i, spec) in self.models.iter().enumerate() {
                std::fs::write(root.join(format!("models/m{i}.sql")), model_text(i, spec))
                    .expect("a model file");
            }
        }

        fn apply(&mut self, edit: &Edit) {
            match edit {
                Edit::Variable(v) => self.variable = *v,
                Edit::MacroIncrement(k) => self.increment = *k,
                Edit::Rewrite(i, spec) if !self.models.is_empty() => {
                    let i = i % self.models.len();
                    self.models[i] = spec.clone();
                }
                Edit::DeclaredType(i, declared) if !self.models.is_empty() => {
                    let i = i % self.models.len();
                    self.models[i].declared_type = *declared;
                }
                Edit::Rewrite(..) | Edit::DeclaredType(..) => {}
                Edit::Add(spec) => self.models.push(spec.clone()),
                Edit::RemoveLast => {
                    self.models.pop();
                }
            }
            self.write_all();
        }
    }

    /// The load's result in a comparable form: every model's name and analysis, or the error's text.
    fn outcome(root: &Path) -> (Result<Vec<(String, super::super::Analysis)>, String>, usize) {
        match Project::load(root, None) {
            Ok(project) => (
                Ok(project
                    .models()
                    .iter()
                    .map(|m| (m.model.meta.name.to_string(), m.analysis.clone()))
                    .collect()),
                project.cached_analyses,
            ),
            Err(e) => (Err(format!("{e:?}")), 0),
        }
    }

    fn cache_file(root: &Path) -> std::path::PathBuf {
        root.join(".lake/cache/analyses.json")
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

        /// After any sequence of edits, a load that starts from the cache the earlier loads left gives
        /// exactly what a load without a cache gives.
        #[test]
        fn warm_loads_equal_cold_loads(
            models in prop::collection::vec(model_spec(), 1..6),
            edits in prop::collection::vec(edit(), 1..5),
        ) {
            let mut project = Generated::new(models);
            let root = project.root.path().to_path_buf();
            let _ = outcome(&root);
            for edit in &edits {
                project.apply(edit);
                let (warm, _) = outcome(&root);
                let kept = std::fs::read(cache_file(&root)).ok();
                let _ = std::fs::remove_file(cache_file(&root));
                let (cold, cold_hits) = outcome(&root);
                prop_assert_eq!(cold_hits, 0);
                prop_assert_eq!(&warm, &cold, "after {:?}", edit);
                if let Some(bytes) = kept {
                    std::fs::write(cache_file(&root), bytes).expect("restore the warm cache");
                }
            }
        }
    }

    fn spec(parents: Vec<usize>) -> ModelSpec {
        ModelSpec {
            parents,
            reads_external: true,
            uses_variable: true,
            uses_macro: true,
            stars_first_parent: false,
            declared_type: None,
            jinja: false,
        }
    }

    #[test]
    fn an_unchanged_project_is_analysed_from_the_cache_except_what_must_not_be() {
        let mut star = spec(vec![0]);
        star.stars_first_parent = true;
        let mut jinja = spec(vec![1]);
        jinja.jinja = true;
        let mut declared = spec(vec![]);
        declared.declared_type = Some("INT");
        let project = Generated::new(vec![declared, spec(vec![0]), star, jinja]);
        let root = project.root.path();
        let (cold, hits) = outcome(root);
        assert!(cold.is_ok(), "{cold:?}");
        assert_eq!(hits, 0);
        let (warm, hits) = outcome(root);
        // Models 0 and 1; not the `@STAR` one (it read another model's columns) nor the Jinja one.
        assert_eq!(hits, 2);
        assert_eq!(warm, cold);
        let written = std::fs::metadata(cache_file(root)).and_then(|m| m.modified());
        let _ = outcome(root);
        assert_eq!(
            written.ok(),
            std::fs::metadata(cache_file(root))
                .and_then(|m| m.modified())
                .ok(),
            "a load that only hit the cache rewrote it"
        );
    }

    #[test]
    fn temporaries_a_killed_lake_left_are_removed_once_an_hour_old() {
        let project = Generated::new(vec![spec(vec![])]);
        let root = project.root.path();
        let _ = outcome(root);
        let dir = root.join(".lake/cache");
        let (old, young) = (dir.join(".tmpOLD123"), dir.join(".tmpNEW456"));
        std::fs::write(&old, "partial").expect("an old temporary");
        std::fs::write(&young, "partial").expect("a young temporary");
        let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        std::fs::File::options()
            .write(true)
            .open(&old)
            .and_then(|f| f.set_modified(two_hours_ago))
            .expect("age the old temporary");
        // Make the next load write the cache: a new model.
        std::fs::write(
            root.join("models/extra.sql"),
            "MODEL (name s.extra, kind FULL);\nSELECT 1 AS id\n",
        )
        .expect("a new model");
        let _ = outcome(root);
        assert!(!old.exists(), "the abandoned temporary is removed");
        assert!(young.exists(), "a temporary that may be in use is kept");
    }

    #[test]
    fn cache_dir_in_config_yaml_moves_the_cache() {
        let project = Generated::new(vec![spec(vec![])]);
        let root = project.root.path();
        let config = std::fs::read_to_string(root.join("config.yaml")).expect("config.yaml");
        std::fs::write(
            root.join("config.yaml"),
            format!("{config}cache_dir: build/lake-cache\n"),
        )
        .expect("config.yaml");
        let (_, hits) = outcome(root);
        assert_eq!(hits, 0);
        assert!(root.join("build/lake-cache/analyses.json").is_file());
        assert!(!cache_file(root).exists());
        assert_eq!(outcome(root).1, 1);
    }

    #[test]
    fn a_broken_or_foreign_cache_file_is_ignored_and_rebuilt() {
        let project = Generated::new(vec![spec(vec![]), spec(vec![0])]);
        let root = project.root.path();
        let (cold, _) = outcome(root);
        for broken in [
            &b"{\"format\": 1, \"build\": \"lake 0.0.0\", \"entries\": {}}"[..],
            b"\0garbage",
            b"",
        ] {
            std::fs::write(cache_file(root), broken).expect("a broken cache file");
            let (again, hits) = outcome(root);
            assert_eq!(hits, 0);
            assert_eq!(again, cold);
            assert_eq!(
                outcome(root).1,
                2,
                "the cache was not rebuilt after {broken:?}"
            );
        }
    }
}
