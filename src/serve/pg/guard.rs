//! Guards pgwire's decoding: every frontend message is checked against the protocol's layout before pgwire
//! reads it (pgwire 0.40's decoders index past a short message and panic), so a malformed message ends its
//! connection with a protocol error, never a panic. Also the connection loop that puts the guard in place.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use futures::{SinkExt, StreamExt};
use pgwire::api::query::ExtendedQueryHandler;
use pgwire::api::{ClientInfo, ErrorHandler, PgWireConnectionState, PgWireServerHandlers};
use pgwire::error::{ErrorInfo, PgWireError};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::server::{
    PgWireMessageServerCodec, negotiate_tls, process_error, process_message,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, FramedParts};

use super::auth::Method;

/// A client that has not finished logging in by then is dropped (pgwire's own bound).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// PostgreSQL's own limits: a startup packet of at most 10,000 bytes, any other message under 1 GiB.
const MAX_STARTUP: usize = 10_000;
const MAX_MESSAGE: usize = (1 << 30) - 1;

const PROTOCOL_3: i32 = 3;
const CANCEL_REQUEST: i32 = 80_877_102;
const SSL_REQUEST: i32 = 80_877_103;
const GSSENC_REQUEST: i32 = 80_877_104;

/// Serves one PostgreSQL connection as `pgwire::tokio::process_socket` does, with every frontend message
/// checked by [`Guarded`] first.
pub(super) async fn serve_connection<H: PgWireServerHandlers>(
    tcp: TcpStream,
    tls: Option<pgwire::tokio::TlsAcceptor>,
    handlers: H,
    auth: Method,
) -> io::Result<()> {
    let startup_timeout = tokio::time::sleep(STARTUP_TIMEOUT);
    tokio::pin!(startup_timeout);
    let extended = handlers.extended_query_handler();
    let negotiated = tokio::select! {
        () = &mut startup_timeout => return Ok(()),
        negotiated = negotiate_tls(tcp, tls) => negotiated?,
    };
    let Some(socket) = negotiated else {
        return Ok(());
    };
    let mut socket = guarded(socket, auth);
    serve_messages(&mut socket, &handlers, extended, startup_timeout).await
}

/// The negotiated connection with the guard between its stream and pgwire's decoder; bytes pgwire already
/// buffered are checked too.
fn guarded<T>(
    socket: Framed<pgwire::tokio::server::MaybeTls, PgWireMessageServerCodec<T>>,
    auth: Method,
) -> Framed<Guarded<pgwire::tokio::server::MaybeTls>, PgWireMessageServerCodec<T>> {
    let parts = socket.into_parts();
    let mut guarded = Guarded::new(parts.io, auth);
    guarded.pending = parts.read_buf;
    let mut new_parts = FramedParts::new(guarded, parts.codec);
    new_parts.write_buf = parts.write_buf;
    Framed::from_parts(new_parts)
}

/// pgwire's message loop (`process_socket`'s), over the guarded stream: a message the guard refuses gets a
/// FATAL protocol error and the connection is closed.
async fn serve_messages<H, EQ>(
    socket: &mut Framed<
        Guarded<pgwire::tokio::server::MaybeTls>,
        PgWireMessageServerCodec<EQ::Statement>,
    >,
    handlers: &H,
    extended: std::sync::Arc<EQ>,
    mut startup_timeout: Pin<&mut tokio::time::Sleep>,
) -> io::Result<()>
where
    H: PgWireServerHandlers,
    EQ: ExtendedQueryHandler,
{
    let (startup, simple, copy, cancel, errors) = (
        handlers.startup_handler(),
        handlers.simple_query_handler(),
        handlers.copy_handler(),
        handlers.cancel_handler(),
        handlers.error_handler(),
    );
    loop {
        let logging_in = matches!(
            socket.state(),
            PgWireConnectionState::AwaitingStartup
                | PgWireConnectionState::AuthenticationInProgress
        );
        let next = if logging_in {
            tokio::select! {
                () = &mut startup_timeout => return Ok(()),
                next = socket.next() => next,
            }
        } else {
            socket.next().await
        };
        let message = match next {
            None => return Ok(()),
            Some(Ok(PgWireFrontendMessage::Terminate(_))) => return Ok(()),
            Some(Ok(message)) => message,
            Some(Err(error)) => return refuse(socket, error).await,
        };
        let is_extended_query = match socket.state() {
            PgWireConnectionState::CopyInProgress(extended) => extended,
            _ => message.is_extended_query(),
        };
        let processed = process_message(
            message,
            socket,
            startup.clone(),
            simple.clone(),
            extended.clone(),
            copy.clone(),
            cancel.clone(),
        )
        .await;
        if let Err(mut error) = processed {
            errors.on_error(socket, &mut error);
            process_error(socket, error, is_extended_query).await?;
        }
    }
}

/// Answers a message that could not be read with FATAL 08P01 (protocol violation) and ends the connection.
async fn refuse<T, S>(
    socket: &mut Framed<T, PgWireMessageServerCodec<S>>,
    error: PgWireError,
) -> io::Result<()>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let info = ErrorInfo::new(
        "FATAL".into(),
        "08P01".into(),
        format!("invalid frontend message: {error}"),
    );
    let _ = socket
        .send(PgWireBackendMessage::ErrorResponse(info.into()))
        .await;
    let _ = socket.close().await;
    Ok(())
}

/// A client's stream whose bytes reach the reader only as whole messages that follow the protocol's layout;
/// the first that does not is an `InvalidData` error instead.
pub(super) struct Guarded<S> {
    inner: S,
    /// Read from `inner`, not yet checked.
    pending: BytesMut,
    /// Whole messages checked, not yet read.
    checked: BytesMut,
    /// The next message is a startup-phase one (no type byte).
    starting: bool,
    auth: Method,
    /// Password-family messages seen (SCRAM's first is the SASLInitialResponse).
    passwords: usize,
    broken: Option<String>,
}

impl<S> Guarded<S> {
    pub(super) fn new(inner: S, auth: Method) -> Self {
        Guarded {
            inner,
            pending: BytesMut::new(),
            checked: BytesMut::new(),
            starting: true,
            auth,
            passwords: 0,
            broken: None,
        }
    }

    /// Moves the whole messages at the front of `pending` to `checked`, stopping at an incomplete one or at
    /// the first malformed one (which breaks the stream).
    fn check_pending(&mut self) {
        while self.broken.is_none() {
            match self.next_message() {
                Ok(Some(len)) => {
                    let message = self.pending.split_to(len);
                    self.checked.extend_from_slice(&message);
                }
                Ok(None) => return,
                Err(reason) => self.broken = Some(reason),
            }
        }
    }

    /// The length of the next whole, well-formed message in `pending`; `None` until it is all there.
    fn next_message(&mut self) -> Result<Option<usize>, String> {
        let header = if self.starting { 4 } else { 5 };
        if self.pending.len() < header {
            return Ok(None);
        }
        let declared = (&self.pending[header - 4..header]).get_i32();
        let max = if self.starting {
            MAX_STARTUP
        } else {
            MAX_MESSAGE
        };
        let len = usize::try_from(declared)
            .ok()
            .filter(|len| (4..=max).contains(len))
            .ok_or_else(|| format!("a message length of {declared} bytes"))?;
        let total = len + header - 4;
        if self.pending.len() < total {
            return Ok(None);
        }
        let body = &self.pending[header..total];
        if self.starting {
            self.starting = !startup_layout(body)?;
        } else {
            let kind = self.pending[0];
            if kind == b'p' {
                self.passwords += 1;
            }
            message_layout(kind, body, self.auth, self.passwords)?;
        }
        Ok(Some(total))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.checked.is_empty() {
                let n = this.checked.len().min(out.remaining());
                out.put_slice(&this.checked.split_to(n));
                return Poll::Ready(Ok(()));
            }
            if let Some(reason) = &this.broken {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    reason.clone(),
                )));
            }
            this.check_pending();
            if !this.checked.is_empty() || this.broken.is_some() {
                continue;
            }
            let read = ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut this.inner),
                cx,
                &mut this.pending
            ))?;
            if read == 0 {
                // End of stream: a message cut short is simply never delivered.
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Checks a startup-phase message (after its length); returns whether it ends the startup phase (a
/// StartupMessage does; an SSL or GSS request is answered and another startup message follows).
fn startup_layout(body: &[u8]) -> Result<bool, String> {
    let mut fields = Fields::new(body);
    let code = fields.i32()?;
    match code {
        SSL_REQUEST | GSSENC_REQUEST => fields.end().map(|()| false),
        CANCEL_REQUEST if (12..=260).contains(&body.len()) => Ok(true),
        _ if code >> 16 == PROTOCOL_3 => {
            // Name/value pairs, then an empty name.
            while fields.peek()? != 0 {
                fields.cstring()?;
                fields.cstring()?;
            }
            fields.bytes(1)?;
            fields.end().map(|()| true)
        }
        other => Err(format!(
            "unsupported protocol version or request code {other}"
        )),
    }
}

/// Checks one typed frontend message's body against its layout (protocol 3.0, "Message Formats").
fn message_layout(kind: u8, body: &[u8], auth: Method, passwords: usize) -> Result<(), String> {
    let mut f = Fields::new(body);
    match kind {
        b'Q' | b'f' => f.cstring()?,
        b'P' => {
            f.cstring()?;
            f.cstring()?;
            let types = f.count()?;
            f.bytes(types * 4)?;
        }
        b'B' => bind_layout(&mut f)?,
        b'C' | b'D' => {
            let target = f.bytes(1)?[0];
            if target != b'S' && target != b'P' {
                return Err(format!("`{}` is neither S nor P", target as char));
            }
            f.cstring()?;
        }
        b'E' => {
            f.cstring()?;
            f.i32()?;
        }
        b'S' | b'H' | b'X' | b'c' => {}
        b'd' => return Ok(()),
        b'p' => return password_layout(&mut f, auth, passwords),
        other => {
            return Err(format!(
                "message type `{}` is not supported",
                other.escape_ascii()
            ));
        }
    }
    f.end()
}

/// Bind: portal, statement, parameter formats, parameter values (each a length, -1 for NULL, and its bytes),
/// result formats.
fn bind_layout(f: &mut Fields<'_>) -> Result<(), String> {
    f.cstring()?;
    f.cstring()?;
    let formats = f.count()?;
    f.bytes(formats * 2)?;
    for _ in 0..f.count()? {
        match f.i32()? {
            -1 => {}
            len if len >= 0 => {
                f.bytes(len as usize)?;
            }
            len => return Err(format!("a parameter length of {len}")),
        }
    }
    let results = f.count()?;
    f.bytes(results * 2)?;
    Ok(())
}

/// What a password-family message must hold for the login method: a password (MD5 or cleartext), SCRAM's
/// initial response (mechanism, then its data) followed by free-form responses; nothing without a password.
fn password_layout(f: &mut Fields<'_>, auth: Method, passwords: usize) -> Result<(), String> {
    match auth {
        Method::Trust => Err("a password message, but no password was asked for".into()),
        Method::Md5 | Method::Cleartext => {
            f.cstring()?;
            f.end()
        }
        Method::ScramSha256 if passwords == 1 => {
            f.cstring()?;
            match f.i32()? {
                -1 => {}
                len if len >= 0 => {
                    f.bytes(len as usize)?;
                }
                len => return Err(format!("a SASL data length of {len}")),
            }
            f.end()
        }
        Method::ScramSha256 => Ok(()),
    }
}

/// A cursor over a message body that fails, never panics, when a field runs past the end.
struct Fields<'a> {
    body: &'a [u8],
    at: usize,
}

impl<'a> Fields<'a> {
    fn new(body: &'a [u8]) -> Self {
        Fields { body, at: 0 }
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.body.len())
            .ok_or_else(|| "a field runs past the end of the message".to_string())?;
        let taken = &self.body[self.at..end];
        self.at = end;
        Ok(taken)
    }

    fn peek(&self) -> Result<u8, String> {
        self.body
            .get(self.at)
            .copied()
            .ok_or_else(|| "the message ends early".to_string())
    }

    fn i32(&mut self) -> Result<i32, String> {
        let mut raw = self.bytes(4)?;
        Ok(raw.get_i32())
    }

    /// A 16-bit count, which must not be negative.
    fn count(&mut self) -> Result<usize, String> {
        let mut raw = self.bytes(2)?;
        usize::try_from(raw.get_i16()).map_err(|_| "a negative count".to_string())
    }

    fn cstring(&mut self) -> Result<(), String> {
        let rest = &self.body[self.at..];
        let nul = rest
            .iter()
            .position(|b| *b == 0)
            .ok_or_else(|| "a string without its terminating zero byte".to_string())?;
        self.at += nul + 1;
        Ok(())
    }

    /// Nothing may follow the last field: pgwire reads past a message's end, so extra bytes would be taken
    /// for the next message.
    fn end(&self) -> Result<(), String> {
        if self.at == self.body.len() {
            Ok(())
        } else {
            Err(format!(
                "{} unexpected bytes at the end of the message",
                self.body.len() - self.at
            ))
        }
    }
}

#[cfg(test)]
mod tests;
