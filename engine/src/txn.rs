//! Transactions: several writes and tag invalidations, on any keys in any
//! shards, that readers see all at once or not at all (G2).
//!
//! Commit: take the commit lock, take the next stamp, send each involved
//! shard its part (`Prepare`, answered once staged as intents that readers
//! do not see yet), then publish the stamp as the new watermark: from that
//! one store on, every reader sees every part. Then each shard is told to
//! replace the intents by plain entries (`Finalize`). If a shard fails to
//! stage its part, the parts staged are undone (`Rollback`) before the
//! stamp is published, so nothing of the transaction is ever seen.

use crate::cache::{submit_error, Cache};
use crate::error::Error;
use coherent_shard::{Op, Tag, TxnOp};
use std::hash::Hash;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// A transaction being built: collect operations, then
/// [`commit`](Transaction::commit). Nothing is applied before the commit.
///
/// The builder takes and returns itself by value, so it chains, and can be
/// extended in a loop (`t = t.insert(k, v)`). Operations apply in the order
/// given: a later one on the same key wins, and an
/// [`invalidate_tag`](Transaction::invalidate_tag) removes what earlier
/// operations of the same transaction tagged with it, but not what later
/// ones add.
///
/// ```
/// let cache = coherent::Cache::<String, String>::new();
/// cache.insert_tagged("post:1".into(), "old post".into(), ["user:42"]).unwrap();
/// // Set the user and drop everything derived from the old version, at one
/// // instant: no reader sees the new user next to the old post.
/// cache
///     .transaction()
///     .insert("user:42".into(), "v2".into())
///     .invalidate_tag("user:42")
///     .commit()
///     .unwrap();
/// assert_eq!(cache.get("user:42").as_deref(), Some("v2"));
/// assert_eq!(cache.get("post:1"), None);
/// ```
#[must_use = "a transaction does nothing until it is committed"]
pub struct Transaction<K, V> {
    cache: Cache<K, V>,
    steps: Vec<Step<K, V>>,
}

/// Each shard's operations of one transaction, indexed by shard.
type Parts<K, V> = Vec<Vec<TxnOp<K, V>>>;

enum Step<K, V> {
    Put(K, V, Vec<Tag>),
    Remove(K),
    RemoveTag(Tag),
}

impl<K, V> std::fmt::Debug for Transaction<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("operations", &self.steps.len())
            .finish_non_exhaustive()
    }
}

impl<K, V> Cache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Starts a transaction on this cache.
    pub fn transaction(&self) -> Transaction<K, V> {
        Transaction {
            cache: self.clone(),
            steps: Vec::new(),
        }
    }
}

impl<K, V> Transaction<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Sets `key` to `value` (with no tags).
    pub fn insert(mut self, key: K, value: V) -> Self {
        self.steps.push(Step::Put(key, value, Vec::new()));
        self
    }

    /// Sets `key` to `value`, carrying `tags`.
    pub fn insert_tagged<T>(mut self, key: K, value: V, tags: T) -> Self
    where
        T: IntoIterator,
        T::Item: Into<Tag>,
    {
        self.steps
            .push(Step::Put(key, value, coherent_shard::tags(tags)));
        self
    }

    /// Removes `key`.
    pub fn invalidate(mut self, key: K) -> Self {
        self.steps.push(Step::Remove(key));
        self
    }

    /// Removes every entry carrying `tag`, in every shard.
    pub fn invalidate_tag(mut self, tag: impl Into<Tag>) -> Self {
        self.steps.push(Step::RemoveTag(tag.into()));
        self
    }

    /// Operations collected so far.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Whether no operation was collected.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Applies every operation at one instant: when this returns `Ok`, every
    /// `get` or `get_many` that starts afterwards, on any thread, sees all
    /// of them, and no reader ever saw some without the others. On `Err`,
    /// nothing was applied (G6). Transactions commit one at a time.
    ///
    /// Errors: [`Error::Reentrant`] from inside an update closure, and
    /// [`Error::Lost`] if a key's own `Hash`, `Eq` or `Clone` panicked
    /// while a shard staged it (then the transaction is undone).
    pub fn commit(self) -> Result<(), Error> {
        let Some(parts) = self.parts()? else {
            return Ok(());
        };
        let turn = self.cache.watermark().lock_commit();
        self.apply(parts, &turn)
    }

    /// [`commit`](Self::commit) for async code. It waits for its turn
    /// without blocking the executor; the commit itself (a few
    /// microseconds, no await point) then runs to the end, so dropping this
    /// future never leaves part of a transaction applied.
    pub async fn commit_async(self) -> Result<(), Error> {
        let Some(parts) = self.parts()? else {
            return Ok(());
        };
        let turn = self.cache.watermark().lock_commit_async().await;
        self.apply(parts, &turn)
    }

    /// Each shard's operations, in the transaction's order; `None` for an
    /// empty transaction. A commit from inside an update closure could wait
    /// on the shard its thread holds: refused.
    fn parts(&self) -> Result<Option<Parts<K, V>>, Error> {
        if self.steps.is_empty() {
            return Ok(None);
        }
        if coherent_shard::in_update_closure() {
            return Err(Error::Reentrant);
        }
        let shards = self.cache.shard_count();
        let mut parts: Parts<K, V> = (0..shards).map(|_| Vec::new()).collect();
        for step in &self.steps {
            match step {
                Step::Put(key, value, tags) => {
                    let (i, op) = self
                        .cache
                        .txn_op(key.clone(), Some((value.clone(), tags.clone())));
                    parts[i].push(op);
                }
                Step::Remove(key) => {
                    let (i, op) = self.cache.txn_op(key.clone(), None);
                    parts[i].push(op);
                }
                Step::RemoveTag(tag) => {
                    for part in &mut parts {
                        part.push(TxnOp::InvalidateTag(tag.clone()));
                    }
                }
            }
        }
        Ok(Some(parts))
    }

    fn apply(
        &self,
        parts: Parts<K, V>,
        turn: &crate::visibility::CommitTurn<'_>,
    ) -> Result<(), Error> {
        let shards = self.cache.shards();
        let watermark = self.cache.watermark();
        let stamp = watermark.next_stamp(turn);
        let mut touched = Vec::new();
        let mut failed = None;
        for (i, ops) in parts.into_iter().enumerate() {
            if ops.is_empty() {
                continue;
            }
            touched.push(i);
            // A key's own `Hash` or `Eq` may panic while the shard stages
            // it, on this thread (when it applies its own message): undo
            // the transaction rather than leave part of it staged.
            let staged = catch_unwind(AssertUnwindSafe(|| {
                shards[i].submit(0, Op::Prepare { stamp, ops })
            }));
            match staged {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => failed = Some(submit_error(e)),
                Err(_) => failed = Some(Error::Lost),
            }
            if failed.is_some() {
                break;
            }
        }
        if let Some(e) = failed {
            tracing::warn!(stamp, "transaction failed to stage; rolling back");
            for &i in &touched {
                let undo = AssertUnwindSafe(|| shards[i].submit(0, Op::Rollback { stamp }));
                if !matches!(catch_unwind(undo), Ok(Ok(_))) {
                    tracing::warn!(stamp, shard = i, "rollback failed in a shard");
                }
            }
            // Writes folded into the staged parts wait for this stamp.
            watermark.publish(stamp, turn);
            return Err(e);
        }
        watermark.publish(stamp, turn);
        tracing::trace!(stamp, shards = touched.len(), "transaction visible");
        for &i in &touched {
            // Visible already; if this fails (a key's `Eq` panicking), the
            // shard finalizes the stamp before its next transaction.
            let finalize = AssertUnwindSafe(|| shards[i].send_oneway(0, Op::Finalize { stamp }));
            if catch_unwind(finalize).is_err() {
                tracing::warn!(stamp, shard = i, "finalize failed in a shard");
            }
        }
        Ok(())
    }
}
