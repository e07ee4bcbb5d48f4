//! The namespace's state in Redis, and the only code that talks to it.
//!
//! All keys of a namespace share the hash tag `{coh:NS}`, so they live in
//! one hash slot, and every change of more than one key is a Lua script,
//! which Redis runs atomically:
//!
//! - `epoch`: `"<id>:<lease ms>:<created at, Redis ms>"`, made by the first
//!   join after the namespace was empty (first use, `FLUSHALL`, a restart
//!   without persistence). A new epoch means everything else was lost.
//! - `seq`: the last sequence number given out.
//! - `log`: a stream of invalidations, entry id `<seq>-0`, fields `o` (the
//!   writer's member id), `e` (the epoch it was written in: after a flush
//!   the numbering starts again, and a replica of the old epoch must not
//!   take a new entry for the one it missed) and `p` (the payload,
//!   `wire.rs`).
//! - `members`: member id -> lease expiry (Redis ms).
//! - `revoked`: member id -> the lease expiry it had when a writer revoked
//!   it; it cannot renew, and writers wait that expiry out.
//! - `acked`: member id -> the last sequence number it applied.
//! - `acks`: a stream that tells writers of each ack as it happens.

use redis::{Connection, Script, Value};

/// A member's lease as a writer sees it: its id and expiry (Redis ms).
pub(crate) type Lease = (String, u64);

pub(crate) struct Keys {
    epoch: String,
    seq: String,
    log: String,
    members: String,
    revoked: String,
    acked: String,
    acks: String,
}

impl Keys {
    pub(crate) fn new(namespace: &str) -> Self {
        let k = |name: &str| format!("{{coh:{namespace}}}:{name}");
        Self {
            epoch: k("epoch"),
            seq: k("seq"),
            log: k("log"),
            members: k("members"),
            revoked: k("revoked"),
            acked: k("acked"),
            acks: k("acks"),
        }
    }

    pub(crate) fn log(&self) -> &str {
        &self.log
    }

    pub(crate) fn acks(&self) -> &str {
        &self.acks
    }
}

/// Redis's clock in ms, in a script.
const NOW: &str = "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)";

/// What a join returns.
pub(crate) struct Joined {
    /// The epoch's id string (with its lease and creation time).
    pub(crate) epoch: String,
    /// The log's last sequence number: this member applies what follows.
    pub(crate) seq: u64,
    /// Redis's clock at the join, and when the epoch began.
    pub(crate) now: u64,
    pub(crate) epoch_began: u64,
}

pub(crate) struct Scripts {
    join: Script,
    renew: Script,
    publish: Script,
    ack: Script,
    revoke: Script,
}

/// How a renewal went.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Renewed {
    Ok,
    /// The namespace has another epoch (or none): Redis lost its state.
    Epoch,
    /// A writer revoked this member, or its lease ran out in Redis.
    Gone,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        let join = format!(
            "{NOW}
            local ep = redis.call('GET', KEYS[1])
            if not ep then
              ep = ARGV[3] .. ':' .. ARGV[2] .. ':' .. now
              redis.call('SET', KEYS[1], ep)
            end
            local seq = tonumber(redis.call('GET', KEYS[2]) or '0')
            redis.call('HSET', KEYS[3], ARGV[1], now + tonumber(ARGV[2]))
            redis.call('HSET', KEYS[4], ARGV[1], seq)
            return {{ep, seq, now}}"
        );
        let renew = format!(
            "{NOW}
            if redis.call('GET', KEYS[1]) ~= ARGV[2] then return 'EPOCH' end
            local exp = redis.call('HGET', KEYS[2], ARGV[1])
            if not exp then return 'GONE' end
            if tonumber(exp) <= now then
              redis.call('HDEL', KEYS[2], ARGV[1])
              return 'GONE'
            end
            redis.call('HSET', KEYS[2], ARGV[1], now + tonumber(ARGV[3]))
            return 'OK'"
        );
        let publish = format!(
            "{NOW}
            if redis.call('GET', KEYS[1]) ~= ARGV[2] then return {{-1, now, {{}}}} end
            local seq = redis.call('INCR', KEYS[2])
            redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], seq .. '-0', 'o', ARGV[1], 'e', ARGV[2], 'p', ARGV[3])
            local leases = {{}}
            local m = redis.call('HGETALL', KEYS[4])
            for i = 1, #m, 2 do
              if tonumber(m[i + 1]) + tonumber(ARGV[5]) > now then
                table.insert(leases, m[i]) table.insert(leases, m[i + 1])
              else
                redis.call('HDEL', KEYS[4], m[i])
              end
            end
            local r = redis.call('HGETALL', KEYS[5])
            for i = 1, #r, 2 do
              if tonumber(r[i + 1]) + tonumber(ARGV[5]) > now then
                table.insert(leases, r[i]) table.insert(leases, r[i + 1])
              else
                redis.call('HDEL', KEYS[5], r[i])
              end
            end
            return {{seq, now, leases}}"
        );
        let ack = "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
            redis.call('XADD', KEYS[2], 'MAXLEN', '~', '10000', '*', 'r', ARGV[1], 's', ARGV[2])
            return 1";
        let revoke = format!(
            "{NOW}
            local a = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '-1')
            if a >= tonumber(ARGV[2]) then return {{0, now}} end
            local exp = redis.call('HGET', KEYS[1], ARGV[1])
            if exp then
              redis.call('HDEL', KEYS[1], ARGV[1])
              redis.call('HSET', KEYS[3], ARGV[1], exp)
            else
              exp = redis.call('HGET', KEYS[3], ARGV[1])
              if not exp then return {{-1, now}} end
            end
            exp = tonumber(exp)
            if exp <= now then return {{0, now}} end
            return {{exp - now, now}}"
        );
        Self {
            join: Script::new(&join),
            renew: Script::new(&renew),
            publish: Script::new(&publish),
            ack: Script::new(ack),
            revoke: Script::new(&revoke),
        }
    }

    /// Joins member `id` with a lease of `lease_ms`; makes the epoch if the
    /// namespace has none (`fresh` names it).
    pub(crate) fn join(
        &self,
        c: &mut Connection,
        k: &Keys,
        id: &str,
        lease_ms: u64,
        fresh: &str,
    ) -> redis::RedisResult<Joined> {
        let (epoch, seq, now): (String, u64, u64) = self
            .join
            .key(&k.epoch)
            .key(&k.seq)
            .key(&k.members)
            .key(&k.acked)
            .arg(id)
            .arg(lease_ms)
            .arg(fresh)
            .invoke(c)?;
        let epoch_began = epoch
            .rsplit(':')
            .next()
            .and_then(|t| t.parse().ok())
            .unwrap_or(now);
        Ok(Joined {
            epoch,
            seq,
            now,
            epoch_began,
        })
    }

    pub(crate) fn renew(
        &self,
        c: &mut Connection,
        k: &Keys,
        id: &str,
        epoch: &str,
        lease_ms: u64,
    ) -> redis::RedisResult<Renewed> {
        let r: String = self
            .renew
            .key(&k.epoch)
            .key(&k.members)
            .arg(id)
            .arg(epoch)
            .arg(lease_ms)
            .invoke(c)?;
        Ok(match r.as_str() {
            "OK" => Renewed::Ok,
            "EPOCH" => Renewed::Epoch,
            _ => Renewed::Gone,
        })
    }

    /// Appends `payload` to the log. `None`: the epoch is not `epoch` any
    /// more. Otherwise the entry's sequence number, Redis's clock, and the
    /// leases (of members and revoked members) that had not ended
    /// `margin_ms` before then: a replica's own clock may lag Redis's.
    pub(crate) fn publish(
        &self,
        c: &mut Connection,
        k: &Keys,
        member: &super::Member,
        payload: &[u8],
        max_log: u64,
        margin_ms: u64,
    ) -> redis::RedisResult<Option<(u64, u64, Vec<Lease>)>> {
        let (seq, now, flat): (i64, u64, Vec<String>) = self
            .publish
            .key(&k.epoch)
            .key(&k.seq)
            .key(&k.log)
            .key(&k.members)
            .key(&k.revoked)
            .arg(&member.id)
            .arg(&member.epoch)
            .arg(payload)
            .arg(max_log)
            .arg(margin_ms)
            .invoke(c)?;
        if seq < 0 {
            return Ok(None);
        }
        let leases = flat
            .chunks(2)
            .filter_map(|p| Some((p[0].clone(), p.get(1)?.parse().ok()?)))
            .collect();
        Ok(Some((seq as u64, now, leases)))
    }

    pub(crate) fn ack(
        &self,
        c: &mut Connection,
        k: &Keys,
        id: &str,
        seq: u64,
    ) -> redis::RedisResult<()> {
        let _: i64 = self
            .ack
            .key(&k.acked)
            .key(&k.acks)
            .arg(id)
            .arg(seq)
            .invoke(c)?;
        Ok(())
    }

    /// Revokes `id` unless it acked `seq`: the ms until its lease has
    /// surely ended in Redis's clock (0: nothing to wait for), or `None`
    /// if Redis has no record of it (it lost its state since the publish):
    /// the lease may then run for a whole lease from now.
    pub(crate) fn revoke(
        &self,
        c: &mut Connection,
        k: &Keys,
        id: &str,
        seq: u64,
    ) -> redis::RedisResult<Option<u64>> {
        let (wait, _now): (i64, u64) = self
            .revoke
            .key(&k.members)
            .key(&k.acked)
            .key(&k.revoked)
            .arg(id)
            .arg(seq)
            .invoke(c)?;
        Ok(u64::try_from(wait).ok())
    }
}

/// The last sequence number each of `ids` acked (0 if none).
pub(crate) fn acked(c: &mut Connection, k: &Keys, ids: &[&str]) -> redis::RedisResult<Vec<u64>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let v: Vec<Option<u64>> = redis::cmd("HMGET").arg(&k.acked).arg(ids).query(c)?;
    Ok(v.into_iter().map(Option::unwrap_or_default).collect())
}

/// One stream entry: its id and its fields.
pub(crate) type Entry = (String, Vec<(String, Vec<u8>)>);

/// `XREAD BLOCK block_ms COUNT count STREAMS key after`: the entries after
/// `after` (an id), empty if none came within `block_ms`.
pub(crate) fn read_stream(
    c: &mut Connection,
    key: &str,
    after: &str,
    block_ms: u64,
    count: usize,
) -> redis::RedisResult<Vec<Entry>> {
    let v: Value = redis::cmd("XREAD")
        .arg("BLOCK")
        .arg(block_ms)
        .arg("COUNT")
        .arg(count)
        .arg("STREAMS")
        .arg(key)
        .arg(after)
        .query(c)?;
    let streams = match v {
        Value::Array(s) => s,
        Value::Map(m) => m
            .into_iter()
            .map(|(k, v)| Value::Array(vec![k, v]))
            .collect(),
        _ => return Ok(Vec::new()),
    };
    let mut out = Vec::new();
    for stream in streams {
        let Value::Array(mut kv) = stream else {
            continue;
        };
        if let Some(entries) = kv.pop() {
            out.extend(entries_of(entries));
        }
    }
    Ok(out)
}

/// The entries of an `XRANGE`-shaped reply.
pub(crate) fn entries(v: Value) -> Vec<Entry> {
    entries_of(v)
}

fn entries_of(v: Value) -> Vec<Entry> {
    let mut out = Vec::new();
    let Value::Array(entries) = v else {
        return out;
    };
    {
        for e in entries {
            let Value::Array(mut e) = e else { continue };
            let fields = match e.pop() {
                Some(Value::Array(f)) => f,
                _ => Vec::new(),
            };
            let id = match e.pop() {
                Some(Value::BulkString(b)) => String::from_utf8_lossy(&b).into_owned(),
                Some(Value::SimpleString(s)) => s,
                _ => continue,
            };
            let mut pairs = Vec::new();
            let mut it = fields.into_iter();
            while let (Some(f), Some(v)) = (it.next(), it.next()) {
                let (Value::BulkString(f), Value::BulkString(v)) = (f, v) else {
                    continue;
                };
                pairs.push((String::from_utf8_lossy(&f).into_owned(), v));
            }
            out.push((id, pairs));
        }
    }
    out
}

/// The sequence number of a log entry id `<seq>-0`.
pub(crate) fn seq_of(id: &str) -> Option<u64> {
    id.split('-').next()?.parse().ok()
}
