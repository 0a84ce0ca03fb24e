//! Memory-region access flags (enum ib_access_flags / IBV_ACCESS_*), and which
//! combinations ferrite accepts.

use bitflags::bitflags;

bitflags! {
    /// Access rights of a memory region, as the verbs API numbers them.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Access: u32 {
        const LOCAL_WRITE = 1 << 0;
        const REMOTE_WRITE = 1 << 1;
        const REMOTE_READ = 1 << 2;
        const REMOTE_ATOMIC = 1 << 3;
        const MW_BIND = 1 << 4;
        const ZERO_BASED = 1 << 5;
        const ON_DEMAND = 1 << 6;
        const HUGETLB = 1 << 7;
        const FLUSH_GLOBAL = 1 << 8;
        const FLUSH_PERSISTENT = 1 << 9;
        const RELAXED_ORDERING = 1 << 20;
    }
}

/// Why a set of access flags is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessError {
    /// Bits that name no access right at all, or an invalid combination (EINVAL).
    Invalid,
    /// A right ferrite does not offer (EOPNOTSUPP).
    Unsupported,
}

/// What ferrite's memory regions support.  FLUSH_GLOBAL lets a peer's IBTA 1.5
/// FLUSH make the region's data globally visible; FLUSH_PERSISTENT would promise
/// persistent memory, which ferrite never registers.  (Kernels before 6.2 refuse
/// both bits before ferrite sees them.)
pub const SUPPORTED: Access = Access::LOCAL_WRITE
    .union(Access::REMOTE_WRITE)
    .union(Access::REMOTE_READ)
    .union(Access::REMOTE_ATOMIC)
    .union(Access::ZERO_BASED)
    .union(Access::HUGETLB)
    .union(Access::FLUSH_GLOBAL)
    .union(Access::RELAXED_ORDERING);

/// Check raw access bits for a user memory registration.
pub fn validate(bits: u32) -> Result<Access, AccessError> {
    let a = Access::from_bits(bits).ok_or(AccessError::Invalid)?;
    // IB spec: remote write and atomic need local write.
    if a.intersects(Access::REMOTE_WRITE | Access::REMOTE_ATOMIC) && !a.contains(Access::LOCAL_WRITE) {
        return Err(AccessError::Invalid);
    }
    if !SUPPORTED.contains(a) {
        return Err(AccessError::Unsupported);
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_combination_of_the_four_basic_rights() {
        for bits in 0..16u32 {
            let a = Access::from_bits(bits).unwrap();
            let remote_needs_local = a.intersects(Access::REMOTE_WRITE | Access::REMOTE_ATOMIC)
                && !a.contains(Access::LOCAL_WRITE);
            assert_eq!(validate(bits).is_err(), remote_needs_local, "bits {bits:#x}");
        }
    }

    #[test]
    fn unknown_and_unsupported_bits() {
        assert_eq!(validate(1 << 12), Err(AccessError::Invalid));
        assert_eq!(validate(1 << 31), Err(AccessError::Invalid));
        assert_eq!(validate(Access::ON_DEMAND.bits()), Err(AccessError::Unsupported));
        assert_eq!(validate(Access::MW_BIND.bits()), Err(AccessError::Unsupported));
        assert_eq!(validate(Access::FLUSH_PERSISTENT.bits() | 1), Err(AccessError::Unsupported));
        assert!(validate(Access::FLUSH_GLOBAL.bits()).is_ok());
        assert!(validate((Access::FLUSH_GLOBAL | Access::LOCAL_WRITE | Access::REMOTE_WRITE).bits()).is_ok());
        assert!(validate((Access::LOCAL_WRITE | Access::RELAXED_ORDERING).bits()).is_ok());
        assert!(validate((Access::LOCAL_WRITE | Access::ZERO_BASED).bits()).is_ok());
    }
}
