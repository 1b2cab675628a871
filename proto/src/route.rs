//! The IPv4 default gateway from `/proc/net/route`.
//!
//! ```text
//! Iface  Destination  Gateway   Flags  RefCnt  Use  Metric  Mask      MTU  Window  IRTT
//! eth0   00000000     0100A8C0  0003   0       0    100     00000000  0    0       0
//! ```
//! Addresses are the kernel's in-memory `u32` printed as hex, so on the little-endian
//! hosts ECS runs on `0100A8C0` is 192.168.0.1. The default route is the line with
//! Destination and Mask `00000000`, flags UP and GATEWAY and a non-zero gateway; among
//! several, the lowest metric (then the first) wins, as the kernel would choose.

use std::net::Ipv4Addr;

const RTF_UP: u16 = 0x1;
const RTF_GATEWAY: u16 = 0x2;

/// The default route's gateway in the text of `/proc/net/route`, if there is one.
pub fn default_gateway(route_table: &str) -> Option<Ipv4Addr> {
    route_table
        .lines()
        .filter_map(default_route)
        .min_by_key(|(metric, _)| *metric)
        .map(|(_, gateway)| gateway)
}

/// (metric, gateway) of a default route line.
fn default_route(line: &str) -> Option<(u32, Ipv4Addr)> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [_iface, destination, gateway, flags, _refcnt, _use, metric, mask, ..] = fields[..] else {
        return None;
    };
    if destination != "00000000" || mask != "00000000" {
        return None;
    }
    let flags = u16::from_str_radix(flags, 16).ok()?;
    if flags & RTF_UP == 0 || flags & RTF_GATEWAY == 0 {
        return None;
    }
    let gateway = u32::from_str_radix(gateway, 16).ok()?;
    if gateway == 0 {
        return None;
    }
    Some((metric.parse().ok()?, Ipv4Addr::from(gateway.to_le_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n";

    #[test]
    fn ecs_host_with_docker_bridge() {
        let table = format!(
            "{HEADER}\
             eth0\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
             eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n\
             docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n\
             eth0\tFEA9FEA9\t00000000\t0005\t0\t0\t0\tFFFFFFFF\t0\t0\t0\n"
        );
        assert_eq!(default_gateway(&table), Some(Ipv4Addr::new(192, 168, 0, 1)));
    }

    #[test]
    fn lowest_metric_wins() {
        let table = format!(
            "{HEADER}\
             eth1\t00000000\t01001FAC\t0003\t0\t0\t200\t00000000\t0\t0\t0\n\
             eth0\t00000000\t0102000A\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
        );
        assert_eq!(default_gateway(&table), Some(Ipv4Addr::new(10, 0, 2, 1)));
    }

    #[test]
    fn no_usable_default_route() {
        assert_eq!(default_gateway(""), None);
        assert_eq!(default_gateway(HEADER), None);
        let table = format!(
            "{HEADER}\
             tun0\t00000000\t00000000\t0001\t0\t0\t0\t00000000\t0\t0\t0\n\
             eth0\t00000000\t0100A8C0\t0002\t0\t0\t0\t00000000\t0\t0\t0\n\
             eth0\t00000000\tzz00A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
             eth0\t00000000\t0100A8C0\n"
        );
        // Device route without gateway, a route that is down, bad hex, a short line.
        assert_eq!(default_gateway(&table), None);
    }

    #[test]
    fn this_hosts_table_parses_without_panicking() {
        let table = std::fs::read_to_string("/proc/net/route").unwrap();
        assert!(table.starts_with("Iface"));
        if let Some(gateway) = default_gateway(&table) {
            assert!(!gateway.is_unspecified());
        }
    }
}
