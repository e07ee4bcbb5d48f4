//! Unit tests of the shard on real threads: hand-off, draining, leases,
//! transactions' intents, close, and that no cell is lost.

use super::*;
use std::sync::Barrier;

fn h(k: u64) -> u64 {
    // Tests choose hashes directly: collisions on purpose.
    k.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Every cell the shard's owner has in use holds an entry it still
/// reaches (`Owner::assert_no_cell_lost`): no path dropped an entry
/// instead of retiring it. Each test below ends with it.
fn assert_no_cell_lost<K, V>(s: &Shard<K, V>)
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    s.owner
        .take()
        .expect("nobody else holds the token")
        .assert_no_cell_lost();
}

#[test]
fn insert_get_invalidate_round_trip() {
    let s: Shard<u64, u64> = Shard::new(8, 0);
    assert_eq!(s.get(h(1), &1, Visible::At(0)), None);
    assert_eq!(
        s.submit(h(1), Op::Insert { key: 1, value: 10 }).unwrap(),
        Reply::Done
    );
    assert_eq!(s.get(h(1), &1, Visible::At(0)), Some(10));
    assert_eq!(s.len(), 1);
    s.submit(h(1), Op::Invalidate { key: 1 }).unwrap();
    assert_eq!(s.get(h(1), &1, Visible::At(0)), None);
    assert!(s.is_empty());
    assert_no_cell_lost(&s);
}

/// `(cells out, retired entries waiting)` of `s`'s owner.
fn owner_counts<K, V>(s: &Shard<K, V>) -> (usize, usize)
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    let owner = s.owner.take().expect("nobody else holds the token");
    (owner.cells_out(), owner.garbage_pending())
}

#[test]
fn a_word_value_is_replaced_in_place_and_any_other_by_a_new_entry() {
    // A word (`value.rs`): no new cell, nothing retired.
    let s: Shard<u64, u64> = Shard::new(8, 0);
    s.write(h(1), 1, Some(10)).unwrap();
    let first = owner_counts(&s);
    for v in 11..=500 {
        s.write(h(1), 1, Some(v)).unwrap();
        assert_eq!(s.get(h(1), &1, Visible::At(0)), Some(v));
    }
    assert_eq!(first, (1, 0));
    if crate::value::Value::<u64>::IN_PLACE {
        assert_eq!(owner_counts(&s), (1, 0), "replaced in place");
    }
    // An entry that can expire is not plain: it is replaced by a new
    // entry, the old one retired.
    s.submit(
        h(1),
        Op::InsertExpiring {
            key: 1,
            value: 7,
            tags: None,
            expiry: crate::Expiry::ttl(std::time::Duration::from_secs(3600)),
        },
    )
    .unwrap();
    let (_, retired) = owner_counts(&s);
    s.write(h(1), 1, Some(8)).unwrap();
    assert_eq!(
        owner_counts(&s).1,
        retired + 1,
        "the expiring entry retired"
    );
    assert_eq!(s.get(h(1), &1, Visible::At(0)), Some(8));
    s.write(h(1), 1, Some(9)).unwrap();
    assert_eq!(s.get(h(1), &1, Visible::At(0)), Some(9));
    if crate::value::Value::<u64>::IN_PLACE {
        assert_eq!(owner_counts(&s).1, retired + 1, "plain again: in place");
    }
    assert_no_cell_lost(&s);
    // Bounded, weighed by value: in place too, and the new weight
    // counts against the budget.
    let b: Shard<u64, u64> = Shard::with_config(ShardConfig {
        budget: Some(100),
        weigher: Some(Arc::new(|_: &u64, v: &u64| *v as u32)),
        ..ShardConfig::default()
    });
    b.write(h(1), 1, Some(10)).unwrap();
    b.write(h(2), 2, Some(20)).unwrap();
    assert_eq!(b.weighted_size(), 30);
    let (cells, retired) = owner_counts(&b);
    b.write(h(1), 1, Some(70)).unwrap();
    assert_eq!(b.weighted_size(), 90);
    assert_eq!(b.get(h(1), &1, Visible::At(0)), Some(70));
    if crate::value::Value::<u64>::IN_PLACE {
        assert_eq!(owner_counts(&b), (cells, retired), "replaced in place");
    }
    // Over the budget now: something is evicted.
    b.write(h(1), 1, Some(90)).unwrap();
    assert!(b.weighted_size() <= 100, "{}", b.weighted_size());
    assert!(b.len() < 2);
    assert_no_cell_lost(&b);
    // Not a word: every replacement is a new entry, the old retired.
    let t: Shard<u64, String> = Shard::new(8, 0);
    t.write(h(1), 1, Some("a".into())).unwrap();
    for v in 0..5 {
        t.write(h(1), 1, Some(v.to_string())).unwrap();
    }
    assert_eq!(owner_counts(&t).1, 5);
    assert_eq!(t.get(h(1), &1, Visible::At(0)).as_deref(), Some("4"));
    assert_no_cell_lost(&t);
}

#[test]
fn colliding_keys_survive_removals_and_growth() {
    let s: Shard<u64, u64> = Shard::new(8, 0);
    // Every key has the same hash: one long probe chain.
    for k in 0..200 {
        s.submit(
            7,
            Op::Insert {
                key: k,
                value: k * 2,
            },
        )
        .unwrap();
    }
    for k in (0..200).step_by(2) {
        s.submit(7, Op::Invalidate { key: k }).unwrap();
    }
    for k in 0..200 {
        let want = (k % 2 == 1).then_some(k * 2);
        assert_eq!(s.get(7, &k, Visible::At(0)), want, "key {k}");
    }
    // Reinsert over tombstones, then grow well past the first table.
    for k in 0..2000 {
        s.submit(
            h(k),
            Op::Insert {
                key: k + 1000,
                value: k,
            },
        )
        .unwrap();
    }
    for k in 0..2000 {
        assert_eq!(s.get(h(k), &(k + 1000), Visible::At(0)), Some(k));
    }
    assert_eq!(s.len(), 100 + 2000);
    assert_no_cell_lost(&s);
}

#[test]
fn churn_does_not_grow_the_table_without_bound() {
    let s: Shard<u64, u64> = Shard::new(8, 0);
    for k in 0..100_000u64 {
        s.submit(h(k), Op::Insert { key: k, value: k }).unwrap();
        s.submit(h(k), Op::Invalidate { key: k }).unwrap();
    }
    assert!(s.is_empty());
    let owner = s.owner.take().expect("nobody else holds the token");
    assert!(
        owner.slots().slot_count() <= 64,
        "tombstones were not cleaned"
    );
    // 100,000 entries were unlinked; all but the last few batches are
    // freed (a reader on another test's thread can hold back a batch or
    // two, never most of them).
    assert!(
        owner.garbage_pending() < 10 * crate::reclaim::BATCH,
        "unlinked entries are not being freed: {}",
        owner.garbage_pending()
    );
    owner.assert_no_cell_lost();
}

#[test]
fn update_panic_changes_nothing_and_shard_keeps_serving() {
    let s: Shard<u64, u64> = Shard::new(8, 0);
    s.submit(h(1), Op::Insert { key: 1, value: 1 }).unwrap();
    let r = s
        .submit(
            h(1),
            Op::Update {
                key: 1,
                f: Box::new(|_| panic!("boom")),
            },
        )
        .unwrap();
    assert_eq!(r, Reply::UpdatePanicked("boom".into()));
    assert_eq!(s.get(h(1), &1, Visible::At(0)), Some(1));
    s.submit(h(1), Op::Insert { key: 1, value: 2 }).unwrap();
    assert_eq!(s.get(h(1), &1, Visible::At(0)), Some(2));
    assert_no_cell_lost(&s);
}

#[test]
fn write_from_inside_an_update_is_refused_not_deadlocked() {
    let s = std::sync::Arc::new(Shard::<u64, u64>::new(8, 0));
    let inner = s.clone();
    let r = s
        .submit(
            h(1),
            Op::Update {
                key: 1,
                f: Box::new(move |_| {
                    let nested = inner.submit(h(2), Op::Insert { key: 2, value: 2 });
                    assert!(matches!(nested, Err(SubmitError::Reentrant(_))));
                    Some(1)
                }),
            },
        )
        .unwrap();
    assert_eq!(r, Reply::Updated(Some(1)));
    assert_eq!(s.get(h(2), &2, Visible::At(0)), None);
    assert_no_cell_lost(&*s);
}

#[test]
fn contended_writers_are_all_applied_and_answered() {
    let s = std::sync::Arc::new(Shard::<u64, u64>::new(4, 0));
    let threads = 4;
    let per = 5_000u64;
    let start = std::sync::Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads as u64)
        .map(|t| {
            let s = s.clone();
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                for i in 0..per {
                    let k = t * per + i;
                    s.submit(h(k), Op::Insert { key: k, value: k }).unwrap();
                    // Visible when acknowledged (G1), even on the slow path.
                    assert_eq!(s.get(h(k), &k, Visible::At(0)), Some(k));
                }
            })
        })
        .collect();
    for t in handles {
        t.join().unwrap();
    }
    assert_eq!(s.len(), threads * per as usize);
    assert_eq!(s.queued(), 0);
    assert_no_cell_lost(&*s);
}

#[test]
fn bounded_expiring_and_closed_shards_lose_no_cell() {
    // Values replaced by new entries, and word values replaced in
    // place where they can be (`value.rs`).
    churn_loses_no_cell(|k, round| format!("{k}/{round}"));
    churn_loses_no_cell(|k, round| k * 10 + round);
}

fn churn_loses_no_cell<V>(value_of: impl Fn(u64, u64) -> V)
where
    V: Clone + Send + Sync + 'static,
{
    use crate::limits::Expiry;
    use std::time::Duration;
    let clock = Clock::manual();
    for (budget, expiry) in [
        (Some(64), Expiry::default()),
        (Some(64), Expiry::ttl(Duration::from_millis(10))),
        (None, Expiry::tti(Duration::from_millis(10))),
        (None, Expiry::default()),
    ] {
        let s: Shard<u64, V> = Shard::with_config(ShardConfig {
            budget,
            expiry,
            clock: clock.clone(),
            ..ShardConfig::default()
        });
        for round in 0..5u64 {
            for k in 0..200u64 {
                let value = value_of(k, round);
                let op = if k % 7 == 0 {
                    // Entries of both layouts in one shard: this one
                    // can expire whatever the defaults.
                    Op::InsertExpiring {
                        key: k,
                        value,
                        tags: None,
                        expiry: Expiry::ttl(Duration::from_millis(5)),
                    }
                } else {
                    Op::Insert { key: k, value }
                };
                s.submit(h(k), op).unwrap();
                if k % 5 == 0 {
                    s.submit(h(k), Op::Invalidate { key: k }).unwrap();
                }
            }
            // Expired entries are swept, replaced or read as gone.
            clock.advance(Duration::from_millis(20));
            assert_no_cell_lost(&s);
        }
        assert!(budget.is_none_or(|b| s.len() as u64 <= b));
        s.submit(0, Op::Close).unwrap();
        assert!(s.is_empty());
        assert_no_cell_lost(&s);
    }
}

#[test]
fn lease_is_doomed_by_a_write_and_the_waiter_leads_next() {
    let s: Shard<u64, u64> = Shard::new(8, 0);
    let lead = s.load_begin(h(1), 1, Vec::new()).unwrap().wait();
    let Some(Reply::Lead(t1)) = lead else {
        panic!("{lead:?}")
    };
    let waiter = s.load_begin(h(1), 1, Vec::new()).unwrap(); // joins the lease
    s.submit(h(1), Op::Invalidate { key: 1 }).unwrap(); // dooms it
    let r = s
        .submit(
            h(1),
            Op::Install {
                key: 1,
                value: 5,
                token: t1,
            },
        )
        .unwrap();
    assert_eq!(r, Reply::Discarded);
    assert_eq!(s.get(h(1), &1, Visible::At(0)), None);
    let Some(Reply::Lead(t2)) = waiter.wait() else {
        panic!("waiter should lead")
    };
    assert_ne!(t1, t2);
    let r = s
        .submit(
            h(1),
            Op::Install {
                key: 1,
                value: 6,
                token: t2,
            },
        )
        .unwrap();
    assert_eq!(r, Reply::Installed);
    assert_eq!(s.get(h(1), &1, Visible::At(0)), Some(6));
    assert_no_cell_lost(&s);
}

#[test]
fn insert_during_a_load_answers_its_waiters_with_the_new_value() {
    let s: Shard<u64, u64> = Shard::new(8, 0);
    let Some(Reply::Lead(t)) = s.load_begin(h(1), 1, Vec::new()).unwrap().wait() else {
        panic!()
    };
    let waiter = s.load_begin(h(1), 1, Vec::new()).unwrap();
    s.submit(h(1), Op::Insert { key: 1, value: 9 }).unwrap();
    assert_eq!(waiter.wait(), Some(Reply::Hit(9)));
    let r = s
        .submit(
            h(1),
            Op::Install {
                key: 1,
                value: 1,
                token: t,
            },
        )
        .unwrap();
    assert_eq!(r, Reply::Discarded);
    assert_eq!(s.get(h(1), &1, Visible::At(0)), Some(9));
    assert_no_cell_lost(&s);
}

#[test]
fn abandoned_lease_passes_to_a_waiter_and_skips_departed_ones() {
    let s: Shard<u64, u64> = Shard::new(8, 0);
    let Some(Reply::Lead(t)) = s.load_begin(h(1), 1, Vec::new()).unwrap().wait() else {
        panic!()
    };
    let mut gone = s.load_begin(h(1), 1, Vec::new()).unwrap();
    let stays = s.load_begin(h(1), 1, Vec::new()).unwrap();
    assert_eq!(gone.close(), None);
    s.submit(h(1), Op::Abandon { key: 1, token: t }).unwrap();
    assert!(matches!(stays.wait(), Some(Reply::Lead(_))));
    assert_no_cell_lost(&s);
}

fn txn_insert(k: u64, v: u64, tags: &[&str]) -> crate::message::TxnOp<u64, u64> {
    crate::message::TxnOp::Insert {
        hash: h(k),
        key: k,
        value: v,
        tags: tags.iter().map(|&t| Tag::from(t)).collect(),
    }
}

#[test]
fn an_intent_shows_the_old_value_until_its_stamp_then_finalizes() {
    let s: Shard<u64, u64> = Shard::new(8, 0);
    s.submit(h(1), Op::Insert { key: 1, value: 10 }).unwrap();
    let ops = vec![
        txn_insert(1, 11, &[]),
        txn_insert(2, 21, &[]),
        crate::message::TxnOp::Invalidate { hash: h(3), key: 3 }, // absent: no-op
    ];
    assert_eq!(
        s.submit(0, Op::Prepare { stamp: 5, ops }).unwrap(),
        Reply::Prepared
    );
    let at = |w, k: u64| s.get(h(k), &k, Visible::At(w));
    assert_eq!((at(4, 1), at(4, 2), at(4, 3)), (Some(10), None, None));
    assert_eq!((at(5, 1), at(5, 2), at(5, 3)), (Some(11), Some(21), None));
    // A plain write to a staged key joins the transaction.
    assert_eq!(
        s.submit(h(2), Op::Insert { key: 2, value: 22 }).unwrap(),
        Reply::DoneAt(5)
    );
    assert_eq!((at(4, 2), at(5, 2)), (None, Some(22)));
    // Another key is not held back.
    assert_eq!(
        s.submit(h(4), Op::Insert { key: 4, value: 40 }).unwrap(),
        Reply::Done
    );
    assert_eq!(at(0, 4), Some(40));
    s.submit(0, Op::Finalize { stamp: 5 }).unwrap();
    assert_eq!(
        (at(0, 1), at(0, 2)),
        (Some(11), Some(22)),
        "plain entries now"
    );
    assert_eq!(s.len(), 3);
    assert_eq!(
        s.submit(h(2), Op::Insert { key: 2, value: 23 }).unwrap(),
        Reply::Done
    );
    assert_no_cell_lost(&s);
}

#[test]
fn a_rollback_restores_the_old_values_and_keeps_folded_writes() {
    let s: Shard<u64, u64> = Shard::new(8, 0);
    s.submit(h(1), Op::Insert { key: 1, value: 10 }).unwrap();
    s.submit(h(2), Op::Insert { key: 2, value: 20 }).unwrap();
    let ops = vec![
        txn_insert(1, 11, &[]),
        txn_insert(2, 21, &[]),
        txn_insert(3, 31, &[]),
    ];
    s.submit(0, Op::Prepare { stamp: 1, ops }).unwrap();
    assert_eq!(
        s.submit(h(2), Op::Invalidate { key: 2 }).unwrap(),
        Reply::DoneAt(1)
    );
    s.submit(0, Op::Rollback { stamp: 1 }).unwrap();
    let now = |k: u64| s.get(h(k), &k, Visible::At(1));
    assert_eq!((now(1), now(2), now(3)), (Some(10), None, None));
    assert_eq!(s.len(), 1);
    assert_no_cell_lost(&s);
}

#[test]
fn a_staged_tag_invalidation_removes_tagged_keys_and_holds_tagged_writes() {
    let s: Shard<u64, u64> = Shard::new(8, 0);
    for k in 0..6 {
        let tags = if k % 2 == 0 {
            vec![Tag::from("even")]
        } else {
            Vec::new()
        };
        s.submit(
            h(k),
            Op::InsertTagged {
                key: k,
                value: k,
                tags,
            },
        )
        .unwrap();
    }
    let ops = vec![crate::message::TxnOp::InvalidateTag(Tag::from("even"))];
    s.submit(0, Op::Prepare { stamp: 1, ops }).unwrap();
    let at = |w, k: u64| s.get(h(k), &k, Visible::At(w));
    assert!((0..6).all(|k| at(0, k) == Some(k)), "nothing visible yet");
    assert!((0..6).all(|k| at(1, k) == (k % 2 == 1).then_some(k)));
    // A write carrying the tag is ordered after the invalidation.
    let tagged = Op::InsertTagged {
        key: 10,
        value: 10,
        tags: vec![Tag::from("even")],
    };
    assert_eq!(s.submit(h(10), tagged).unwrap(), Reply::DoneAt(1));
    assert_eq!((at(0, 10), at(1, 10)), (None, Some(10)));
    s.submit(0, Op::Finalize { stamp: 1 }).unwrap();
    assert_eq!(s.len(), 4);
    // Key 10 kept its tag: the next invalidation removes it.
    let ops = vec![crate::message::TxnOp::InvalidateTag(Tag::from("even"))];
    s.submit(0, Op::Prepare { stamp: 2, ops }).unwrap();
    s.submit(0, Op::Finalize { stamp: 2 }).unwrap();
    assert_eq!(at(2, 10), None);
    assert_eq!(s.len(), 3);
    assert_no_cell_lost(&s);
}
