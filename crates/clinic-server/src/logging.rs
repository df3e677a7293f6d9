//! The server's logs, without secrets.
//!
//! Bearer tokens travel in the `Authorization` header and in the feed's hello frame. At
//! trace level the WebSocket library logs every frame it reads, as text ("Received message
//! {"type":"hello","token":"...",...}") and as a hex dump of the payload, so
//! `RUST_LOG=trace` used to print every token that said hello. [`init`] sets the log up
//! with [`Redacting`], which rewrites every line before it is written ([`redact`]):
//!
//! - a run of 32 or more hex digits (a token is 64; a hex dump of a frame is one long run),
//! - what follows `Bearer `,
//! - the value of a `token` field, in JSON (`"token":"..."`, also escaped inside a quoted
//!   string), in `Debug` output (`token: "..."`) and in `key=value` fields (`token=...`),
//!
//! each become `[redacted]`. UUIDs (hex in groups of at most 12) and the rest stay.

use std::borrow::Cow;
use std::io;

use tracing_subscriber::fmt::MakeWriter;

/// What a secret is replaced with.
pub const REDACTED: &str = "[redacted]";

/// A hex run this long or longer is taken for a secret (a token, a hex dump of a frame).
const HEX_SECRET: usize = 32;

/// Logs to stderr, at the level `RUST_LOG` says (`info` by default), every line passed
/// through [`redact`]. Call once, first thing.
pub fn init() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        // Logs on stderr: stdout carries only what `--demo` prints on purpose.
        .with_writer(Redacting(io::stderr))
        .init();
}

/// `text` with every secret it seems to hold replaced by [`REDACTED`] (see the module docs).
pub fn redact(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut out = String::new();
    let (mut copied, mut i) = (0, 0);
    while i < bytes.len() {
        match secret_at(bytes, i) {
            Some((start, end)) => {
                out.push_str(&text[copied..start]);
                out.push_str(REDACTED);
                (copied, i) = (end, end);
            }
            None => i += 1,
        }
    }
    if copied == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

/// The secret starting at or right after `i`, as a byte range. Every marker is ASCII, so
/// the range falls on character boundaries.
fn secret_at(bytes: &[u8], i: usize) -> Option<(usize, usize)> {
    let starts_word = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
    if bytes[i].is_ascii_hexdigit() && (i == 0 || !bytes[i - 1].is_ascii_hexdigit()) {
        let end = run(bytes, i, u8::is_ascii_hexdigit);
        if end - i >= HEX_SECRET {
            return Some((i, end));
        }
    }
    if starts_word && starts_with_ignore_case(&bytes[i..], b"bearer ") {
        let start = run(bytes, i + 6, |b| *b == b' ');
        let end = run(bytes, start, |b| {
            b.is_ascii_alphanumeric() || b"-._~+/=".contains(b)
        });
        return (end > start).then_some((start, end));
    }
    if starts_word && starts_with_ignore_case(&bytes[i..], b"token") {
        // token, "token" or \"token\", then : or =, then the value, quoted or not.
        let mut j = i + 5;
        j = skip(bytes, j, b"\\");
        j = skip(bytes, j, b"\"");
        j = run(bytes, j, |b| *b == b' ');
        if !matches!(bytes.get(j), Some(b':' | b'=')) {
            return None;
        }
        j = run(bytes, j + 1, |b| *b == b' ');
        j = skip(bytes, j, b"\\");
        j = skip(bytes, j, b"\"");
        let end = run(bytes, j, |b| {
            !(b.is_ascii_whitespace() || b"\"\\,;)}]".contains(b))
        });
        return (end > j).then_some((j, end));
    }
    None
}

/// The end of the run of bytes from `from` that satisfy `is`.
fn run(bytes: &[u8], from: usize, is: impl Fn(&u8) -> bool) -> usize {
    from + bytes
        .get(from..)
        .map_or(0, |rest| rest.iter().take_while(|b| is(b)).count())
}

/// `from` past `what` if it is there.
fn skip(bytes: &[u8], from: usize, what: &[u8]) -> usize {
    match bytes.get(from..) {
        Some(rest) if rest.starts_with(what) => from + what.len(),
        _ => from,
    }
}

fn starts_with_ignore_case(bytes: &[u8], prefix: &[u8]) -> bool {
    bytes.len() >= prefix.len() && bytes[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// A [`MakeWriter`] whose writers pass what they write through [`redact`]. The log's
/// formatter writes each event whole, in one call, so no secret is split between two.
#[derive(Debug, Clone, Copy)]
pub struct Redacting<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Redacting<M> {
    type Writer = RedactingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter(self.0.make_writer())
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        RedactingWriter(self.0.make_writer_for(meta))
    }
}

/// A writer that redacts (see [`Redacting`]).
#[derive(Debug)]
pub struct RedactingWriter<W>(W);

impl<W: io::Write> io::Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::Message;

    use super::*;

    const TOKEN: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn hello() -> String {
        format!(r#"{{"type":"hello","protocol":1,"token":"{TOKEN}","cursor":41}}"#)
    }

    #[test]
    fn tokens_are_redacted_wherever_a_log_line_carries_them() {
        let lines = [
            format!("Received message {}", Message::text(hello())),
            format!(
                "received frame {}",
                Frame::message(hello(), OpCode::Data(Data::Text), true)
            ),
            format!(
                "Sending frame: {:?}",
                Frame::message(hello(), OpCode::Data(Data::Text), true)
            ),
            format!("request headers: {{\"authorization\": \"Bearer {TOKEN}\"}}"),
            format!("{:?}", hello()),
            format!("LoginResponse {{ token: \"{TOKEN}\", expires_at: 2026-12-01 }}"),
            format!("feed opened token={TOKEN} cursor=41"),
        ];
        for line in &lines {
            let redacted = redact(line);
            assert!(!redacted.contains(TOKEN), "{redacted}");
            assert!(redacted.contains(REDACTED), "{redacted}");
            // Not even in the hex dump of a frame, where the token is hex twice over.
            assert!(!redacted.contains("3966383664"), "{redacted}");
        }
        assert_eq!(
            redact(&format!("Authorization: bearer {TOKEN}, next")),
            "Authorization: bearer [redacted], next"
        );
        assert_eq!(
            redact(r#"{"token":"short-one","cursor":1}"#),
            r#"{"token":"[redacted]","cursor":1}"#
        );
        assert_eq!(
            redact(r#"{\"token\": \"t\"}"#),
            r#"{\"token\": \"[redacted]\"}"#
        );
    }

    #[test]
    fn the_rest_of_a_line_stays_as_it_was() {
        for line in [
            "booking 0b1e7c52-3f9a-4d3e-9c1a-6f1e2d3c4b5a accepted by 7f3e2d1c-0000-4000-8000-000000000001",
            "token pruning failed: database is locked",
            "tokens: 3, token_ttl: 43200s, tokenizer=x",
            "a feed took over 2s to end after its logout",
            "committed seq 46 (deadbeef)",
            "Bearer",
            "",
        ] {
            assert!(matches!(redact(line), Cow::Borrowed(_)), "{line}");
        }
    }

    #[test]
    fn the_log_writes_redacted_lines() {
        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl io::Write for Buffer {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let sink = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(Redacting(move || sink.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            // What the WebSocket library logs when a hello arrives.
            tracing::trace!(target: "tungstenite::protocol", "Received message {}", hello());
            tracing::debug!(token = TOKEN, "a field");
        });
        let written = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        assert!(written.contains("Received message"), "{written}");
        assert!(!written.contains(TOKEN), "{written}");
        assert_eq!(written.matches(REDACTED).count(), 2, "{written}");
    }
}
