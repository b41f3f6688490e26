//! How a `lake serve` request (flags naming environment variables and files) becomes checked `ServeOptions`:
//! the token and users read from the environment, the password method, TLS, and what the server announces.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::ServeOptions;
use super::pg::auth::{Method, Users};
use super::pg::{EngineLimits, PgOptions, tls_acceptor};
use crate::config::Secret;
use crate::error::{LakeError, Result};

/// What a caller asks of `lake serve`, as given: secrets are named by environment variable, never passed.
#[derive(Debug, Clone, Default)]
pub struct ServeRequest {
    pub host: String,
    /// The REST catalog's port, or `None` for no REST catalog.
    pub rest_port: Option<u16>,
    /// The environment variable holding the bearer token clients must present.
    pub token_env: Option<String>,
    pub allow_writes: bool,
    pub pg_port: Option<u16>,
    pub statement_timeout: Option<Duration>,
    pub max_connections: usize,
    pub max_concurrent_queries: usize,
    /// How long a query waits for a free engine session before it fails with 53000.
    pub query_wait_timeout: Duration,
    pub memory_limit: Option<String>,
    /// The environment variable holding `user:password` pairs for the PostgreSQL endpoint.
    pub pg_users_env: Option<String>,
    /// `scram-sha-256`, `md5`, `password` or `trust`; by default SCRAM with users, else trust.
    pub pg_auth: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Serve beyond this machine without authentication (`--allow-unauthenticated`), read-only.
    pub allow_unauthenticated: bool,
}

/// Whether `host` can only be reached from this machine: a loopback address or `localhost`. Any other
/// name may resolve to an address others reach, so it counts as exposed.
pub fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => bare.eq_ignore_ascii_case("localhost"),
    }
}

impl ServeRequest {
    /// The options to serve with, refusing combinations that would expose passwords or ask for users nobody
    /// configured.
    pub fn resolve(&self) -> Result<ServeOptions> {
        let token = self
            .token_env
            .as_deref()
            .map(|name| {
                let hint = format!("export {name}=… with the token clients must present");
                non_empty_env(name, "--token-env", hint).map(Secret::new)
            })
            .transpose()?;
        let pg = self.pg_port.map(|port| self.pg_options(port)).transpose()?;
        let unauthenticated: Vec<&str> = [
            (self.rest_port.is_some() && token.is_none())
                .then_some("the REST catalog (--token-env)"),
            pg.as_ref()
                .filter(|pg| pg.auth == Method::Trust)
                .map(|_| "PostgreSQL (--pg-users-env)"),
        ]
        .into_iter()
        .flatten()
        .collect();
        self.check_exposure(&unauthenticated)?;
        Ok(ServeOptions {
            host: self.host.clone(),
            port: self.rest_port,
            token,
            allow_writes: self.allow_writes,
            pg,
        })
    }

    fn pg_options(&self, port: u16) -> Result<PgOptions> {
        let users = self
            .pg_users_env
            .as_deref()
            .map(|name| {
                let value = non_empty_env(
                    name,
                    "--pg-users-env",
                    format!("export {name}=user:password"),
                )?;
                Users::parse(&value, &format!("--pg-users-env {name}"))
            })
            .transpose()?;
        let auth = match (self.pg_auth.as_deref(), &users) {
            (Some(text), _) => Method::parse(text)?,
            (None, Some(_)) => Method::ScramSha256,
            (None, None) => Method::Trust,
        };
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(tls_acceptor(cert, key)?),
            _ => None,
        };
        check_password_policy(auth, users.is_some(), tls.is_some())?;
        Ok(PgOptions {
            auth,
            users,
            tls,
            port,
            allow_writes: self.allow_writes,
            // As in PostgreSQL, a timeout of 0 means none.
            statement_timeout: self.statement_timeout.filter(|limit| !limit.is_zero()),
            max_connections: self.max_connections,
            limits: EngineLimits {
                concurrent_queries: self.max_concurrent_queries.max(1),
                memory_limit: self.memory_limit.clone(),
                query_wait: self.query_wait_timeout,
            },
        })
    }

    /// Off loopback, every endpoint authenticates unless the user says otherwise
    /// (`--allow-unauthenticated`), and writes always need authentication. `unauthenticated` names the
    /// endpoints served without, each with the flag that adds it.
    fn check_exposure(&self, unauthenticated: &[&str]) -> Result<()> {
        if is_loopback(&self.host) || unauthenticated.is_empty() {
            return Ok(());
        }
        let endpoints = unauthenticated.join(" and ");
        if self.allow_writes {
            return Err(LakeError::Usage(
                format!(
                    "--allow-writes on {} would let anyone who reaches it write: {endpoints} would have no authentication",
                    self.host
                ),
                Some("add the authentication named in brackets, or serve on loopback (the default --host)".into()),
            ));
        }
        if self.allow_unauthenticated {
            return Ok(());
        }
        Err(LakeError::Usage(
            format!(
                "--host {} serves beyond this machine, and {endpoints} would have no authentication",
                self.host
            ),
            Some("add the authentication named in brackets, or --allow-unauthenticated to serve read-only to anyone who can reach the address".into()),
        ))
    }
}

/// Cleartext passwords only over TLS; a password method only with users to check them against.
fn check_password_policy(auth: Method, has_users: bool, has_tls: bool) -> Result<()> {
    if auth == Method::Cleartext && !has_tls {
        return Err(LakeError::Usage(
            "--pg-auth password sends passwords in clear text, which needs TLS".into(),
            Some("add --tls-cert and --tls-key, or use --pg-auth scram-sha-256".into()),
        ));
    }
    if auth != Method::Trust && !has_users {
        return Err(LakeError::Usage(
            "--pg-auth asks for passwords, but no users are configured".into(),
            Some("add --pg-users-env NAME with NAME=user:password".into()),
        ));
    }
    Ok(())
}

/// The value of environment variable `name`, which `flag` requires to be set and not empty.
fn non_empty_env(name: &str, flag: &str, hint: String) -> Result<String> {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => Ok(value),
        _ => Err(LakeError::Usage(
            format!("{flag} {name}: the environment variable `{name}` is not set"),
            Some(hint),
        )),
    }
}

impl ServeOptions {
    /// The line announcing the REST catalog at `address`: its access and authentication, never a secret.
    pub fn describe_rest(&self, address: SocketAddr) -> String {
        let access = if self.allow_writes {
            "writes allowed; names in lake's namespaces change only through `lake plan`"
        } else {
            "read-only"
        };
        format!(
            "Serving the Iceberg REST catalog at http://{address} ({access}, {}; {}); Ctrl-C stops it.",
            self.token_label(),
            self.audience()
        )
    }

    /// The line announcing the PostgreSQL endpoint at `address`, with the psql command that connects.
    pub fn describe_pg(&self, address: SocketAddr) -> String {
        let access = if self.allow_writes {
            "writes run in memory only"
        } else {
            "read-only"
        };
        let (auth, tls) = match &self.pg {
            Some(pg) => (
                pg.auth.describe(),
                if pg.tls.is_some() {
                    ", TLS offered"
                } else {
                    ""
                },
            ),
            None => (Method::Trust.describe(), ""),
        };
        format!(
            "Serving PostgreSQL at {address} ({access}, {auth}{tls}; {}): psql -h {} -p {} -d prod",
            self.audience(),
            address.ip(),
            address.port()
        )
    }

    /// Who can connect, as far as the address decides.
    fn audience(&self) -> &'static str {
        if is_loopback(&self.host) {
            "this machine only"
        } else {
            "open to other machines"
        }
    }

    fn token_label(&self) -> &'static str {
        if self.token.is_some() {
            "bearer token required"
        } else {
            "no authentication"
        }
    }
}

impl Method {
    /// How clients prove who they are, in words.
    pub fn describe(self) -> &'static str {
        match self {
            Method::Trust => "no authentication",
            Method::ScramSha256 => "SCRAM-SHA-256 passwords",
            Method::Md5 => "MD5 passwords",
            Method::Cleartext => "passwords over TLS",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleartext_passwords_need_tls_and_every_password_method_needs_users() {
        assert!(check_password_policy(Method::Cleartext, true, false).is_err());
        assert!(check_password_policy(Method::Cleartext, true, true).is_ok());
        assert!(check_password_policy(Method::Md5, false, true).is_err());
        assert!(check_password_policy(Method::Trust, false, false).is_ok());
    }

    #[test]
    fn an_unset_token_variable_is_a_usage_error_naming_it() {
        let request = ServeRequest {
            token_env: Some("LAKE_TEST_SURELY_UNSET_TOKEN".into()),
            ..Default::default()
        };
        let error = request.resolve().unwrap_err().to_string();
        assert!(error.contains("LAKE_TEST_SURELY_UNSET_TOKEN"), "{error}");
    }

    #[test]
    fn off_loopback_every_endpoint_authenticates_unless_told_and_writes_always_do() {
        let exposed = |host: &str, allow_writes: bool, allow_unauthenticated: bool| ServeRequest {
            host: host.into(),
            rest_port: Some(0),
            pg_port: Some(0),
            allow_writes,
            allow_unauthenticated,
            ..Default::default()
        };
        for host in ["127.0.0.1", "::1", "[::1]", "localhost"] {
            assert!(exposed(host, true, false).resolve().is_ok(), "{host}");
        }
        let refused = exposed("0.0.0.0", false, false).resolve().unwrap_err();
        let text = format!("{refused} {:?}", refused);
        assert!(
            text.contains("--host 0.0.0.0 serves beyond this machine"),
            "{text}"
        );
        assert!(
            text.contains("the REST catalog (--token-env) and PostgreSQL (--pg-users-env)"),
            "{text}"
        );
        assert!(exposed("0.0.0.0", false, true).resolve().is_ok());
        let writes = exposed("10.0.0.5", true, true)
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(writes.contains("--allow-writes on 10.0.0.5"), "{writes}");
        // A name that is not `localhost` may reach other machines.
        assert!(exposed("lake.example.com", false, false).resolve().is_err());
    }

    #[test]
    fn a_statement_timeout_of_zero_means_none_as_in_postgres() {
        let request = |seconds: u64| ServeRequest {
            host: "127.0.0.1".into(),
            pg_port: Some(0),
            statement_timeout: Some(Duration::from_secs(seconds)),
            ..Default::default()
        };
        let timeout = |seconds| {
            request(seconds)
                .resolve()
                .unwrap()
                .pg
                .unwrap()
                .statement_timeout
        };
        assert_eq!(timeout(0), None);
        assert_eq!(timeout(5), Some(Duration::from_secs(5)));
    }
}
