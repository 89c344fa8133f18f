//! Cancel requests. Each client gets pgwarden's own BackendKeyData; while it holds a server
//! connection, its slot points at that connection's key. A CancelRequest carrying a client's
//! key is forwarded to the server connection serving that client right now, and nowhere else.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use pgwarden_protocol::startup::{CancelRequest, StartupPacket};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Where a cancel for a client goes while it holds a server connection.
#[derive(Debug, Clone)]
pub(crate) struct CancelTarget {
    pub(crate) addr: SocketAddr,
    pub(crate) process_id: i32,
    pub(crate) secret_key: Bytes,
}

/// One client's registration; removed from the registry when dropped.
#[derive(Debug)]
pub(crate) struct CancelSlot {
    registry: Arc<CancelRegistry>,
    pub(crate) process_id: i32,
    pub(crate) secret_key: [u8; 4],
    target: Arc<Mutex<Option<CancelTarget>>>,
}

impl CancelSlot {
    /// Points cancels at a server connection (or at nothing).
    pub(crate) fn set_target(&self, target: Option<CancelTarget>) {
        *self.target.lock() = target;
    }
}

impl Drop for CancelSlot {
    fn drop(&mut self) {
        self.registry.slots.lock().remove(&self.process_id);
    }
}

/// Where one client's cancels go right now (shared by its slot and the registry).
type SharedTarget = Arc<Mutex<Option<CancelTarget>>>;

/// Every connected client's key.
#[derive(Debug, Default)]
pub(crate) struct CancelRegistry {
    slots: Mutex<HashMap<i32, ([u8; 4], SharedTarget)>>,
}

impl CancelRegistry {
    /// Registers a new client under a fresh random key.
    pub(crate) fn register(self: &Arc<Self>) -> CancelSlot {
        let target = Arc::new(Mutex::new(None));
        let mut slots = self.slots.lock();
        let (process_id, secret_key) = loop {
            let pid = rand::random::<i32>() & 0x7fff_ffff;
            if pid != 0 && !slots.contains_key(&pid) {
                break (pid, rand::random::<[u8; 4]>());
            }
        };
        slots.insert(process_id, (secret_key, Arc::clone(&target)));
        CancelSlot {
            registry: Arc::clone(self),
            process_id,
            secret_key,
            target,
        }
    }

    /// Forwards a client's CancelRequest to the server connection serving it, if any.
    /// Returns whether a cancel was sent.
    pub(crate) async fn cancel(&self, request: &CancelRequest) -> bool {
        let target = {
            let slots = self.slots.lock();
            match slots.get(&request.process_id) {
                // Constant-time comparison is unnecessary for a 4-byte key checked once per
                // connection attempt, but a mismatch must never reveal which part was wrong.
                Some((key, target)) if request.secret_key.as_ref() == key.as_slice() => {
                    target.lock().clone()
                }
                _ => None,
            }
        };
        match target {
            Some(target) => send_cancel(&target).await,
            None => false,
        }
    }
}

/// Sends a CancelRequest for `target`'s backend; returns whether it was delivered.
pub(crate) async fn send_cancel(target: &CancelTarget) -> bool {
    {
        let mut out = BytesMut::with_capacity(16);
        StartupPacket::Cancel(CancelRequest {
            process_id: target.process_id,
            secret_key: target.secret_key.clone(),
        })
        .encode(&mut out);
        match TcpStream::connect(target.addr).await {
            Ok(mut stream) => stream.write_all(&out).await.is_ok(),
            Err(e) => {
                tracing::warn!(server = %target.addr, error = %e, "cannot forward cancel request");
                false
            }
        }
    }
}
