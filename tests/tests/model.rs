//! Model-based property test: random sequences of operations run against a
//! `coherent::Cache` and against a single-threaded reference model (a plain
//! map of key -> (value, tags)); after every operation their answers and
//! contents must agree. proptest shrinks a failing sequence to a short one.
//!
//! The same check runs against a deliberately wrong cache (a locked map
//! whose plain `insert` keeps the key's old tags, a plausible bug) and must
//! find it: the property is known to be able to fail.
//!
//! A bounded cache cannot be predicted exactly (what it evicts is its own
//! business), so for it the check is the one that matters: every value read
//! is the model's current value or nothing, never another one.

use coherent::{Cache, LoadError};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::collections::HashMap;
use std::sync::Mutex;

const TAGS: [&str; 3] = ["a", "b", "c"];

/// How an `update` closure behaves.
#[derive(Debug, Clone)]
enum Change {
    /// `old + n` (or `n` when absent).
    Add(u64),
    /// Returns `None`: removes the key.
    Remove,
    /// Panics: nothing changes, the caller gets an error.
    Panic,
}

/// How a loader behaves when `get_or_load` finds nothing.
#[derive(Debug, Clone)]
enum Loader {
    Value(u64),
    Fail,
    Panic,
}

#[derive(Debug, Clone)]
enum Step {
    Insert(u64, u64),
    InsertTagged(u64, u64, Vec<&'static str>),
    Invalidate(u64),
    InvalidateTag(&'static str),
}

#[derive(Debug, Clone)]
enum Op {
    Step(Step),
    Update(u64, Change),
    Transaction(Vec<Step>),
    GetOrLoad(u64, Loader),
    Get(u64),
    GetMany(Vec<u64>),
}

fn key() -> impl Strategy<Value = u64> {
    0u64..12
}

fn tags() -> impl Strategy<Value = Vec<&'static str>> {
    proptest::sample::subsequence(TAGS.to_vec(), 0..=2)
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (key(), any::<u64>()).prop_map(|(k, v)| Step::Insert(k, v)),
        2 => (key(), any::<u64>(), tags()).prop_map(|(k, v, t)| Step::InsertTagged(k, v, t)),
        2 => key().prop_map(Step::Invalidate),
        1 => proptest::sample::select(TAGS.to_vec()).prop_map(Step::InvalidateTag),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let change = prop_oneof![
        3 => (0u64..100).prop_map(Change::Add),
        1 => Just(Change::Remove),
        1 => Just(Change::Panic),
    ];
    let loader = prop_oneof![
        3 => any::<u64>().prop_map(Loader::Value),
        1 => Just(Loader::Fail),
        1 => Just(Loader::Panic),
    ];
    prop_oneof![
        6 => step().prop_map(Op::Step),
        3 => (key(), change).prop_map(|(k, c)| Op::Update(k, c)),
        2 => proptest::collection::vec(step(), 1..5).prop_map(Op::Transaction),
        2 => (key(), loader).prop_map(|(k, l)| Op::GetOrLoad(k, l)),
        3 => key().prop_map(Op::Get),
        1 => proptest::collection::vec(key(), 0..5).prop_map(Op::GetMany),
    ]
}

/// A cache under test, as the model sees it. Errors are flattened to `Err(())`.
trait Subject {
    fn step(&self, step: &Step);
    fn update(&self, key: u64, change: &Change) -> Result<Option<u64>, ()>;
    fn transaction(&self, steps: &[Step]);
    fn get_or_load(&self, key: u64, loader: &Loader) -> Result<u64, ()>;
    fn get(&self, key: u64) -> Option<u64>;
    fn get_many(&self, keys: &[u64]) -> Vec<Option<u64>>;
    fn len(&self) -> usize;
}

fn apply_change(old: Option<u64>, change: &Change) -> Option<u64> {
    match change {
        Change::Add(n) => Some(old.map_or(*n, |o| o.wrapping_add(*n))),
        Change::Remove => None,
        Change::Panic => panic!("update closure panics on purpose"),
    }
}

fn load(loader: &Loader) -> Result<u64, &'static str> {
    match loader {
        Loader::Value(v) => Ok(*v),
        Loader::Fail => Err("loader fails on purpose"),
        Loader::Panic => panic!("loader panics on purpose"),
    }
}

impl Subject for Cache<u64, u64> {
    fn step(&self, step: &Step) {
        match step {
            Step::Insert(k, v) => self.insert(*k, *v),
            Step::InsertTagged(k, v, t) => self.insert_tagged(*k, *v, t.clone()),
            Step::Invalidate(k) => self.invalidate(k),
            Step::InvalidateTag(t) => self.invalidate_tag(*t),
        }
        .expect("a plain write succeeds");
    }

    fn update(&self, key: u64, change: &Change) -> Result<Option<u64>, ()> {
        let change = change.clone();
        Cache::update(self, key, move |old| apply_change(old.copied(), &change)).map_err(|_| ())
    }

    fn transaction(&self, steps: &[Step]) {
        let mut t = Cache::transaction(self);
        for step in steps {
            t = match step {
                Step::Insert(k, v) => t.insert(*k, *v),
                Step::InsertTagged(k, v, tags) => t.insert_tagged(*k, *v, tags.clone()),
                Step::Invalidate(k) => t.invalidate(*k),
                Step::InvalidateTag(tag) => t.invalidate_tag(*tag),
            };
        }
        t.commit().expect("a transaction of plain writes commits");
    }

    fn get_or_load(&self, key: u64, loader: &Loader) -> Result<u64, ()> {
        match Cache::get_or_load(self, key, |_| load(loader)) {
            Ok(v) => Ok(v),
            Err(LoadError::Loader(_) | LoadError::LoaderPanicked(_)) => Err(()),
            Err(other) => panic!("the cache itself failed a load: {other}"),
        }
    }

    fn get(&self, key: u64) -> Option<u64> {
        Cache::get(self, &key)
    }

    fn get_many(&self, keys: &[u64]) -> Vec<Option<u64>> {
        Cache::get_many(self, keys)
    }

    fn len(&self) -> usize {
        Cache::len(self)
    }
}

/// The reference: one map, one operation at a time.
#[derive(Debug, Default)]
struct Model {
    map: HashMap<u64, (u64, Vec<&'static str>)>,
    /// The deliberate bug of `Buggy`: a plain insert keeps the old tags.
    keep_tags_on_insert: bool,
}

impl Model {
    fn step(&mut self, step: &Step) {
        match step {
            Step::Insert(k, v) => {
                let tags = match self.map.get(k) {
                    Some((_, old)) if self.keep_tags_on_insert => old.clone(),
                    _ => Vec::new(),
                };
                self.map.insert(*k, (*v, tags));
            }
            Step::InsertTagged(k, v, t) => {
                self.map.insert(*k, (*v, t.clone()));
            }
            Step::Invalidate(k) => {
                self.map.remove(k);
            }
            Step::InvalidateTag(t) => self.map.retain(|_, (_, tags)| !tags.contains(t)),
        }
    }

    fn update(&mut self, key: u64, change: &Change) -> Result<Option<u64>, ()> {
        let old = self.map.get(&key).map(|(v, _)| *v);
        let new = match change {
            Change::Panic => return Err(()),
            other => apply_change(old, other),
        };
        match new {
            // `update` keeps the key's tags.
            Some(v) => self.map.entry(key).or_insert((0, Vec::new())).0 = v,
            None => {
                self.map.remove(&key);
            }
        }
        Ok(new)
    }

    fn get_or_load(&mut self, key: u64, loader: &Loader) -> Result<u64, ()> {
        if let Some((v, _)) = self.map.get(&key) {
            return Ok(*v);
        }
        match loader {
            Loader::Value(v) => {
                self.map.insert(key, (*v, Vec::new()));
                Ok(*v)
            }
            Loader::Fail | Loader::Panic => Err(()),
        }
    }

    fn get(&self, key: u64) -> Option<u64> {
        self.map.get(&key).map(|(v, _)| *v)
    }
}

/// The wrong cache: a locked `Model` with the tag bug switched on.
struct Buggy(Mutex<Model>);

impl Subject for Buggy {
    fn step(&self, step: &Step) {
        self.0.lock().unwrap().step(step);
    }
    fn update(&self, key: u64, change: &Change) -> Result<Option<u64>, ()> {
        self.0.lock().unwrap().update(key, change)
    }
    fn transaction(&self, steps: &[Step]) {
        let mut m = self.0.lock().unwrap();
        for s in steps {
            m.step(s);
        }
    }
    fn get_or_load(&self, key: u64, loader: &Loader) -> Result<u64, ()> {
        self.0.lock().unwrap().get_or_load(key, loader)
    }
    fn get(&self, key: u64) -> Option<u64> {
        self.0.lock().unwrap().get(key)
    }
    fn get_many(&self, keys: &[u64]) -> Vec<Option<u64>> {
        let m = self.0.lock().unwrap();
        keys.iter().map(|k| m.get(*k)).collect()
    }
    fn len(&self) -> usize {
        self.0.lock().unwrap().map.len()
    }
}

/// Runs `ops` on `subject` and on a correct model; `exact`: the subject
/// holds everything (unbounded), so contents and answers must match
/// exactly; otherwise every value read must be the model's or nothing.
fn check(subject: &dyn Subject, ops: &[Op], exact: bool) -> Result<(), TestCaseError> {
    let mut model = Model::default();
    for (i, op) in ops.iter().enumerate() {
        let ctx = format!("after op {i} ({op:?})");
        let seen = |key: u64, got: Option<u64>, model: &Model| -> Result<(), TestCaseError> {
            let want = model.get(key);
            if exact {
                prop_assert_eq!(got, want, "key {} {}", key, ctx);
            } else {
                prop_assert!(
                    got.is_none() || got == want,
                    "key {key} read {got:?}, model has {want:?} {ctx}"
                );
            }
            Ok(())
        };
        match op {
            Op::Step(s) => {
                subject.step(s);
                model.step(s);
            }
            Op::Update(k, change) if exact => {
                let got = subject.update(*k, change);
                let want = model.update(*k, change);
                prop_assert_eq!(got, want, "update of key {} {}", k, ctx);
            }
            Op::Update(..) => {} // a bounded cache may have evicted the base
            Op::Transaction(steps) => {
                subject.transaction(steps);
                for s in steps {
                    model.step(s);
                }
            }
            Op::GetOrLoad(k, loader) if exact => {
                let got = subject.get_or_load(*k, loader);
                let want = model.get_or_load(*k, loader);
                prop_assert_eq!(got, want, "get_or_load of key {} {}", k, ctx);
            }
            Op::GetOrLoad(..) => {}
            Op::Get(k) => seen(*k, subject.get(*k), &model)?,
            Op::GetMany(keys) => {
                let got = subject.get_many(keys);
                prop_assert_eq!(got.len(), keys.len());
                for (k, g) in keys.iter().zip(got) {
                    seen(*k, g, &model)?;
                }
            }
        }
        if exact {
            prop_assert_eq!(subject.len(), model.map.len(), "len {}", ctx);
        }
    }
    // Every key, at the end.
    for k in 0..12 {
        let got = subject.get(k);
        let want = model.get(k);
        if exact {
            prop_assert_eq!(got, want, "key {} at the end", k);
        } else {
            prop_assert!(got.is_none() || got == want, "key {k} at the end");
        }
    }
    Ok(())
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(op(), 1..60)
}

/// Silences the panics the closures raise on purpose (they are caught by
/// the cache and turned into errors); other panics still print.
fn quiet_deliberate_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .copied()
            .unwrap_or_default();
        if !msg.ends_with("on purpose") {
            default(info);
        }
    }));
}

proptest! {
    #![proptest_config(Config::with_cases(512))]

    #[test]
    fn an_unbounded_cache_agrees_with_the_model(ops in ops()) {
        quiet_deliberate_panics();
        let cache = Cache::<u64, u64>::builder().shards(4).build().unwrap();
        check(&cache, &ops, true)?;
    }

    #[test]
    fn a_bounded_cache_reads_the_models_value_or_nothing(ops in ops()) {
        quiet_deliberate_panics();
        let cache = Cache::<u64, u64>::builder().shards(2).max_capacity(4).build().unwrap();
        check(&cache, &ops, false)?;
    }
}

#[test]
fn the_check_catches_a_cache_that_keeps_tags_on_insert() {
    quiet_deliberate_panics();
    let mut runner = TestRunner::new(Config {
        cases: 2048,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&ops(), |ops| {
        let buggy = Buggy(Mutex::new(Model {
            keep_tags_on_insert: true,
            ..Model::default()
        }));
        check(&buggy, &ops, true)
    });
    match result {
        Err(proptest::test_runner::TestError::Fail(why, minimal)) => {
            // Shrunk to the essence: a tagged insert, a plain insert, and
            // the tag's invalidation, give or take a read.
            assert!(minimal.len() <= 6, "shrunk to {minimal:?} ({why})");
        }
        other => panic!("the bug went unnoticed: {other:?}"),
    }
}
