//! The ARC traces in `bench/traces/` (format and sources in its README): each
//! line is `start_block block_count _ request_id`, and every block from
//! `start_block` to `start_block + block_count - 1` is one access.
//!
//! Results on these traces cite N. Megiddo and D. S. Modha, "ARC: A
//! Self-Tuning, Low Overhead Replacement Cache", USENIX FAST '03,
//! pp. 115-130, 2003.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// Where the traces are: `COHERENT_TRACES`, or `bench/traces` in this
/// repository.
pub fn dir() -> PathBuf {
    std::env::var_os("COHERENT_TRACES").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("traces"),
        PathBuf::from,
    )
}

/// The accesses of trace `name` (e.g. `"OLTP"`), in order.
pub fn load(name: &str) -> std::io::Result<Vec<u64>> {
    let path = dir().join(format!("{name}.lis.zst"));
    let file = std::fs::File::open(&path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let decoder = ruzstd::decoding::StreamingDecoder::new(BufReader::new(file))
        .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))?;
    let mut keys = Vec::new();
    for line in BufReader::new(decoder).lines() {
        let line = line?;
        let mut fields = line.split_ascii_whitespace();
        let (Some(start), Some(count)) = (fields.next(), fields.next()) else {
            continue;
        };
        let parse = |s: &str| {
            s.parse::<u64>()
                .map_err(|e| std::io::Error::other(format!("{}: {line:?}: {e}", path.display())))
        };
        let (start, count) = (parse(start)?, parse(count)?);
        keys.extend(start..start + count);
    }
    Ok(keys)
}
