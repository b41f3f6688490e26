//! The ErrorResponse the endpoint sends for a failed statement: severity ERROR, a SQLSTATE and a message.

use pgwire::error::{ErrorInfo, PgWireError};

/// An `ErrorResponse` with a SQLSTATE.
pub fn error(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        code.into(),
        message.into(),
    )))
}
