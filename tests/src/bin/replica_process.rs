//! A replica in a process of its own, for the tests that stop a replica
//! with `SIGSTOP` (`tests/tests/replica_process.rs`). Usage:
//! `replica_process URL NAMESPACE LEASE_MS ACK_DEADLINE_MS`; prints
//! `ready` once it serves, then answers one line per command read from
//! stdin: `load K V` (get_or_load K, loading V: prints the value), `get K`
//! (prints the value or `miss`), `quit`.

use coherent::replica::{Replica, ReplicaConfig};
use coherent::Cache;
use std::io::{BufRead, Write};
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, namespace, lease, ack] = &args[..] else {
        panic!("usage: replica_process URL NAMESPACE LEASE_MS ACK_DEADLINE_MS");
    };
    let ms = |s: &String| Duration::from_millis(s.parse().expect("milliseconds"));
    let config = ReplicaConfig {
        lease: ms(lease),
        ack_deadline: ms(ack),
        ..ReplicaConfig::default()
    };
    let r = Replica::join_with(Cache::<u64, u64>::new(), url, namespace, config).expect("join");
    assert!(r.wait_until_serving(Duration::from_secs(10)), "serving");
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready").unwrap();
    out.flush().unwrap();
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("a command");
        let words: Vec<&str> = line.split_whitespace().collect();
        let num = |i: usize| words[i].parse::<u64>().expect("a number");
        let answer = match words.first().copied() {
            Some("load") => {
                let v = num(2);
                r.get_or_load(num(1), |_| Ok::<_, std::convert::Infallible>(v))
                    .unwrap()
                    .to_string()
            }
            Some("get") => r.get(&num(1)).map_or("miss".to_owned(), |v| v.to_string()),
            Some("quit") | None => return,
            Some(other) => panic!("unknown command {other}"),
        };
        writeln!(out, "{answer}").unwrap();
        out.flush().unwrap();
    }
}
