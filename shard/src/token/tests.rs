//! Unit tests of the owner token on real threads: take, count, release,
//! and the bias granted and revoked.

use super::*;

#[test]
fn a_counted_message_keeps_the_token_from_being_released() {
    let t = Token::new(5u32);
    let mut held = t.take_idle().expect("free and idle");
    *held += 1;
    assert!(t.take().is_none(), "held: nobody else takes it");
    // A writer counts a message in while we hold the token: it does not
    // get the token, and our release hands it back with the count.
    assert!(t.count_in().is_none());
    assert_eq!(t.queued(), 1);
    let held = match held.release() {
        Release::Queued(held, n) => {
            assert_eq!(n, 1);
            held
        }
        Release::Done => panic!("released over a counted message"),
    };
    held.count_out();
    assert!(matches!(held.release(), Release::Done));
    // Released: the next taker sees our change.
    assert_eq!(*t.take_idle().expect("free again"), 6);
}

#[test]
fn a_message_counted_while_free_brings_the_token_with_it() {
    let t = Token::new(());
    let held = t
        .count_in()
        .expect("the token was free: the writer takes it");
    assert_eq!(held.queued(), 1);
    assert!(t.take_idle().is_none() && t.take().is_none());
    held.count_out();
    assert!(matches!(held.release(), Release::Done));
    assert!(t.take_idle().is_some());
}

#[test]
fn dropping_the_held_token_frees_it_but_keeps_the_count() {
    let t = Token::new(());
    let held = t.take().expect("free");
    assert!(t.count_in().is_none());
    drop(held); // the unwinding path
    assert_eq!(t.queued(), 1);
    assert!(t.take_idle().is_none(), "not idle: a message is counted");
    let held = t.take().expect("free, with one message counted");
    held.count_out();
    assert!(matches!(held.release(), Release::Done));
}
/// Takes and releases `t` the ordinary way `n` times on this thread.
fn take_turns(t: &Token<u32>, n: u32) {
    for _ in 0..n {
        let mut held = t.take_idle().expect("free");
        *held += 1;
        assert!(matches!(held.release(), Release::Done));
    }
}

#[test]
fn a_thread_that_takes_the_token_in_a_row_is_granted_the_bias_and_loses_it_to_another() {
    let t = Token::new(0u32);
    take_turns(&t, FIRST_NEED - 1);
    assert_eq!(t.state.load(Ordering::Relaxed), 0, "not yet earned");
    assert!(t.take_biased().is_none());
    take_turns(&t, 1);
    if !reclaim::asymmetric() {
        // Without `membarrier` no bias is ever granted.
        assert_eq!(t.state.load(Ordering::Relaxed), 0);
        assert!(t.take_biased().is_none());
        return;
    }
    assert_eq!(t.state.load(Ordering::Relaxed), BIASED_IDLE, "granted");
    // The fast take: no read-modify-write, and the word is untouched.
    let mut held = t.take_biased().expect("biased to this thread");
    *held += 1;
    // Published in this thread's own flag, and cleared by the release.
    let flag = t.flag_of(thread_id());
    assert_eq!(flag.load(Ordering::Relaxed), &t as *const _ as usize);
    assert!(matches!(held.release(), Release::Done));
    assert_eq!(flag.load(Ordering::Relaxed), 0);
    assert_eq!(t.state.load(Ordering::Relaxed), BIASED_IDLE);
    // Another thread: no fast take for it; its ordinary take revokes
    // the bias (a heavy fence) and sees the biased thread's changes.
    std::thread::scope(|s| {
        s.spawn(|| {
            assert!(t.take_biased().is_none());
            let mut held = t.take_idle().expect("revoked: held");
            assert_eq!(*held, FIRST_NEED + 1);
            *held += 1;
            assert!(matches!(held.release(), Release::Done));
        });
    });
    assert_eq!(t.state.load(Ordering::Relaxed), 0, "revoked, then free");
    assert!(t.take_biased().is_none(), "the bias is gone");
    // The revocation doubled the streak the next grant needs.
    take_turns(&t, 2 * FIRST_NEED - 1);
    assert_eq!(t.state.load(Ordering::Relaxed), 0);
    take_turns(&t, 1);
    assert_eq!(t.state.load(Ordering::Relaxed), BIASED_IDLE);
    assert_eq!(
        *t.take().expect("our own bias: revoked at once"),
        3 * FIRST_NEED + 2
    );
}

#[test]
fn an_exited_threads_flag_is_given_to_a_later_thread_which_inherits_its_bias() {
    let t = Token::new(0u32);
    // A thread earns the bias, writes by its fast take, and exits.
    let id = std::thread::scope(|s| {
        s.spawn(|| {
            take_turns(&t, FIRST_NEED);
            if let Some(mut held) = t.take_biased() {
                *held += 1;
                assert!(matches!(held.release(), Release::Done));
            }
            thread_id()
        })
        .join()
        .expect("no panic")
    });
    assert_ne!(id, 0);
    // Its flag went back to the free list; a later thread gets it (the
    // list is a stack, but other tests' threads take flags too, so try
    // a few threads; each gives its flag back as it exits).
    let mut inherited = false;
    for _ in 0..1000 {
        inherited = std::thread::scope(|s| {
            s.spawn(|| {
                if thread_id() != id {
                    return false;
                }
                // The inherited bias is this thread's own: its take
                // revokes it without waiting, and sees every change.
                let mut held = t.take_idle().expect("biased to us: taken");
                assert_eq!(*held, FIRST_NEED + u32::from(reclaim::asymmetric()));
                *held += 1;
                assert!(matches!(held.release(), Release::Done));
                true
            })
            .join()
            .expect("no panic")
        });
        if inherited {
            break;
        }
    }
    assert!(
        inherited,
        "an exited thread's flag was never handed out again"
    );
}

#[test]
fn a_message_the_biased_thread_counts_while_busy_is_drained_by_its_release() {
    let t = Token::new(0u32);
    take_turns(&t, FIRST_NEED);
    if !reclaim::asymmetric() {
        assert!(t.take_biased().is_none());
        return;
    }
    let held = t.take_biased().expect("biased to this thread");
    // What a destructor run by the write could do: count a message in
    // for this very token. Waiting for the holder would wait on
    // ourselves: not taken, counted.
    assert!(t.take().is_none());
    assert!(t.count_in().is_none());
    assert_eq!(t.queued(), 1);
    // The release finds it and hands the token back to drain it.
    let held = match held.release() {
        Release::Queued(held, 1) => held,
        _ => panic!("the counted message was not handed back"),
    };
    held.count_out();
    assert!(matches!(held.release(), Release::Done));
    // Revoked by this thread itself (no fence, no doubling): its
    // streak goes on, and the release granted the bias again.
    assert_eq!(t.state.load(Ordering::Relaxed), BIASED_IDLE);
    assert!(t.take_biased().is_some());
}
