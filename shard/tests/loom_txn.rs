//! loom model of one visibility instant across two shards (G2): a
//! transaction staged in two shards and published by one watermark store,
//! raced by a reader that reads one shard, then the other.
//!
//! Run with `RUSTFLAGS="--cfg coherent_loom" cargo test -p coherent-shard
//! --release --test loom_txn`. Building with `--cfg
//! coherent_loom_break_watermark` makes readers show intents before the
//! watermark reaches them, and loom finds the torn read.
#![cfg(coherent_loom)]

use coherent_shard::{Op, Reply, Shard, TxnOp, Visible};
use loom::sync::atomic::{AtomicU64, Ordering};
use loom::sync::Arc;

fn insert(hash: u64, key: u64, value: u64) -> TxnOp<u64, u64> {
    TxnOp::Insert {
        hash,
        key,
        value,
        tags: Vec::new(),
    }
}

#[test]
fn a_transaction_across_two_shards_is_seen_whole_or_not_at_all() {
    coherent_shard::loom_model("transaction_two_shards", || {
        let a: Arc<Shard<u64, u64>> = Arc::new(Shard::new(4, 4));
        let b: Arc<Shard<u64, u64>> = Arc::new(Shard::new(4, 4));
        let watermark = Arc::new(AtomicU64::new(0));
        assert_eq!(
            a.submit(1, Op::Insert { key: 1, value: 0 }).unwrap(),
            Reply::Done
        );
        assert_eq!(
            b.submit(2, Op::Insert { key: 2, value: 0 }).unwrap(),
            Reply::Done
        );
        let committer = {
            let (a, b, watermark) = (a.clone(), b.clone(), watermark.clone());
            loom::thread::spawn(move || {
                let stage = |s: &Shard<u64, u64>, hash, key| {
                    let ops = vec![insert(hash, key, 1)];
                    assert_eq!(
                        s.submit(0, Op::Prepare { stamp: 1, ops }).unwrap(),
                        Reply::Prepared
                    );
                };
                stage(&a, 1, 1);
                stage(&b, 2, 2);
                // The one instant.
                watermark.store(1, Ordering::Release);
                a.send_oneway(0, Op::Finalize { stamp: 1 });
                b.send_oneway(0, Op::Finalize { stamp: 1 });
            })
        };
        // Two gets in a row: having seen the transaction in `a`, the read
        // of `b` that follows must see it too.
        let first = a.get(1, &1, Visible::Live(&watermark));
        let second = b.get(2, &2, Visible::Live(&watermark));
        if first == Some(1) {
            assert_eq!(second, Some(1), "saw the transaction in one shard only");
        }
        // A snapshot read at one watermark: both or neither.
        let seen = watermark.load(Ordering::Acquire);
        let pair = (
            a.get(1, &1, Visible::At(seen)),
            b.get(2, &2, Visible::At(seen)),
        );
        if watermark.load(Ordering::Acquire) == seen {
            assert_eq!(pair.0, pair.1, "a snapshot saw part of the transaction");
        }
        committer.join().unwrap();
        assert_eq!(a.get(1, &1, Visible::Live(&watermark)), Some(1));
        assert_eq!(b.get(2, &2, Visible::Live(&watermark)), Some(1));
    });
}
