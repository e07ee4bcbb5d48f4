//! G8 against a replica in another OS process, stopped with `SIGSTOP`
//! past its lease: when it continues it must not serve the value a write
//! acknowledged meanwhile invalidated, even before its own threads have
//! run. Built with `--cfg coherent_break_lease_clock` (readers trust a
//! serving flag and skip the clock), this test must fail: `.ci/run`
//! checks that it does.

use coherent::replica::{Replica, ReplicaConfig};
use coherent::Cache;
use coherent_tests::redis_server::RedisServer;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

const LEASE_MS: u64 = 400;
const ACK_MS: u64 = 100;

struct Other {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Other {
    fn start(server: &RedisServer, namespace: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_replica_process"))
            .args([
                &server.url(),
                namespace,
                &LEASE_MS.to_string(),
                &ACK_MS.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting the replica process");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut other = Self {
            child,
            stdin,
            stdout,
        };
        assert_eq!(other.line(), "ready");
        other
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.stdout.read_line(&mut l).expect("an answer");
        l.trim().to_owned()
    }

    fn send(&mut self, command: &str) {
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill(1)")
            .success();
        assert!(ok, "kill {sig}");
    }
}

impl Drop for Other {
    fn drop(&mut self) {
        self.signal("-CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_replica_stopped_past_its_lease_serves_nothing_stale_when_it_continues() {
    let server = RedisServer::start();
    let config = ReplicaConfig {
        lease: Duration::from_millis(LEASE_MS),
        ack_deadline: Duration::from_millis(ACK_MS),
        ..ReplicaConfig::default()
    };
    let a =
        Replica::join_with(Cache::<u64, u64>::new(), &server.url(), "stop", config).expect("join");
    assert!(a.wait_until_serving(Duration::from_secs(5)));
    for round in 0..3u64 {
        let mut b = Other::start(&server, "stop");
        b.send(&format!("load 5 {round}"));
        assert_eq!(b.line(), round.to_string(), "b cached 5");
        b.send("get 5");
        assert_eq!(b.line(), round.to_string(), "b serves 5");
        b.signal("-STOP");
        let stopped = Instant::now();
        // The write waits for b's ack, revokes it, and waits out its lease.
        a.invalidate(&5)
            .expect("the write returns once b surely stopped serving");
        assert!(
            stopped.elapsed() >= Duration::from_millis(LEASE_MS),
            "the writer waited out b's lease ({:?})",
            stopped.elapsed()
        );
        // The read is queued before b continues: b's main thread answers
        // it as soon as it runs, whatever its link thread does.
        b.send("get 5");
        b.signal("-CONT");
        assert_eq!(
            b.line(),
            "miss",
            "round {round}: b served a value a write acknowledged meanwhile invalidated"
        );
        assert!(a.stats().revocations > round, "a revoked b");
    }
}
