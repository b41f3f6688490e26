//! `lake serve --pg-port`: the lakehouse over the PostgreSQL wire protocol (as pgduck_server offers DuckDB), so
//! psql, psycopg, JDBC and BI tools query every environment; the database name picks the environment.

mod ahead;
pub mod auth;
mod catalog;
mod copy;
mod encode;
mod guard;
pub mod lakehouse;
mod memo;
mod reply;
mod session;

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::auth::cleartext::CleartextPasswordAuthStartupHandler;
use pgwire::api::auth::md5pass::Md5PasswordAuthStartupHandler;
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::auth::sasl::SASLAuthStartupHandler;
use pgwire::api::auth::sasl::scram::ScramAuth;
use pgwire::api::auth::{DefaultServerParameterProvider, StartupHandler};
use pgwire::api::cancel::DefaultCancelHandler;
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::{ClientInfo, ConnectionManager, PgWireServerHandlers};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

pub use lakehouse::{EngineLimits, Lakehouse, RefreshReceiver, Refresher};

/// How the PostgreSQL endpoint serves.
#[derive(Clone)]
pub struct PgOptions {
    pub port: u16,
    /// Run INSERT, CREATE and other non-queries (on the server's private in-memory database; they never
    /// reach the lakehouse).
    pub allow_writes: bool,
    pub statement_timeout: Option<Duration>,
    /// Connections served at once; more are refused with SQLSTATE 53300.
    pub max_connections: usize,
    pub limits: EngineLimits,
    pub auth: auth::Method,
    /// The users who may connect, when `auth` asks for a password.
    pub users: Option<auth::Users>,
    /// TLS for clients that ask for it (`sslmode=require`); without it the server declines TLS.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptions")
            .field("port", &self.port)
            .field("allow_writes", &self.allow_writes)
            .field("auth", &self.auth)
            .field("users", &self.users)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// A TLS acceptor from a PEM certificate chain and private key.
pub fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> crate::error::Result<tokio_rustls::TlsAcceptor> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |path: &std::path::Path, what: &str, e: String| {
        crate::error::LakeError::Usage(
            format!("{}: {e}", path.display()),
            Some(format!("--tls-cert and --tls-key take PEM files: {what}")),
        )
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad(cert, "a certificate chain", e.to_string()))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad(cert, "a certificate chain", e.to_string()))?;
    let private =
        PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, "a private key", e.to_string()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(cert, "a certificate chain", e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| bad(cert, "a certificate matching the key", e.to_string()))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Trust startup: cancel keys are registered so cancel requests reach the connection's query.
struct Startup {
    manager: Arc<ConnectionManager>,
}

impl NoopStartupHandler for Startup {
    fn connection_manager(&self) -> Option<Arc<ConnectionManager>> {
        Some(self.manager.clone())
    }
}

fn fatal(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".into(),
        code.into(),
        message,
    )))
}

/// The authenticator of one connection (pgwire's keep per-connection state, so each connection gets its own).
enum Authenticator {
    Trust(Startup),
    Scram(SASLAuthStartupHandler<DefaultServerParameterProvider>),
    Md5(Md5PasswordAuthStartupHandler<auth::Source, DefaultServerParameterProvider>),
    Cleartext(CleartextPasswordAuthStartupHandler<auth::Source, DefaultServerParameterProvider>),
}

/// Wraps the authenticator so the database is checked first.
struct CheckedStartup {
    lakehouse: Arc<Lakehouse>,
    authenticator: Authenticator,
}

#[async_trait]
impl StartupHandler for CheckedStartup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let PgWireFrontendMessage::Startup(startup) = &message {
            if matches!(self.authenticator, Authenticator::Cleartext(_)) && !client.is_secure() {
                return Err(fatal(
                    "28000",
                    "password authentication requires TLS here: connect with sslmode=require"
                        .into(),
                ));
            }
            let database = startup
                .parameters
                .get("database")
                .cloned()
                .unwrap_or_else(|| session::DEFAULT_DATABASE.to_string());
            let environments = self
                .lakehouse
                .refresh()
                .await
                .map_err(|e| fatal("58000", format!("cannot read the lakehouse: {e}")))?;
            if !environments.contains(&database) {
                let known: Vec<&str> = environments.iter().map(String::as_str).collect();
                return Err(fatal(
                    "3D000",
                    format!(
                        "database \"{database}\" does not exist (lake environments: {})",
                        known.join(", ")
                    ),
                ));
            }
            // No database parameter means the default environment, as the queries will read it.
            if !startup.parameters.contains_key("database") {
                client
                    .metadata_mut()
                    .insert("database".into(), database.clone());
            }
        }
        match &self.authenticator {
            Authenticator::Trust(h) => h.on_startup(client, message).await,
            Authenticator::Scram(h) => h.on_startup(client, message).await,
            Authenticator::Md5(h) => h.on_startup(client, message).await,
            Authenticator::Cleartext(h) => h.on_startup(client, message).await,
        }
    }
}

struct Handlers {
    lakehouse: Arc<Lakehouse>,
    manager: Arc<ConnectionManager>,
    auth: auth::Method,
    users: Option<auth::Users>,
    queries: Arc<session::Handler>,
    cancel: Arc<DefaultCancelHandler>,
}

fn parameters() -> Arc<DefaultServerParameterProvider> {
    let mut parameters = DefaultServerParameterProvider::default();
    parameters.server_version = "16.6".into();
    Arc::new(parameters)
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.queries.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.queries.clone()
    }

    /// Called once per connection.
    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        let source = |method| auth::Source {
            users: self.users.clone().unwrap_or_else(auth::Users::none),
            method,
        };
        let manager = self.manager.clone();
        let authenticator = match self.auth {
            auth::Method::Trust => Authenticator::Trust(Startup { manager }),
            auth::Method::ScramSha256 => Authenticator::Scram(
                SASLAuthStartupHandler::new(parameters())
                    .with_scram(ScramAuth::new(Arc::new(source(auth::Method::ScramSha256))))
                    .with_connection_manager(manager),
            ),
            auth::Method::Md5 => Authenticator::Md5(
                Md5PasswordAuthStartupHandler::new(
                    Arc::new(source(auth::Method::Md5)),
                    parameters(),
                )
                .with_connection_manager(manager),
            ),
            auth::Method::Cleartext => Authenticator::Cleartext(
                CleartextPasswordAuthStartupHandler::new(
                    source(auth::Method::Cleartext),
                    DefaultServerParameterProvider::default(),
                )
                .with_connection_manager(manager),
            ),
        };
        Arc::new(CheckedStartup {
            lakehouse: self.lakehouse.clone(),
            authenticator,
        })
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        self.cancel.clone()
    }
}

/// Accepts connections on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    lakehouse: Arc<Lakehouse>,
    options: PgOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let manager = Arc::new(ConnectionManager::new());
    let handlers = Arc::new(Handlers {
        lakehouse: lakehouse.clone(),
        manager: manager.clone(),
        auth: options.auth,
        users: options.users.clone(),
        queries: Arc::new(session::Handler::new(
            lakehouse,
            options.allow_writes,
            options.statement_timeout,
        )),
        cancel: Arc::new(DefaultCancelHandler::new(manager)),
    });
    let connections = Arc::new(tokio::sync::Semaphore::new(options.max_connections.max(1)));
    tokio::pin!(shutdown);
    loop {
        let (socket, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                // A failed accept (e.g. out of file descriptors) leaves the listener usable.
                Err(e) => {
                    eprintln!("pg: accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        let _ = socket.set_nodelay(true);
        let handlers = handlers.clone();
        let tls = options.tls.clone();
        let auth = options.auth;
        match connections.clone().try_acquire_owned() {
            Ok(permit) => {
                tokio::spawn(async move {
                    if let Err(e) = guard::serve_connection(socket, tls, handlers, auth).await {
                        eprintln!("pg: connection from {peer} ended with an error: {e}");
                    }
                    drop(permit);
                });
            }
            Err(_) => {
                tokio::spawn(refuse_connection(socket));
            }
        }
    }
}

/// Answers a connection over the limit as PostgreSQL does: a FATAL 53300 in reply to the startup packet (after
/// declining TLS, so libpq's `sslmode=prefer` reads the error instead of failing the handshake).
async fn refuse_connection(mut socket: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const SSL_REQUEST: u32 = 80_877_103;
    const GSS_REQUEST: u32 = 80_877_104;
    for _ in 0..3 {
        let mut header = [0u8; 8];
        if socket.read_exact(&mut header).await.is_err() {
            return;
        }
        let length = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let code = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        if code == SSL_REQUEST || code == GSS_REQUEST {
            if socket.write_all(b"N").await.is_err() {
                return;
            }
            continue;
        }
        let mut rest = vec![0u8; length.saturating_sub(8).min(10_000)];
        let _ = socket.read_exact(&mut rest).await;
        break;
    }
    let message = "sorry, too many clients already";
    let mut body = Vec::new();
    for (field, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', "53300"),
        (b'M', message),
    ] {
        body.push(field);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut frame = vec![b'E'];
    frame.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    let _ = socket.write_all(&frame).await;
    let _ = socket.shutdown().await;
}
