//! Each replica's two threads. The link thread joins the namespace,
//! applies the log in order, acks what it applied and renews the lease;
//! whenever it cannot be sure the replica is current it stops serving,
//! drops the replica's entries and joins again. The watcher thread reads
//! the `acks` stream for this process's writers.

use super::{lock, process_id, store, wire, Inner, Member, ReplicaKey};
use crate::Error;
use std::hash::Hash;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a blocking read of a stream waits at most, so that the threads
/// notice a dropped replica and renew on time.
fn block_ms(lease_ms: u64) -> u64 {
    (lease_ms / 6).clamp(1, 100)
}

pub(super) fn spawn_link<K, V>(inner: Arc<Inner<K, V>>) -> JoinHandle<()>
where
    K: ReplicaKey + Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    std::thread::Builder::new()
        .name("coherent-replica-link".to_owned())
        .spawn(move || {
            let mut epoch = None;
            while !inner.stop.load(Ordering::Acquire) {
                // Not serving from here until joined and current again.
                inner.serving_until.store(0, Ordering::Release);
                inner.drop_generation();
                match membership(&inner, &mut epoch) {
                    Ok(()) => return,
                    Err(why) => {
                        tracing::info!(%why, "replica stopped serving; joining again");
                        // Not a synchronisation: a pause between tries
                        // while Redis is unreachable.
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            }
        })
        .expect("spawning the replica's link thread")
}

/// A connection for a thread that blocks on streams: reads time out a
/// third of a lease after the longest block, so a silent Redis ends the
/// membership well within the lease.
fn connect<K, V>(inner: &Inner<K, V>) -> redis::RedisResult<redis::Connection> {
    let third = inner.config.lease / 3;
    let c = inner.client.get_connection_with_timeout(third)?;
    let block = Duration::from_millis(block_ms(inner.config.lease.as_millis() as u64));
    c.set_read_timeout(Some(block + third))?;
    c.set_write_timeout(Some(third))?;
    Ok(c)
}

/// One membership: join, serve, and apply the log until something goes
/// wrong (`Err`) or the replica is dropped (`Ok`).
fn membership<K, V>(inner: &Inner<K, V>, epoch: &mut Option<String>) -> Result<(), String>
where
    K: ReplicaKey + Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    let lease_ms = inner.config.lease.as_millis() as u64;
    let block = block_ms(lease_ms);
    let err = |e: redis::RedisError| e.to_string();
    let mut c = connect(inner).map_err(err)?;
    let n = inner.incarnation.fetch_add(1, Ordering::Relaxed);
    let id = format!("{}-{n}", inner.base_id);
    let sent = inner.clock.now_ms();
    let joined = inner
        .scripts
        .join(&mut c, &inner.keys, &id, lease_ms, &process_id())
        .map_err(err)?;
    if epoch.as_ref().is_some_and(|e| *e != joined.epoch) {
        inner.counters.epochs.fetch_add(1, Ordering::Relaxed);
        tracing::warn!("the namespace is in a new epoch: Redis lost its state");
    }
    *epoch = Some(joined.epoch.clone());
    inner.counters.joins.fetch_add(1, Ordering::Relaxed);
    let member = Member {
        id: id.clone(),
        epoch: joined.epoch,
        epoch_began: joined.epoch_began,
    };
    *lock(&inner.member) = Some(member.clone());
    inner.rejoin.store(false, Ordering::Release);
    // A write that raced the drop may have cached under the old
    // generation after it: drop again, now that the log position is fixed.
    inner.drop_generation();
    // What writers could not confirm goes out before this replica serves.
    let pending = std::mem::take(&mut *lock(&inner.pending));
    for (i, p) in pending.iter().enumerate() {
        if let Err(why) = inner.try_confirm(&member, p) {
            lock(&inner.pending).extend(pending[i..].iter().cloned());
            return Err(format!("republishing an unconfirmed write: {why}"));
        }
    }
    let mut last = joined.seq;
    let mut renewed = sent;
    tracing::debug!(member = %id, seq = last, now = joined.now, "replica joined");
    serve_until(inner, sent + lease_ms);
    loop {
        if inner.stop.load(Ordering::Acquire) {
            return Ok(());
        }
        if inner.rejoin.load(Ordering::Acquire) {
            return Err("a write could not be confirmed".to_owned());
        }
        let entries =
            store::read_stream(&mut c, inner.keys.log(), &format!("{last}-0"), block, 512)
                .map_err(err)?;
        let applied = !entries.is_empty();
        for (eid, fields) in entries {
            let seq = store::seq_of(&eid).ok_or_else(|| format!("log entry id {eid}"))?;
            if seq != last + 1 {
                inner.counters.gaps.fetch_add(1, Ordering::Relaxed);
                return Err(format!("gap in the log: {last} then {seq}"));
            }
            let field = |name: &str| fields.iter().find(|(f, _)| f == name).map(|(_, v)| v);
            if field("e").is_none_or(|e| e.as_slice() != member.epoch.as_bytes()) {
                inner.counters.epochs.fetch_add(1, Ordering::Relaxed);
                return Err(format!("log entry {seq} is of another epoch"));
            }
            if field("o").is_none_or(|o| o.as_slice() != id.as_bytes()) {
                let payload = field("p").map_or(&[][..], Vec::as_slice);
                let inv = wire::decode::<K>(payload)
                    .ok_or_else(|| format!("log entry {seq} cannot be read"))?;
                match inner.apply(inv) {
                    Ok(()) => {}
                    Err(Error::Closed) => return Ok(()),
                    Err(e) => return Err(format!("applying log entry {seq}: {e}")),
                }
            }
            last = seq;
        }
        if applied {
            inner
                .scripts
                .ack(&mut c, &inner.keys, &id, last)
                .map_err(err)?;
        }
        if inner.clock.now_ms().saturating_sub(renewed) >= lease_ms / 3 {
            let sent = inner.clock.now_ms();
            let outcome = inner
                .scripts
                .renew(&mut c, &inner.keys, &id, &member.epoch, lease_ms);
            match outcome {
                Ok(store::Renewed::Ok) => {
                    renewed = sent;
                    serve_until(inner, sent + lease_ms);
                }
                Ok(store::Renewed::Epoch) => {
                    return Err("the namespace is in a new epoch".to_owned());
                }
                Ok(store::Renewed::Gone) => {
                    inner.counters.lease_losses.fetch_add(1, Ordering::Relaxed);
                    return Err("the lease was revoked or ran out".to_owned());
                }
                Err(e) => {
                    inner.counters.lease_losses.fetch_add(1, Ordering::Relaxed);
                    return Err(format!("renewing the lease: {e}"));
                }
            }
        }
    }
}

/// Serves until `until` (monotonic ms), and wakes whoever waits for it.
fn serve_until<K, V>(inner: &Inner<K, V>, until: u64) {
    let _g = lock(&inner.serving_lock);
    // A writer that could not confirm asked for a new join: no serving
    // until then (`Inner::stop_serving_now`).
    if inner.rejoin.load(Ordering::Acquire) {
        return;
    }
    // Release: what the link thread did before (the drop, the log applied
    // so far) is seen by readers that see the replica serving.
    inner.serving_until.store(until, Ordering::Release);
    inner.serving_changed.notify_all();
}

pub(super) fn spawn_watcher<K, V>(inner: Arc<Inner<K, V>>) -> JoinHandle<()>
where
    K: Send + Sync + 'static,
    V: Send + Sync + 'static,
{
    std::thread::Builder::new()
        .name("coherent-replica-acks".to_owned())
        .spawn(move || {
            while !inner.stop.load(Ordering::Acquire) {
                if let Err(why) = watch(&inner) {
                    tracing::debug!(%why, "ack watcher reconnecting");
                    // A pause between tries while Redis is unreachable.
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        })
        .expect("spawning the replica's ack watcher")
}

fn watch<K, V>(inner: &Inner<K, V>) -> Result<(), String> {
    let err = |e: redis::RedisError| e.to_string();
    let block = block_ms(inner.config.lease.as_millis() as u64);
    let mut c = connect(inner).map_err(err)?;
    let last: Vec<store::Entry> = {
        let v: redis::Value = redis::cmd("XREVRANGE")
            .arg(inner.keys.acks())
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query(&mut c)
            .map_err(err)?;
        store::entries(v)
    };
    let mut after = last
        .first()
        .map_or_else(|| "0-0".to_owned(), |(id, _)| id.clone());
    while !inner.stop.load(Ordering::Acquire) {
        for (id, fields) in
            store::read_stream(&mut c, inner.keys.acks(), &after, block, 1024).map_err(err)?
        {
            let field = |name: &str| fields.iter().find(|(f, _)| f == name).map(|(_, v)| v);
            if let (Some(r), Some(s)) = (field("r"), field("s")) {
                let seq = std::str::from_utf8(s).ok().and_then(|s| s.parse().ok());
                if let (Ok(r), Some(seq)) = (std::str::from_utf8(r), seq) {
                    inner.acks.saw(r, seq);
                }
            }
            after = id;
        }
    }
    Ok(())
}
