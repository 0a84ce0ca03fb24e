//! Picking the GID index from sysfs, never by a hard-coded number.
//!
//! `/sys/class/infiniband/DEV/ports/1/gid_attrs/types/N` names the GID type of entry
//! N ("RoCE v2", "IB/RoCE v1"); `/sys/class/infiniband/DEV/ports/1/gids/N` holds the
//! GID itself as eight colon-separated groups.  Unused entries read as all zeros, or
//! their type cannot be read.

use std::fs;

/// A GID as 16 bytes, network order.
pub type Gid = [u8; 16];

/// Parse sysfs's "fe80:0000:...:0001" form.
pub fn parse(s: &str) -> Option<Gid> {
    let groups: Vec<&str> = s.trim().split(':').collect();
    if groups.len() != 8 {
        return None;
    }
    let mut g = [0u8; 16];
    for (i, grp) in groups.iter().enumerate() {
        let v = u16::from_str_radix(grp, 16).ok()?;
        g[2 * i..2 * i + 2].copy_from_slice(&v.to_be_bytes());
    }
    Some(g)
}

/// ::ffff:a.b.c.d, the form RoCE v2 uses for IPv4 addresses.
pub fn is_v4_mapped(g: &Gid) -> bool {
    g[..10].iter().all(|&b| b == 0) && g[10] == 0xff && g[11] == 0xff
}

fn is_link_local(g: &Gid) -> bool {
    g[0] == 0xfe && g[1] & 0xc0 == 0x80
}

/// A GID for printing, as an address: ::ffff:a.b.c.d for IPv4, compressed IPv6 else.
pub fn show(g: &Gid) -> String {
    let a = std::net::Ipv6Addr::from(*g);
    match a.to_ipv4_mapped() {
        Some(v4) => format!("::ffff:{v4}"),
        None => a.to_string(),
    }
}

/// 32 hex digits, as the side channel carries a GID.
pub fn to_hex(g: &Gid) -> String {
    g.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn from_hex(s: &str) -> Option<Gid> {
    if s.len() != 32 {
        return None;
    }
    let mut g = [0u8; 16];
    for (i, b) in g.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(g)
}

/// The RoCE v2 entries of port 1 of `dev`: (index, GID).
pub fn roce_v2_entries(dev: &str, table_len: u32) -> Vec<(u32, Gid)> {
    let port = format!("/sys/class/infiniband/{dev}/ports/1");
    let mut out = Vec::new();
    for i in 0..table_len {
        let Ok(ty) = fs::read_to_string(format!("{port}/gid_attrs/types/{i}")) else {
            continue;
        };
        if ty.trim() != "RoCE v2" {
            continue;
        }
        let Some(g) = fs::read_to_string(format!("{port}/gids/{i}")).ok().and_then(|s| parse(&s))
        else {
            continue;
        };
        if g != [0u8; 16] {
            out.push((i, g));
        }
    }
    out
}

/// The first RoCE v2 GID of port 1 with an IPv4 address, or with `ipv6` the first
/// one with an IPv6 address (a global one before a link-local one).
pub fn pick(dev: &str, table_len: u32, ipv6: bool) -> Result<u32, String> {
    let e = roce_v2_entries(dev, table_len);
    let found = if ipv6 {
        let v6: Vec<_> = e.iter().filter(|(_, g)| !is_v4_mapped(g)).collect();
        v6.iter().find(|(_, g)| !is_link_local(g)).or(v6.first()).map(|(i, _)| *i)
    } else {
        e.iter().find(|(_, g)| is_v4_mapped(g)).map(|(i, _)| *i)
    };
    found.ok_or_else(|| {
        format!(
            "{dev} port 1 has no RoCE v2 GID with an {} address (RoCE v2 entries: {})",
            if ipv6 { "IPv6" } else { "IPv4" },
            if e.is_empty() {
                "none".to_string()
            } else {
                e.iter().map(|(i, g)| format!("{i}={}", show(g))).collect::<Vec<_>>().join(" ")
            }
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sysfs_form() {
        let g = parse("0000:0000:0000:0000:0000:ffff:c000:0201\n").unwrap();
        assert!(is_v4_mapped(&g));
        assert_eq!(show(&g), "::ffff:192.0.2.1");
        assert_eq!(from_hex(&to_hex(&g)), Some(g));
        let l = parse("fe80:0000:0000:0000:0000:00ff:fe00:0001").unwrap();
        assert!(is_link_local(&l) && !is_v4_mapped(&l));
        assert!(parse("fe80::1").is_none());
    }
}
