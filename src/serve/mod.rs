//! `lake serve`: the project's lakehouse for other engines over the network: the Iceberg REST catalog protocol
//! over lake's own catalog (DuckDB, pyiceberg, Spark and Trino read every environment and, when allowed, write
//! tables of their own beside lake's), and the PostgreSQL wire protocol over DuckDB (`pg`) for psql, drivers and
//! BI tools.

pub mod pg;
mod policy;
pub mod rest;

pub use policy::ServeRequest;

use std::net::SocketAddr;

use crate::config::{Secret, StorageChoice};
use crate::error::{LakeError, Result};
use crate::ops::Context;

/// Where `lake serve` listens.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// An address of this machine; loopback unless the user chose otherwise.
    pub host: String,
    /// The REST catalog's port; `None` serves no REST catalog. 0 picks a free port (the bound address is
    /// handed to `on_ready`).
    pub port: Option<u16>,
    /// When set, every request but `/healthz` and the token exchange must carry it as a bearer token (or
    /// obtain it through OAuth2 client credentials with it as the client secret).
    pub token: Option<Secret>,
    /// Accept creates and commits from clients (never in the namespaces of lake's models).
    pub allow_writes: bool,
    /// The PostgreSQL endpoint, when asked for.
    pub pg: Option<pg::PgOptions>,
}

/// The addresses `lake serve` accepts connections on.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub rest: Option<SocketAddr>,
    pub pg: Option<SocketAddr>,
}

/// Serves until SIGINT or SIGTERM, calling `on_ready` with the bound addresses once connections are accepted.
/// Requests in flight finish before it returns. The PostgreSQL endpoint's views are refreshed on this thread,
/// which owns the project; the servers run on a thread of their own.
pub fn serve(ctx: &Context, options: &ServeOptions, on_ready: impl FnOnce(Bound)) -> Result<()> {
    let StorageChoice::Iceberg(settings) = &ctx.project.config.storage else {
        return Err(LakeError::unsupported(
            "`lake serve` with `storage: {type: duckdb}`",
            "lake serve reads Iceberg tables; remove the `storage` override from config.yaml to use Iceberg",
        ));
    };
    let mut lake_schemas: Vec<String> = ctx
        .project
        .models()
        .iter()
        .map(|m| m.model.meta.name.schema.clone())
        .collect();
    // The schemas `physical_schema_mapping` puts versions in are lake's too.
    lake_schemas.extend(ctx.project.config.physical_schemas.targets());
    lake_schemas.sort();
    lake_schemas.dedup();
    let reader = match &options.pg {
        Some(pg) => Some(pg::lakehouse::open(ctx, &pg.limits)?),
        None => None,
    };
    let (lakehouse, refresher) = match reader {
        Some((lakehouse, refresher, requests)) => (
            Some(std::sync::Arc::new(lakehouse)),
            Some((refresher, requests)),
        ),
        None => (None, None),
    };
    std::thread::scope(|scope| {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let servers = scope.spawn(move || {
            run_servers(settings, options, lake_schemas, lakehouse, move |bound| {
                let _ = ready_tx.send(bound);
            })
        });
        // `on_ready` runs here, on the caller's thread (which may hold stdout's lock); it never runs if the
        // servers failed to start, whose error `join` returns.
        if let Ok(bound) = ready_rx.recv() {
            on_ready(bound);
        }
        // The refresher returns once the servers have stopped and dropped their lakehouse.
        if let Some((refresher, requests)) = refresher {
            refresher.serve(requests);
        }
        servers.join().unwrap_or_else(|_| {
            Err(LakeError::io(
                "lake serve",
                std::io::Error::other("the server thread panicked"),
            ))
        })
    })
}

fn run_servers(
    settings: &crate::config::IcebergSettings,
    options: &ServeOptions,
    lake_schemas: Vec<String>,
    lakehouse: Option<std::sync::Arc<pg::Lakehouse>>,
    on_ready: impl FnOnce(Bound) + Send,
) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| LakeError::io("tokio runtime", e))?;
    runtime.block_on(async {
        let bind = |port: u16| async move {
            tokio::net::TcpListener::bind((options.host.as_str(), port))
                .await
                .map_err(|e| LakeError::io(format!("{}:{port}", options.host), e))
        };
        let local = |listener: &tokio::net::TcpListener| {
            listener
                .local_addr()
                .map_err(|e| LakeError::io("the listening socket", e))
        };
        let rest_listener = match options.port {
            Some(port) => Some(bind(port).await?),
            None => None,
        };
        let pg_listener = match (&options.pg, &lakehouse) {
            (Some(pg), Some(_)) => Some(bind(pg.port).await?),
            _ => None,
        };
        let router = match &rest_listener {
            Some(_) => {
                let catalog = crate::storage::iceberg::open_catalog(settings).await?;
                Some(rest::router(rest::RestState::new(
                    catalog,
                    settings,
                    options.token.clone(),
                    options.allow_writes,
                    lake_schemas,
                )))
            }
            None => None,
        };
        let bound = Bound {
            rest: rest_listener.as_ref().map(local).transpose()?,
            pg: pg_listener.as_ref().map(local).transpose()?,
        };
        on_ready(bound);
        let rest_server = async {
            match (rest_listener, router) {
                (Some(listener), Some(router)) => axum::serve(listener, router)
                    .with_graceful_shutdown(shutdown_requested())
                    .await
                    .map_err(|e| LakeError::io("serving HTTP", e)),
                _ => Ok(()),
            }
        };
        let pg_server = async {
            match (pg_listener, lakehouse, &options.pg) {
                (Some(listener), Some(lakehouse), Some(pg)) => {
                    pg::serve(listener, lakehouse, pg.clone(), shutdown_requested())
                        .await
                        .map_err(|e| LakeError::io("serving PostgreSQL", e))
                }
                _ => Ok(()),
            }
        };
        let (rest, pg) = tokio::join!(rest_server, pg_server);
        rest.and(pg)
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
