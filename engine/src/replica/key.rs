//! How keys cross the wire: replicas send each other the keys (and tags)
//! a write invalidated, never values.

/// A key a replicated cache can name to the other replicas. `encode`
/// writes bytes that `decode` turns back into an equal key; every replica
/// of a namespace must use the same key type.
///
/// Implemented for `String`, `Vec<u8>` and the integer types. For another
/// type, encode its identity in a stable byte form (not `Debug` output,
/// which may change between versions):
///
/// ```
/// use coherent::replica::ReplicaKey;
///
/// #[derive(Clone, PartialEq, Eq, Hash)]
/// struct UserId(u64);
///
/// impl ReplicaKey for UserId {
///     fn encode(&self, out: &mut Vec<u8>) {
///         self.0.encode(out)
///     }
///     fn decode(bytes: &[u8]) -> Option<Self> {
///         u64::decode(bytes).map(UserId)
///     }
/// }
///
/// let mut bytes = Vec::new();
/// UserId(7).encode(&mut bytes);
/// assert!(UserId::decode(&bytes) == Some(UserId(7)));
/// ```
pub trait ReplicaKey: Sized {
    /// Appends this key's bytes to `out`.
    fn encode(&self, out: &mut Vec<u8>);
    /// The key `bytes` encode, or `None` if they encode none.
    fn decode(bytes: &[u8]) -> Option<Self>;
}

impl ReplicaKey for String {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        String::from_utf8(bytes.to_vec()).ok()
    }
}

impl ReplicaKey for Vec<u8> {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        Some(bytes.to_vec())
    }
}

macro_rules! integer_keys {
    ($($t:ty),*) => {$(
        impl ReplicaKey for $t {
            fn encode(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn decode(bytes: &[u8]) -> Option<Self> {
                Some(<$t>::from_le_bytes(bytes.try_into().ok()?))
            }
        }
    )*};
}

integer_keys!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize);

#[cfg(test)]
mod tests {
    use super::ReplicaKey;

    fn round_trip<K: ReplicaKey + PartialEq + std::fmt::Debug>(k: K) {
        let mut bytes = Vec::new();
        k.encode(&mut bytes);
        assert_eq!(K::decode(&bytes), Some(k));
    }

    #[test]
    fn keys_round_trip_and_bad_bytes_decode_to_none() {
        round_trip(String::from("user:7"));
        round_trip(vec![0u8, 255, 7]);
        round_trip(u64::MAX);
        round_trip(-5i32);
        round_trip(1u128 << 100);
        assert_eq!(u64::decode(&[1, 2, 3]), None, "wrong length");
        assert_eq!(String::decode(&[0xff, 0xfe]), None, "not UTF-8");
    }
}
