//! Names of erasure-coded blobs and of their shard files. An erasure-coded blob
//! `e-K-M-<32 hex>` has no file of its own: shard `i` of it is the blob file
//! `e-K-M-<32 hex>.i`, held by one node.

/// Prefix of every erasure-coded blob id.
pub const ERASURE_PREFIX: &str = "e-";

/// The geometry an erasure-coded blob id names: `k` data and `m` parity shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub k: usize,
    pub m: usize,
}

impl Geometry {
    pub fn shards(self) -> usize {
        self.k + self.m
    }
}

/// A new random erasure-coded blob id for `k` + `m` shards.
pub fn new_erasure_id(k: usize, m: usize) -> String {
    format!("{ERASURE_PREFIX}{k}-{m}-{:032x}", rand::random::<u128>())
}

fn is_hex32(text: &str) -> bool {
    text.len() == 32 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `k`, `m` and the random part of an erasure-coded blob id.
pub fn parse_erasure_id(id: &str) -> Option<(Geometry, &str)> {
    let rest = id.strip_prefix(ERASURE_PREFIX)?;
    let mut parts = rest.splitn(3, '-');
    let k: usize = parts.next()?.parse().ok()?;
    let m: usize = parts.next()?.parse().ok()?;
    let hex = parts.next()?;
    let valid = (1..=64).contains(&k) && (1..=64).contains(&m) && is_hex32(hex);
    valid.then_some((Geometry { k, m }, hex))
}

/// The file name of shard `index` of blob `id`.
pub fn shard_file(id: &str, index: usize) -> String {
    format!("{id}.{index}")
}

/// The blob and shard index a shard file name stands for.
pub fn parse_shard_file(name: &str) -> Option<(&str, usize)> {
    let (id, index) = name.rsplit_once('.')?;
    let (geometry, _) = parse_erasure_id(id)?;
    let index: usize = index.parse().ok()?;
    (index < geometry.shards() && index.to_string() == name[id.len() + 1..]).then_some((id, index))
}

/// The ids the metadata store knows a file by: a blob file's own name, or the
/// erasure-coded blob a shard file belongs to.
pub fn blob_of_file(name: &str) -> &str {
    parse_shard_file(name).map_or(name, |(id, _)| id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_file_names_round_trip_and_reject_foreign_names() {
        let id = new_erasure_id(4, 2);
        let (geometry, hex) = parse_erasure_id(&id).expect("valid id");
        assert_eq!(geometry, Geometry { k: 4, m: 2 });
        assert_eq!(hex.len(), 32);
        for index in 0..6 {
            assert_eq!(
                parse_shard_file(&shard_file(&id, index)),
                Some((id.as_str(), index))
            );
        }
        assert_eq!(parse_shard_file(&shard_file(&id, 6)), None, "beyond k+m");
        assert_eq!(parse_shard_file(&format!("{id}.01")), None);
        assert_eq!(parse_shard_file(&format!("{:032x}", 7u128)), None);
        assert_eq!(parse_erasure_id("e-4-2-../../etc/passwd"), None);
        assert_eq!(blob_of_file(&shard_file(&id, 3)), id);
    }
}
