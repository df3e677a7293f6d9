//! Optimistic state, as a pure function: the server's record with the user's pending
//! mutations re-applied on top, in order, through the very rules the server runs.
//!
//! This is the whole of "rebase": whenever the server's copy of a record changes (a feed
//! change, a verdict, a snapshot) the overlay is recomputed from it, so the server's version
//! is always the base and pending changes never overwrite it.

use clinic_protocol::rules::{self, Effect};
use clinic_protocol::{Record, Staff};

use crate::cache::{Key, Queued};

/// What `user`'s pending mutations on `key` make of `server` (`None`: hidden, i.e. deleted
/// or no longer visible to the user). A mutation that no longer applies (someone changed
/// the record meanwhile) is skipped here but stays queued: the server has the last word,
/// and its verdict will say why.
pub(crate) fn rebase<'a>(
    user: &Staff,
    key: Key,
    server: Option<&Record>,
    outbox: impl IntoIterator<Item = &'a Queued>,
) -> Option<Record> {
    let mut record = server.cloned();
    for queued in outbox.into_iter().filter(|q| q.mutation.target() == key) {
        // The time the change was made, not now: replays must give the same result.
        match rules::apply(user, &queued.mutation, record.as_ref(), queued.queued_at) {
            Ok(Effect::Upsert(r)) => record = Some(r),
            Ok(Effect::Delete { .. }) => record = None,
            Err(_) => {}
        }
    }
    record.filter(|r| rules::visible_to(user, r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveTime, Utc};
    use clinic_protocol::{Mutation, NewSlot, RecordKind, Role};
    use uuid::Uuid;

    fn therapist() -> Staff {
        Staff {
            id: Uuid::new_v4(),
            username: "t".into(),
            display_name: "T".into(),
            roles: vec![Role::Therapist],
            version: 1,
            disabled: false,
            must_change_password: false,
            on_duty: false,
        }
    }

    fn queued(mutation: Mutation) -> Queued {
        Queued {
            mutation_id: Uuid::new_v4(),
            mutation,
            queued_at: Utc::now(),
            tag: None,
        }
    }

    fn t(h: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, 0, 0).unwrap()
    }

    #[test]
    fn pending_changes_chain_on_the_server_record_and_stale_ones_are_skipped() {
        let me = therapist();
        let id = Uuid::new_v4();
        let key = (RecordKind::Slot, id);
        // Inside the rules' date window whatever day the test runs.
        let day = Utc::now().date_naive() + chrono::Days::new(7);
        let create = queued(Mutation::CreateSlot {
            slot: NewSlot {
                id,
                staff_id: me.id,
                date: day,
                start: t(9),
                end: t(12),
                note: String::new(),
            },
        });
        let update = |version, end| {
            queued(Mutation::UpdateSlot {
                id,
                version,
                date: day,
                start: t(9),
                end: t(end),
                note: "x".into(),
            })
        };
        // Offline: create, then two edits chained on versions 1 and 2.
        let outbox = vec![create, update(1, 13), update(2, 14)];
        let Some(Record::Slot(s)) = rebase(&me, key, None, &outbox) else {
            panic!("visible")
        };
        assert_eq!((s.end, s.version), (t(14), 3));

        // The server meanwhile has version 5 of it: the stale edits are skipped, not
        // forced on top; the create no longer applies either.
        let server = Record::Slot(clinic_protocol::Slot { version: 5, ..s });
        assert_eq!(
            rebase(&me, key, Some(&server), &outbox),
            Some(server.clone())
        );

        // A pending delete hides it; another user's slot is not ours to see.
        let delete = queued(Mutation::DeleteSlot { id, version: 5 });
        assert_eq!(rebase(&me, key, Some(&server), [&delete]), None);
        assert_eq!(rebase(&therapist(), key, Some(&server), []), None);
    }
}
