//! Signs in and prints every feed frame: a WebSocket client for trying the server by hand.
//!
//! `cargo run -p clinic-server --example watch_feed -- http://127.0.0.1:7420 olivia demo`
#![allow(clippy::print_stdout)]

use clinic_protocol::wire::paths;
use clinic_protocol::{ClientFrame, LoginResponse, PROTOCOL_VERSION};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let server = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:7420".into());
    let user = args.next().unwrap_or_else(|| "olivia".into());
    let password = args.next().unwrap_or_else(|| "demo".into());
    let login: LoginResponse = reqwest::Client::new()
        .post(format!("{server}{}", paths::LOGIN))
        .json(&serde_json::json!({ "username": user, "password": password }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let url = format!("{}{}", server.replacen("http", "ws", 1), paths::FEED);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
    // Cursor = current head is not known yet; 0 replays the whole log first.
    let hello = ClientFrame::Hello {
        protocol: PROTOCOL_VERSION,
        token: login.token,
        cursor: 0,
    };
    ws.send(Message::text(serde_json::to_string(&hello)?))
        .await?;
    while let Some(msg) = ws.next().await {
        if let Message::Text(text) = msg? {
            println!("{text}");
        }
    }
    Ok(())
}
