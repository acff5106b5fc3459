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
}
