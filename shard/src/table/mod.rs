//! The read table: what readers see of one shard.
//!
//! [`Slots`] is an open-addressing array (linear probing) of atomic pointers
//! to immutable entries (in the owner's cells, `cells.rs`, or allocated
//! alone when larger than a cache line). The shard
//! publishes its current array through one `AtomicPtr`; a reader pins itself
//! (`reclaim::pin`), loads that pointer, and reads slots with plain Acquire
//! loads. The owner of the shard is the only writer: a change swaps one
//! slot's pointer (Release), so a reader sees the old or the new entry of a
//! key, never a torn one.
//!
//! # Reclamation
//!
//! Each non-null, non-tombstone slot owns its entry. When the owner replaces
//! or removes an entry, it takes ownership of the old one as a [`Retired`]
//! item and hands it to its `reclaim::Garbage`, which frees it once no
//! reader pinned before the change is left. Growing the table publishes a
//! new array holding the same entry pointers (moved, not copied); the old
//! array is retired the same way, as a shell that frees no entries.
//!
//! Why not an `ArcSwap` snapshot: its guard costs two locked instructions
//! per `get`, which keeps `get`s from overlapping their cache misses (see
//! `reclaim.rs` and docs/design.md).
//!
//! # Files
//!
//! - `entry.rs`: the entry layouts, references to them, owned and retired
//!   entries (the owner builds and frees them; readers read through an
//!   `EntryRef` while pinned);
//! - `word.rs`: the slot word's bits (tag, kind, tombstone);
//! - `intent.rs`: a transaction's pending change to one key, and which
//!   transactions a reader sees;
//! - `slots.rs`: the slot array, probing, publication and growth.

use crate::cells::{cell_for, Blocks, Cells};
use crate::sync::{AtomicPtr, AtomicU64, AtomicU8, Ordering};
use crate::value::Value;
use std::borrow::Borrow;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::time::Duration;

mod entry;
mod intent;
mod slots;
mod word;

pub(crate) use entry::*;
pub use intent::Visible;
pub(crate) use intent::*;
pub(crate) use slots::*;
use word::*;
