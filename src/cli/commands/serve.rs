//! `lake serve`: the Iceberg REST catalog and the PostgreSQL endpoint, until Ctrl-C.

use std::io::Write;
use std::process::ExitCode;

use crate::cli::args::{Cli, ServeArgs};
use crate::cli::printer::Printer;
use crate::error::Result;
use crate::serve::{Bound, ServeRequest};

pub(super) fn run(args: &ServeArgs, cli: &Cli, printer: &mut Printer) -> Result<ExitCode> {
    let ctx = super::load(cli, printer)?;
    let options = request(args).resolve()?;
    let json = args.json;
    crate::serve::serve(&ctx, &options, |bound| {
        if json {
            print_addresses(bound);
        }
        if let Some(address) = bound.rest {
            printer.status(options.describe_rest(address));
        }
        if let Some(address) = bound.pg {
            printer.status(options.describe_pg(address));
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

fn request(args: &ServeArgs) -> ServeRequest {
    ServeRequest {
        host: args.host.clone(),
        rest_port: (!args.no_rest).then_some(args.port),
        token_env: args.token_env.clone(),
        allow_writes: args.allow_writes,
        pg_port: args.pg_port,
        statement_timeout: args.statement_timeout,
        max_connections: args.max_connections,
        max_concurrent_queries: args.max_concurrent_queries,
        query_wait_timeout: args.query_wait_timeout,
        memory_limit: args.memory_limit.clone(),
        pg_users_env: args.pg_users_env.clone(),
        pg_auth: args.pg_auth.clone(),
        tls_cert: args.tls_cert.clone(),
        tls_key: args.tls_key.clone(),
        allow_unauthenticated: args.allow_unauthenticated,
    }
}

/// `--json`: the bound addresses as one line, flushed before the first request, which scripts wait for.
fn print_addresses(bound: Bound) {
    let mut line = serde_json::Map::new();
    if let Some(address) = bound.rest {
        line.insert("rest".into(), format!("http://{address}").into());
    }
    if let Some(address) = bound.pg {
        line.insert("pg".into(), address.to_string().into());
    }
    // `serve` calls this on the thread that holds the printer's stdout lock, so this locks again re-entrantly.
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{}", serde_json::Value::Object(line));
    let _ = out.flush();
}
