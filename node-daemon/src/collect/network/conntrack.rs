//! Destination NAT from the kernel's connection tracking (ctnetlink): Docker's published
//! ports (`-p`) rewrite the address a client connects to into the container's. A client
//! end's remote address is then one no server end has; the conntrack entry says which
//! address the server end really has, so the two ends can be paired.
//!
//! Read from the daemon's own network namespace (the host's, on ECS), where Docker's NAT
//! rules live.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::netlink::{self, NetlinkSocket, NLMSG_HDRLEN};

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

/// One translated TCP connection: the addresses as the client sees them and as the server
/// sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Translation {
    pub client_local: SocketAddr,
    pub client_remote: SocketAddr,
    pub server_local: SocketAddr,
    pub server_remote: SocketAddr,
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
                        let addr = match (kind, ip.len()) {
                            (CTA_IP_V4_SRC | CTA_IP_V4_DST, 4) => {
                                IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(ip).unwrap()))
                            }
                            (CTA_IP_V6_SRC | CTA_IP_V6_DST, 16) => {
                                IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(ip).unwrap()))
                            }
                            _ => continue,
                        };
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

/// Asks the kernel for every tracked connection of this namespace and keeps the TCP ones
/// with destination NAT, `cap` at most.
pub fn translations(buf: &mut Vec<u8>, cap: usize) -> io::Result<Vec<Translation>> {
    let socket = NetlinkSocket::open(NETLINK_NETFILTER)?;
    const LEN: usize = NLMSG_HDRLEN + NFGENMSG_LEN;
    let mut request = [0u8; LEN];
    request[..NLMSG_HDRLEN].copy_from_slice(&netlink::request_header(LEN, CT_GET));
    // nfgenmsg: AF_UNSPEC (both families), NFNETLINK_V0, res_id 0.
    let mut out = Vec::new();
    socket.dump(&request, buf, |kind, body| {
        if kind == CT_NEW && out.len() < cap {
            out.extend(parse_entry(body));
        }
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
        a.extend_from_slice(&kind.to_ne_bytes());
        a.extend_from_slice(payload);
        while a.len() % 4 != 0 {
            a.push(0);
        }
        a
    }

    fn tuple(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
        let mut ip = attr(CTA_IP_V4_SRC, &src);
        ip.extend(attr(CTA_IP_V4_DST, &dst));
        let mut proto = attr(CTA_PROTO_NUM, &[IPPROTO_TCP]);
        proto.extend(attr(CTA_PROTO_SRC_PORT, &sport.to_be_bytes()));
        proto.extend(attr(CTA_PROTO_DST_PORT, &dport.to_be_bytes()));
        let mut t = attr(0x8000 | CTA_TUPLE_IP, &ip);
        t.extend(attr(0x8000 | CTA_TUPLE_PROTO, &proto));
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
}
