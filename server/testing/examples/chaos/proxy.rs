//! A TCP proxy that injects network faults between two parties: added latency, a blackhole
//! (bytes held, connections kept, as in a partition that heals), connection resets, and a slow
//! reader on the way back to the client. It counts the connections it accepts, so that the
//! suite can tell how often a client reconnected.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does to the bytes it carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Carries bytes as they come.
    None,
    /// Delays every chunk, in both directions, by this much.
    Latency(Duration),
    /// Holds every byte (connections stay open, nothing moves) until the fault ends.
    Blackhole,
    /// Resets every open connection and every new one at once.
    Reset,
    /// Carries bytes back to the client at about 1 KiB/s.
    SlowReader,
}

/// Bytes of the slow reader's trickle, sent every [`TRICKLE_PERIOD`].
const TRICKLE_BYTES: usize = 256;
const TRICKLE_PERIOD: Duration = Duration::from_millis(250);

/// A running proxy: listens on `address`, forwards to its upstream.
#[derive(Debug)]
pub struct Proxy {
    pub address: SocketAddr,
    fault: watch::Sender<Fault>,
    accepted: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let (fault, _) = watch::channel(Fault::None);
        let accepted = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(accept_loop(
            listener,
            upstream,
            fault.clone(),
            accepted.clone(),
        ));
        Ok(Proxy {
            address,
            fault,
            accepted,
            task,
        })
    }

    /// Sets the fault for every open and future connection.
    pub fn set(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }

    /// Connections accepted since the start.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    fault: watch::Sender<Fault>,
    accepted: Arc<AtomicU64>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // Out of descriptors, say: wait rather than spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        accepted.fetch_add(1, Ordering::Relaxed);
        let mut fault = fault.subscribe();
        tokio::spawn(async move {
            if *fault.borrow_and_update() == Fault::Reset {
                reset(&client);
                return;
            }
            // An upstream that is down refuses the client in the same way.
            let Ok(server) = TcpStream::connect(upstream).await else {
                reset(&client);
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            let outcome = tokio::select! {
                outcome = pump(client_read, server_write, fault.clone(), false) => outcome,
                outcome = pump(server_read, client_write, fault.clone(), true) => outcome,
            };
            // The halves still alive are dropped here; after a reset they were made to
            // reset their sockets.
            drop(outcome);
        });
    }
}

/// Closes `stream` with a TCP reset rather than an orderly close.
fn reset(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

/// Carries bytes from `from` to `to` under the current fault. `to_client` says the bytes go
/// back to the client (where the slow reader applies). Returns when either side closes or a
/// reset is injected (both sockets then reset).
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut fault: watch::Receiver<Fault>,
    to_client: bool,
) -> std::io::Result<()> {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = tokio::select! {
            read = from.read(&mut buffer) => read?,
            changed = fault.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                if *fault.borrow() == Fault::Reset {
                    reset(from.as_ref());
                    reset(to.as_ref());
                    return Ok(());
                }
                continue;
            }
        };
        if read == 0 {
            let _ = to.shutdown().await;
            return Ok(());
        }
        // Under a blackhole the bytes wait, as TCP retransmissions would, until it ends.
        loop {
            let current = *fault.borrow_and_update();
            match current {
                Fault::Blackhole => {
                    if fault.changed().await.is_err() {
                        return Ok(());
                    }
                }
                Fault::Reset => {
                    reset(from.as_ref());
                    reset(to.as_ref());
                    return Ok(());
                }
                Fault::Latency(delay) => {
                    tokio::time::sleep(delay).await;
                    break;
                }
                Fault::None | Fault::SlowReader => break,
            }
        }
        if to_client && *fault.borrow() == Fault::SlowReader {
            for piece in buffer[..read].chunks(TRICKLE_BYTES) {
                to.write_all(piece).await?;
                tokio::time::sleep(TRICKLE_PERIOD).await;
            }
        } else {
            to.write_all(&buffer[..read]).await?;
        }
    }
}
