//! The feed protocol as a state machine without IO: frames in, instructions out.
//!
//! It checks everything a server could get wrong or a hostile peer could send (garbage,
//! another protocol version, sequence numbers that go backwards or skip the cursor) and
//! answers with a resync instead of letting a bad frame near the cache.

use clinic_protocol::{Change, ServerFrame, PROTOCOL_VERSION};

/// What the IO layer must do after a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    /// Nothing to do (a welcome).
    Nothing,
    /// Apply these changes and set the cursor to `upto`, in one transaction.
    Apply { changes: Vec<Change>, upto: u64 },
    /// The cursor may move to `head` (nothing for us in between).
    Advance { head: u64 },
    /// Drop the feed, fetch a snapshot, reconnect from its seq. `why` is for the status.
    Resync { why: String },
    /// The server refused us (bad token, old client); stop and report.
    Fail {
        code: clinic_protocol::ErrorCode,
        why: String,
    },
}

/// The feed's state: where the cache is, and what the server says its head is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedMachine {
    pub cursor: u64,
    pub head: u64,
    welcomed: bool,
}

impl FeedMachine {
    pub fn new(cursor: u64) -> FeedMachine {
        FeedMachine {
            cursor,
            head: cursor,
            welcomed: false,
        }
    }

    /// A raw text frame from the socket.
    pub fn on_text(&mut self, text: &str) -> Instruction {
        match serde_json::from_str::<ServerFrame>(text) {
            Ok(frame) => self.on_frame(frame),
            Err(e) => Instruction::Resync {
                why: format!("the server sent an unreadable frame ({e})"),
            },
        }
    }

    pub fn on_frame(&mut self, frame: ServerFrame) -> Instruction {
        match frame {
            ServerFrame::Welcome { protocol, head, .. } => {
                if protocol != PROTOCOL_VERSION {
                    return Instruction::Resync {
                        why: format!(
                            "the server speaks protocol {protocol}, not {PROTOCOL_VERSION}"
                        ),
                    };
                }
                self.welcomed = true;
                self.head = self.head.max(head);
                Instruction::Nothing
            }
            _ if !self.welcomed => Instruction::Resync {
                why: "the server sent changes before welcoming us".into(),
            },
            ServerFrame::Changes { changes, upto } => {
                let mut last = self.cursor;
                for change in &changes {
                    if change.seq <= last {
                        return Instruction::Resync {
                            why: format!(
                                "the server sent change {} after {} (out of order or repeated)",
                                change.seq, last
                            ),
                        };
                    }
                    last = change.seq;
                }
                if upto < last {
                    return Instruction::Resync {
                        why: format!("the server's batch ends at {upto} but holds change {last}"),
                    };
                }
                self.cursor = upto;
                self.head = self.head.max(upto);
                Instruction::Apply { changes, upto }
            }
            ServerFrame::Heartbeat { head } => {
                if head < self.cursor {
                    return Instruction::Resync {
                        why: format!(
                            "the server's head {head} is behind our cursor {}",
                            self.cursor
                        ),
                    };
                }
                self.head = head;
                if head == self.cursor {
                    Instruction::Nothing
                } else {
                    self.cursor = head;
                    Instruction::Advance { head }
                }
            }
            ServerFrame::Resync { message, .. } => Instruction::Resync { why: message },
            ServerFrame::Error { code, message } => Instruction::Fail { code, why: message },
        }
    }

    pub fn lag(&self) -> u64 {
        self.head.saturating_sub(self.cursor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clinic_protocol::{ChangeOp, RecordKind};

    fn change(seq: u64) -> Change {
        Change {
            seq,
            actor: None,
            mutation_id: None,
            op: ChangeOp::Remove {
                kind: RecordKind::Slot,
                id: uuid::Uuid::nil(),
            },
        }
    }

    fn welcomed(cursor: u64) -> FeedMachine {
        let mut m = FeedMachine::new(cursor);
        let w = m.on_frame(ServerFrame::Welcome {
            protocol: PROTOCOL_VERSION,
            user_id: uuid::Uuid::nil(),
            head: cursor + 5,
        });
        assert_eq!(w, Instruction::Nothing);
        m
    }

    #[test]
    fn ordered_changes_apply_and_move_the_cursor() {
        let mut m = welcomed(10);
        assert_eq!(m.lag(), 5);
        let i = m.on_frame(ServerFrame::Changes {
            changes: vec![change(11), change(13)],
            upto: 14,
        });
        assert!(matches!(i, Instruction::Apply { upto: 14, .. }));
        assert_eq!(m.cursor, 14);
        assert_eq!(
            m.on_frame(ServerFrame::Heartbeat { head: 20 }),
            Instruction::Advance { head: 20 }
        );
        assert_eq!(m.lag(), 0);
    }

    #[test]
    fn hostile_frames_lead_to_a_resync_and_leave_the_cursor_alone() {
        for bad in [
            r#"garbage"#,
            r#"{"type":"changes","changes":[],"upto":1,"extra":true}"#,
            r#"{"type":"teleport"}"#,
        ] {
            let mut m = welcomed(10);
            assert!(
                matches!(m.on_text(bad), Instruction::Resync { .. }),
                "{bad}"
            );
            assert_eq!(m.cursor, 10);
        }
        let mut m = welcomed(10);
        let repeated = m.on_frame(ServerFrame::Changes {
            changes: vec![change(10)],
            upto: 10,
        });
        assert!(matches!(repeated, Instruction::Resync { .. }));
        let backwards = m.on_frame(ServerFrame::Changes {
            changes: vec![change(12), change(11)],
            upto: 12,
        });
        assert!(matches!(backwards, Instruction::Resync { .. }));
        let short = m.on_frame(ServerFrame::Changes {
            changes: vec![change(12)],
            upto: 11,
        });
        assert!(matches!(short, Instruction::Resync { .. }));
        let behind = m.on_frame(ServerFrame::Heartbeat { head: 3 });
        assert!(matches!(behind, Instruction::Resync { .. }));
        assert_eq!(m.cursor, 10);

        let mut other = FeedMachine::new(0);
        let v = other.on_frame(ServerFrame::Welcome {
            protocol: 99,
            user_id: uuid::Uuid::nil(),
            head: 0,
        });
        assert!(matches!(v, Instruction::Resync { .. }));
        let early = FeedMachine::new(0).on_frame(ServerFrame::Heartbeat { head: 1 });
        assert!(
            matches!(early, Instruction::Resync { .. }),
            "nothing counts before the welcome"
        );
    }
}
