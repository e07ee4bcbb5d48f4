//! The async API under tokio: writes and loads that yield to the executor
//! instead of blocking a worker thread.
//!
//! `cargo run --release -p coherent --example async_tokio`

use coherent::Cache;
use std::sync::Arc;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cache: Arc<Cache<u64, u64>> = Arc::new(Cache::new());

    // 64 tasks, 1,000 acknowledged inserts each.
    let tasks: Vec<_> = (0..64u64)
        .map(|t| {
            let cache = cache.clone();
            tokio::spawn(async move {
                for i in 0..1_000 {
                    cache.insert_async(t * 1_000 + i, i).await.expect("insert");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await?;
    }
    assert_eq!(cache.len(), 64_000);

    // Counters bumped from many tasks: no update is lost.
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move {
                for _ in 0..100 {
                    cache
                        .update_async(0, |v| Some(v.copied().unwrap_or(0) + 1))
                        .await
                        .expect("update");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await?;
    }
    assert_eq!(cache.get(&0), Some(1_600));

    // An async loader: the future is awaited once, by the caller that
    // leads the load; callers that miss meanwhile wait for its value.
    let v = cache
        .get_or_load_async(1_000_000, async { Ok::<_, std::io::Error>(2_000_000) })
        .await?;
    assert_eq!(v, 2_000_000);
    println!("async: 64,000 inserts, 1,600 updates, one load");
    Ok(())
}
