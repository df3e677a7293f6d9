//! The server's logs, without secrets.
//!
//! Bearer tokens travel in the `Authorization` header and in the feed's hello frame. At
//! trace level the WebSocket library logs every frame it reads, as text ("Received message
//! {"type":"hello","token":"...",...}") and as a hex dump of the payload, so
//! `RUST_LOG=trace` used to print every token that said hello. [`init_with`] sets the log up
//! with [`Redacting`], which rewrites every line before it is written ([`redact`]):
//!
//! - a run of 32 or more hex digits (a token is 64; a hex dump of a frame is one long run),
//! - what follows `Bearer `,
//! - the value of a `token` field, in JSON (`"token":"..."`, also escaped inside a quoted
//!   string), in `Debug` output (`token: "..."`) and in `key=value` fields (`token=...`),
//! - the value of a `password` field, written in the same ways (sign-in and password
//!   change bodies, should a library log them),
//!
//! each become `[redacted]`. UUIDs (hex in groups of at most 12) and the rest stay.
//!
//! The log is text lines or, with `--log-format json` ([`LogFormat::Json`]), one JSON
//! object per line for log collectors. Redaction works on the written line either way: a
//! secret inside a JSON string is replaced by `[redacted]`, which needs no escaping, and
//! never cut from its line's quotes or escapes (a `\u001b` escape stays whole), so each line
//! is still valid JSON.

use std::borrow::Cow;
use std::io;
use std::str::FromStr;

use tracing::Subscriber;
use tracing_subscriber::fmt::format::{DefaultFields, Format, Json, JsonFields};
use tracing_subscriber::fmt::{MakeWriter, SubscriberBuilder};
use tracing_subscriber::EnvFilter;

/// What a secret is replaced with.
pub const REDACTED: &str = "[redacted]";

/// A hex run this long or longer is taken for a secret (a token, a hex dump of a frame).
const HEX_SECRET: usize = 32;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines, as a terminal shows them.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `message` and the event's
    /// fields at the top level, the request's `span` (method, path) when there is one.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<LogFormat, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("no log format {other:?}: text or json")),
        }
    }
}

/// Logs to stderr in `format`, at the level `RUST_LOG` says (`info` by default), every line
/// passed through [`redact`]. Call once, first thing.
pub fn init_with(format: LogFormat) {
    // Logs on stderr: stdout carries only what `--demo` prints on purpose.
    let base = base(default_filter(), io::stderr);
    // The builders' own `init`: it also passes on what libraries log through the `log`
    // crate (the WebSocket library does), up to the filter's level.
    match format {
        LogFormat::Text => base.init(),
        LogFormat::Json => json(base).init(),
    }
}

/// The log [`init_with`] sets up, writing to `writer` and filtered by `filter`, without
/// installing it (for a test, or a program with its own subscriber plans).
pub fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let base = base(filter, writer);
    match format {
        LogFormat::Text => Box::new(base.finish()),
        LogFormat::Json => Box::new(json(base).finish()),
    }
}

/// `RUST_LOG`, or `info`.
fn default_filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into())
}

fn base<W>(
    filter: EnvFilter,
    writer: W,
) -> SubscriberBuilder<DefaultFields, Format, EnvFilter, Redacting<W>>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Redacting(writer))
}

fn json<W>(
    base: SubscriberBuilder<DefaultFields, Format, EnvFilter, W>,
) -> SubscriberBuilder<JsonFields, Format<Json>, EnvFilter, W> {
    // Flat and short: the event's fields at the top level, the innermost span (a request's
    // method and path) but not the whole list, which repeats it.
    base.json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
}

/// `text` with every secret it seems to hold replaced by [`REDACTED`] (see the module
/// docs): session tokens, then the value of every `password` field, in JSON
/// (`"password":"..."`, also escaped inside a quoted string), in `Debug` output
/// (`password: "..."`) and as `password=...`.
pub fn redact(text: &str) -> Cow<'_, str> {
    let tokenless = redact_tokens(text);
    match redact_passwords(&tokenless) {
        Cow::Borrowed(_) => tokenless,
        Cow::Owned(text) => Cow::Owned(text),
    }
}

/// `text` with every session token replaced by [`REDACTED`].
fn redact_tokens(text: &str) -> Cow<'_, str> {
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
        // The four digits of a JSON escape (`\u001b`) belong to it: cutting them away would
        // leave `\u[redacted]`, and the line would no longer be JSON.
        let start = if json_escape_before(bytes, i) {
            (i + 4).min(end)
        } else {
            i
        };
        if end - start >= HEX_SECRET {
            return Some((start, end));
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

/// Whether `bytes[..i]` ends with the `\u` of a JSON escape: a `u` after an odd number of
/// backslashes (an even number is escaped backslashes, then a plain `u`).
fn json_escape_before(bytes: &[u8], i: usize) -> bool {
    if i < 2 || bytes[i - 1] != b'u' {
        return false;
    }
    let backslashes = bytes[..i - 1]
        .iter()
        .rev()
        .take_while(|b| **b == b'\\')
        .count();
    backslashes % 2 == 1
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

fn redact_passwords(text: &str) -> Cow<'_, str> {
    const KEY: &[u8] = b"password";
    let bytes = text.as_bytes();
    let mut out = String::new();
    let (mut copied, mut i) = (0, 0);
    while i + KEY.len() <= bytes.len() {
        let starts_word = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
        if !(starts_word && bytes[i..i + KEY.len()].eq_ignore_ascii_case(KEY)) {
            i += 1;
            continue;
        }
        match password_value(bytes, i + KEY.len()) {
            Some((start, end)) => {
                out.push_str(&text[copied..start]);
                out.push_str(REDACTED);
                (copied, i) = (end, end);
            }
            None => i += KEY.len(),
        }
    }
    if copied == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

/// The value of the field whose key ends at `j`, as a byte range: `key`, `"key"` or
/// `\"key\"`, then `:` or `=`, then a value quoted the same way (up to its closing quote)
/// or bare (up to a space or a delimiter). Every marker is ASCII, so the range falls on
/// character boundaries.
fn password_value(bytes: &[u8], mut j: usize) -> Option<(usize, usize)> {
    let at = |j: usize, what: &[u8]| bytes.get(j..).is_some_and(|rest| rest.starts_with(what));
    let spaces = |mut j: usize| {
        while bytes.get(j) == Some(&b' ') {
            j += 1;
        }
        j
    };
    if at(j, b"\\\"") {
        j += 2;
    } else if at(j, b"\"") {
        j += 1;
    }
    j = spaces(j);
    if !matches!(bytes.get(j), Some(b':' | b'=')) {
        return None;
    }
    j = spaces(j + 1);
    if at(j, REDACTED.as_bytes()) {
        return None; // a token already
    }
    let (start, end) = if at(j, b"\\\"") {
        // Escaped JSON inside a quoted string: up to the next \".
        let start = j + 2;
        let len = bytes[start..]
            .windows(2)
            .position(|w| w == b"\\\"")
            .unwrap_or(bytes.len() - start);
        (start, start + len)
    } else if at(j, b"\"") {
        // Quoted: up to the closing quote, past escaped characters.
        let start = j + 1;
        let mut end = start;
        while end < bytes.len() && bytes[end] != b'"' {
            end += if bytes[end] == b'\\' { 2 } else { 1 };
        }
        (start, end.min(bytes.len()))
    } else {
        let end = j + bytes[j..]
            .iter()
            .take_while(|b| !(b.is_ascii_whitespace() || b"\"\\,;)}]".contains(b)))
            .count();
        (j, end)
    };
    (end > start).then_some((start, end))
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

    #[test]
    fn json_lines_stay_json_and_keep_no_token() {
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
        let subscriber = subscriber(LogFormat::Json, EnvFilter::new("trace"), move || {
            sink.clone()
        });
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", method = "GET", path = "/v1/feed");
            let _entered = span.enter();
            // A hello inside a string: quotes escaped as \" in the JSON line.
            tracing::trace!(target: "tungstenite::protocol", "Received message {}", hello());
            tracing::debug!(token = TOKEN, "a field");
            tracing::info!("headers: authorization: Bearer {TOKEN}");
            // A control character (escaped as \u0001) right before the token.
            tracing::warn!("odd bytes \u{1}{TOKEN}");
        });
        let written = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        assert!(!written.contains(TOKEN), "{written}");
        let lines: Vec<&str> = written.lines().collect();
        assert_eq!(lines.len(), 4, "{written}");
        for line in lines {
            let event: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            assert!(line.contains(REDACTED), "{line}");
            assert_eq!(event["span"]["path"], "/v1/feed", "{line}");
            assert!(
                event["timestamp"].is_string() && event["level"].is_string(),
                "{line}"
            );
        }
        assert!(written.contains(r#""token":"[redacted]""#), "{written}");
        assert!(written.contains(r#"\u0001[redacted]"#), "{written}");
    }

    #[test]
    fn a_json_escape_is_never_cut() {
        let line = format!(r#"{{"message":"x\u0001{TOKEN}","y":"\\u{TOKEN}"}}"#);
        let redacted = redact(&line);
        assert_eq!(
            redacted,
            r#"{"message":"x\u0001[redacted]","y":"\\u[redacted]"}"#
        );
        serde_json::from_str::<serde_json::Value>(&redacted).unwrap();
    }
}
