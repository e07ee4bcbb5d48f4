//! A transaction with tags: several keys and a tag invalidation become
//! visible at one instant, and `get_many` reads a consistent snapshot.
//!
//! `cargo run --release -p coherent --example transaction`

use coherent::Cache;

fn main() -> Result<(), coherent::Error> {
    let cache: Cache<String, String> = Cache::new();

    // Pages tagged with the user they show.
    cache.insert_tagged("/users/7".to_owned(), "Ada, admin".to_owned(), ["user:7"])?;
    cache.insert_tagged(
        "/teams/3".to_owned(),
        "team 3: Ada".to_owned(),
        ["user:7", "team:3"],
    )?;
    cache.insert_tagged("/teams/4".to_owned(), "team 4: Bob".to_owned(), ["team:4"])?;

    // Ada leaves team 3: the new profile page and the removal of every
    // page that shows her, at one instant. No reader sees the new profile
    // beside the old team page, or the reverse.
    cache
        .transaction()
        .invalidate_tag("user:7")
        .insert_tagged(
            "/users/7".to_owned(),
            "Ada, former admin".to_owned(),
            ["user:7"],
        )
        .commit()?;

    let keys = [
        "/users/7".to_owned(),
        "/teams/3".to_owned(),
        "/teams/4".to_owned(),
    ];
    let snapshot = cache.get_many(&keys);
    assert_eq!(snapshot[0].as_deref(), Some("Ada, former admin"));
    assert_eq!(snapshot[1], None, "invalidated with the tag");
    assert_eq!(
        snapshot[2].as_deref(),
        Some("team 4: Bob"),
        "another tag: untouched"
    );
    println!("{keys:?} -> {snapshot:?}");

    // Invalidating a tag alone is a transaction too.
    cache.invalidate_tag("team:4")?;
    assert_eq!(cache.len(), 1);
    Ok(())
}
