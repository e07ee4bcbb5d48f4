//! G8: no stale read across replicas, on a real Redis server of the
//! test's own. Each test runs the cross-replica checker
//! (`tests/src/replicas.rs`) with or without a fault; the naive design
//! (invalidation by fire-and-forget `PUBLISH`) must show the anomaly.

use coherent::replica::{Replica, ReplicaConfig};
use coherent::Cache;
use coherent_tests::redis_server::RedisServer;
use coherent_tests::replicas::{check, Plan, PubSubReplica, Replicated};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn config() -> ReplicaConfig {
    ReplicaConfig {
        lease: Duration::from_millis(600),
        ack_deadline: Duration::from_millis(200),
        ..ReplicaConfig::default()
    }
}

fn join(server: &RedisServer, namespace: &str) -> Replica<u64, u64> {
    join_with(server, namespace, config())
}

fn join_with(server: &RedisServer, namespace: &str, config: ReplicaConfig) -> Replica<u64, u64> {
    let r = Replica::join_with(Cache::new(), &server.url(), namespace, config)
        .expect("joining the namespace");
    assert!(
        r.wait_until_serving(Duration::from_secs(5)),
        "the replica serves after joining"
    );
    r
}

fn replicas(server: &RedisServer, namespace: &str, n: usize) -> Vec<Arc<dyn Replicated>> {
    (0..n)
        .map(|_| Arc::new(join(server, namespace)) as Arc<dyn Replicated>)
        .collect()
}

const PLAN: Plan = Plan {
    writes: 5_000,
    writers: 2,
    keys: 16,
};

/// Runs `f` each time the writers pass another `every` writes, until they
/// are done.
#[allow(dead_code)]
fn every(every: u64, mut f: impl FnMut() + Send) -> impl FnOnce(&AtomicU64, &AtomicBool) + Send {
    move |progress, done| {
        let mut next = every;
        while !done.load(Ordering::Acquire) {
            if progress.load(Ordering::Relaxed) >= next {
                f();
                next += every;
            }
            std::thread::yield_now();
        }
    }
}

#[test]
fn replicas_never_serve_a_value_older_than_an_acknowledged_write() {
    let server = RedisServer::start();
    let run = check(&replicas(&server, "plain", 3), PLAN, |_, _| {});
    println!("{run:?}");
    assert_eq!(run.anomalies, 0, "{run:?}");
    assert_eq!(
        run.acknowledged, 10_000,
        "no write failed without a fault: {run:?}"
    );
    assert!(run.reads > 0);
}

#[test]
fn the_checker_catches_invalidation_by_publish_with_a_delayed_subscriber() {
    let server = RedisServer::start();
    let naive: Vec<Arc<dyn Replicated>> = (0..3)
        .map(|_| {
            Arc::new(PubSubReplica::new(
                &server.url(),
                "inv",
                Duration::from_millis(2),
            )) as Arc<dyn Replicated>
        })
        .collect();
    let run = check(&naive, PLAN, |_, _| {});
    println!("{run:?}");
    assert!(run.anomalies > 0, "the naive design went uncaught: {run:?}");
}

/// A command on the server from a connection of the test's own.
fn admin(server: &RedisServer, args: &[&str]) {
    let mut c = server.connection();
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    let _: redis::Value = cmd.query(&mut c).expect("an admin command");
}

#[test]
fn killed_connections_cost_no_stale_read() {
    let server = RedisServer::start();
    let rs = replicas(&server, "kill", 3);
    let run = check(
        &rs,
        PLAN,
        every(1_000, || {
            admin(&server, &["CLIENT", "KILL", "TYPE", "normal"])
        }),
    );
    println!("{run:?}");
    assert_eq!(run.anomalies, 0, "{run:?}");
    assert!(run.acknowledged > 0, "{run:?}");
}

#[test]
fn the_checker_catches_invalidation_by_publish_when_subscribers_are_killed() {
    let server = RedisServer::start();
    let naive: Vec<Arc<dyn Replicated>> = (0..3)
        .map(|_| {
            Arc::new(PubSubReplica::new(&server.url(), "inv", Duration::ZERO))
                as Arc<dyn Replicated>
        })
        .collect();
    let run = check(
        &naive,
        PLAN,
        every(250, || {
            admin(&server, &["CLIENT", "KILL", "TYPE", "pubsub"])
        }),
    );
    println!("{run:?}");
    assert!(run.anomalies > 0, "the naive design went uncaught: {run:?}");
}

#[test]
fn flushall_mid_run_costs_no_stale_read() {
    let server = RedisServer::start();
    let joined: Vec<Arc<Replica<u64, u64>>> =
        (0..3).map(|_| Arc::new(join(&server, "flush"))).collect();
    let rs: Vec<Arc<dyn Replicated>> = joined
        .iter()
        .map(|r| r.clone() as Arc<dyn Replicated>)
        .collect();
    let run = check(&rs, PLAN, every(3_000, || admin(&server, &["FLUSHALL"])));
    println!("{run:?}");
    assert_eq!(run.anomalies, 0, "{run:?}");
    let epochs: u64 = joined.iter().map(|r| r.stats().epochs).sum();
    assert!(
        epochs > 0,
        "the replicas saw the new epoch: {:?}",
        joined[0].stats()
    );
}

#[test]
fn a_redis_restart_costs_no_stale_read() {
    let mut server = RedisServer::start();
    let rs = replicas(&server, "restart", 3);
    let url = server.url();
    let restarted = std::sync::Mutex::new(&mut server);
    let run = check(
        &rs,
        PLAN,
        every(4_000, || restarted.lock().unwrap().restart()),
    );
    println!("{run:?} ({url})");
    assert_eq!(run.anomalies, 0, "{run:?}");
    assert!(
        run.unconfirmed < 10_000,
        "writes go on after the restart: {run:?}"
    );
}

#[test]
fn a_paused_redis_makes_writes_unconfirmed_and_replicas_stop_serving_within_the_lease() {
    let server = RedisServer::start();
    let a = join(&server, "pause");
    let b = join(&server, "pause");
    a.insert(1, 1).expect("a write before the pause");
    let lease = config().lease;
    admin(
        &server,
        &[
            "CLIENT",
            "PAUSE",
            &(lease.as_millis() * 4).to_string(),
            "ALL",
        ],
    );
    let paused = std::time::Instant::now();
    let e = a
        .insert(1, 2)
        .expect_err("a write during the pause cannot be confirmed");
    assert!(matches!(e, coherent::Error::Unconfirmed(_)), "{e:?}");
    // Without renewals both replicas stop serving within their lease.
    for r in [&a, &b] {
        while r.is_serving() {
            assert!(
                paused.elapsed() < lease + Duration::from_millis(100),
                "still serving"
            );
            std::thread::yield_now();
        }
        assert_eq!(
            r.get(&1),
            None,
            "a replica that does not serve serves nothing"
        );
    }
    assert!(a.stats().unconfirmed >= 1);
    // Once Redis answers again they join again.
    admin(&server, &["CLIENT", "UNPAUSE"]);
    assert!(a.wait_until_serving(Duration::from_secs(10)));
    assert!(b.wait_until_serving(Duration::from_secs(10)));
    assert!(a.stats().joins >= 2 && b.stats().joins >= 2);
    assert_eq!(
        b.get_or_load(1, |_| Ok::<_, std::convert::Infallible>(2))
            .unwrap(),
        2
    );
}

#[test]
fn an_unconfirmed_invalidation_is_published_again_before_its_writer_serves() {
    // Writes (scripts) pause for longer than the ack deadline but well
    // inside the lease: the writer's publish times out, while `b` keeps
    // its lease and keeps serving the old value until the writer, joining
    // again, publishes the invalidation once more.
    let server = RedisServer::start();
    let config = ReplicaConfig {
        lease: Duration::from_secs(3),
        ack_deadline: Duration::from_millis(200),
        ..ReplicaConfig::default()
    };
    let join = || join_with(&server, "again", config.clone());
    let (a, b) = (join(), join());
    a.invalidate(&0)
        .expect("a first write (the epoch's first lease passes)");
    assert_eq!(
        b.get_or_load(1, |_| Ok::<_, std::convert::Infallible>(1))
            .unwrap(),
        1
    );
    admin(&server, &["CLIENT", "PAUSE", "600", "WRITE"]);
    let e = a.invalidate(&1).expect_err("the publish times out");
    assert!(matches!(e, coherent::Error::Unconfirmed(_)), "{e:?}");
    assert!(
        a.wait_until_serving(Duration::from_secs(10)),
        "a joins again"
    );
    assert_eq!(b.stats().joins, 1, "b kept its lease through the pause");
    assert_eq!(
        b.get(&1),
        None,
        "b applied the invalidation published again"
    );
}

#[test]
fn a_load_held_across_a_remote_write_is_never_installed() {
    let server = RedisServer::start();
    let a = join(&server, "load");
    let b = join(&server, "load");
    let (read_tx, read_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let b_ref = &b;
    std::thread::scope(|s| {
        let loading = s.spawn(move || {
            b_ref
                .get_or_load(7, |_| {
                    // The loader has read the old row...
                    read_tx.send(()).unwrap();
                    // ...and is held until the remote write returned.
                    go_rx.recv().unwrap();
                    Ok::<_, std::convert::Infallible>(1)
                })
                .unwrap()
        });
        read_rx.recv().unwrap();
        a.invalidate(&7).expect("the remote write");
        go_tx.send(()).unwrap();
        assert_eq!(
            loading.join().unwrap(),
            1,
            "the leader gets its own value back"
        );
    });
    assert_eq!(b.get(&7), None, "the stale load was not installed");
    assert_eq!(
        b.get_or_load(7, |_| Ok::<_, std::convert::Infallible>(2))
            .unwrap(),
        2
    );
}

#[test]
fn a_remote_transaction_with_a_tag_is_never_seen_in_part() {
    let server = RedisServer::start();
    let a = join(&server, "txn");
    let b = join(&server, "txn");
    let keys = [0u64, 3, 7];
    let done = AtomicBool::new(false);
    let (torn, whole) = (AtomicU64::new(0), AtomicU64::new(0));
    std::thread::scope(|s| {
        s.spawn(|| {
            // On b: the three keys are cached at one instant (a local
            // transaction), two of them tagged "group"; a's transactions
            // drop key 0 and the tag at one instant. A snapshot must hold
            // all three or none.
            while !done.load(Ordering::Acquire) {
                let seen = b.get_many(&keys);
                let present = seen.iter().flatten().count();
                if present == 0 {
                    whole.fetch_add(1, Ordering::Relaxed);
                    b.transaction()
                        .insert(0, 1)
                        .insert_tagged(3, 1, ["group"])
                        .insert_tagged(7, 1, ["group"])
                        .commit()
                        .expect("caching the three keys");
                } else if present < keys.len() {
                    torn.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        for _ in 0..300 {
            a.transaction()
                .invalidate(0)
                .invalidate_tag("group")
                .commit()
                .expect("a transaction");
        }
        done.store(true, Ordering::Release);
    });
    assert_eq!(
        torn.load(Ordering::Relaxed),
        0,
        "a snapshot held part of a transaction"
    );
    assert!(
        whole.load(Ordering::Relaxed) > 1,
        "the transactions reached b"
    );
}

#[test]
fn a_log_trimmed_under_the_replicas_costs_no_stale_read() {
    let server = RedisServer::start();
    let joined: Vec<Arc<Replica<u64, u64>>> =
        (0..3).map(|_| Arc::new(join(&server, "gap"))).collect();
    let rs: Vec<Arc<dyn Replicated>> = joined
        .iter()
        .map(|r| r.clone() as Arc<dyn Replicated>)
        .collect();
    let run = check(
        &rs,
        PLAN,
        every(500, || {
            admin(&server, &["XTRIM", "{coh:gap}:log", "MAXLEN", "0"])
        }),
    );
    let gaps: u64 = joined.iter().map(|r| r.stats().gaps).sum();
    println!("{run:?}, {gaps} gaps");
    assert_eq!(run.anomalies, 0, "{run:?}");
    assert!(gaps > 0, "some replica found a gap and joined again");
}
