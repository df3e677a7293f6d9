//! The change feed: one WebSocket per client, catch-up from its cursor, then live changes,
//! filtered for its user.
//!
//! The hand-over from catch-up to live has no gap: the connection subscribes to live
//! changes BEFORE it reads the log, and later skips live changes it already sent. A
//! connection that falls too far behind (its bounded queue overflows) is told to resync
//! and closed; nothing is dropped silently.
//!
//! A feed lives no longer than its session. The token is checked in the database at hello
//! (a disabled account is refused with `account_disabled`, a session that must change its
//! one-time password with `password_change_required`); after that the feed keeps the
//! token's expiry and a [`Revocation`] watch, and ends with an error frame as soon as
//! either says so (`unauthorized`, or `account_disabled` when an administrator disabled
//! the account): it wakes when its session ends (a logout, a password change, an
//! administrator) and at the expiry, and it checks both (in memory, no database) before
//! every frame it sends, so nothing goes out after the session has ended.
//!
//! A feed also ends when its user's own account changes, right before that change
//! (`account_changed`): it filters by the account as it was at hello, and must not send
//! one change more under roles the user no longer has. Its client resyncs from a
//! snapshot filtered by the account as it is.
//!
//! A feed also ends when the server shuts down, at whatever stage it is (waiting for the
//! hello, catching up, live), with a Close frame. Upgraded connections are no longer
//! axum's, so its graceful shutdown does not wait for them: every feed is counted in
//! [`Feeds`] from its upgrade until its task ends, and [`crate::serve`] waits for that count
//! to reach zero before it returns.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use chrono::{DateTime, Utc};
use clinic_protocol::wire::{
    paths, MAX_BATCH_CHANGES, MAX_CLIENT_FRAME_BYTES, MAX_SERVER_FRAME_BYTES,
};
use clinic_protocol::{
    ClientFrame, ErrorCode, Record, RecordKind, ResyncReason, ServerFrame, Staff, PROTOCOL_VERSION,
};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::auth::{Denied, Ending, Revocation};
use crate::error::HttpError;
use crate::metrics::Metrics;
use crate::store::Logged;
use crate::{auth, AppState};

/// How long a new connection may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// The server reads only tiny frames (one hello), so a few KiB of read buffer per
/// connection is plenty; tungstenite's default is 128 KiB.
const READ_BUFFER: usize = 4 * 1024;
const WRITE_BUFFER: usize = 16 * 1024;

/// The feeds being served, counted from their upgrade until their task has sent its last
/// frame, so that [`crate::serve`] can wait for them to close cleanly.
#[derive(Debug, Clone)]
pub(crate) struct Feeds(Arc<watch::Sender<usize>>);

impl Default for Feeds {
    fn default() -> Feeds {
        Feeds(Arc::new(watch::Sender::new(0)))
    }
}

impl Feeds {
    fn open(&self) -> OpenFeed {
        self.0.send_modify(|open| *open += 1);
        OpenFeed(self.0.clone())
    }

    /// How many feeds are open now (the `clinic_feeds_open` gauge).
    pub(crate) fn count(&self) -> usize {
        *self.0.borrow()
    }

    /// Waits until every feed has ended; if `within` passes first, says how many are
    /// still open.
    pub(crate) async fn ended_within(&self, within: Duration) -> Result<(), usize> {
        let mut open = self.0.subscribe();
        let ended = tokio::time::timeout(within, open.wait_for(|open| *open == 0))
            .await
            .is_ok();
        if ended {
            Ok(())
        } else {
            Err(*self.0.borrow())
        }
    }
}

/// One feed counted in [`Feeds`], until dropped.
#[derive(Debug)]
struct OpenFeed(Arc<watch::Sender<usize>>);

impl Drop for OpenFeed {
    fn drop(&mut self) {
        self.0.send_modify(|open| *open -= 1);
    }
}

/// Resolves once the server shuts down (at once if it already has).
async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    // The sender lives in the state the feed holds, so it cannot be dropped meanwhile.
    let _ = shutdown.wait_for(|stopping| *stopping).await;
}

/// `GET /v1/feed`. A request that is not a WebSocket upgrade is refused with an
/// [`ApiError`](clinic_protocol::ApiError), like every other refusal, not axum's plain text.
pub(crate) async fn upgrade(
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    State(state): State<AppState>,
) -> Result<Response, HttpError> {
    let ws = ws.map_err(|e| {
        HttpError::new(
            ErrorCode::Malformed,
            format!(
                "{} is the feed's WebSocket; open it with a WebSocket upgrade ({e}).",
                paths::FEED
            ),
        )
    })?;
    // Counted before the 101 goes out: axum's shutdown waits for this connection until the
    // upgrade, `serve` for the feed from then on. Dropped with the task (or with the
    // callback, if the upgrade never completes).
    let open = state.feeds.open();
    Ok(ws
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(MAX_CLIENT_FRAME_BYTES)
        .max_frame_size(MAX_CLIENT_FRAME_BYTES)
        .on_upgrade(move |socket| async move {
            let _open = open;
            let mut socket = socket;
            // `serve` has dropped its session when it returns: a logout waiting for this
            // feed to end is answered while the last frame goes out.
            if let Err(end) = serve(&mut socket, &state).await {
                if let End::Resync(reason, _) = &end {
                    state.metrics.resync(*reason);
                }
                if let Some(last) = end.frame() {
                    let _ = send_last(&mut socket, &last).await;
                }
            }
            let _ = socket
                .send(Message::Close(Some(CloseFrame {
                    code: 1000,
                    reason: Utf8Bytes::from_static("bye"),
                })))
                .await;
        }))
}

/// Why a feed ends, with the frame the client gets last.
enum End {
    Error(ErrorCode, String),
    Resync(ResyncReason, &'static str),
    /// The client left, or the socket broke: nobody to tell.
    Quiet,
}

impl End {
    fn frame(&self) -> Option<ServerFrame> {
        match self {
            End::Error(code, message) => Some(ServerFrame::Error {
                code: *code,
                message: message.clone(),
            }),
            End::Resync(reason, message) => Some(ServerFrame::Resync {
                reason: *reason,
                message: (*message).to_owned(),
            }),
            End::Quiet => None,
        }
    }

    fn log_broken() -> End {
        End::Error(
            ErrorCode::Internal,
            "The server could not read its log.".into(),
        )
    }

    /// The session ended: signed out, its password changed or reset, or its account
    /// disabled (`account_disabled`, which a client tells from `unauthorized`).
    fn ended(why: Ending) -> End {
        End::Error(why.code(), why.message().into())
    }

    fn expired() -> End {
        End::Error(
            ErrorCode::Unauthorized,
            "Your session has expired; sign in again.".into(),
        )
    }
}

/// The session a feed serves: its token's revocation watch and expiry.
#[derive(Debug)]
struct Session {
    revocation: Revocation,
    expires: Instant,
}

impl Session {
    /// The longest a feed's timer is set for (tokio caps its own timers likewise): a token
    /// said to live longer is treated as expiring then.
    const MAX_WAIT: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

    fn new(revocation: Revocation, expires_at: DateTime<Utc>) -> Session {
        // The database keeps wall-clock times; timers run on the monotonic clock.
        let left = (expires_at - Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO)
            .min(Self::MAX_WAIT);
        Session {
            revocation,
            expires: Instant::now() + left,
        }
    }

    /// Whether the session still holds; checked before every frame (no database access).
    fn check(&self) -> Result<(), End> {
        if let Some(why) = self.revocation.ended() {
            Err(End::ended(why))
        } else if Instant::now() >= self.expires {
            Err(End::expired())
        } else {
            Ok(())
        }
    }
}

/// A frame the WebSocket layer refused. axum does not re-export tungstenite's error type,
/// so the size limit is recognised by its message ("Space limit exceeded: Message too
/// long"); everything else (bad opcode, invalid UTF-8, unmasked frame) is malformed.
fn refused(e: &axum::Error) -> End {
    let text = e.to_string();
    if text.contains("too long") || text.contains("Space limit") {
        End::Error(
            ErrorCode::TooLarge,
            format!("Frames from clients are limited to {MAX_CLIENT_FRAME_BYTES} bytes."),
        )
    } else {
        End::Error(ErrorCode::Malformed, format!("Frame refused: {text}"))
    }
}

/// Sends a frame while the session holds.
async fn send(socket: &mut WebSocket, session: &Session, frame: &ServerFrame) -> Result<(), End> {
    let text = serde_json::to_string(frame).map_err(|_| End::Quiet)?;
    send_text(socket, session, text).await
}

/// Sends the frame that ends a feed, whatever the session (it may be why the feed ends).
async fn send_last(socket: &mut WebSocket, frame: &ServerFrame) -> Result<(), End> {
    let text = serde_json::to_string(frame).map_err(|_| End::Quiet)?;
    socket
        .send(Message::Text(text.into()))
        .await
        .map_err(|_| End::Quiet)
}

/// The most a Changes frame carries: well under [`MAX_SERVER_FRAME_BYTES`], which clients
/// refuse to exceed (2,000 long messages would).
const FRAME_BUDGET: usize = MAX_SERVER_FRAME_BYTES / 4;

/// Whether a change to `user`'s own account ends their feed, and how. The feed filters by
/// the account as it was at hello, so once the account has changed (roles above all) it
/// must not send one more change: it ends right before this one. Live, the change says
/// what the account is now: disabled (`account_disabled`), given a one-time password by an
/// administrator (`unauthorized`: their tokens were revoked with it), or otherwise
/// changed (resync: a snapshot filtered by the account as it is). Caught up from the log,
/// the change is history (the hello checked the account as it is now), but the client's
/// copy was filtered by the account as it was before it, so it resyncs whatever the
/// change was. Making the account (its first version) changes nothing anyone has, and
/// neither does going on or off duty (live).
fn account_changed(user: &Staff, logged: &Logged, live: bool) -> Option<End> {
    if logged.kind != RecordKind::Staff || logged.id != user.id || !logged.prev_existed {
        return None;
    }
    // Going on or off duty changes nothing the feed filters by: live, it is sent as the
    // ordinary staff change it is, or a driver's every toggle would cost them a snapshot.
    // (Live, `user` is the account as it was before this change but for earlier duty
    // changes; caught up from the log it is the account as it is now, which says nothing
    // about what the change was, so that resyncs as before.)
    let duty_only = |now: &Staff| {
        let plain = |s: &Staff| Staff {
            on_duty: false,
            version: 0,
            ..s.clone()
        };
        plain(now) == plain(user)
    };
    if let Some(Record::Staff(now)) = &logged.record {
        if live && duty_only(now) {
            return None;
        }
    }
    let resync = End::Resync(
        ResyncReason::AccountChanged,
        "Your account was changed; fetch a new snapshot.",
    );
    Some(match &logged.record {
        Some(Record::Staff(now)) if live && now.disabled => End::ended(Ending::Disabled),
        Some(Record::Staff(now)) if live && now.must_change_password => {
            End::ended(Ending::PasswordReset)
        }
        _ => resync,
    })
}

/// Sends the changes in `batch` (ascending seq) that are for `user`, as few `changes`
/// frames as [`MAX_BATCH_CHANGES`] and [`FRAME_BUDGET`] allow; `upto` is the last seq
/// examined, which the last frame carries. Returns whether anything was sent. A change to
/// the user's own account ends the feed, with what came before it sent
/// ([`account_changed`]; `live` says whether the batch came live or from the log).
///
/// The frame text is put together from each change's JSON, so that an upsert going to many
/// connections is serialized once (see [`Logged::json_for`]).
async fn send_changes<'a>(
    socket: &mut WebSocket,
    session: &Session,
    user: &Staff,
    batch: impl IntoIterator<Item = &'a Logged>,
    (upto, live): (u64, bool),
    metrics: &Metrics,
) -> Result<bool, End> {
    let mut frame = ChangesFrame::default();
    let mut sent = false;
    for logged in batch {
        if let Some(end) = account_changed(user, logged, live) {
            if frame.count > 0 {
                let (last, oldest) = (frame.last, frame.oldest);
                send_text(socket, session, frame.finish(last)).await?;
                observe_lag(metrics, oldest);
            }
            return Err(end);
        }
        let Some(json) = logged.json_for(user).map_err(|e| {
            tracing::error!("a change does not serialize: {e}");
            End::log_broken()
        })?
        else {
            continue;
        };
        if frame.count > 0
            && (frame.count == MAX_BATCH_CHANGES || frame.text.len() + json.len() > FRAME_BUDGET)
        {
            // Up to the last change in it: the next frame starts with the one after.
            let (last, oldest) = (frame.last, frame.oldest);
            send_text(socket, session, std::mem::take(&mut frame).finish(last)).await?;
            observe_lag(metrics, oldest);
            sent = true;
        }
        if frame.count == 0 {
            frame.oldest = logged.committed;
        }
        frame.push(&json, logged.seq);
    }
    if frame.count > 0 {
        let oldest = frame.oldest;
        send_text(socket, session, frame.finish(upto)).await?;
        observe_lag(metrics, oldest);
        sent = true;
    }
    Ok(sent)
}

/// The send lag of a frame whose oldest change was committed at `oldest` (live changes
/// only: what catch-up reads from the log may be days old, which says nothing of the feed).
fn observe_lag(metrics: &Metrics, oldest: Option<std::time::Instant>) {
    if let Some(committed) = oldest {
        metrics.feed_send_lag_seconds.observe(committed.elapsed());
    }
}

/// A `{"type":"changes","changes":[...],"upto":N}` frame, built from JSON pieces.
#[derive(Debug, Default)]
struct ChangesFrame {
    text: String,
    count: usize,
    last: u64,
    /// When its first (oldest) change was committed, if it came live.
    oldest: Option<std::time::Instant>,
}

impl ChangesFrame {
    fn push(&mut self, change_json: &str, seq: u64) {
        self.text.push_str(if self.count == 0 {
            r#"{"type":"changes","changes":["#
        } else {
            ","
        });
        self.text.push_str(change_json);
        self.count += 1;
        self.last = seq;
    }

    fn finish(mut self, upto: u64) -> String {
        self.text.push_str(&format!(r#"],"upto":{upto}}}"#));
        self.text
    }
}

async fn send_text(socket: &mut WebSocket, session: &Session, text: String) -> Result<(), End> {
    session.check()?;
    socket
        .send(Message::Text(text.into()))
        .await
        .map_err(|_| End::Quiet)
}

async fn hello(socket: &mut WebSocket, state: &AppState) -> Result<(Staff, u64, Session), End> {
    let first = tokio::time::timeout(HELLO_TIMEOUT, socket.recv())
        .await
        .map_err(|_| End::Error(ErrorCode::Malformed, "No hello within 10 seconds.".into()))?;
    let text = match first {
        Some(Ok(Message::Text(text))) => text,
        None | Some(Ok(Message::Close(_))) => return Err(End::Quiet),
        Some(Ok(_)) => {
            return Err(End::Error(
                ErrorCode::Malformed,
                "The first frame must be a JSON hello.".into(),
            ))
        }
        Some(Err(e)) => return Err(refused(&e)),
    };
    let ClientFrame::Hello {
        protocol,
        token,
        cursor,
    } = serde_json::from_str(text.as_str())
        .map_err(|e| End::Error(ErrorCode::Malformed, format!("Not a hello frame: {e}")))?;
    if protocol != PROTOCOL_VERSION {
        // Say which side is behind: an older app is updated by its user, an older server
        // by the clinic's administrator.
        let update = if protocol < PROTOCOL_VERSION {
            "Update Clinic Desk on this computer."
        } else {
            "Ask the clinic's administrator to update the server."
        };
        return Err(End::Error(
            ErrorCode::UnsupportedVersion,
            format!("This server speaks protocol {PROTOCOL_VERSION}, not {protocol}. {update}"),
        ));
    }
    // Watch for the session's end BEFORE looking the token up: one committed after the
    // lookup is still seen.
    let revocation = state.sessions.watch(&token);
    let signed_in = auth::authenticate(&state.store, &token)
        .await
        .map_err(|_| {
            End::Error(
                ErrorCode::Internal,
                "The server could not check the token.".into(),
            )
        })?;
    let (user, live) = match signed_in {
        Ok(signed_in) => signed_in,
        Err(Denied::Disabled) => return Err(End::ended(Ending::Disabled)),
        Err(Denied::NoSession) => {
            return Err(End::Error(
                ErrorCode::Unauthorized,
                "The session has expired; sign in again.".into(),
            ))
        }
    };
    if user.must_change_password {
        return Err(End::Error(
            ErrorCode::PasswordChangeRequired,
            "Change your one-time password first (POST /v1/password).".into(),
        ));
    }
    Ok((user, cursor, Session::new(revocation, live.expires_at)))
}

async fn serve(socket: &mut WebSocket, state: &AppState) -> Result<(), End> {
    // Watched from the start: a shutdown ends the feed at any stage, even before hello.
    let mut shutdown = state.shutdown.subscribe();
    let (user, cursor, mut session) = tokio::select! {
        said = hello(socket, state) => said?,
        () = stopping(&mut shutdown) => return Ok(()),
    };
    // Subscribe before reading the log: nothing committed from here on can be missed.
    let mut live = state.store.subscribe();
    let head = state
        .store
        .latest_head()
        .await
        .map_err(|_| End::log_broken())?;
    // (On PostgreSQL the head is the database's: a client that moved here from another
    // instance may be ahead of this one's memory, not of the clinic.)
    // A cursor past the head, or inside seqs a restore from a backup skipped, is from
    // another history (the server's database was replaced): what it holds may be changes
    // this server never had. It resyncs, whatever this server has done since.
    let Some(cursor) = state.store.resume_point(cursor).filter(|c| *c <= head) else {
        return Err(End::Resync(
            ResyncReason::CursorAhead,
            "Your copy is ahead of this server; fetch a new snapshot.",
        ));
    };
    let oldest = state
        .store
        .oldest_kept()
        .await
        .map_err(|_| End::log_broken())?;
    let too_old = match oldest {
        Some(oldest) => cursor + 1 < oldest,
        None => cursor < head,
    };
    if too_old {
        return Err(End::Resync(
            ResyncReason::CursorTooOld,
            "Your copy is older than the log keeps; fetch a new snapshot.",
        ));
    }
    send(
        socket,
        &session,
        &ServerFrame::Welcome {
            protocol: PROTOCOL_VERSION,
            user_id: user.id,
            head,
        },
    )
    .await?;

    // Catch-up, in batches of many changes per frame, up to the head welcomed: what was
    // committed after it comes live (subscribed before the head was read), and is judged
    // as live (a driver going on duty meanwhile is not history to resync for).
    let mut upto = cursor;
    while upto < head {
        if *shutdown.borrow() {
            return Ok(());
        }
        let mut batch = state
            .store
            .log_after(upto, MAX_BATCH_CHANGES)
            .await
            .map_err(|_| End::log_broken())?;
        batch.retain(|logged| logged.seq <= head);
        let Some(last) = batch.last() else { break };
        // Seqs are gap-free (but for a range a restore skipped, which `resume_point`
        // steps over), so a hole here means compaction ran since the check above.
        if batch[0].seq != upto + 1 {
            return Err(End::Resync(
                ResyncReason::CursorTooOld,
                "Your copy is older than the log keeps; fetch a new snapshot.",
            ));
        }
        upto = state.store.resume_point(last.seq).unwrap_or(last.seq);
        send_changes(
            socket,
            &session,
            &user,
            &batch,
            (upto, false),
            &state.metrics,
        )
        .await?;
    }
    send(socket, &session, &ServerFrame::Heartbeat { head: upto }).await?;

    let mut beat = tokio::time::interval(state.config.heartbeat);
    beat.reset();
    let expiry = tokio::time::sleep_until(session.expires);
    tokio::pin!(expiry);
    loop {
        tokio::select! {
            // Should a change or a beat be picked first, its send refuses just the same.
            why = session.revocation.wait() => return Err(End::ended(why)),
            () = &mut expiry => return Err(End::expired()),
            received = live.recv() => {
                let first = match received {
                    Ok(first) => first,
                    Err(RecvError::Lagged(_)) => return Err(End::Resync(ResyncReason::TooSlow, "You fell too far behind; fetch a new snapshot.")),
                    Err(RecvError::Closed) => return Err(End::Quiet),
                };
                // Everything already queued goes out in the same frame: fewer frames and
                // fewer write syscalls under load.
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH_CHANGES {
                    match live.try_recv() {
                        Ok(more) => batch.push(more),
                        Err(TryRecvError::Lagged(_)) => return Err(End::Resync(ResyncReason::TooSlow, "You fell too far behind; fetch a new snapshot.")),
                        Err(TryRecvError::Empty | TryRecvError::Closed) => break,
                    }
                }
                // Catch-up already sent what it read from the log.
                let fresh: Vec<&Logged> = batch.iter().map(|l| &**l).filter(|l| l.seq > upto).collect();
                upto = upto.max(batch.last().map_or(upto, |l| l.seq));
                if send_changes(socket, &session, &user, fresh, (upto, true), &state.metrics).await? {
                    beat.reset();
                }
            }
            _ = beat.tick() => {
                send(socket, &session, &ServerFrame::Heartbeat { head: upto }).await?;
            }
            incoming = socket.recv() => match incoming {
                None | Some(Ok(Message::Close(_))) => return Err(End::Quiet),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(_)) => return Err(End::Error(ErrorCode::Malformed, "Only one hello is expected on the feed.".into())),
                Some(Err(e)) => return Err(refused(&e)),
            },
            () = stopping(&mut shutdown) => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clinic_protocol::{Change, ChangeOp, Id, RecordKind};

    fn change(seq: u64) -> Change {
        Change {
            seq,
            actor: Some(Id::from_u128(7)),
            mutation_id: None,
            op: ChangeOp::Remove {
                kind: RecordKind::Booking,
                id: Id::from_u128(u128::from(seq)),
            },
        }
    }

    #[test]
    fn a_frame_built_from_pieces_is_a_changes_frame() {
        let mut frame = ChangesFrame::default();
        for seq in [3, 5] {
            frame.push(&serde_json::to_string(&change(seq)).unwrap(), seq);
        }
        let parsed: ServerFrame = serde_json::from_str(&frame.finish(9)).unwrap();
        assert_eq!(
            parsed,
            ServerFrame::Changes {
                changes: vec![change(3), change(5)],
                upto: 9
            }
        );
    }
}
