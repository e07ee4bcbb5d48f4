//! The basic operations: insert, get, update, invalidate.
//!
//! `cargo run --release -p coherent --example basics`

use coherent::Cache;

fn main() -> Result<(), coherent::Error> {
    let cache: Cache<String, u64> = Cache::new();

    // A write returns once every reader can see it.
    cache.insert("apples".to_owned(), 3)?;
    cache.insert("pears".to_owned(), 5)?;
    assert_eq!(cache.get("apples"), Some(3));

    // `update` is an atomic read-modify-write: concurrent updates of one
    // key are applied one after another, none is lost.
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..1_000 {
                    cache
                        .update("apples".to_owned(), |v| Some(v.copied().unwrap_or(0) + 1))
                        .expect("update");
                }
            });
        }
    });
    assert_eq!(cache.get("apples"), Some(4_003));

    // Returning `None` from the closure removes the key.
    cache.update("pears".to_owned(), |_| None)?;
    assert_eq!(cache.get("pears"), None);

    cache.invalidate(&"apples".to_owned())?;
    assert!(cache.is_empty());
    println!("basics: every assertion held");
    Ok(())
}
