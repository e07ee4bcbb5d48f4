//! `get_or_load` in front of a stand-in database: concurrent misses of one
//! key run the loader once, and a write during a load keeps the loaded
//! (now stale) value out of the cache.
//!
//! `cargo run --release -p coherent --example loader`

use coherent::{Cache, LoadError};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex};

/// The source of truth the cache sits in front of.
struct Database {
    rows: Mutex<HashMap<u64, String>>,
    reads: AtomicUsize,
}

impl Database {
    fn read(&self, id: u64) -> Result<String, std::io::Error> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        let row = self.rows.lock().unwrap().get(&id).cloned();
        row.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, format!("no row {id}")))
    }

    fn write(&self, id: u64, name: &str) {
        self.rows.lock().unwrap().insert(id, name.to_owned());
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let db = Database {
        rows: Mutex::new(HashMap::new()),
        reads: AtomicUsize::new(0),
    };
    db.write(1, "ada");
    let users: Cache<u64, String> = Cache::new();

    // Eight threads miss at once: one loads, the others wait for its value.
    let start = Barrier::new(8);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                start.wait();
                let name = users.get_or_load(1, |id| db.read(*id)).expect("load");
                assert_eq!(name, "ada");
            });
        }
    });
    println!(
        "8 concurrent misses, {} database read(s)",
        db.reads.load(Ordering::Relaxed)
    );

    // A loader's error reaches its caller and nothing is cached.
    match users.get_or_load(2, |id| db.read(*id)) {
        Err(LoadError::Loader(e)) => println!("load of 2 failed: {e}"),
        other => panic!("expected the loader's error, got {other:?}"),
    }
    assert_eq!(users.get(&2), None);

    // A write lands while a load of the same key runs: the write is the
    // newer truth, so the value the loader read is returned to its caller
    // but never cached.
    db.write(3, "old name");
    let loaded = users.get_or_load(3, |id| {
        let old = db.read(*id);
        db.write(3, "new name");
        users.invalidate(&3).expect("invalidate"); // what the writer does after its update
        old
    })?;
    assert_eq!(loaded, "old name");
    assert_eq!(users.get(&3), None, "the stale value was not cached");
    assert_eq!(users.get_or_load(3, |id| db.read(*id))?, "new name");
    println!("the value loaded before a write was not cached");
    Ok(())
}
