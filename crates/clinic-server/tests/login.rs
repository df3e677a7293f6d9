//! Signing in under attack, end to end: failures are limited per address and per username
//! (never successes), and password checks run a few at a time, so that nobody can lock a
//! real user out and a flood of sign-ins cannot exhaust the server's memory.
//!
//! The server comes from `clinic-test-kit` on 127.0.0.1. To sign in from somewhere else, a
//! client binds to another loopback address (127.0.0.2, 127.0.0.3...): Linux routes all of
//! 127.0.0.0/8 to the loopback interface, and the server sees each as its own address.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use clinic_protocol::wire::paths;
use clinic_protocol::{ApiError, ErrorCode, LoginRequest, LoginResponse};
use clinic_test_kit::{TestServer, PASSWORD};

/// A client on the loopback address `127.0.0.<n>`.
struct Address(reqwest::Client);

impl Address {
    fn n(n: u8) -> Address {
        let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, n));
        Address(
            reqwest::Client::builder()
                .local_address(ip)
                .build()
                .expect("a client bound to a loopback address"),
        )
    }

    /// The server's answer to a sign-in: the session, or the error code.
    async fn sign_in(
        &self,
        s: &TestServer,
        username: &str,
        password: &str,
    ) -> Result<LoginResponse, ErrorCode> {
        let res = self
            .0
            .post(format!("{}{}", s.url(), paths::LOGIN))
            .json(&LoginRequest {
                username: username.into(),
                password: password.into(),
            })
            .send()
            .await
            .expect("the sign-in reaches the server");
        let status = res.status();
        if status.is_success() {
            return Ok(res.json().await.expect("a session"));
        }
        let error: ApiError = res.json().await.expect("an ApiError");
        assert_eq!(status.as_u16(), error.code.http_status(), "{error:?}");
        Err(error.code)
    }
}

#[tokio::test]
async fn eleven_sign_ins_within_a_minute_all_succeed() {
    let s = TestServer::start().await;
    let desk = Address::n(1);
    for i in 1..=11 {
        let answer = desk.sign_in(&s, "olivia", PASSWORD).await;
        assert!(answer.is_ok(), "sign-in {i} answered {answer:?}");
    }
}

#[tokio::test]
async fn wrong_passwords_get_their_address_limited_while_olivia_still_signs_in_from_hers() {
    let limit = 5;
    let s = TestServer::start_with(|c| {
        c.login_attempts_per_minute = limit;
        c.login_failures_per_username = limit;
    })
    .await;
    let attacker = Address::n(2);
    let mut answers = Vec::new();
    for _ in 0..limit + 5 {
        answers.push(attacker.sign_in(&s, "olivia", "guess").await.err());
    }
    let expected: Vec<_> = (0..limit + 5)
        .map(|i| {
            Some(if i < limit {
                ErrorCode::Unauthorized
            } else {
                ErrorCode::RateLimited
            })
        })
        .collect();
    assert_eq!(answers, expected, "the attacker's address is limited");
    assert_eq!(
        attacker.sign_in(&s, "olivia", PASSWORD).await.err(),
        Some(ErrorCode::RateLimited),
        "even the right password is refused from the limited address"
    );

    // Olivia, from her own desk, is not locked out.
    let olivia = Address::n(3).sign_in(&s, "olivia", PASSWORD).await;
    assert_eq!(olivia.expect("olivia signs in").user.username, "olivia");

    // Olivia is under attack now: another address gets one guess, and then no more for her,
    // while it may still sign in as someone else.
    let second = Address::n(4);
    assert_eq!(
        second.sign_in(&s, "olivia", "another guess").await.err(),
        Some(ErrorCode::Unauthorized)
    );
    assert_eq!(
        second.sign_in(&s, "olivia", PASSWORD).await.err(),
        Some(ErrorCode::RateLimited)
    );
    assert!(second.sign_in(&s, "sam", PASSWORD).await.is_ok());

    // And the desk that never failed still gets in.
    assert!(Address::n(3).sign_in(&s, "olivia", PASSWORD).await.is_ok());
}

#[tokio::test]
async fn a_flood_of_made_up_usernames_waits_for_a_free_check_and_the_server_keeps_serving() {
    // One password check at a time, a very short wait for it, and no address limit in the
    // way: what keeps the flood's memory bounded is the check limit alone.
    let s = TestServer::start_with(|c| {
        c.login_concurrent_checks = 1;
        c.login_check_wait = Duration::from_millis(1);
        c.login_attempts_per_minute = 1000;
        c.login_failures_per_username = 1000;
    })
    .await;
    let flood = Address::n(5);
    let answers = futures_util::future::join_all((0..40).map(|i| {
        let username = format!("nobody-{i}-{}", uuid::Uuid::new_v4());
        let flood = &flood;
        let s = &s;
        async move { flood.sign_in(s, &username, "guess").await.err() }
    }))
    .await;
    let checked = answers
        .iter()
        .filter(|a| **a == Some(ErrorCode::Unauthorized))
        .count();
    let busy = answers
        .iter()
        .filter(|a| **a == Some(ErrorCode::RateLimited))
        .count();
    assert_eq!(checked + busy, answers.len(), "{answers:?}");
    assert!(checked >= 1, "some were checked: {answers:?}");
    assert!(
        busy >= 1,
        "the rest were told the server is busy: {answers:?}"
    );

    // Every check has ended with its answer: the server signs people in again.
    assert!(flood.sign_in(&s, "olivia", PASSWORD).await.is_ok());
    s.login("sam").await;
}

/// Regression (found by the login fuzz target on PostgreSQL): a username with a NUL in it
/// made PostgreSQL refuse the lookup, and the sign-in answered `internal`. It is a name no
/// account has, on either store.
#[tokio::test]
async fn a_username_with_a_nul_is_a_wrong_name_not_an_internal_error() {
    let s = TestServer::start().await;
    let desk = Address::n(1);
    assert_eq!(
        desk.sign_in(&s, "olivia\0", PASSWORD).await.err(),
        Some(ErrorCode::Unauthorized)
    );
    assert!(desk.sign_in(&s, "olivia", PASSWORD).await.is_ok());
}
