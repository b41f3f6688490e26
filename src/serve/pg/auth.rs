//! Who may connect to the PostgreSQL endpoint: nobody is asked (trust, on loopback by default), or each user
//! proves a configured password by SCRAM-SHA-256, MD5 or, over TLS only, cleartext. Passwords are never printed.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use pgwire::api::auth::md5pass::hash_md5_password;
use pgwire::api::auth::sasl::scram::gen_salted_password;
use pgwire::api::auth::{AuthSource, LoginInfo, Password};
use pgwire::error::PgWireResult;

use crate::config::Secret;
use crate::error::{LakeError, Result};

/// How clients authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// No password (PostgreSQL's `trust`).
    Trust,
    ScramSha256,
    Md5,
    /// The password itself, which the server allows over TLS only.
    Cleartext,
}

impl Method {
    pub fn parse(text: &str) -> Result<Method> {
        match text {
            "trust" => Ok(Method::Trust),
            "scram-sha-256" => Ok(Method::ScramSha256),
            "md5" => Ok(Method::Md5),
            "password" => Ok(Method::Cleartext),
            other => Err(LakeError::Usage(
                format!("--pg-auth {other}: not an authentication method"),
                Some("choose scram-sha-256 (the default with users), md5, password (TLS only) or trust".into()),
            )),
        }
    }
}

/// SCRAM's iteration count, PostgreSQL's default.
const SCRAM_ITERATIONS: usize = 4096;

/// The configured users and their passwords, with what each method needs precomputed.
#[derive(Clone)]
pub struct Users {
    passwords: Arc<BTreeMap<String, Secret>>,
    scram: Arc<BTreeMap<String, Salted>>,
}

/// A salt drawn at start and the salted password SCRAM compares against.
#[derive(Clone)]
struct Salted {
    salt: Vec<u8>,
    password: Vec<u8>,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.passwords.keys()).finish()
    }
}

/// Bytes from the operating system's randomness.
fn random_bytes(n: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; n];
    rand::fill(bytes.as_mut_slice());
    bytes
}

impl Users {
    /// No users: every login fails (the authenticator still runs its whole exchange).
    pub fn none() -> Users {
        Users {
            passwords: Arc::new(BTreeMap::new()),
            scram: Arc::new(BTreeMap::new()),
        }
    }

    /// `user:password` pairs separated by commas or newlines (the value of an environment variable).
    pub fn parse(text: &str, source: &str) -> Result<Users> {
        let mut passwords = BTreeMap::new();
        for entry in text
            .split([',', '\n'])
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let Some((user, password)) = entry.split_once(':') else {
                return Err(LakeError::Usage(
                    format!("{source}: an entry has no `:` between user and password"),
                    Some("write `user:password`, several separated by commas".into()),
                ));
            };
            if user.is_empty() || password.is_empty() {
                return Err(LakeError::Usage(
                    format!("{source}: an entry has an empty user or password"),
                    Some("write `user:password`, several separated by commas".into()),
                ));
            }
            passwords.insert(user.to_string(), Secret::new(password));
        }
        if passwords.is_empty() {
            return Err(LakeError::Usage(
                format!("{source} names no user"),
                Some("write `user:password`, several separated by commas".into()),
            ));
        }
        let scram = passwords
            .iter()
            .map(|(user, password)| {
                let salt = random_bytes(16);
                let password = gen_salted_password(password.expose(), &salt, SCRAM_ITERATIONS);
                (user.clone(), Salted { salt, password })
            })
            .collect();
        Ok(Users {
            passwords: Arc::new(passwords),
            scram: Arc::new(scram),
        })
    }
}

/// The password an unknown user is checked against: random, so the exchange runs to its end and fails the same
/// way a wrong password does (the server does not reveal which users exist).
fn impossible() -> String {
    hex::encode(random_bytes(16))
}

/// The passwords in the shape each pgwire authenticator compares.
#[derive(Debug, Clone)]
pub struct Source {
    pub users: Users,
    pub method: Method,
}

#[async_trait]
impl AuthSource for Source {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let user = login.user().unwrap_or_default();
        let known = self.users.passwords.get(user);
        Ok(match self.method {
            Method::ScramSha256 => match self.users.scram.get(user) {
                Some(salted) => Password::new(Some(salted.salt.clone()), salted.password.clone()),
                None => {
                    let salt = random_bytes(16);
                    let salted = gen_salted_password(&impossible(), &salt, SCRAM_ITERATIONS);
                    Password::new(Some(salt), salted)
                }
            },
            Method::Md5 => {
                let salt = random_bytes(4);
                let password = known.map_or_else(impossible, |p| p.expose().to_string());
                Password::new(
                    Some(salt.clone()),
                    hash_md5_password(user, &password, &salt).into_bytes(),
                )
            }
            Method::Cleartext | Method::Trust => Password::new(
                None,
                known
                    .map_or_else(impossible, |p| p.expose().to_string())
                    .into_bytes(),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_parse_and_never_show_their_passwords() {
        let users = Users::parse("alice:s3cret, bob:hunter2", "LAKE_PG_USERS").expect("valid");
        let shown = format!("{users:?}");
        assert_eq!(shown, "[\"alice\", \"bob\"]");
        assert!(Users::parse("alice", "X").is_err());
        assert!(Users::parse("", "X").is_err());
        assert!(Users::parse(":pw", "X").is_err());
    }
}
