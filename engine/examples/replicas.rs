//! Two replicas of a service, each with its own cache, kept coherent
//! through one Redis server (feature `redis`). This example starts a
//! `redis-server` of its own on a free local port (`apt-get install
//! redis-server`), or uses `REDIS_URL` if set.
//!
//! `cargo run --release -p coherent --features redis --example replicas`

use coherent::replica::Replica;
use coherent::Cache;
use std::collections::HashMap;
use std::sync::Mutex;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _server;
    let url = match std::env::var("REDIS_URL") {
        Ok(url) => url,
        Err(_) => {
            _server = LocalRedis::start()?;
            _server.url()
        }
    };

    // The source of truth both replicas load from.
    let db = Mutex::new(HashMap::from([(7u64, "Ada".to_owned())]));
    let load = |id: &u64| Ok::<_, std::io::Error>(db.lock().unwrap()[id].clone());

    // In a real service each replica is its own process.
    let a = Replica::join(Cache::<u64, String>::new(), &url, "users")?;
    let b = Replica::join(Cache::<u64, String>::new(), &url, "users")?;
    assert!(a.is_serving() && b.is_serving());

    assert_eq!(b.get_or_load(7, load)?, "Ada"); // b caches the row

    // a updates the row, then invalidates: `invalidate` returns once b has
    // dropped its copy (or surely stopped serving).
    db.lock().unwrap().insert(7, "Ada Lovelace".to_owned());
    a.invalidate(&7)?;

    assert_eq!(b.get(&7), None, "b no longer serves the old row");
    assert_eq!(b.get_or_load(7, load)?, "Ada Lovelace");
    println!("replicas: b read the new row right after a's write returned");
    println!("a: {:?}\nb: {:?}", a.stats(), b.stats());
    Ok(())
}

/// A `redis-server` child on a free port, stopped when dropped.
struct LocalRedis {
    child: std::process::Child,
    port: u16,
}

impl LocalRedis {
    fn start() -> Result<Self, Box<dyn std::error::Error>> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .map_err(|e| {
                format!("redis-server ({e}): apt-get install redis-server, or set REDIS_URL")
            })?;
        let server = Self { child, port };
        let client = redis::Client::open(server.url())?;
        for _ in 0..2_000 {
            if let Ok(mut c) = client.get_connection() {
                if redis::cmd("PING").query::<String>(&mut c).is_ok() {
                    return Ok(server);
                }
            }
            // Polling: the server gives no other sign that it is up.
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        Err("redis-server did not answer".into())
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for LocalRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
