//! A loopback TCP proxy that a test can cut, to put one client offline while the server and
//! the other clients carry on: a network partition, not a server stop.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Forwards every connection to one upstream address while up. Dropping it drops every
/// connection through it and stops listening.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    /// `true` while connections pass; the proxy's tasks end when this is dropped.
    online: watch::Sender<bool>,
}

impl Proxy {
    /// A proxy on 127.0.0.1 (any free port) to `upstream`, up.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy on loopback");
        let addr = listener.local_addr().expect("the proxy's address");
        let (online, up) = watch::channel(true);
        tokio::spawn(accept(listener, upstream, up));
        Proxy { addr, online }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://` and the address: what a client is given instead of the server's URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Drops every connection through the proxy and refuses new ones until
    /// [`Proxy::restore`]: the client sees its connections break and cannot reconnect.
    pub fn cut(&self) {
        self.online.send_replace(false);
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.online.send_replace(true);
    }
}

async fn accept(listener: TcpListener, upstream: SocketAddr, mut online: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { return };
                // While cut, a connection is accepted and dropped at once: refused.
                if *online.borrow() {
                    tokio::spawn(forward(client, upstream, online.clone()));
                }
            }
            changed = online.changed() => {
                if changed.is_err() {
                    return; // The Proxy was dropped.
                }
            }
        }
    }
}

async fn forward(mut client: TcpStream, upstream: SocketAddr, mut online: watch::Receiver<bool>) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return; // The server is down: the client's connection closes.
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        // Cut, or the Proxy dropped (then waiting fails): both sides close.
        _ = online.wait_for(|up| !up) => {}
    }
}
