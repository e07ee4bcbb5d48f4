//! One log entry's payload: the keys and tags a write invalidated, as
//! bytes. Each item is a kind byte, a 4-byte little-endian length and the
//! bytes: a key ([`ReplicaKey`] bytes), a string tag, or an integer tag
//! (8 bytes).

use super::key::ReplicaKey;
use crate::Tag;

const KEY: u8 = 0;
const TAG_STR: u8 = 1;
const TAG_INT: u8 = 2;

/// What a log entry asks every other replica to drop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invalidation<K> {
    pub(crate) keys: Vec<K>,
    pub(crate) tags: Vec<Tag>,
}

impl<K> Default for Invalidation<K> {
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            tags: Vec::new(),
        }
    }
}

impl<K> Invalidation<K> {
    pub(crate) fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.tags.is_empty()
    }
}

fn item(out: &mut Vec<u8>, kind: u8, bytes: &[u8]) {
    out.push(kind);
    let len = u32::try_from(bytes.len()).expect("a key or tag of 4 GiB or more");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
}

/// The payload of `inv`.
pub(crate) fn encode<K: ReplicaKey>(inv: &Invalidation<K>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut key = Vec::new();
    for k in &inv.keys {
        key.clear();
        k.encode(&mut key);
        item(&mut out, KEY, &key);
    }
    for t in &inv.tags {
        match (t.as_int(), t.as_str()) {
            (Some(n), _) => item(&mut out, TAG_INT, &n.to_le_bytes()),
            (None, Some(s)) => item(&mut out, TAG_STR, s.as_bytes()),
            (None, None) => unreachable!("a tag is an integer or a string"),
        }
    }
    out
}

/// The invalidation `bytes` encode, or `None` if they are not a payload
/// this replica can read (another key type, or damage): the caller then
/// drops every entry, which is always safe.
pub(crate) fn decode<K: ReplicaKey>(mut bytes: &[u8]) -> Option<Invalidation<K>> {
    let mut inv = Invalidation {
        keys: Vec::new(),
        tags: Vec::new(),
    };
    while let Some((&kind, rest)) = bytes.split_first() {
        let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let body = rest.get(4..4 + len)?;
        bytes = &rest[4 + len..];
        match kind {
            KEY => inv.keys.push(K::decode(body)?),
            TAG_STR => inv.tags.push(Tag::from(std::str::from_utf8(body).ok()?)),
            TAG_INT => inv
                .tags
                .push(Tag::from(u64::from_le_bytes(body.try_into().ok()?))),
            _ => return None,
        }
    }
    Some(inv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_damage_is_refused() {
        let inv = Invalidation {
            keys: vec![String::from("a"), String::new()],
            tags: vec![Tag::from("user:7"), Tag::from(7u64)],
        };
        let bytes = encode(&inv);
        assert_eq!(decode::<String>(&bytes), Some(inv));
        assert_eq!(decode::<String>(&bytes[..bytes.len() - 1]), None);
        assert_eq!(decode::<String>(&[9, 0, 0, 0, 0]), None, "unknown kind");
        assert_eq!(decode::<u64>(&bytes), None, "another key type");
        assert_eq!(decode::<String>(&[]), Some(Invalidation::default()));
    }
}
