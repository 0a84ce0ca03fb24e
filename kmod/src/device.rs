//! One ferrite device: what it reports about itself and its port, and its PD count.
//!
//! A device is bound to one Ethernet net_device for its whole life.  Its node GUID
//! is the modified EUI-64 of the netdev's MAC, as for every RoCE device, so a GUID
//! names the same port across reboots.  Port state and MTU are read live from the
//! netdev on every query, so they follow carrier and `ip link set mtu` at once.

use core::sync::atomic::{AtomicU32, Ordering};

use crate::caps::{self, LIMITS};
use crate::kernel::sync::{LockClass, SpinLock};
use crate::kernel::{Error, Result};
use crate::mr::{MrInfo, MrTable, Room};

/// IB MTU enum values (enum ib_mtu).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum IbMtu {
    M256 = 1,
    M512 = 2,
    M1024 = 3,
    M2048 = 4,
    M4096 = 5,
}

impl IbMtu {
    pub fn bytes(self) -> u32 {
        128 << (self as u32)
    }
}

/// Bytes of headers around a RoCE v2 payload inside the netdev MTU: IPv6 (40, the
/// larger IP header) + UDP (8) + BTH (12) + the largest extended headers (RETH 16)
/// + ICRC (4), rounded up as soft-RoCE does.
pub const ROCE_OVERHEAD: u32 = 80;

/// The largest IB MTU whose packets fit a netdev MTU of `mtu` bytes.
/// Below the smallest IB MTU the answer is still 256: the port is unusable for
/// full-sized packets and reports what IB allows at least.
pub fn ib_mtu_for(netdev_mtu: u32) -> IbMtu {
    let payload = netdev_mtu.saturating_sub(ROCE_OVERHEAD);
    [IbMtu::M4096, IbMtu::M2048, IbMtu::M1024, IbMtu::M512]
        .into_iter()
        .find(|m| payload >= m.bytes())
        .unwrap_or(IbMtu::M256)
}

/// Modified EUI-64 from a 48-bit MAC (RFC 4291 appendix A), in wire byte order.
pub fn guid_from_mac(mac: &[u8; 6]) -> [u8; 8] {
    [mac[0] ^ 0x02, mac[1], mac[2], 0xff, 0xfe, mac[3], mac[4], mac[5]]
}

/// What the C side tells about a net_device when a device is made on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Netdev {
    pub key: u64,
    pub ifindex: u32,
    pub mac: [u8; 6],
}

/// ARPHRD_ETHER.
pub const ARPHRD_ETHER: u16 = 1;

impl Netdev {
    /// Accept only Ethernet-like devices with a real (non-zero, unicast) MAC.
    pub fn new(key: u64, ifindex: u32, ty: u16, addr: &[u8]) -> Result<Netdev> {
        if ty != ARPHRD_ETHER || addr.len() != 6 {
            return Err(Error::EINVAL);
        }
        let mut mac = [0u8; 6];
        mac.copy_from_slice(addr);
        if mac == [0; 6] || mac[0] & 1 != 0 {
            return Err(Error::EINVAL);
        }
        Ok(Netdev { key, ifindex, mac })
    }
}

/// Live netdev state for a port query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkState {
    pub mtu: u32,
    pub running: bool,
    pub carrier: bool,
}

/// IB port states (enum ib_port_state) and physical states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortState {
    Down = 1,
    Active = 4,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PhysState {
    Disabled = 3,
    LinkUp = 5,
}

/// Port attributes, as `query_port` reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortAttr {
    pub state: PortState,
    pub phys_state: PhysState,
    pub max_mtu: IbMtu,
    pub active_mtu: IbMtu,
    pub gid_tbl_len: u32,
    pub pkey_tbl_len: u16,
    pub max_msg_sz: u32,
}

/// One ferrite device.
pub struct Device {
    netdev: Netdev,
    pds: AtomicU32,
    qps: AtomicU32,
    mrs: SpinLock<MrTable>,
    /// What the data path counts (`rdma statistic show link`).
    pub counters: crate::engine::Counters,
}

impl Device {
    pub fn new(netdev: Netdev) -> Result<Device> {
        Ok(Device {
            netdev,
            pds: AtomicU32::new(0),
            qps: AtomicU32::new(0),
            mrs: SpinLock::new(MrTable::new(LIMITS.max_mr), LockClass::Mrs)?,
            counters: Default::default(),
        })
    }

    pub fn netdev(&self) -> &Netdev {
        &self.netdev
    }

    /// Node GUID in wire order.
    pub fn node_guid(&self) -> [u8; 8] {
        guid_from_mac(&self.netdev.mac)
    }

    /// Port attributes for the netdev's present state.
    pub fn port_attr(&self, link: LinkState) -> PortAttr {
        let up = link.running && link.carrier;
        PortAttr {
            state: if up { PortState::Active } else { PortState::Down },
            phys_state: if up { PhysState::LinkUp } else { PhysState::Disabled },
            max_mtu: IbMtu::M4096,
            active_mtu: ib_mtu_for(link.mtu),
            gid_tbl_len: caps::GID_TABLE_LEN,
            pkey_tbl_len: caps::PKEY_TABLE_LEN,
            max_msg_sz: caps::MAX_MSG_SIZE,
        }
    }

    /// Account a new protection domain; `ENOMEM` past the device limit.
    pub fn pd_alloc(&self) -> Result {
        self.pds
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < LIMITS.max_pd).then_some(n + 1)
            })
            .map(|_| ())
            .map_err(|_| Error::ENOMEM)
    }

    /// Release one protection domain.  A release with none live is a caller bug;
    /// it is reported and ignored rather than wrapping the count.
    pub fn pd_free(&self) {
        if self
            .pds
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_err()
        {
            pr_err!("PD released on ifindex {} with none allocated", self.netdev.ifindex);
        }
    }

    pub fn pd_count(&self) -> u32 {
        self.pds.load(Ordering::Acquire)
    }

    /// Check a user MR request before anything is pinned.
    pub fn mr_check(&self, length: u64, access: u32) -> Result {
        MrTable::check(length, access, LIMITS.max_mr_size).map(|_| ())
    }

    /// Register a region (already pinned by the caller); returns its key.
    pub fn mr_register(&self, start: u64, length: u64, iova: u64, access: u32, pd: u64, cookie: u64) -> Result<u32> {
        let access = MrTable::check(length, access, LIMITS.max_mr_size)?;
        let mr = MrInfo { start, length, iova, access, pd, cookie };
        loop {
            // The table's lock is a spin lock: room is allocated outside it.
            let need = match self.mrs.lock().try_insert(mr)? {
                Ok(key) => return Ok(key),
                Err(need) => need,
            };
            let room = Room::new(need)?;
            self.mrs.lock().grow(room);
        }
    }

    /// Resolve `key` for `range`, `len` bytes at `va` (the region's iova space), or
    /// for the whole region when `None`, with rights `need` in protection domain
    /// `pd`; `get` takes a reference on the region's memory while the table is
    /// locked, so a concurrent dereg cannot free it.
    pub fn mr_resolve(
        &self,
        key: u32,
        pd: u64,
        range: Option<(u64, u64)>,
        need: ferrite_abi::access::Access,
        get: impl FnOnce(&MrInfo),
    ) -> core::result::Result<MrInfo, crate::engine::KeyError> {
        use crate::engine::KeyError;
        let t = self.mrs.lock();
        let mr = t.get(key).ok_or(KeyError::Invalid)?;
        if mr.pd != pd {
            return Err(KeyError::WrongPd);
        }
        if let Some((va, len)) = range {
            let end = va.checked_add(len).ok_or(KeyError::Bounds)?;
            if va < mr.iova || end > mr.iova.saturating_add(mr.length) {
                return Err(KeyError::Bounds);
            }
        }
        if !mr.access.contains(need) {
            return Err(KeyError::Rights);
        }
        get(&mr);
        Ok(mr)
    }

    /// Account a new QP; `ENOMEM` past the device limit.
    pub fn qp_alloc(&self) -> Result {
        self.qps
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < LIMITS.max_qp).then_some(n + 1))
            .map(|_| ())
            .map_err(|_| Error::ENOMEM)
    }

    pub fn qp_free(&self) {
        let _ = self.qps.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    pub fn qp_count(&self) -> u32 {
        self.qps.load(Ordering::Acquire)
    }

    /// Drop a registration; `EINVAL` for a key that names none.
    pub fn mr_deregister(&self, key: u32) -> Result {
        self.mrs.lock().remove(key).map(|_| ())
    }

    pub fn mr_lookup(&self, key: u32) -> Option<MrInfo> {
        self.mrs.lock().get(key)
    }

    pub fn mr_count(&self) -> u32 {
        self.mrs.lock().len()
    }

    /// Ring geometry for a CQ of `depth` entries: (slots, bytes to map).
    pub fn cq_geometry(&self, depth: u32) -> Result<(u32, usize)> {
        if depth > LIMITS.max_cqe {
            return Err(Error::EINVAL);
        }
        let slots = ferrite_abi::cq::slots_for(depth).ok_or(Error::EINVAL)?;
        Ok((slots, ferrite_abi::cq::ring_bytes(slots)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev() -> Device {
        Device::new(Netdev::new(1, 3, ARPHRD_ETHER, &[0x52, 0x54, 0, 0x12, 0x34, 0x56]).unwrap()).unwrap()
    }

    #[test]
    fn guid_is_modified_eui64() {
        assert_eq!(
            dev().node_guid(),
            [0x50, 0x54, 0x00, 0xff, 0xfe, 0x12, 0x34, 0x56]
        );
        // The U/L bit flips both ways.
        assert_eq!(guid_from_mac(&[0x02, 1, 2, 3, 4, 5])[0], 0x00);
    }

    #[test]
    fn mtu_follows_netdev_mtu_like_soft_roce() {
        assert_eq!(ib_mtu_for(1500), IbMtu::M1024);
        assert_eq!(ib_mtu_for(9000), IbMtu::M4096);
        assert_eq!(ib_mtu_for(4096 + 80), IbMtu::M4096);
        assert_eq!(ib_mtu_for(4096 + 79), IbMtu::M2048);
        assert_eq!(ib_mtu_for(2048 + 80), IbMtu::M2048);
        assert_eq!(ib_mtu_for(1024 + 80), IbMtu::M1024);
        assert_eq!(ib_mtu_for(1024 + 79), IbMtu::M512);
        assert_eq!(ib_mtu_for(1000), IbMtu::M512);
        assert_eq!(ib_mtu_for(68), IbMtu::M256);
        assert_eq!(ib_mtu_for(0), IbMtu::M256);
        assert_eq!(IbMtu::M4096.bytes(), 4096);
        assert_eq!(IbMtu::M256.bytes(), 256);
    }

    #[test]
    fn port_state_follows_carrier_and_admin_state() {
        let d = dev();
        let up = d.port_attr(LinkState { mtu: 1500, running: true, carrier: true });
        assert_eq!((up.state, up.phys_state), (PortState::Active, PhysState::LinkUp));
        assert_eq!(up.active_mtu, IbMtu::M1024);
        for (running, carrier) in [(true, false), (false, true), (false, false)] {
            let a = d.port_attr(LinkState { mtu: 9000, running, carrier });
            assert_eq!((a.state, a.phys_state), (PortState::Down, PhysState::Disabled));
            assert_eq!(a.active_mtu, IbMtu::M4096);
        }
    }

    #[test]
    fn netdev_must_be_ethernet_with_unicast_mac() {
        let mac = [0x52, 0x54, 0, 1, 2, 3];
        assert!(Netdev::new(1, 1, ARPHRD_ETHER, &mac).is_ok());
        assert_eq!(Netdev::new(1, 1, 772, &mac), Err(Error::EINVAL)); // loopback
        assert_eq!(Netdev::new(1, 1, ARPHRD_ETHER, &[0; 6]), Err(Error::EINVAL));
        assert_eq!(Netdev::new(1, 1, ARPHRD_ETHER, &[1, 0, 0, 0, 0, 1]), Err(Error::EINVAL));
        assert_eq!(Netdev::new(1, 1, ARPHRD_ETHER, &mac[..4]), Err(Error::EINVAL));
    }

    #[test]
    fn pd_count_is_bounded_and_never_wraps() {
        let d = dev();
        for _ in 0..LIMITS.max_pd {
            d.pd_alloc().unwrap();
        }
        assert_eq!(d.pd_alloc(), Err(Error::ENOMEM));
        assert_eq!(d.pd_count(), LIMITS.max_pd);
        for _ in 0..LIMITS.max_pd {
            d.pd_free();
        }
        assert_eq!(d.pd_count(), 0);
        crate::kernel::host::take_log();
        d.pd_free();
        assert_eq!(d.pd_count(), 0);
        assert!(crate::kernel::host::take_log()[0].1.contains("none allocated"));
    }

    #[test]
    fn mr_registration_through_the_device() {
        let d = dev();
        assert_eq!(d.mr_check(0, 1), Err(Error::EINVAL));
        assert_eq!(d.mr_check(1 << 20, 2), Err(Error::EINVAL));
        let k = d.mr_register(0x7000, 64 << 20, 0x7000, 0xf, 1, 0).unwrap();
        assert_eq!(d.mr_lookup(k).unwrap().length, 64 << 20);
        assert_eq!(d.mr_count(), 1);
        d.mr_deregister(k).unwrap();
        assert_eq!(d.mr_deregister(k), Err(Error::EINVAL));
        assert_eq!(d.mr_lookup(k), None);
        assert_eq!(d.mr_count(), 0);
    }

    #[test]
    fn cq_geometry_honours_max_cqe() {
        let d = dev();
        assert_eq!(d.cq_geometry(0), Err(Error::EINVAL));
        assert_eq!(d.cq_geometry(1), Ok((1, 4096)));
        let (slots, bytes) = d.cq_geometry(LIMITS.max_cqe).unwrap();
        assert!(slots >= LIMITS.max_cqe && bytes >= 256 + slots as usize * 64);
        assert_eq!(d.cq_geometry(LIMITS.max_cqe + 1), Err(Error::EINVAL));
    }
}
