//! A TCP proxy on loopback that can hold its bytes the way a partitioned network does: while held
//! it reads nothing, so what the client sends waits in the kernel's buffers (as on a link that
//! dropped its packets and will retransmit them), and arrives all at once when released.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

pub struct HoldingProxy {
    pub port: u16,
    held: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    /// Bumped by [`HoldingProxy::release_reset`]: connections accepted before it are closed.
    resets: Arc<AtomicU64>,
}

impl HoldingProxy {
    /// Forwards every connection to `127.0.0.1:target`.
    pub fn start(target: u16) -> HoldingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let held = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let resets = Arc::new(AtomicU64::new(0));
        let (h, s, r) = (held.clone(), stop.clone(), resets.clone());
        thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                            continue;
                        };
                        let epoch = r.load(Ordering::SeqCst);
                        for (from, to) in [
                            (client.try_clone().unwrap(), server.try_clone().unwrap()),
                            (server, client),
                        ] {
                            let (h, s, r) = (h.clone(), s.clone(), r.clone());
                            thread::spawn(move || pump(from, to, &h, &s, (&r, epoch)));
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(5))
                    }
                    Err(_) => return,
                }
            }
        });
        HoldingProxy {
            port,
            held,
            stop,
            resets,
        }
    }

    pub fn hold(&self) {
        self.held.store(true, Ordering::SeqCst);
    }

    pub fn release(&self) {
        self.held.store(false, Ordering::SeqCst);
    }

    /// Ends a hold the way a long partition often ends instead: every connection open now is
    /// closed at both ends and what it held is discarded (as when the peers' TCP gave up, or a
    /// stateful firewall forgot them); connections made from now on pass bytes again.
    pub fn release_reset(&self) {
        self.resets.fetch_add(1, Ordering::SeqCst);
        self.release();
    }
}

impl Drop for HoldingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// `reset`: the proxy's reset counter and its value when this connection was accepted; once they
/// differ the connection is closed at both ends without forwarding another byte.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    held: &AtomicBool,
    stop: &AtomicBool,
    reset: (&AtomicU64, u64),
) {
    from.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let was_reset = || reset.0.load(Ordering::SeqCst) != reset.1;
    let mut buf = [0u8; 16 * 1024];
    while !stop.load(Ordering::Relaxed) {
        if was_reset() {
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
            return;
        }
        if held.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(5));
            continue;
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            // Read after a reset (which releases after bumping the counter): discard it.
            Ok(_) if was_reset() => continue,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
