//! A peer's TCP connection: a reader task that frames the byte stream and
//! hands each read's complete messages on in one batch, once it holds one
//! of the connection's credits, and a writer task.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;

use super::Msg;
use crate::packet;

/// Socket reads of one connection that may be on their way to the RIB at
/// once: the reader waits for a credit before it hands a read on.
pub const READS_IN_FLIGHT: usize = 4;

/// Bytes asked of the socket per read (at most one batch).
const READ_SIZE: usize = 64 * 1024;

/// A connection's credit for one batch of messages on its way to the RIB;
/// dropping it (and its clones) lets the connection read on.
#[derive(Clone, Default)]
pub struct Credit {
    // Held only to be dropped with the batch.
    _permit: Option<Arc<OwnedSemaphorePermit>>,
}

impl std::fmt::Debug for Credit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credit")
    }
}

/// Credits say nothing about the messages: any two are equal.
impl PartialEq for Credit {
    fn eq(&self, _: &Credit) -> bool {
        true
    }
}

/// One TCP connection of a peer: its writer's queue and its reader task.
#[derive(Debug)]
pub(super) struct Connection {
    pub(super) id: u64,
    pub(super) local: Option<SocketAddr>,
    pub(super) writer: mpsc::UnboundedSender<Vec<u8>>,
    reader: JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        // The writer task ends once it has written what is queued.
        self.reader.abort();
    }
}

/// Splits a connection into a reader task (framing only) and a writer task.
pub(super) fn attach(
    peer: IpAddr,
    conn: u64,
    stream: TcpStream,
    tx: mpsc::UnboundedSender<Msg>,
) -> Connection {
    let local = stream.local_addr().ok();
    let (mut read, mut write) = stream.into_split();
    let (writer, mut outgoing) = mpsc::unbounded_channel::<Vec<u8>>();
    tokio::spawn(async move {
        while let Some(bytes) = outgoing.recv().await {
            if write.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = write.shutdown().await;
    });
    let credits = Arc::new(Semaphore::new(READS_IN_FLIGHT));
    let reader = tokio::spawn(async move {
        let mut buf: Vec<u8> = Vec::with_capacity(READ_SIZE);
        loop {
            // Every complete message in the buffer goes on as one batch.
            let mut end = 0;
            let mut error = None;
            loop {
                match packet::frame(&buf[end..]) {
                    Ok(Some(frame)) => end += frame.len,
                    Ok(None) => break,
                    Err(e) => {
                        error = Some(e);
                        break;
                    }
                }
            }
            if end > 0 {
                let Ok(permit) = credits.clone().acquire_owned().await else {
                    return;
                };
                let mut rest = Vec::with_capacity(READ_SIZE.max(buf.len() - end));
                rest.extend_from_slice(&buf[end..]);
                let mut bytes = std::mem::replace(&mut buf, rest);
                bytes.truncate(end);
                let frames = Msg::Frames {
                    peer,
                    conn,
                    bytes,
                    credit: Credit {
                        _permit: Some(Arc::new(permit)),
                    },
                };
                if tx.send(frames).is_err() {
                    return;
                }
            }
            if let Some(error) = error {
                let _ = tx.send(Msg::FrameError { peer, conn, error });
                return;
            }
            buf.reserve(READ_SIZE.saturating_sub(buf.capacity() - buf.len()));
            match read.read_buf(&mut buf).await {
                Ok(0) | Err(_) => {
                    let _ = tx.send(Msg::Closed { peer, conn });
                    return;
                }
                Ok(_) => {}
            }
        }
    });
    Connection {
        id: conn,
        local,
        writer,
        reader,
    }
}
