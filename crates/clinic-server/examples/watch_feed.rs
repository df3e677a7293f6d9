//! Signs in and prints every feed frame, one JSON line each: a WebSocket client for trying
//! the server by hand (websocat is not always at hand).
//!
//! ```sh
//! cargo run -p clinic-server -- --demo            # in one terminal
//! cargo run -p clinic-server --example watch_feed -- --user maria --password demo
//! ```
//!
//! By default it starts at the head (it reads a snapshot first, as a real client does), so
//! only changes from now on appear; `--cursor 0` replays the whole log first.
#![allow(clippy::print_stdout)]

use clap::Parser;
use clinic_protocol::wire::paths;
use clinic_protocol::{ClientFrame, LoginResponse, ServerFrame, Snapshot, PROTOCOL_VERSION};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, Parser)]
#[command(about = "Print a Clinic Desk feed, frame by frame")]
struct Args {
    #[arg(long, default_value = "http://127.0.0.1:7420")]
    server: String,
    #[arg(long, default_value = "maria")]
    user: String,
    #[arg(long, default_value = "demo")]
    password: String,
    /// The last change already seen; default: the head, as of a fresh snapshot.
    #[arg(long)]
    cursor: Option<u64>,
    /// The older form, `watch_feed SERVER USER PASSWORD`, still works.
    #[arg(hide = true, num_args = 0..=3)]
    positional: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    let mut positional = std::mem::take(&mut args.positional).into_iter();
    if let Some(server) = positional.next() {
        args.server = server;
    }
    if let Some(user) = positional.next() {
        args.user = user;
    }
    if let Some(password) = positional.next() {
        args.password = password;
    }
    let server = args.server.trim_end_matches('/');
    let http = reqwest::Client::new();
    let login: LoginResponse = http
        .post(format!("{server}{}", paths::LOGIN))
        .json(&serde_json::json!({ "username": args.user, "password": args.password }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let cursor = match args.cursor {
        Some(cursor) => cursor,
        None => {
            let snapshot: Snapshot = http
                .get(format!("{server}{}", paths::SNAPSHOT))
                .bearer_auth(&login.token)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            println!(
                "# signed in as {} ({} records visible at seq {})",
                login.user.display_name,
                snapshot.records.len(),
                snapshot.seq
            );
            snapshot.seq
        }
    };
    let url = format!("{}{}", server.replacen("http", "ws", 1), paths::FEED);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
    let hello = ClientFrame::Hello {
        protocol: PROTOCOL_VERSION,
        token: login.token,
        cursor,
    };
    ws.send(Message::text(serde_json::to_string(&hello)?))
        .await?;
    while let Some(msg) = ws.next().await {
        match msg? {
            Message::Text(text) => {
                println!("{text}");
                if let Ok(ServerFrame::Resync { .. } | ServerFrame::Error { .. }) =
                    serde_json::from_str(text.as_str())
                {
                    println!(
                        "# the server ends this feed; a real client would re-read the snapshot"
                    );
                }
            }
            Message::Close(frame) => {
                println!("# closed: {frame:?}");
                break;
            }
            _ => {}
        }
    }
    Ok(())
}
