//! Socket options of BGP sessions that no safe wrapper covers: TCP MD5
//! signatures (RFC 2385) and the GTSM minimum TTL (RFC 5082).
//!
//! BGP peers protect their TCP connection with a shared password: every
//! segment carries an MD5 digest of the segment and the key, and the kernel
//! drops segments whose digest is missing or wrong. Linux keeps one key per
//! peer address on a socket (`setsockopt(IPPROTO_TCP, TCP_MD5SIG)`):
//!
//! * on a **listening** socket, before `accept`, so that the SYN from the peer
//!   is verified (a listener may hold keys for many peers);
//! * on a **connecting** socket, before `connect`.
//!
//! Neither libc, nix nor socket2 wraps this option, so [`set_md5_key`] makes
//! the raw `setsockopt` call itself, in an `unsafe` block. The minimum-TTL
//! options of GTSM (RFC 5082: `IP_MINTTL`, `IPV6_MINHOPCOUNT`) are not wrapped
//! either; `set_int_option` sets them with the same audited call.

use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;

use nix::sys::socket::{AddressFamily, SockaddrLike, SockaddrStorage, getsockname};

/// The longest key Linux accepts (`TCP_MD5SIG_MAXKEYLEN`).
pub const MAX_KEY_LEN: usize = 80;

/// Size of `struct sockaddr_storage` on Linux.
const SOCKADDR_STORAGE_LEN: usize = 128;
/// Offset of `tcpm_keylen` in `struct tcp_md5sig` (after the address, the
/// flags byte and the prefix-length byte).
const KEYLEN_OFFSET: usize = SOCKADDR_STORAGE_LEN + 2;
/// Offset of `tcpm_key` (after `tcpm_keylen` and the 32-bit `tcpm_ifindex`).
const KEY_OFFSET: usize = KEYLEN_OFFSET + 2 + 4;
/// Size of `struct tcp_md5sig`.
const TCP_MD5SIG_LEN: usize = KEY_OFFSET + MAX_KEY_LEN;

/// Installs (or, with an empty `key`, removes) the TCP MD5 key for `peer` on
/// `socket`. Removing a key that is not there succeeds.
///
/// `socket` may be a listener (keys for the peers it will accept) or a socket
/// about to connect; call it before `accept`/`connect`. An IPv4 `peer` on an
/// IPv6 socket is keyed by its IPv4-mapped address, as the kernel sees it.
///
/// # Errors
///
/// `InvalidInput` if the key is longer than [`MAX_KEY_LEN`] bytes or the
/// socket is neither IPv4 nor IPv6 (or an IPv6 peer on an IPv4 socket); any
/// error of `getsockname`/`setsockopt` otherwise.
pub fn set_md5_key(socket: &impl AsRawFd, peer: IpAddr, key: &[u8]) -> io::Result<()> {
    if key.len() > MAX_KEY_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "tcp md5 key for peer {peer} is {} bytes, longer than {MAX_KEY_LEN}",
                key.len()
            ),
        ));
    }
    let fd = socket.as_raw_fd();
    let family = getsockname::<SockaddrStorage>(fd)
        .map_err(io::Error::from)?
        .family();
    let option = encode_tcp_md5sig(family, peer, key)?;
    match setsockopt_tcp_md5sig(fd, &option) {
        // Removing a key that was never set: nothing to do.
        Err(e) if key.is_empty() && e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        result => result,
    }
}

/// Encodes `struct tcp_md5sig` for a socket of `family`.
fn encode_tcp_md5sig(
    family: Option<AddressFamily>,
    peer: IpAddr,
    key: &[u8],
) -> io::Result<[u8; TCP_MD5SIG_LEN]> {
    let mut buf = [0u8; TCP_MD5SIG_LEN];
    match (family, peer) {
        (Some(AddressFamily::Inet), IpAddr::V4(v4)) => {
            // struct sockaddr_in: family, port, address.
            let af = u16::try_from(libc::AF_INET).expect("AF_INET fits in sa_family_t");
            buf[0..2].copy_from_slice(&af.to_ne_bytes());
            buf[4..8].copy_from_slice(&v4.octets());
        }
        (Some(AddressFamily::Inet6), peer) => {
            let v6 = match peer {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            // struct sockaddr_in6: family, port, flowinfo, address, scope id.
            let af = u16::try_from(libc::AF_INET6).expect("AF_INET6 fits in sa_family_t");
            buf[0..2].copy_from_slice(&af.to_ne_bytes());
            buf[8..24].copy_from_slice(&v6.octets());
        }
        (family, peer) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot key peer {peer} on a socket of family {family:?}"),
            ));
        }
    }
    let key_len = u16::try_from(key.len()).expect("key length checked against MAX_KEY_LEN");
    buf[KEYLEN_OFFSET..KEYLEN_OFFSET + 2].copy_from_slice(&key_len.to_ne_bytes());
    buf[KEY_OFFSET..KEY_OFFSET + key.len()].copy_from_slice(key);
    Ok(buf)
}

#[allow(
    unsafe_code,
    reason = "TCP_MD5SIG has no safe wrapper in libc, nix or socket2"
)]
fn setsockopt_tcp_md5sig(fd: i32, option: &[u8; TCP_MD5SIG_LEN]) -> io::Result<()> {
    let len = libc::socklen_t::try_from(option.len()).expect("216 bytes fit in socklen_t");
    // SAFETY: `fd` is a descriptor borrowed from a live socket for the duration
    // of the call; `option` points to `len` initialised bytes laid out as
    // `struct tcp_md5sig`, which the kernel only reads (copy_from_user, no
    // alignment requirement) and does not retain.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_MD5SIG,
            option.as_ptr().cast::<libc::c_void>(),
            len,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets an integer socket option that no safe wrapper covers (the GTSM
/// minimum TTL). `level` and `name` are a `setsockopt` level and option name
/// whose value is a C `int`.
///
/// # Errors
///
/// Any error of `setsockopt`.
pub(crate) fn set_int_option(
    socket: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    setsockopt_int(socket.as_raw_fd(), level, name, value)
}

#[allow(
    unsafe_code,
    reason = "IP_MINTTL and IPV6_MINHOPCOUNT have no safe wrapper in libc, nix or socket2"
)]
fn setsockopt_int(
    fd: i32,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    let len = libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>())
        .expect("an int's size fits in socklen_t");
    // SAFETY: `fd` is a descriptor borrowed from a live socket for the duration
    // of the call; the option value points to one initialised `c_int` on this
    // stack frame, `len` is its size, and the kernel only reads it
    // (copy_from_user) without retaining the pointer.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            std::ptr::from_ref(&value).cast::<libc::c_void>(),
            len,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddr};
    use std::time::Duration;
    use tokio::net::{TcpListener, TcpSocket};

    const CONNECT_TIMEOUT: Duration = Duration::from_millis(1500);

    async fn listener_with_key(key: Option<&[u8]>) -> (TcpListener, SocketAddr) {
        let socket = TcpSocket::new_v4().expect("ipv4 socket");
        if let Some(key) = key {
            set_md5_key(&socket, IpAddr::V4(Ipv4Addr::LOCALHOST), key).expect("key listener");
        }
        socket
            .bind((Ipv4Addr::LOCALHOST, 0).into())
            .expect("bind loopback");
        let listener = socket.listen(16).expect("listen");
        let addr = listener.local_addr().expect("local addr");
        (listener, addr)
    }

    async fn connect_with_key(addr: SocketAddr, key: Option<&[u8]>) -> bool {
        let socket = TcpSocket::new_v4().expect("ipv4 socket");
        if let Some(key) = key {
            set_md5_key(&socket, addr.ip(), key).expect("key client");
        }
        matches!(
            tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(addr)).await,
            Ok(Ok(_))
        )
    }

    #[tokio::test]
    async fn connection_succeeds_only_when_both_sides_hold_the_same_key() {
        type Case<'a> = (&'a str, Option<&'a [u8]>, Option<&'a [u8]>, bool);
        let cases: [Case<'_>; 4] = [
            ("no keys", None, None, true),
            ("same key", Some(b"s3cret"), Some(b"s3cret"), true),
            ("different keys", Some(b"s3cret"), Some(b"other"), false),
            ("client unsigned", Some(b"s3cret"), None, false),
        ];
        for (name, server_key, client_key, expect_connected) in cases {
            let (listener, addr) = listener_with_key(server_key).await;
            let connected = connect_with_key(addr, client_key).await;
            assert_eq!(connected, expect_connected, "case {name}");
            drop(listener);
        }
    }

    #[tokio::test]
    async fn ipv6_socket_accepts_an_ipv4_peer_as_mapped_address() {
        let socket = TcpSocket::new_v6().expect("ipv6 socket");
        set_md5_key(&socket, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), b"k").expect("mapped key");
    }

    #[tokio::test]
    async fn removing_a_key_works_whether_or_not_one_was_set() {
        let peer = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let socket = TcpSocket::new_v4().expect("ipv4 socket");
        set_md5_key(&socket, peer, b"").expect("removing an absent key");
        set_md5_key(&socket, peer, b"k").expect("setting");
        set_md5_key(&socket, peer, b"").expect("removing");
    }

    #[test]
    fn key_longer_than_eighty_bytes_is_rejected() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp socket");
        let err = set_md5_key(&socket, IpAddr::V4(Ipv4Addr::LOCALHOST), &[b'x'; 81])
            .expect_err("too long");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn encoding_places_family_address_and_key_where_linux_reads_them() {
        let buf = encode_tcp_md5sig(
            Some(AddressFamily::Inet),
            IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)),
            b"abc",
        )
        .expect("encodes");
        assert_eq!(u16::from_ne_bytes([buf[0], buf[1]]), libc::AF_INET as u16);
        assert_eq!(&buf[4..8], &[10, 1, 2, 3]);
        assert_eq!(u16::from_ne_bytes([buf[130], buf[131]]), 3);
        assert_eq!(&buf[136..139], b"abc");
        assert_eq!(TCP_MD5SIG_LEN, 216);
    }

    #[test]
    fn ipv6_peer_on_ipv4_socket_is_rejected() {
        let err = encode_tcp_md5sig(
            Some(AddressFamily::Inet),
            "2001:db8::1".parse().expect("v6"),
            b"k",
        )
        .expect_err("family mismatch");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
