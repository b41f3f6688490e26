//! `lake serve`: the project's lakehouse for other engines over the network. Today: the Iceberg REST
//! catalog protocol over lake's own catalog, so DuckDB, pyiceberg, Spark and Trino read every environment
//! (and, when allowed, write tables of their own beside lake's).

pub mod rest;

use std::net::SocketAddr;

use crate::config::{Secret, StorageChoice};
use crate::error::{LakeError, Result};
use crate::ops::Context;

/// Where `lake serve` listens.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// An address of this machine; loopback unless the user chose otherwise.
    pub host: String,
    /// 0 picks a free port (the bound address is handed to `on_ready`).
    pub port: u16,
    /// When set, every request but `/healthz` and the token exchange must carry it as a bearer token (or
    /// obtain it through OAuth2 client credentials with it as the client secret).
    pub token: Option<Secret>,
    /// Accept creates and commits from clients (never in the namespaces of lake's models).
    pub allow_writes: bool,
}

/// Serves the project's Iceberg catalog until SIGINT or SIGTERM, calling `on_ready` with the bound address
/// once requests are accepted. Requests in flight finish before it returns.
pub fn serve(
    ctx: &Context,
    options: &ServeOptions,
    on_ready: impl FnOnce(SocketAddr),
) -> Result<()> {
    let StorageChoice::Iceberg(settings) = &ctx.project.config.storage else {
        return Err(LakeError::unsupported(
            "`lake serve` with `storage: {type: duckdb}`",
            "the REST catalog serves Iceberg tables; remove the `storage` override from config.yaml to use Iceberg",
        ));
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| LakeError::io("tokio runtime", e))?;
    runtime.block_on(async {
        let catalog = crate::storage::iceberg::open_catalog(settings).await?;
        let mut lake_schemas: Vec<String> = ctx
            .project
            .models
            .iter()
            .map(|m| m.meta.name.schema.clone())
            .collect();
        lake_schemas.sort();
        lake_schemas.dedup();
        let state = rest::RestState::new(
            catalog,
            settings,
            options.token.clone(),
            options.allow_writes,
            lake_schemas,
        );
        let router = rest::router(state);
        let listener = tokio::net::TcpListener::bind((options.host.as_str(), options.port))
            .await
            .map_err(|e| LakeError::io(format!("{}:{}", options.host, options.port), e))?;
        let address = listener
            .local_addr()
            .map_err(|e| LakeError::io("the listening socket", e))?;
        on_ready(address);
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown_requested())
            .await
            .map_err(|e| LakeError::io("serving HTTP", e))
    })
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM.
async fn shutdown_requested() {
    let interrupt = async {
        // Without a signal handler (no terminal), only SIGTERM stops the server.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
}
