//! The README's example, run as a test so that it stays true.

use coherent::Cache;

#[test]
fn readme_example() -> Result<(), Box<dyn std::error::Error>> {
    let cache: Cache<u64, String> = Cache::builder().shards(16).build()?;
    cache.insert(1, "one".to_owned())?; // visible when it returns
    assert_eq!(cache.get(&1).as_deref(), Some("one")); // lock-free
    cache.update(1, |v| v.map(|s| format!("{s}!")))?; // atomic read-modify-write
    let row = cache.get_or_load(2, |k| Ok::<_, std::io::Error>(format!("row {k}")))?;
    assert_eq!(row, "row 2");
    cache.invalidate(&1)?; // a racing load of 1 cannot undo it
    assert_eq!(cache.get(&1), None);
    cache.insert_tagged(3, "post".to_owned(), ["user:7"])?;
    // Set one key and drop everything tagged, in any shard, at one instant.
    cache
        .transaction()
        .insert(7, "v2".to_owned())
        .invalidate_tag("user:7")
        .commit()?;
    assert_eq!(cache.get_many(&[7, 3]), vec![Some("v2".to_owned()), None]);
    Ok(())
}

#[test]
fn readme_bounded_example() -> Result<(), Box<dyn std::error::Error>> {
    use std::time::Duration;
    let cache = coherent::Cache::<u64, String>::builder()
        .max_capacity(10_000) // entries (or weight, with .weigher(...))
        .time_to_live(Duration::from_secs(300)) // per entry: insert_with_expiry
        .removal_listener(|k, _v, cause| tracing::debug!(k, ?cause, "removed"))
        .build()?;
    for k in 0..20_000 {
        cache.insert(k, k.to_string())?;
    }
    assert!(cache.len() <= 10_000);
    Ok(())
}
