//! Destination NAT from the kernel's connection tracking (ctnetlink): Docker's published
//! ports (`-p`) rewrite the address a client connects to into the container's. A client
//! end's remote address is then one no server end has; the conntrack entry says which
//! address the server end really has, so the two ends can be paired.
//!
//! Only such unpaired client ends are looked up, one exact query each (a dump of the whole
//! table would cost more than the rest of a cycle on a busy host: every loopback
//! connection is tracked too). Asked in the daemon's own network namespace (the host's, on
//! ECS), where Docker's NAT rules live.

use std::io;
use std::net::{IpAddr, SocketAddr};

use super::netlink::{self, attr, NetlinkSocket, NLA_F_NESTED, NLM_F_REQUEST};

const NETLINK_NETFILTER: libc::c_int = 12;
/// `NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_GET`.
const CT_GET: u16 = (1 << 8) | 1;
/// `NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_NEW`: what a dump answers.
const CT_NEW: u16 = 1 << 8;
/// `struct nfgenmsg` in front of the attributes.
const NFGENMSG_LEN: usize = 4;

const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_STATUS: u16 = 3;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;
/// `IPS_DST_NAT` of `CTA_STATUS`.
const IPS_DST_NAT: u32 = 1 << 5;
const IPPROTO_TCP: u8 = 6;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// One translated TCP connection: the addresses as the client sees them and as the server
/// sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Translation {
    pub(crate) client_local: SocketAddr,
    pub(crate) client_remote: SocketAddr,
    pub(crate) server_local: SocketAddr,
    pub(crate) server_remote: SocketAddr,
}

/// One direction of a conntrack entry.
#[derive(Debug, Default)]
struct Tuple {
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    protocol: Option<u8>,
    src_port: Option<u16>,
    dst_port: Option<u16>,
}

impl Tuple {
    fn parse(nested: &[u8]) -> Self {
        let mut t = Tuple::default();
        for (kind, payload) in netlink::attrs(nested) {
            match kind {
                CTA_TUPLE_IP => {
                    for (kind, ip) in netlink::attrs(payload) {
                        let addr = match kind {
                            CTA_IP_V4_SRC | CTA_IP_V4_DST => {
                                <[u8; 4]>::try_from(ip).map(IpAddr::from)
                            }
                            CTA_IP_V6_SRC | CTA_IP_V6_DST => {
                                <[u8; 16]>::try_from(ip).map(IpAddr::from)
                            }
                            _ => continue,
                        };
                        // An address of the wrong length is not an address.
                        let Ok(addr) = addr else { continue };
                        match kind {
                            CTA_IP_V4_SRC | CTA_IP_V6_SRC => t.src = Some(addr),
                            _ => t.dst = Some(addr),
                        }
                    }
                }
                CTA_TUPLE_PROTO => {
                    for (kind, v) in netlink::attrs(payload) {
                        match (kind, v) {
                            (CTA_PROTO_NUM, [n, ..]) => t.protocol = Some(*n),
                            (CTA_PROTO_SRC_PORT, [a, b, ..]) => {
                                t.src_port = Some(u16::from_be_bytes([*a, *b]))
                            }
                            (CTA_PROTO_DST_PORT, [a, b, ..]) => {
                                t.dst_port = Some(u16::from_be_bytes([*a, *b]))
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        t
    }

    fn ends(&self) -> Option<(SocketAddr, SocketAddr)> {
        Some((
            SocketAddr::new(self.src?, self.src_port?),
            SocketAddr::new(self.dst?, self.dst_port?),
        ))
    }
}

/// The translation of one `IPCTNL_MSG_CT_NEW` body; None unless it is a TCP entry with
/// destination NAT.
fn parse_entry(body: &[u8]) -> Option<Translation> {
    let attrs = body.get(NFGENMSG_LEN..)?;
    let (mut orig, mut reply, mut status) = (None, None, 0);
    for (kind, payload) in netlink::attrs(attrs) {
        match kind {
            CTA_TUPLE_ORIG => orig = Some(Tuple::parse(payload)),
            CTA_TUPLE_REPLY => reply = Some(Tuple::parse(payload)),
            CTA_STATUS => status = u32::from_be_bytes(payload.get(..4)?.try_into().ok()?),
            _ => {}
        }
    }
    let (orig, reply) = (orig?, reply?);
    if status & IPS_DST_NAT == 0 || orig.protocol != Some(IPPROTO_TCP) {
        return None;
    }
    let (client_local, client_remote) = orig.ends()?;
    // The reply goes from the server (its local address) to what it sees as the client.
    let (server_local, server_remote) = reply.ends()?;
    Some(Translation {
        client_local,
        client_remote,
        server_local,
        server_remote,
    })
}

/// Exact conntrack lookups over one netlink socket, opened on first use.
#[derive(Default)]
pub(crate) struct Conntrack {
    socket: Option<NetlinkSocket>,
    buf: Vec<u8>,
}

impl Conntrack {
    /// The translation of the TCP connection from `local` to `remote` (as its client sees
    /// it); None when conntrack does not know it or does not rewrite its destination.
    pub(crate) fn lookup(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> io::Result<Option<Translation>> {
        let Some(request) = request(local, remote) else {
            return Ok(None);
        };
        let socket = match &mut self.socket {
            Some(socket) => socket,
            empty => empty.insert(NetlinkSocket::open(NETLINK_NETFILTER)?),
        };
        let mut found = None;
        let asked = socket.ask(&request, &mut self.buf, |kind, body| {
            if kind == CT_NEW {
                found = parse_entry(body);
            }
        });
        match asked {
            Ok(()) => Ok(found),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => {
                self.socket = None;
                Err(e)
            }
        }
    }
}

/// `IPCTNL_MSG_CT_GET` of the original tuple `local -> remote` (TCP); None when the two
/// addresses are not of one family.
fn request(local: SocketAddr, remote: SocketAddr) -> Option<Vec<u8>> {
    let (family, src_kind, dst_kind, src, dst) = match (local.ip(), remote.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => (
            AF_INET,
            CTA_IP_V4_SRC,
            CTA_IP_V4_DST,
            s.octets().to_vec(),
            d.octets().to_vec(),
        ),
        (IpAddr::V6(s), IpAddr::V6(d)) => (
            AF_INET6,
            CTA_IP_V6_SRC,
            CTA_IP_V6_DST,
            s.octets().to_vec(),
            d.octets().to_vec(),
        ),
        _ => return None,
    };
    let mut ip = attr(src_kind, &src);
    ip.extend(attr(dst_kind, &dst));
    let mut proto = attr(CTA_PROTO_NUM, &[IPPROTO_TCP]);
    proto.extend(attr(CTA_PROTO_SRC_PORT, &local.port().to_be_bytes()));
    proto.extend(attr(CTA_PROTO_DST_PORT, &remote.port().to_be_bytes()));
    let mut tuple = attr(NLA_F_NESTED | CTA_TUPLE_IP, &ip);
    tuple.extend(attr(NLA_F_NESTED | CTA_TUPLE_PROTO, &proto));
    let orig = attr(NLA_F_NESTED | CTA_TUPLE_ORIG, &tuple);
    let len = netlink::NLMSG_HDRLEN + NFGENMSG_LEN + orig.len();
    let mut r = netlink::header(len, CT_GET, NLM_F_REQUEST).to_vec();
    // nfgenmsg: the family, NFNETLINK_V0, res_id 0.
    r.extend_from_slice(&[family, 0, 0, 0]);
    r.extend(orig);
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
        let mut ip = attr(CTA_IP_V4_SRC, &src);
        ip.extend(attr(CTA_IP_V4_DST, &dst));
        let mut proto = attr(CTA_PROTO_NUM, &[IPPROTO_TCP]);
        proto.extend(attr(CTA_PROTO_SRC_PORT, &sport.to_be_bytes()));
        proto.extend(attr(CTA_PROTO_DST_PORT, &dport.to_be_bytes()));
        let mut t = attr(NLA_F_NESTED | CTA_TUPLE_IP, &ip);
        t.extend(attr(NLA_F_NESTED | CTA_TUPLE_PROTO, &proto));
        t
    }

    fn entry(status: u32) -> Vec<u8> {
        let mut body = vec![2, 0, 0, 0];
        body.extend(attr(
            0x8000 | CTA_TUPLE_ORIG,
            &tuple([10, 0, 0, 5], 40000, [10, 0, 0, 5], 8080),
        ));
        body.extend(attr(
            0x8000 | CTA_TUPLE_REPLY,
            &tuple([172, 17, 0, 2], 80, [10, 0, 0, 5], 40000),
        ));
        body.extend(attr(CTA_STATUS, &status.to_be_bytes()));
        body
    }

    #[test]
    fn a_published_port_translates_to_the_container() {
        let t = parse_entry(&entry(IPS_DST_NAT | 0x8)).unwrap();
        assert_eq!(t.client_local, "10.0.0.5:40000".parse().unwrap());
        assert_eq!(t.client_remote, "10.0.0.5:8080".parse().unwrap());
        assert_eq!(t.server_local, "172.17.0.2:80".parse().unwrap());
        assert_eq!(t.server_remote, "10.0.0.5:40000".parse().unwrap());
        assert_eq!(parse_entry(&entry(0x8)), None, "no destination NAT");
        assert_eq!(parse_entry(&[2, 0]), None);
        assert_eq!(parse_entry(&entry(IPS_DST_NAT)[..30]), None, "cut short");
    }

    #[test]
    fn the_request_names_the_original_tuple() {
        let r = request(
            "10.0.0.5:40000".parse().unwrap(),
            "10.0.0.5:8080".parse().unwrap(),
        )
        .unwrap();
        assert_eq!(u16::from_ne_bytes([r[4], r[5]]), CT_GET);
        assert_eq!(
            r.len(),
            u32::from_ne_bytes(r[..4].try_into().unwrap()) as usize
        );
        assert_eq!(r[16], AF_INET);
        let (kind, orig) = netlink::attrs(&r[20..]).next().unwrap();
        assert_eq!(kind, CTA_TUPLE_ORIG);
        let t = Tuple::parse(orig);
        assert_eq!(
            t.ends(),
            Some((
                "10.0.0.5:40000".parse().unwrap(),
                "10.0.0.5:8080".parse().unwrap()
            ))
        );
        assert_eq!(t.protocol, Some(IPPROTO_TCP));
        assert!(request("10.0.0.5:1".parse().unwrap(), "[::1]:2".parse().unwrap()).is_none());
    }
}
