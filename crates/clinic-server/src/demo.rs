//! The demo clinic: staff with every role, a week of availability and a day of bookings in
//! various states, dated from today.

use chrono::{Duration, Local, NaiveTime};
use clinic_protocol::{
    BookingAction, Mutation, MutationOutcome, NewBooking, NewMessage, NewSlot, PaymentMethod, Role,
    Staff,
};
use uuid::Uuid;

use crate::{AppState, ServerError};

/// The web booking form's key in demo mode.
pub const DEMO_INTAKE_KEY: &str = "demo-intake-key";
const PASSWORD: &str = "demo";

#[derive(Debug, Clone)]
pub struct DemoLogin {
    pub username: String,
    pub password: String,
    pub display_name: String,
    pub roles: Vec<Role>,
}

const STAFF: &[(&str, &str, &[Role])] = &[
    ("maria", "Maria Santos", &[Role::Operator, Role::Therapist]),
    ("olivia", "Olivia Grant", &[Role::Operator]),
    ("sam", "Sam Okafor", &[Role::Scheduler]),
    ("reyes", "Dr. Elena Reyes", &[Role::Therapist]),
    ("kim", "Dr. Jun Kim", &[Role::Therapist]),
    ("dan", "Dan Cole", &[Role::Driver]),
    ("lee", "Lee Park", &[Role::Driver]),
    ("admin", "Clinic Admin", &[Role::Admin]),
];

fn t(h: u32, m: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(h, m, 0).unwrap_or(NaiveTime::MIN)
}

/// Seeds the demo clinic into an empty server (does nothing if it has staff) and returns
/// the logins.
pub async fn seed(state: &AppState) -> Result<Vec<DemoLogin>, ServerError> {
    let logins: Vec<DemoLogin> = STAFF
        .iter()
        .map(|(u, n, r)| DemoLogin {
            username: (*u).into(),
            password: PASSWORD.into(),
            display_name: (*n).into(),
            roles: r.to_vec(),
        })
        .collect();
    if state.store.staff_count().await > 0 {
        return Ok(logins);
    }
    let mut staff: Vec<Staff> = Vec::new();
    for (username, name, roles) in STAFF {
        staff.push(state.create_staff(username, name, roles, PASSWORD).await?);
    }
    let by = |u: &str| {
        staff
            .iter()
            .find(|s| s.username == u)
            .cloned()
            .ok_or(ServerError::Invariant("demo staff"))
    };
    let (maria, olivia, sam) = (by("maria")?, by("olivia")?, by("sam")?);
    let (reyes, kim, dan, lee) = (by("reyes")?, by("kim")?, by("dan")?, by("lee")?);

    let today = Local::now().date_naive();
    let apply = |user: Staff, m: Mutation| {
        let state = state.clone();
        async move {
            match state.store.mutate(&user, Uuid::new_v4(), &m).await? {
                MutationOutcome::Applied { record, .. } => Ok::<_, ServerError>(record),
                MutationOutcome::Rejected { message, .. } => {
                    tracing::warn!("demo seed step refused: {message}");
                    Ok(None)
                }
            }
        }
    };
    for therapist in [&maria, &reyes, &kim] {
        for day in 0..7 {
            apply(
                sam.clone(),
                Mutation::CreateSlot {
                    slot: NewSlot {
                        id: Uuid::new_v4(),
                        staff_id: therapist.id,
                        date: today + Duration::days(day),
                        start: t(9, 0),
                        end: t(18, 0),
                        note: String::new(),
                    },
                },
            )
            .await?;
        }
    }
    let bookings = [
        (
            "Ana Lopez",
            "Deep tissue massage",
            0,
            (10, 0),
            (11, 0),
            &reyes,
            Some(&dan),
            "Second floor, no lift.",
        ),
        (
            "Ben Carter",
            "Physiotherapy",
            0,
            (11, 30),
            (12, 30),
            &reyes,
            Some(&lee),
            "",
        ),
        (
            "Chloe Nguyen",
            "Sports massage",
            0,
            (14, 30),
            (15, 30),
            &maria,
            Some(&dan),
            "Prefers a female therapist.",
        ),
        (
            "David Mensah",
            "Reflexology",
            0,
            (16, 0),
            (17, 0),
            &maria,
            None,
            "",
        ),
        (
            "Emma Rossi",
            "Physiotherapy",
            0,
            (9, 30),
            (10, 30),
            &kim,
            Some(&lee),
            "",
        ),
        (
            "Farid Haddad",
            "Deep tissue massage",
            0,
            (13, 0),
            (14, 0),
            &kim,
            Some(&dan),
            "Dog in the garden.",
        ),
        (
            "Iris Novak",
            "Reflexology",
            0,
            (12, 0),
            (13, 0),
            &kim,
            None,
            "",
        ),
        (
            "Jonas Berg",
            "Physiotherapy",
            0,
            (9, 0),
            (9, 45),
            &reyes,
            Some(&dan),
            "",
        ),
        (
            "Grace Kim",
            "Hot stone massage",
            1,
            (10, 0),
            (11, 30),
            &reyes,
            Some(&lee),
            "",
        ),
        (
            "Hugo Weber",
            "Sports massage",
            1,
            (15, 0),
            (16, 0),
            &kim,
            None,
            "",
        ),
    ];
    let mut made = Vec::new();
    for (client, service, day, start, end, therapist, driver, notes) in bookings {
        let id = Uuid::new_v4();
        apply(
            olivia.clone(),
            Mutation::CreateBooking {
                booking: NewBooking {
                    id,
                    client_name: client.into(),
                    client_phone: format!("555-01{:02}", made.len()),
                    address: format!("{} Harbour Road", 10 + made.len()),
                    service: service.into(),
                    date: today + Duration::days(day),
                    start: t(start.0, start.1),
                    end: t(end.0, end.1),
                    therapist_id: Some(therapist.id),
                    driver_id: driver.map(|d| d.id),
                    notes: notes.into(),
                },
            },
        )
        .await?;
        made.push((id, therapist.clone(), driver.cloned()));
    }
    // Move a few along their life cycle: Emma is confirmed, Farid's driver is on the way,
    // Ben's session is done and waiting for payment, Iris's and Jonas's are done and paid.
    let step = |i: usize, version: i64, action: BookingAction| (made[i].0, version, action);
    let steps = [
        (made[4].1.clone(), step(4, 1, BookingAction::Accept)),
        (made[5].1.clone(), step(5, 1, BookingAction::Accept)),
        (dan.clone(), step(5, 2, BookingAction::ConfirmPickup)),
        (dan.clone(), step(5, 3, BookingAction::StartJourney)),
        (made[1].1.clone(), step(1, 1, BookingAction::Accept)),
        (lee.clone(), step(1, 2, BookingAction::ConfirmPickup)),
        (lee.clone(), step(1, 3, BookingAction::StartJourney)),
        (lee.clone(), step(1, 4, BookingAction::MarkArrived)),
        (olivia.clone(), step(1, 5, BookingAction::StartSession)),
        (made[1].1.clone(), step(1, 6, BookingAction::Complete)),
        // Iris's and Jonas's visits are done and paid.
        (kim.clone(), step(6, 1, BookingAction::Accept)),
        (kim.clone(), step(6, 2, BookingAction::StartSession)),
        (kim.clone(), step(6, 3, BookingAction::Complete)),
        (reyes.clone(), step(7, 1, BookingAction::Accept)),
        (dan.clone(), step(7, 2, BookingAction::ConfirmPickup)),
        (dan.clone(), step(7, 3, BookingAction::StartJourney)),
        (dan.clone(), step(7, 4, BookingAction::MarkArrived)),
        (reyes.clone(), step(7, 5, BookingAction::StartSession)),
        (reyes.clone(), step(7, 6, BookingAction::Complete)),
    ];
    for (who, (id, version, action)) in steps {
        apply(
            who,
            Mutation::BookingAction {
                id,
                version,
                action,
            },
        )
        .await?;
    }
    for (i, version, amount_cents, method, reference) in [
        (6, 4, 6_500, PaymentMethod::Card, "Slip 4471"),
        (7, 7, 9_000, PaymentMethod::Insurance, "Claim HB-2231"),
    ] {
        apply(
            olivia.clone(),
            Mutation::VerifyPayment {
                id: made[i].0,
                version,
                amount_cents,
                method,
                reference: reference.into(),
            },
        )
        .await?;
    }
    // Dan is at work (Lee has not started yet).
    apply(
        dan.clone(),
        Mutation::SetOnDuty {
            staff_id: dan.id,
            on_duty: true,
        },
    )
    .await?;
    for (from, to, body) in [
        (
            &olivia,
            &maria,
            "Chloe asked if you could come 10 minutes early.",
        ),
        (
            &dan,
            &olivia,
            "Traffic on the ring road, I may be 5 minutes late for Farid.",
        ),
    ] {
        apply(
            from.clone(),
            Mutation::SendMessage {
                message: NewMessage {
                    id: Uuid::new_v4(),
                    recipient_id: to.id,
                    body: body.into(),
                },
            },
        )
        .await?;
    }
    Ok(logins)
}
