//! The sync status every window shows (the dot, and the sync panel behind it), as ONE
//! payload built here from the engine's status, the server it syncs with and whether
//! desktop notifications work. Every window gets the same payload (`sync://status`, and
//! with each view until the first event), so every window shows the same figures.

use clinic_protocol::Mutation;
use clinic_sync::{Engine, PendingChange, Status};
use tauri::{AppHandle, Emitter};

use crate::ipc::{self, NotificationState, NotificationsDto, PendingDto, StatusPayload, SyncState};
use crate::notify::{self, Health};
use crate::windows;

/// The status as windows show it now.
pub(crate) fn status_payload(engine: &Engine) -> StatusPayload {
    let health = notify::health().borrow().clone();
    payload(&engine.status().borrow(), engine.server_url(), &health)
}

/// Sends every window the status whenever it, or the notifications' health, changes.
pub(crate) async fn forward(app: AppHandle, engine: Engine) {
    let mut status = engine.status();
    let mut health = notify::health();
    loop {
        let payload = payload(
            &status.borrow_and_update(),
            engine.server_url(),
            &health.borrow_and_update(),
        );
        if let Err(e) = app.emit(ipc::STATUS, payload) {
            tracing::warn!("could not broadcast the sync status: {e}");
        }
        tokio::select! {
            changed = status.changed() => if changed.is_err() { return },
            changed = health.changed() => if changed.is_err() { return },
        }
    }
}

fn payload(status: &Status, server: &str, health: &Health) -> StatusPayload {
    StatusPayload {
        state: match status.state {
            clinic_sync::SyncState::Online => SyncState::Online,
            clinic_sync::SyncState::Syncing => SyncState::Syncing,
            clinic_sync::SyncState::Offline => SyncState::Offline,
        },
        pending: status.pending,
        oldest_pending_secs: status.oldest_pending.map(|d| d.as_secs()),
        lag: status.lag,
        last_sync_at: status.last_sync,
        last_error: status.last_error.clone(),
        session_expired: status.session_expired,
        account_disabled: status.account_disabled,
        server: server.to_owned(),
        server_version: status.server_version.clone(),
        outbox: status.outbox.iter().map(pending).collect(),
        notifications: notifications(health),
    }
}

fn pending(change: &PendingChange) -> PendingDto {
    let kind = change.tag.as_deref().and_then(windows::kind_of);
    PendingDto {
        mutation_id: change.mutation_id,
        what: describe(&change.mutation),
        queued_at: change.queued_at,
        window: kind.map(|k| k.title().to_owned()),
        window_label: change.tag.clone(),
    }
}

/// A queued change in words, for the list of what waits. Record names are not in a
/// mutation (only ids), so the words say what kind of change it is. No wildcard: a new
/// mutation does not compile here until it has its words.
pub(crate) fn describe(mutation: &Mutation) -> String {
    match mutation {
        Mutation::CreateBooking { booking } => format!("New booking for {}", booking.client_name),
        Mutation::BookingAction { action, .. } => format!("{} a booking", action.label()),
        Mutation::RescheduleBooking { date, start, .. } => {
            format!("Move a booking to {date} {}", start.format("%H:%M"))
        }
        Mutation::AssignBooking { .. } => "Assign a booking".into(),
        Mutation::CreateSlot { slot } => format!(
            "New availability on {} {}",
            slot.date,
            slot.start.format("%H:%M")
        ),
        Mutation::UpdateSlot { .. } => "Change availability".into(),
        Mutation::DeleteSlot { .. } => "Remove availability".into(),
        Mutation::SendMessage { message } => {
            format!("Message: \u{201c}{}\u{201d}", shorten(&message.body, 40))
        }
        Mutation::MarkRead { .. } => "Mark a message read".into(),
        Mutation::VerifyPayment {
            amount_cents,
            method,
            ..
        } => format!(
            "Verify a payment of {} ({})",
            clinic_protocol::rules::money(*amount_cents),
            method.label()
        ),
        Mutation::CancelBooking { .. } => "Cancel a booking".into(),
        Mutation::SetOnDuty { on_duty, .. } => clinic_protocol::rules::duty_step(*on_duty).into(),
    }
}

/// The first `max` characters of `text` on one line, with an ellipsis if cut.
fn shorten(text: &str, max: usize) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(max) {
        Some((at, _)) => format!("{}\u{2026}", &line[..at]),
        None => line,
    }
}

fn notifications(health: &Health) -> NotificationsDto {
    match health {
        Health::Working { server } => NotificationsDto {
            state: NotificationState::Working,
            words: format!("Desktop notifications work ({server})."),
        },
        // The service's error is in the log; here, what it means for the user.
        Health::Unavailable { .. } => NotificationsDto {
            state: NotificationState::Unavailable,
            words: "Desktop notifications do not work here (no notification service \
                    answers); news is shown inside the windows instead."
                .into(),
        },
        Health::Unknown => NotificationsDto {
            state: NotificationState::Unknown,
            words: "Not known yet whether desktop notifications work.".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, NaiveTime};
    use clinic_protocol::{BookingAction, NewMessage};
    use uuid::Uuid;

    #[test]
    fn a_queued_change_is_told_in_words() {
        let id = Uuid::nil();
        assert_eq!(
            describe(&Mutation::BookingAction {
                id,
                version: 1,
                action: BookingAction::Accept,
            }),
            "Accept a booking"
        );
        assert_eq!(
            describe(&Mutation::RescheduleBooking {
                id,
                version: 1,
                date: NaiveDate::from_ymd_opt(2026, 12, 3).unwrap(),
                start: NaiveTime::from_hms_opt(9, 30, 0).unwrap(),
                end: NaiveTime::from_hms_opt(10, 30, 0).unwrap(),
            }),
            "Move a booking to 2026-12-03 09:30"
        );
        let long = "Running late,\nabout   twenty minutes because of the traffic on the ring road";
        assert_eq!(
            describe(&Mutation::SendMessage {
                message: NewMessage {
                    id,
                    recipient_id: id,
                    body: long.into(),
                },
            }),
            "Message: \u{201c}Running late, about twenty minutes becau\u{2026}\u{201d}"
        );
    }

    #[test]
    fn a_pending_change_names_its_window() {
        let change = PendingChange {
            mutation_id: Uuid::nil(),
            mutation: Mutation::MarkRead { id: Uuid::nil() },
            queued_at: chrono::Utc::now(),
            tag: Some("therapist-3".into()),
        };
        let dto = pending(&change);
        assert_eq!(dto.window.as_deref(), Some("My appointments"));
        assert_eq!(dto.window_label.as_deref(), Some("therapist-3"));
        let untagged = pending(&PendingChange {
            tag: None,
            ..change
        });
        assert_eq!(untagged.window, None);
    }

    #[test]
    fn notifications_say_whether_they_work() {
        let working = notifications(&Health::Working {
            server: "dunst 1.9".into(),
        });
        assert_eq!(working.state, NotificationState::Working);
        assert!(working.words.contains("dunst 1.9"));
        let broken = notifications(&Health::Unavailable {
            error: "ServiceUnknown".into(),
        });
        assert_eq!(broken.state, NotificationState::Unavailable);
        assert!(broken.words.contains("inside the windows"));
    }
}
