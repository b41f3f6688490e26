//! The Iceberg REST catalog protocol: configuration, namespaces and tables answered from lake's catalog
//! database on every request; with `--allow-writes`, creates (staged or not), commits of one or many tables,
//! registers, renames and drops through the same compare-and-swap lake's writer uses (in lake's own
//! namespaces, commits to existing tables only); the spec's error model throughout.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Form, Json, Router};
use iceberg::spec::{FormatVersion, Schema, SortOrder, UnboundPartitionSpec};
use iceberg::{TableCreation, TableRequirement, TableUpdate};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::{IcebergSettings, Secret, Warehouse};
use crate::storage::iceberg::catalog::{
    CommitRefusal, Committed, Dropped, LakeCatalog, NamespaceDropRefusal, RegisterRefusal,
    RenameRefusal, TableChange,
};
use crate::storage::iceberg::ident;

mod loaded;

/// Request bodies larger than this are refused before they are read.
const MAX_BODY_BYTES: usize = 1 << 20;
/// The most items one page lists when the client does not say.
const DEFAULT_PAGE_SIZE: usize = 1000;

/// What every request handler shares.
pub struct RestState {
    catalog: LakeCatalog,
    /// Settings clients need to read the data files (never credentials).
    overrides: HashMap<String, String>,
    /// The bearer token every request must carry, when authentication is on.
    token: Option<Secret>,
    /// Whether creates and commits are accepted (`--allow-writes`).
    allow_writes: bool,
    /// The project's model schemas: their namespaces, their environments' and `lake__<schema>` belong to lake.
    lake_schemas: Vec<String>,
    /// Load-table answers, per table and metadata file.
    loaded: loaded::LoadedTables,
}

impl RestState {
    pub fn new(
        catalog: LakeCatalog,
        settings: &IcebergSettings,
        token: Option<Secret>,
        allow_writes: bool,
        lake_schemas: Vec<String>,
    ) -> Self {
        let mut overrides = HashMap::new();
        if let Warehouse::S3 { s3, .. } = &settings.warehouse {
            if let Some(endpoint) = &s3.endpoint {
                overrides.insert("s3.endpoint".to_string(), endpoint.clone());
            }
            overrides.insert("s3.region".to_string(), s3.region.clone());
            overrides.insert(
                "s3.path-style-access".to_string(),
                s3.path_style.to_string(),
            );
        }
        RestState {
            catalog,
            overrides,
            token,
            allow_writes,
            lake_schemas,
            loaded: loaded::LoadedTables::default(),
        }
    }
}

type Shared = Arc<RestState>;

/// The routes clients call. Writes are refused unless the server allows them, and always in lake's own
/// namespaces.
pub fn router(state: RestState) -> Router {
    let state = Arc::new(state);
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/oauth/tokens", post(oauth_tokens))
        .route("/v1/config", get(config))
        .route(
            "/v1/namespaces",
            get(list_namespaces)
                .post(create_namespace)
                .fallback(not_offered),
        )
        .route(
            "/v1/namespaces/{namespace}",
            get(load_namespace)
                .delete(drop_namespace)
                .fallback(not_offered),
        )
        .route(
            "/v1/namespaces/{namespace}/properties",
            post(update_namespace_properties).fallback(not_offered),
        )
        .route(
            "/v1/namespaces/{namespace}/tables",
            get(list_tables).post(create_table).fallback(not_offered),
        )
        .route(
            "/v1/namespaces/{namespace}/register",
            post(register_table).fallback(not_offered),
        )
        .route(
            "/v1/namespaces/{namespace}/tables/{table}",
            get(load_table)
                .post(commit_table)
                .delete(drop_table)
                .fallback(not_offered),
        )
        .route(
            "/v1/namespaces/{namespace}/tables/{table}/metrics",
            post(metrics_report).fallback(not_offered),
        )
        .route(
            "/v1/namespaces/{namespace}/views",
            get(list_views).fallback(not_offered),
        )
        .route(
            "/v1/namespaces/{namespace}/views/{view}",
            get(load_view).fallback(not_offered),
        )
        .route(
            "/v1/tables/rename",
            post(rename_table).fallback(not_offered),
        )
        .route("/v1/views/rename", any(not_offered))
        .route(
            "/v1/transactions/commit",
            post(commit_transaction).fallback(not_offered),
        )
        .fallback(unknown_endpoint)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(refuse_oversized_bodies))
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(middleware::from_fn(access_log))
        .with_state(state)
}

/// The endpoints `GET /v1/config` advertises, in the spec's `METHOD /v1/{prefix}/…` form, so clients that
/// read the list know what they may call.
const ENDPOINTS: &[&str] = &[
    "GET /v1/{prefix}/namespaces",
    "POST /v1/{prefix}/namespaces",
    "GET /v1/{prefix}/namespaces/{namespace}",
    "HEAD /v1/{prefix}/namespaces/{namespace}",
    "DELETE /v1/{prefix}/namespaces/{namespace}",
    "POST /v1/{prefix}/namespaces/{namespace}/properties",
    "GET /v1/{prefix}/namespaces/{namespace}/tables",
    "POST /v1/{prefix}/namespaces/{namespace}/tables",
    "GET /v1/{prefix}/namespaces/{namespace}/tables/{table}",
    "HEAD /v1/{prefix}/namespaces/{namespace}/tables/{table}",
    "POST /v1/{prefix}/namespaces/{namespace}/tables/{table}",
    "DELETE /v1/{prefix}/namespaces/{namespace}/tables/{table}",
    "POST /v1/{prefix}/namespaces/{namespace}/register",
    "POST /v1/{prefix}/namespaces/{namespace}/tables/{table}/metrics",
    "POST /v1/{prefix}/tables/rename",
    "POST /v1/{prefix}/transactions/commit",
];

/// An answer in the spec's error model: `{"error": {"message", "type", "code"}}`.
#[derive(Debug)]
pub struct RestError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl RestError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        RestError {
            status,
            kind,
            message: message.into(),
        }
    }

    fn no_namespace(namespace: &str) -> Self {
        RestError::new(
            StatusCode::NOT_FOUND,
            "NoSuchNamespaceException",
            format!("Namespace does not exist: {namespace}"),
        )
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        let body = json!({"error": {
            "message": self.message,
            "type": self.kind,
            "code": self.status.as_u16(),
        }});
        (self.status, Json(body)).into_response()
    }
}

impl From<crate::error::LakeError> for RestError {
    fn from(error: crate::error::LakeError) -> Self {
        // The catalog database failed: say so without internals (paths and URIs stay in the server's log).
        eprintln!("lake serve: {error}");
        RestError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ServiceFailureException",
            "the catalog database could not be read; see the server's log",
        )
    }
}

type Answer = std::result::Result<Response, RestError>;

/// A namespace as the path carries it: levels separated by the unit separator (0x1F). lake's namespaces
/// have one level; a deeper one is simply a namespace that does not exist.
fn namespace_name(raw: &str) -> String {
    raw.split('\u{1f}').collect::<Vec<_>>().join(".")
}

fn namespace_levels(name: &str) -> Vec<&str> {
    vec![name]
}

#[derive(Debug, Deserialize)]
struct Page {
    #[serde(rename = "pageToken")]
    page_token: Option<String>,
    #[serde(rename = "pageSize")]
    page_size: Option<usize>,
    parent: Option<String>,
}

/// One page of `items` and the token of the next (the offset where it starts), if any.
fn paginate<T: Clone>(
    items: &[T],
    page: &Page,
) -> std::result::Result<(Vec<T>, Option<String>), RestError> {
    let start = match page.page_token.as_deref() {
        None | Some("") => 0,
        Some(token) => token.parse::<usize>().map_err(|_| {
            RestError::new(
                StatusCode::BAD_REQUEST,
                "BadRequestException",
                format!("invalid pageToken `{token}`"),
            )
        })?,
    };
    let size = page.page_size.unwrap_or(DEFAULT_PAGE_SIZE).max(1);
    let end = start.saturating_add(size).min(items.len());
    let slice = items
        .get(start.min(items.len())..end)
        .unwrap_or(&[])
        .to_vec();
    let next = (end < items.len()).then(|| end.to_string());
    Ok((slice, next))
}

async fn config(State(state): State<Shared>) -> Json<Value> {
    Json(json!({"defaults": {}, "overrides": state.overrides, "endpoints": ENDPOINTS}))
}

async fn list_namespaces(State(state): State<Shared>, Query(page): Query<Page>) -> Answer {
    // lake's namespaces have one level: every one is a child of the root, and none has children.
    let names = if page.parent.as_deref().is_some_and(|p| !p.is_empty()) {
        Vec::new()
    } else {
        state.catalog.namespaces().await?
    };
    let (names, next) = paginate(&names, &page)?;
    let namespaces: Vec<Vec<&str>> = names.iter().map(|n| namespace_levels(n)).collect();
    Ok(Json(json!({"namespaces": namespaces, "next-page-token": next})).into_response())
}

async fn load_namespace(
    State(state): State<Shared>,
    method: Method,
    Path(namespace): Path<String>,
) -> Answer {
    let namespace = namespace_name(&namespace);
    let Some(properties) = state.catalog.namespace_properties(&namespace).await? else {
        return Err(RestError::no_namespace(&namespace));
    };
    if method == Method::HEAD {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Ok(
        Json(json!({"namespace": namespace_levels(&namespace), "properties": properties}))
            .into_response(),
    )
}

async fn list_tables(
    State(state): State<Shared>,
    Path(namespace): Path<String>,
    Query(page): Query<Page>,
) -> Answer {
    let namespace = namespace_name(&namespace);
    if !state.catalog.namespace_exists(&namespace).await? {
        return Err(RestError::no_namespace(&namespace));
    }
    let names = state.catalog.table_names(&namespace, None).await?;
    let (names, next) = paginate(&names, &page)?;
    let identifiers: Vec<Value> = names
        .iter()
        .map(|name| json!({"namespace": namespace_levels(&namespace), "name": name}))
        .collect();
    Ok(Json(json!({"identifiers": identifiers, "next-page-token": next})).into_response())
}

async fn load_table(
    State(state): State<Shared>,
    method: Method,
    Path((namespace, table)): Path<(String, String)>,
) -> Answer {
    let namespace = namespace_name(&namespace);
    let name = ident(&namespace, &table);
    // The answer kept for the metadata file the catalog names now, if any: one query, no file read.
    let current = state.catalog.current_location(&name).await?;
    if let Some(body) = current
        .as_deref()
        .and_then(|location| state.loaded.get(&name, location))
    {
        if method == Method::HEAD {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        return Ok(json_body(body));
    }
    let Some(found) = state.catalog.load(&name).await? else {
        if !state.catalog.namespace_exists(&namespace).await? {
            return Err(RestError::no_namespace(&namespace));
        }
        let mut missing = no_table(&namespace, &table);
        missing.message.push_str(VIEW_MODELS_HINT);
        return Err(missing);
    };
    if method == Method::HEAD {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let answer = json!({
        "metadata-location": found.metadata_location(),
        "metadata": found.metadata(),
        "config": state.overrides,
    });
    // A `Value` always serialises: its map keys are strings and its numbers finite.
    let body = Bytes::from(serde_json::to_vec(&answer).expect("a JSON value serialises"));
    if let Some(location) = found.metadata_location() {
        state.loaded.put(name, location.to_string(), body.clone());
    }
    Ok(json_body(body))
}

/// A JSON answer already encoded.
fn json_body(body: Bytes) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// lake keeps no Iceberg views: every namespace lists none.
async fn list_views(State(state): State<Shared>, Path(namespace): Path<String>) -> Answer {
    let namespace = namespace_name(&namespace);
    if !state.catalog.namespace_exists(&namespace).await? {
        return Err(RestError::no_namespace(&namespace));
    }
    Ok(Json(json!({"identifiers": [], "next-page-token": null})).into_response())
}

async fn load_view(Path((namespace, view)): Path<(String, String)>) -> RestError {
    RestError::new(
        StatusCode::NOT_FOUND,
        "NoSuchViewException",
        format!(
            "View does not exist: {}.{view} (lake keeps no Iceberg views)",
            namespace_name(&namespace)
        ),
    )
}

/// What a write does, for deciding whether it is allowed where it lands.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Write {
    /// New snapshots or metadata for a table that exists (its location unchanged).
    Commit,
    /// Creates, drops, renames, registers, relocations, namespace changes: the names themselves.
    Names,
}

/// Whether `namespace` is one of lake's: a model schema, one of its environments (`<schema>__<env>`) or the
/// versions' `lake__<schema>`.
fn lake_owns(state: &RestState, namespace: &str) -> bool {
    state.lake_schemas.iter().any(|schema| {
        namespace == schema
            || namespace == format!("lake__{schema}")
            || namespace.starts_with(&format!("{schema}__"))
    })
}

/// Why a write to `namespace` is refused, if it is: every write needs `--allow-writes`; in lake's own
/// namespaces only commits to existing tables are accepted, because names there change only through
/// `lake plan`.
fn refuse_write(state: &RestState, namespace: &str, write: Write) -> Option<RestError> {
    if !state.allow_writes {
        return Some(RestError::new(
            StatusCode::FORBIDDEN,
            "ForbiddenException",
            "lake serve is read-only; start it with --allow-writes to accept creates and commits",
        ));
    }
    (write == Write::Names && lake_owns(state, namespace)).then(|| {
        RestError::new(
            StatusCode::FORBIDDEN,
            "ForbiddenException",
            format!(
                "namespace {namespace} belongs to lake: its tables are created, renamed and dropped by \
                 `lake plan` (commits to existing tables are accepted with --allow-writes)"
            ),
        )
    })
}

/// A name a client may give a new namespace or table: letters, digits and underscores, so it can never
/// reach outside the warehouse as part of a path.
fn check_name(name: &str, what: &str) -> std::result::Result<(), RestError> {
    let valid = !name.is_empty()
        && name.len() <= 255
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(RestError::new(
            StatusCode::BAD_REQUEST,
            "BadRequestException",
            format!("invalid {what} name `{name}`: use letters, digits and underscores"),
        ))
    }
}

/// A JSON request body, or a spec-shaped 400 saying what is wrong with it.
fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> std::result::Result<T, RestError> {
    serde_json::from_slice(body).map_err(|e| {
        RestError::new(
            StatusCode::BAD_REQUEST,
            "BadRequestException",
            format!("malformed request body: {e}"),
        )
    })
}

fn bad_request(message: impl Into<String>) -> RestError {
    RestError::new(StatusCode::BAD_REQUEST, "BadRequestException", message)
}

/// Why a model a user sees elsewhere may be missing here: VIEW models are DuckDB views, not Iceberg tables.
const VIEW_MODELS_HINT: &str = " (a VIEW model is a DuckDB view, not an Iceberg table: read it through the \
PostgreSQL endpoint, `lake serve --pg-port`, or `lake fetchdf`)";

fn no_table(namespace: &str, table: &str) -> RestError {
    RestError::new(
        StatusCode::NOT_FOUND,
        "NoSuchTableException",
        format!("Table does not exist: {namespace}.{table}"),
    )
}

fn table_exists(namespace: &str, table: &str) -> RestError {
    RestError::new(
        StatusCode::CONFLICT,
        "AlreadyExistsException",
        format!("Table already exists: {namespace}.{table}"),
    )
}

/// The 400 for a location another engine may not use (outside the warehouse, or over another table's files).
async fn check_location(
    state: &RestState,
    table: &iceberg::TableIdent,
    location: &str,
) -> std::result::Result<(), RestError> {
    match state.catalog.refuse_location(table, location).await? {
        Some(reason) => Err(bad_request(reason)),
        None => Ok(()),
    }
}

/// `{"namespace": [...], "name": ...}` in request bodies.
#[derive(Debug, Deserialize)]
struct TableIdentifier {
    namespace: Vec<String>,
    name: String,
}

impl TableIdentifier {
    fn namespace(&self) -> String {
        self.namespace.join(".")
    }
}

#[derive(Debug, Deserialize)]
struct CreateNamespaceRequest {
    namespace: Vec<String>,
    #[serde(default)]
    properties: HashMap<String, String>,
}

async fn create_namespace(State(state): State<Shared>, body: Bytes) -> Answer {
    let request: CreateNamespaceRequest = parse_body(&body)?;
    let [namespace] = request.namespace.as_slice() else {
        return Err(bad_request("lake's namespaces have exactly one level"));
    };
    check_name(namespace, "namespace")?;
    if let Some(refused) = refuse_write(&state, namespace, Write::Names) {
        return Err(refused);
    }
    if state.catalog.namespace_exists(namespace).await? {
        return Err(RestError::new(
            StatusCode::CONFLICT,
            "AlreadyExistsException",
            format!("Namespace already exists: {namespace}"),
        ));
    }
    state
        .catalog
        .create_namespace(namespace, request.properties.clone())
        .await?;
    Ok(Json(json!({"namespace": [namespace], "properties": request.properties})).into_response())
}

async fn drop_namespace(State(state): State<Shared>, Path(namespace): Path<String>) -> Answer {
    let namespace = namespace_name(&namespace);
    if let Some(refused) = refuse_write(&state, &namespace, Write::Names) {
        return Err(refused);
    }
    match state.catalog.drop_namespace(&namespace).await? {
        Ok(()) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(NamespaceDropRefusal::NoSuchNamespace) => Err(RestError::no_namespace(&namespace)),
        Err(NamespaceDropRefusal::NotEmpty) => Err(RestError::new(
            StatusCode::CONFLICT,
            "NamespaceNotEmptyException",
            format!("Namespace {namespace} is not empty: drop its tables first"),
        )),
    }
}

#[derive(Debug, Deserialize)]
struct UpdatePropertiesRequest {
    #[serde(default)]
    removals: Vec<String>,
    #[serde(default)]
    updates: HashMap<String, String>,
}

async fn update_namespace_properties(
    State(state): State<Shared>,
    Path(namespace): Path<String>,
    body: Bytes,
) -> Answer {
    let namespace = namespace_name(&namespace);
    if let Some(refused) = refuse_write(&state, &namespace, Write::Names) {
        return Err(refused);
    }
    let request: UpdatePropertiesRequest = parse_body(&body)?;
    let mut both: Vec<&String> = request
        .removals
        .iter()
        .filter(|key| request.updates.contains_key(*key))
        .collect();
    both.sort();
    if !both.is_empty() {
        return Err(RestError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "UnprocessableEntityException",
            format!("properties both removed and updated: {both:?}"),
        ));
    }
    if !state.catalog.namespace_exists(&namespace).await? {
        return Err(RestError::no_namespace(&namespace));
    }
    let changes = state
        .catalog
        .update_namespace_properties(&namespace, &request.removals, &request.updates)
        .await?;
    Ok(Json(json!({
        "updated": changes.updated,
        "removed": changes.removed,
        "missing": changes.missing,
    }))
    .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct CreateTableRequest {
    name: String,
    location: Option<String>,
    schema: Schema,
    partition_spec: Option<UnboundPartitionSpec>,
    write_order: Option<SortOrder>,
    #[serde(default)]
    stage_create: bool,
    #[serde(default)]
    properties: HashMap<String, String>,
}

async fn create_table(
    State(state): State<Shared>,
    Path(namespace): Path<String>,
    body: Bytes,
) -> Answer {
    let namespace = namespace_name(&namespace);
    if let Some(refused) = refuse_write(&state, &namespace, Write::Names) {
        return Err(refused);
    }
    let request: CreateTableRequest = parse_body(&body)?;
    check_name(&request.name, "table")?;
    if !state.catalog.namespace_exists(&namespace).await? {
        return Err(RestError::no_namespace(&namespace));
    }
    let table = ident(&namespace, &request.name);
    if state.catalog.load(&table).await?.is_some() {
        return Err(table_exists(&namespace, &request.name));
    }
    // Every new table gets an explicit location the server has checked: the namespace's `location` property
    // is not followed, so no client can steer files outside the warehouse.
    let location = match request.location {
        Some(location) => {
            check_location(&state, &table, &location).await?;
            location.trim_end_matches('/').to_string()
        }
        None => {
            let default = state.catalog.default_location(&table);
            // The folder of a table dropped without purging or renamed away is not reused.
            if state
                .catalog
                .refuse_location(&table, &default)
                .await?
                .is_some()
            {
                format!("{default}-{}", uuid::Uuid::now_v7().simple())
            } else {
                default
            }
        }
    };
    let creation = TableCreation {
        name: request.name,
        location: Some(location),
        schema: request.schema,
        partition_spec: request.partition_spec,
        sort_order: request.write_order,
        properties: request.properties,
        format_version: FormatVersion::V2,
    };
    if request.stage_create {
        // Nothing is written: the client's commit with `assert-create` creates the table.
        let metadata = state
            .catalog
            .stage(creation)
            .map_err(|e| bad_request(e.message()))?;
        return Ok(Json(json!({
            "metadata-location": null,
            "metadata": metadata,
            "config": state.overrides,
        }))
        .into_response());
    }
    let created = state.catalog.create(&table, creation).await?;
    Ok(Json(json!({
        "metadata-location": created.metadata_location(),
        "metadata": created.metadata(),
        "config": state.overrides,
    }))
    .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RegisterTableRequest {
    name: String,
    metadata_location: String,
    #[serde(default)]
    overwrite: bool,
}

async fn register_table(
    State(state): State<Shared>,
    Path(namespace): Path<String>,
    body: Bytes,
) -> Answer {
    let namespace = namespace_name(&namespace);
    if let Some(refused) = refuse_write(&state, &namespace, Write::Names) {
        return Err(refused);
    }
    let request: RegisterTableRequest = parse_body(&body)?;
    check_name(&request.name, "table")?;
    if !state.catalog.namespace_exists(&namespace).await? {
        return Err(RestError::no_namespace(&namespace));
    }
    let table = ident(&namespace, &request.name);
    let Some((table_location, _)) = request.metadata_location.rsplit_once("/metadata/") else {
        return Err(bad_request(
            "metadata-location must name a file in a table's metadata/ folder",
        ));
    };
    check_location(&state, &table, table_location).await?;
    match state
        .catalog
        .register(&table, &request.metadata_location, request.overwrite)
        .await?
    {
        Ok(metadata) => Ok(Json(json!({
            "metadata-location": request.metadata_location,
            "metadata": metadata,
            "config": state.overrides,
        }))
        .into_response()),
        Err(RegisterRefusal::AlreadyExists) => Err(table_exists(&namespace, &request.name)),
        Err(RegisterRefusal::Unreadable(reason)) => Err(bad_request(format!(
            "{} is not readable Iceberg table metadata: {reason}",
            request.metadata_location
        ))),
    }
}

#[derive(Debug, Deserialize)]
struct CommitTableRequest {
    #[serde(default)]
    requirements: Vec<TableRequirement>,
    #[serde(default)]
    updates: Vec<TableUpdate>,
}

/// Checks that a change may be written where it lands, then the locations it moves its table to.
async fn allow_change(
    state: &RestState,
    change: &TableChange,
) -> std::result::Result<(), RestError> {
    let namespace = change.table.namespace().join(".");
    let mut locations = change.new_locations().peekable();
    let write = if change.creates() || locations.peek().is_some() {
        Write::Names
    } else {
        Write::Commit
    };
    if let Some(refused) = refuse_write(state, &namespace, write) {
        return Err(refused);
    }
    if change.creates() {
        check_name(change.table.name(), "table")?;
    }
    for location in locations {
        check_location(state, &change.table, location).await?;
    }
    Ok(())
}

/// The spec's answer for a refused commit.
fn commit_refused(refusal: CommitRefusal) -> RestError {
    match refusal {
        CommitRefusal::NoSuchTable(table) => no_table(&table.namespace().join("."), table.name()),
        CommitRefusal::Conflict(message) => {
            RestError::new(StatusCode::CONFLICT, "CommitFailedException", message)
        }
        CommitRefusal::Invalid(message) => bad_request(message),
    }
}

async fn commit_table(
    State(state): State<Shared>,
    Path((namespace, table)): Path<(String, String)>,
    body: Bytes,
) -> Answer {
    let namespace = namespace_name(&namespace);
    if let Some(refused) = refuse_write(&state, &namespace, Write::Commit) {
        return Err(refused);
    }
    let request: CommitTableRequest = parse_body(&body)?;
    let change = TableChange {
        table: ident(&namespace, &table),
        requirements: request.requirements,
        updates: request.updates,
    };
    allow_change(&state, &change).await?;
    let mut committed: Vec<Committed> = state
        .catalog
        .commit(vec![change])
        .await?
        .map_err(commit_refused)?;
    let Some(done) = committed.pop() else {
        return Err(RestError::from(crate::error::LakeError::Bug(
            "a one-table commit answered no table".into(),
        )));
    };
    Ok(
        Json(json!({"metadata-location": done.metadata_location, "metadata": done.metadata}))
            .into_response(),
    )
}

#[derive(Debug, Deserialize)]
struct TransactionTableChange {
    identifier: TableIdentifier,
    #[serde(default)]
    requirements: Vec<TableRequirement>,
    #[serde(default)]
    updates: Vec<TableUpdate>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct CommitTransactionRequest {
    table_changes: Vec<TransactionTableChange>,
}

/// `POST /v1/transactions/commit`: every table's change lands, or none does.
async fn commit_transaction(State(state): State<Shared>, body: Bytes) -> Answer {
    let request: CommitTransactionRequest = parse_body(&body)?;
    if request.table_changes.is_empty() {
        return Err(bad_request("a transaction needs at least one table change"));
    }
    let mut changes = Vec::with_capacity(request.table_changes.len());
    for change in request.table_changes {
        let change = TableChange {
            table: ident(&change.identifier.namespace(), &change.identifier.name),
            requirements: change.requirements,
            updates: change.updates,
        };
        allow_change(&state, &change).await?;
        changes.push(change);
    }
    state
        .catalog
        .commit(changes)
        .await?
        .map_err(commit_refused)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize)]
struct DropOptions {
    /// Text, not a bool: Python clients send `True`/`False`, Java ones `true`/`false`.
    #[serde(rename = "purgeRequested")]
    purge_requested: Option<String>,
}

impl DropOptions {
    fn purge(&self) -> bool {
        self.purge_requested
            .as_deref()
            .is_some_and(|value| value.eq_ignore_ascii_case("true"))
    }
}

async fn drop_table(
    State(state): State<Shared>,
    Path((namespace, table)): Path<(String, String)>,
    Query(options): Query<DropOptions>,
) -> Answer {
    let namespace = namespace_name(&namespace);
    if let Some(refused) = refuse_write(&state, &namespace, Write::Names) {
        return Err(refused);
    }
    let identifier = ident(&namespace, &table);
    match state
        .catalog
        .drop_table(&identifier, options.purge())
        .await?
    {
        Dropped::NoSuchTable => Err(no_table(&namespace, &table)),
        Dropped::Dropped => Ok(StatusCode::NO_CONTENT.into_response()),
        Dropped::FilesKept { location } => {
            eprintln!(
                "lake serve: {identifier} was dropped without purging: another table still uses files under {location}"
            );
            Ok(StatusCode::NO_CONTENT.into_response())
        }
    }
}

#[derive(Debug, Deserialize)]
struct RenameTableRequest {
    source: TableIdentifier,
    destination: TableIdentifier,
}

async fn rename_table(State(state): State<Shared>, body: Bytes) -> Answer {
    let request: RenameTableRequest = parse_body(&body)?;
    let (from, to) = (request.source.namespace(), request.destination.namespace());
    for namespace in [&from, &to] {
        if let Some(refused) = refuse_write(&state, namespace, Write::Names) {
            return Err(refused);
        }
    }
    check_name(&request.destination.name, "table")?;
    let source = ident(&from, &request.source.name);
    let destination = ident(&to, &request.destination.name);
    match state.catalog.rename(&source, &destination).await? {
        Ok(()) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(RenameRefusal::NoSuchTable) => Err(no_table(&from, &request.source.name)),
        Err(RenameRefusal::NoSuchNamespace) => Err(RestError::no_namespace(&to)),
        Err(RenameRefusal::AlreadyExists) => Err(table_exists(&to, &request.destination.name)),
    }
}

/// Scan and commit reports (Java clients send them after each scan): accepted and not kept.
async fn metrics_report() -> StatusCode {
    StatusCode::NO_CONTENT
}

/// Methods this server does not offer on an endpoint (view writes, methods the spec does not define).
async fn not_offered(method: Method, request: Request) -> RestError {
    RestError::new(
        StatusCode::NOT_ACCEPTABLE,
        "UnsupportedOperationException",
        format!(
            "{method} {} is not supported by lake serve (it keeps no Iceberg views)",
            request.uri().path()
        ),
    )
}

async fn unknown_endpoint(method: Method, request: Request) -> RestError {
    RestError::new(
        StatusCode::NOT_FOUND,
        "NotFoundException",
        format!("no endpoint {method} {}", request.uri().path()),
    )
}

/// Equal-length byte strings compared in time that does not depend on where they differ.
fn same_secret(given: &str, expected: &Secret) -> bool {
    let (a, b) = (given.as_bytes(), expected.expose().as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// With a token configured, refuses requests that do not carry it (401 `NotAuthorizedException`). The
/// health check and the token exchange itself are open.
async fn authenticate(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let Some(token) = &state.token else {
        return next.run(request).await;
    };
    let path = request.uri().path();
    if path == "/healthz" || path == "/v1/oauth/tokens" {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    match presented {
        Some(given) if same_secret(given, token) => next.run(request).await,
        _ => RestError::new(
            StatusCode::UNAUTHORIZED,
            "NotAuthorizedException",
            "this server requires a bearer token (Authorization: Bearer …) or OAuth2 client credentials",
        )
        .into_response(),
    }
}

/// The OAuth2 client-credentials request pyiceberg and DuckDB send (`credential` / `CLIENT_SECRET`).
#[derive(Debug, Deserialize)]
struct TokenRequest {
    grant_type: Option<String>,
    client_secret: Option<String>,
}

/// `POST /v1/oauth/tokens`: exchanges the configured secret for the bearer token (the same value).
async fn oauth_tokens(
    State(state): State<Shared>,
    headers: axum::http::HeaderMap,
    Form(request): Form<TokenRequest>,
) -> Response {
    let oauth_error = |status: StatusCode, error: &str, description: &str| {
        (
            status,
            Json(json!({"error": error, "error_description": description})),
        )
            .into_response()
    };
    let Some(token) = &state.token else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "this server has no authentication (it was started without --token-env); call it without credentials",
        );
    };
    if request.grant_type.as_deref() != Some("client_credentials") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only grant_type=client_credentials is supported",
        );
    }
    let secret = basic_credentials(&headers).map(|(_, secret)| secret);
    match secret.as_deref().or(request.client_secret.as_deref()) {
        Some(secret) if same_secret(secret, token) => Json(json!({
            "access_token": token.expose(),
            "token_type": "bearer",
            "expires_in": 86400,
            "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
        }))
        .into_response(),
        _ => oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "the client secret is not the one this server was started with",
        ),
    }
}

/// The client id and secret of an `Authorization: Basic` header, as OAuth2 clients send them (RFC 6749 2.3.1:
/// each form-encoded, joined by `:`, then base64). `None` for any other header or a malformed one.
fn basic_credentials(headers: &axum::http::HeaderMap) -> Option<(String, String)> {
    use base64::Engine;
    let encoded = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let form_decode = |part: &str| {
        percent_encoding::percent_decode_str(&part.replace('+', " "))
            .decode_utf8()
            .ok()
            .map(|decoded| decoded.into_owned())
    };
    Some((form_decode(id)?, form_decode(secret)?))
}

/// A body announced larger than the limit gets the spec's error shape (413) before anything reads it; the body
/// limit layer still stops one that grows past the limit without announcing its length.
async fn refuse_oversized_bodies(request: Request, next: Next) -> Response {
    let announced = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if announced.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        return RestError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "BadRequestException",
            format!("request bodies are limited to {MAX_BODY_BYTES} bytes"),
        )
        .into_response();
    }
    next.run(request).await
}

/// One line per request on stderr: method, path (no query string, which could hold tokens), status, time.
async fn access_log(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    eprintln!(
        "{method} {path} {} {:.1}ms",
        response.status().as_u16(),
        started.elapsed().as_secs_f64() * 1000.0
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_follow_their_tokens() {
        let items: Vec<u32> = (0..5).collect();
        let page = |token: Option<&str>, size: Option<usize>| Page {
            page_token: token.map(String::from),
            page_size: size,
            parent: None,
        };
        assert_eq!(
            paginate(&items, &page(None, Some(2))).unwrap(),
            (vec![0, 1], Some("2".into()))
        );
        assert_eq!(
            paginate(&items, &page(Some("4"), Some(2))).unwrap(),
            (vec![4], None)
        );
        assert_eq!(
            paginate(&items, &page(Some("9"), None)).unwrap(),
            (vec![], None)
        );
        assert!(paginate(&items, &page(Some("x"), None)).is_err());
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let mut headers = axum::http::HeaderMap::new();
        // base64("lake:s%3Ac+t") — the secret `s:c t`, form-encoded as RFC 6749 asks.
        headers.insert(
            axum::http::header::AUTHORIZATION,
            "Basic bGFrZTpzJTNBYyt0".parse().expect("a header value"),
        );
        assert_eq!(
            basic_credentials(&headers),
            Some(("lake".to_string(), "s:c t".to_string()))
        );
        headers.insert(
            axum::http::header::AUTHORIZATION,
            "Basic !!!".parse().expect("a header value"),
        );
        assert_eq!(basic_credentials(&headers), None);
    }

    #[test]
    fn multi_level_namespaces_join_with_dots() {
        assert_eq!(namespace_name("demo"), "demo");
        assert_eq!(namespace_name("a\u{1f}b"), "a.b");
    }
}
