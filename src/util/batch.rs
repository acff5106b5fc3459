//! Batched datagram receive with `recvmmsg(2)`: one system call drains up to a batch of packets.

use std::io;
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// Most datagrams taken per call.
pub const BATCH: usize = 32;

/// Reusable receive buffers for [`BATCH`] datagrams of up to `slot - 1` bytes each.
pub struct RecvBatch {
    slot: usize,
    bufs: Vec<u8>,
    addrs: Vec<libc::sockaddr_storage>,
    lens: [usize; BATCH],
    truncated: [bool; BATCH],
    count: usize,
}

// The pointer-bearing `mmsghdr` array is built on the stack inside `recv`, so the struct itself holds only
// plain data and stays `Send` (the driver future moves between tokio worker threads).

impl RecvBatch {
    /// Buffers for datagrams up to `max_datagram` bytes; a longer one is reported as truncated.
    pub fn new(max_datagram: usize) -> Self {
        let slot = max_datagram + 1;
        RecvBatch {
            slot,
            bufs: vec![0; slot * BATCH],
            // SAFETY: sockaddr_storage is plain old data; all-zero is a valid (AF_UNSPEC) value.
            addrs: vec![unsafe { MaybeUninit::zeroed().assume_init() }; BATCH],
            lens: [0; BATCH],
            truncated: [false; BATCH],
            count: 0,
        }
    }

    /// Receives up to [`BATCH`] datagrams without blocking; `WouldBlock` when none is waiting.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let mut iov: [libc::iovec; BATCH] = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; BATCH];
        // SAFETY: mmsghdr is plain old data; zeroed is valid before we fill the pointers.
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { MaybeUninit::zeroed().assume_init() };
        for i in 0..BATCH {
            iov[i].iov_base = self.bufs[i * self.slot..].as_mut_ptr().cast();
            iov[i].iov_len = self.slot;
            let h = &mut msgs[i].msg_hdr;
            h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut iov[i];
            h.msg_iovlen = 1;
        }
        // SAFETY: every pointer refers to buffers owned by self or this frame, valid for the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            self.count = 0;
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for (i, m) in msgs.iter().enumerate().take(n) {
            self.lens[i] = (m.msg_len as usize).min(self.slot);
            self.truncated[i] =
                m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 || m.msg_len as usize >= self.slot;
        }
        self.count = n;
        Ok(n)
    }

    /// Like [`RecvBatch::get`], with the bytes writable (for in-place decryption).
    pub fn get_mut(&mut self, i: usize) -> Option<(SocketAddr, &mut [u8], bool)> {
        if i >= self.count {
            return None;
        }
        let from = sockaddr_to_std(&self.addrs[i])?;
        let start = i * self.slot;
        let end = start + self.lens[i];
        Some((from, &mut self.bufs[start..end], self.truncated[i]))
    }

    /// Datagram `i` of the last batch: sender, bytes, and whether it was longer than the buffer.
    pub fn get(&self, i: usize) -> Option<(SocketAddr, &[u8], bool)> {
        if i >= self.count {
            return None;
        }
        let from = sockaddr_to_std(&self.addrs[i])?;
        let start = i * self.slot;
        Some((
            from,
            &self.bufs[start..start + self.lens[i]],
            self.truncated[i],
        ))
    }
}

/// Outgoing datagrams collected and sent with one `sendmmsg(2)`; buffers are reused between batches.
pub struct SendBatch {
    bufs: Vec<Vec<u8>>,
    addrs: Vec<SocketAddr>,
    count: usize,
}

impl Default for SendBatch {
    fn default() -> Self {
        SendBatch {
            bufs: (0..BATCH).map(|_| Vec::new()).collect(),
            addrs: Vec::with_capacity(BATCH),
            count: 0,
        }
    }
}

impl SendBatch {
    /// True when the batch is full and must be flushed before the next push.
    pub fn is_full(&self) -> bool {
        self.count == BATCH
    }

    /// Queued datagrams.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Buffer for the next datagram to `to` (cleared); call only when not full.
    pub fn next_buf(&mut self, to: SocketAddr) -> &mut Vec<u8> {
        let i = self.count;
        self.count += 1;
        if self.addrs.len() > i {
            self.addrs[i] = to;
        } else {
            self.addrs.push(to);
        }
        let b = &mut self.bufs[i];
        b.clear();
        b
    }

    /// Takes back the buffer handed out by the last `next_buf`.
    pub fn clear_last(&mut self) {
        self.count = self.count.saturating_sub(1);
    }

    /// Sends queued datagrams without blocking; returns how many went out (`WouldBlock` if none could).
    /// Sent ones are removed; unsent ones stay queued, in order.
    pub fn send(&mut self, fd: RawFd) -> io::Result<usize> {
        if self.count == 0 {
            return Ok(0);
        }
        // SAFETY: plain old data, filled below before use.
        let mut names: [libc::sockaddr_storage; BATCH] =
            unsafe { MaybeUninit::zeroed().assume_init() };
        let mut iov: [libc::iovec; BATCH] = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; BATCH];
        // SAFETY: plain old data, pointers filled below.
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { MaybeUninit::zeroed().assume_init() };
        for i in 0..self.count {
            let len = std_to_sockaddr(self.addrs[i], &mut names[i]);
            iov[i].iov_base = self.bufs[i].as_mut_ptr().cast();
            iov[i].iov_len = self.bufs[i].len();
            let h = &mut msgs[i].msg_hdr;
            h.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = len;
            h.msg_iov = &mut iov[i];
            h.msg_iovlen = 1;
        }
        // SAFETY: all pointers refer to live buffers of self or this frame for the duration of the call.
        let n = unsafe {
            libc::sendmmsg(
                fd,
                msgs.as_mut_ptr(),
                self.count as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        // Keep the unsent tail at the front, buffers rotated so none is lost.
        self.bufs[..self.count].rotate_left(n);
        self.addrs[..self.count].rotate_left(n);
        self.count -= n;
        Ok(n)
    }

    /// Drops everything queued.
    pub fn clear(&mut self) {
        self.count = 0;
    }
}

fn std_to_sockaddr(a: SocketAddr, out: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match a {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in.
            let sin =
                unsafe { &mut *(out as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = v4.port().to_be();
            sin.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(v6) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in6.
            let sin6 =
                unsafe { &mut *(out as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = v6.port().to_be();
            sin6.sin6_addr.s6_addr = v6.ip().octets();
            sin6.sin6_flowinfo = v6.flowinfo();
            sin6.sin6_scope_id = v6.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

fn sockaddr_to_std(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match s.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: family says this storage holds a sockaddr_in.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: family says this storage holds a sockaddr_in6.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn drains_several_datagrams_and_flags_oversize() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = rx.local_addr().unwrap();
        tx.send_to(b"one", to).unwrap();
        tx.send_to(b"two!", to).unwrap();
        tx.send_to(&[7u8; 100], to).unwrap();
        let mut b = RecvBatch::new(64);
        let mut got = Vec::new();
        // Loopback delivery is immediate, but allow a few polls in case the kernel lags.
        for _ in 0..100 {
            match b.recv(rx.as_raw_fd()) {
                Ok(n) => {
                    for i in 0..n {
                        let (from, data, trunc) = b.get(i).unwrap();
                        assert_eq!(from, tx.local_addr().unwrap());
                        got.push((data.len(), trunc));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if got.len() == 3 {
                        break;
                    }
                    std::thread::yield_now();
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, vec![(3, false), (4, false), (65, true)]);
        assert!(b.get(3).is_none());
    }

    #[test]
    fn sends_a_batch_in_one_call() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut s = SendBatch::default();
        for i in 0..5u8 {
            s.next_buf(rx.local_addr().unwrap())
                .extend_from_slice(&[i; 3]);
        }
        assert_eq!(s.send(tx.as_raw_fd()).unwrap(), 5);
        assert!(s.is_empty());
        let mut buf = [0u8; 16];
        for i in 0..5u8 {
            let (n, _) = rx.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], &[i; 3]);
        }
    }
}
