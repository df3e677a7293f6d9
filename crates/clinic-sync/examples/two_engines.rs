//! Two engines, two users, one server (in-process on loopback): a therapist accepts a
//! booking and the operator's cache receives it.
//!
//! `cargo run -p clinic-sync --example two_engines`
#![allow(clippy::print_stdout)]

use clinic_protocol::{BookingAction, BookingStatus, Mutation, Record};
use clinic_sync::{CacheEvent, ChangeKind, Engine, EngineConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // A server on loopback (any free port) with the demo clinic; it stops when dropped.
    let dir = tempfile::tempdir()?;
    let state =
        clinic_server::AppState::open(clinic_server::Config::new(dir.path().join("clinic.db")))
            .await?;
    clinic_server::demo::seed(&state).await?;
    let server = clinic_server::Embedded::spawn("127.0.0.1:0".parse()?, state).await?;
    let url = server.url();

    let olivia = Engine::login(
        EngineConfig::new(&url, &dir.path().join("olivia")),
        "olivia",
        "demo",
    )
    .await?;
    let reyes = Engine::login(
        EngineConfig::new(&url, &dir.path().join("reyes")),
        "reyes",
        "demo",
    )
    .await?;
    let mut olivia_events = olivia.subscribe();

    let view = reyes.view_at().await?;
    let booking = view
        .records
        .iter()
        .find_map(|v| match &v.record {
            Record::Booking(b) if b.status == BookingStatus::Requested => Some(b.clone()),
            _ => None,
        })
        .ok_or_else(|| anyhow::anyhow!("no requested booking"))?;
    println!(
        "reyes accepts {} ({})",
        booking.client_name, booking.service
    );
    reyes
        .submit(Mutation::BookingAction {
            id: booking.id,
            version: booking.version,
            action: BookingAction::Accept,
        })
        .await?;

    while let Some(event) = olivia_events.recv().await {
        if let CacheEvent::Change(change) = event {
            if let ChangeKind::Upsert {
                record: Record::Booking(b),
                ..
            } = change.kind
            {
                if b.id == booking.id && b.status == BookingStatus::Confirmed {
                    println!(
                        "olivia's cache, seq {}: {} is {:?}",
                        change.seq, b.client_name, b.status
                    );
                    break;
                }
            }
        }
    }
    olivia.shutdown().await;
    reyes.shutdown().await;
    Ok(())
}
