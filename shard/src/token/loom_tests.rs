//! Loom models of the owner token's bias: a revoker never takes the token
//! beside the biased thread's fast take.

use super::*;
use loom::sync::Arc;

/// Takes out every counted message (each adds 10) and releases, as a
/// shard's holder does.
fn drain_and_release(mut held: Held<'_, u64>) {
    loop {
        for _ in 0..held.queued() {
            held.count_out();
            *held += 10;
        }
        match held.release() {
            Release::Done => return,
            Release::Queued(again, _) => held = again,
        }
    }
}

/// A token biased to the model's main thread (its first release
/// grants it: `FIRST_NEED` is 1 under loom).
fn biased_to_this_thread() -> Arc<Token<u64>> {
    let token = Arc::new(Token::new(0u64));
    let mut held = token.take_idle().expect("free");
    *held += 1;
    assert!(matches!(held.release(), Release::Done));
    assert_eq!(token.state.load(Ordering::Relaxed), BIASED_IDLE);
    token
}

/// The biased thread's fast take (or, once revoked, its ordinary one),
/// adding 100.
fn write_as_biased(token: &Token<u64>) {
    loop {
        if let Some(mut held) = token.take_biased().or_else(|| token.take_idle()) {
            *held += 100;
            drain_and_release(held);
            return;
        }
        loom::thread::yield_now();
    }
}

/// Another thread's write: the ordinary take (revoking a bias it
/// finds), adding 10.
fn write_ordinarily(token: &Token<u64>) {
    loop {
        if let Some(mut held) = token.take_idle() {
            *held += 10;
            drain_and_release(held);
            return;
        }
        loom::thread::yield_now();
    }
}

/// Runs `other` on a second thread while this thread, the token's
/// biased one, writes by its fast take; then checks that nothing
/// counted was stranded and that the token holds `expect` (1 from the
/// grant, 100 from this thread's write, and what `other` added).
fn beside_a_biased_write(other: fn(&Token<u64>), expect: u64) {
    let token = biased_to_this_thread();
    let second = {
        let token = token.clone();
        loom::thread::spawn(move || other(&token))
    };
    write_as_biased(&token);
    second.join().unwrap();
    let held = token.take().expect("free or biased: taken");
    assert_eq!(held.queued(), 0, "a counted message was stranded");
    assert_eq!(*held, expect);
}

/// Another thread takes the token while the biased thread uses its
/// fast take: the revocation makes it wait for the biased thread, so
/// the two never hold the token at once (loom checks every access to
/// the value) and neither change is lost. Building with `--cfg
/// coherent_loom_break_bias` (revoking without the heavy fence and the
/// wait for the biased thread's flag) makes loom report the two
/// accesses racing.
#[test]
fn a_revoked_bias_never_leaves_two_holders() {
    crate::loom_model("token_bias_revoke", || {
        beside_a_biased_write(write_ordinarily, 111);
    });
}

/// A thread whose bias was revoked while it was between its first
/// look and its check (it saw the token biased to itself, then waited)
/// must not disturb the flag of the thread biased next. Here `other`
/// revokes this thread's bias, takes the token twice (the streak a
/// grant needs after one revocation), is granted the bias and writes
/// through its own fast take, while this thread's fast take backs off
/// and falls back to the ordinary take, which revokes `other`'s bias.
/// With one `busy` flag per token, written by whichever thread passed
/// its first look, this thread's back-off cleared the flag `other` had
/// set, and the revocation that followed found it clear while `other`
/// was still writing: loom reported the two accesses racing (`--cfg
/// coherent_loom_break_stale` puts that flag back).
#[test]
fn a_stale_fast_take_never_clears_the_next_biased_threads_flag() {
    crate::loom_model("token_bias_stale", || {
        beside_a_biased_write(
            |token| {
                write_ordinarily(token);
                write_ordinarily(token);
                write_as_biased(token);
            },
            221,
        );
    });
}

/// A message counted in while the token is biased is never stranded:
/// the writer that counts it revokes the bias and drains it (or the
/// biased thread, if it took the token back first, does).
#[test]
fn a_message_counted_under_a_bias_is_drained() {
    crate::loom_model("token_bias_count_in", || {
        // `other` counts a message in; its drain adds 10.
        beside_a_biased_write(
            |token| {
                if let Some(held) = token.count_in() {
                    drain_and_release(held);
                }
            },
            111,
        );
    });
}
