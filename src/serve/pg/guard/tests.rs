//! Unit tests of the message guard: layouts accepted and refused, and a property test that whatever bytes a
//! client sends, pgwire never panics decoding what the guard lets through.

use std::panic::{AssertUnwindSafe, catch_unwind};

use bytes::{BufMut, BytesMut};
use pgwire::messages::{DecodeContext, PgWireFrontendMessage, ProtocolVersion};
use proptest::prelude::*;

use super::*;

fn typed(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind];
    m.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

fn startup() -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&196_608i32.to_be_bytes());
    body.extend_from_slice(b"user\0lake\0database\0prod\0\0");
    let mut m = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    m.extend_from_slice(&body);
    m
}

/// The messages the guard lets through, and its verdict on what follows them.
fn through(bytes: &[u8], auth: Method, starting: bool) -> (Vec<u8>, Option<String>) {
    let mut guard = Guarded::new((), auth);
    guard.starting = starting;
    guard.pending.extend_from_slice(bytes);
    guard.check_pending();
    (guard.checked.to_vec(), guard.broken)
}

#[test]
fn well_formed_messages_pass_whole() {
    let mut parse = b"s1\0SELECT $1\0".to_vec();
    parse.extend_from_slice(&1i16.to_be_bytes());
    parse.extend_from_slice(&23u32.to_be_bytes());
    let mut bind = b"\0s1\0".to_vec();
    bind.extend_from_slice(&0i16.to_be_bytes());
    bind.extend_from_slice(&1i16.to_be_bytes());
    bind.extend_from_slice(&1i32.to_be_bytes());
    bind.push(b'7');
    bind.extend_from_slice(&0i16.to_be_bytes());
    let mut all = startup();
    for m in [
        typed(b'Q', b"SELECT 1\0"),
        typed(b'P', &parse),
        typed(b'B', &bind),
        typed(b'D', b"P\0"),
        typed(b'E', b"\0\0\0\0\0"),
        typed(b'S', b""),
    ] {
        all.extend_from_slice(&m);
    }
    assert_eq!(through(&all, Method::Trust, true), (all.clone(), None));
}

#[test]
fn short_or_overlong_messages_are_refused_before_pgwire_reads_them() {
    // The reports: a Parse and a Bind whose length leaves their counts out (pgwire panicked decoding them).
    for kind in [b'P', b'B'] {
        let (passed, broken) = through(&typed(kind, b"\0\0"), Method::Trust, false);
        assert!(passed.is_empty());
        assert!(
            broken.is_some_and(|r| r.contains("past the end")),
            "{}",
            kind as char
        );
    }
    let (_, broken) = through(b"Q\0\0\0\x03", Method::Trust, false);
    assert_eq!(broken.as_deref(), Some("a message length of 3 bytes"));
    let (_, broken) = through(&typed(b'Q', b"SELECT 1\0junk"), Method::Trust, false);
    assert!(broken.is_some_and(|r| r.contains("4 unexpected bytes")));
    let (_, broken) = through(&typed(b'p', b"secret\0"), Method::Trust, false);
    assert!(broken.is_some_and(|r| r.contains("no password was asked")));
    // SCRAM's first response carries its data's length; one that overruns is refused.
    let mut sasl = b"SCRAM-SHA-256\0".to_vec();
    sasl.extend_from_slice(&100i32.to_be_bytes());
    let (_, broken) = through(&typed(b'p', &sasl), Method::ScramSha256, false);
    assert!(broken.is_some());
    // An incomplete message waits for the rest.
    assert_eq!(
        through(&typed(b'Q', b"SELECT 1\0")[..6], Method::Trust, false),
        (Vec::new(), None)
    );
}

/// Decodes every message in `bytes` as pgwire's server does once started; `false` on a panic.
fn pgwire_decodes_without_panic(bytes: &[u8], auth: Method) -> bool {
    catch_unwind(AssertUnwindSafe(|| {
        let mut ctx = DecodeContext::new(ProtocolVersion::PROTOCOL3_0);
        ctx.awaiting_frontend_ssl = false;
        ctx.awaiting_frontend_startup = false;
        let mut buf = BytesMut::from(bytes);
        let mut passwords = 0;
        while let Ok(Some(message)) = PgWireFrontendMessage::decode(&mut buf, &ctx) {
            if let PgWireFrontendMessage::PasswordMessageFamily(p) = message {
                passwords += 1;
                let _ = match (auth, passwords) {
                    (Method::ScramSha256, 1) => p.into_sasl_initial_response().map(|_| ()),
                    (Method::ScramSha256, _) => p.into_sasl_response().map(|_| ()),
                    _ => p.into_password().map(|_| ()),
                };
            }
        }
    }))
    .is_ok()
}

/// The harness below sees pgwire's panics: the reported message panics pgwire when nothing guards it (if
/// this fails, pgwire decodes safely now and the guard may be dropped).
#[test]
fn pgwire_alone_panics_on_a_short_parse() {
    assert!(!pgwire_decodes_without_panic(
        &typed(b'P', b"\0\0"),
        Method::Trust
    ));
    assert!(pgwire_decodes_without_panic(
        &through(&typed(b'P', b"\0\0"), Method::Trust, false).0,
        Method::Trust
    ));
}

/// A message of a kind clients send, with a body that is random or a real one cut or grown.
fn message() -> impl Strategy<Value = Vec<u8>> {
    let kinds = prop::sample::select(b"QPBCDESHXcdfpFz".to_vec());
    (
        kinds,
        prop::collection::vec(any::<u8>(), 0..24),
        any::<i8>(),
    )
        .prop_map(|(kind, body, skew)| {
            let mut m = BytesMut::new();
            m.put_u8(kind);
            m.put_i32(body.len() as i32 + 4 + i32::from(skew % 3));
            m.extend_from_slice(&body);
            m.to_vec()
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn nothing_the_guard_passes_makes_pgwire_panic(
        messages in prop::collection::vec(message(), 1..6),
        auth in prop::sample::select(vec![Method::Trust, Method::ScramSha256, Method::Md5]),
    ) {
        let bytes: Vec<u8> = messages.concat();
        let (passed, _) = through(&bytes, auth, false);
        prop_assert!(pgwire_decodes_without_panic(&passed, auth), "{:?}", passed);
    }
}
